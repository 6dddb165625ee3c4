"""The app's MCP server, driven by a real MCP client: ``python app.py`` serves the four public endpoints, and only
they, as tools at ``/gradio_api/mcp/``; their descriptions are the endpoints' docstrings; their answers are JSON
text (issue 22: gradio alone writes Python literals, ``None``, ``True``, single quotes) equal to the library's and
to the REST API's; bad input comes back as a tool error carrying the app's own message.

The app runs in-process on a free port (``test_app``'s launcher, the settings of ``app.launch_kwargs()``); the
client is the ``mcp`` package's streamable-HTTP client. Nothing leaves 127.0.0.1.
"""

import asyncio
import json
import re
import warnings
import os

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import gradio  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402
from conftest import require_module  # noqa: E402
from gradio.utils import get_function_description  # noqa: E402
from test_app import _launch  # noqa: E402  (the same launcher and launch settings as the gradio_client tests)

import app  # noqa: E402
import namecls  # noqa: E402
from namecls.posthoc import prior as prior_rule  # noqa: E402
from namecls.serving import service  # noqa: E402
from namecls.ui import api, mcp_json  # noqa: E402

TOOLS = ["predict", "predict_details", "trace", "predict_batch"]
PARAMETERS = {"predict": ["name", "model", "k", "prior"], "predict_details": ["name", "model", "k", "prior"],
              "trace": ["name", "model", "prior"], "predict_batch": ["names", "model", "k", "prior"]}


@pytest.fixture(scope="module")
def app_url():
    require_module("mcp")  # gradio[mcp] brings it; without it launch records demo.mcp_error and serves no tools
    url = _launch(app.demo)
    assert app.demo.mcp_error is None, app.demo.mcp_error
    yield url
    app.demo.close()


@pytest.fixture(scope="module")
def mcp_url(app_url):
    return app_url.rstrip("/") + "/gradio_api/mcp/"


async def _session(url: str, work):
    from mcp import ClientSession

    try:
        from mcp.client.streamable_http import streamable_http_client as client
    except ImportError:  # older mcp releases know it only by its former name (deprecated in 1.30)
        from mcp.client.streamable_http import streamablehttp_client as client

    async with client(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        return await work(session)


def run(url: str, work):
    """``await work(session)`` in a fresh, initialised MCP client session against ``url``."""
    return asyncio.run(asyncio.wait_for(_session(url, work), timeout=60))


def call(url: str, tool: str, **arguments):
    """One tool call: the CallToolResult."""
    return run(url, lambda session: session.call_tool(tool, arguments))


def text(result) -> str:
    """A successful tool call's one text item: the endpoint's return value as JSON (``namecls.ui.mcp_json``)."""
    assert not result.isError, result.content
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.content[0].text


def value(result):
    """A successful tool call's value, read as JSON (as any MCP client would)."""
    return json.loads(text(result))


def error_text(result) -> str:
    assert result.isError, result.content
    return " ".join(item.text for item in result.content)


@pytest.fixture(scope="module")
def tools(mcp_url):
    listed = run(mcp_url, lambda session: session.list_tools())
    return {tool.name: tool for tool in listed.tools}


@pytest.fixture(scope="module")
def reference():
    """The library's own answers, from checkpoints loaded here (not the app's models)."""
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


# ---------------------------------------------------------------------------------------------------------------
# The tool list


def test_exactly_the_four_public_endpoints_are_tools(tools, mcp_url):
    assert list(tools) == TOOLS
    assert len(app.demo.fns) > len(TOOLS)  # the UI's many event handlers exist, and none of them is a tool
    schema = httpx.get(mcp_url.rstrip("/") + "/schema", timeout=30).json()  # gradio's own listing agrees
    assert [tool["name"] for tool in schema] == TOOLS
    assert {tool["meta"]["endpoint_name"] for tool in schema} == set(TOOLS)


def test_descriptions_are_the_docstrings(tools):
    for fn in api.endpoints(app.MODELS):
        tool = tools[fn.__name__]
        description, parameters, returns = get_function_description(fn)
        assert "${" not in fn.__doc__  # every field of the docstring was filled in
        assert tool.description.startswith(description) and len(description) > 200
        assert tool.description.endswith(", ".join(returns))
        properties = tool.inputSchema["properties"]
        assert list(properties) == PARAMETERS[fn.__name__]
        for name, text in parameters.items():
            assert text and properties[name]["description"] == text  # every parameter described, on one line
        assert properties["model"]["enum"] == ["rnn", "gru"] and properties["model"]["default"] == "gru"
        assert tool.inputSchema["required"] == PARAMETERS[fn.__name__][:1]


def test_descriptions_say_what_a_caller_needs(tools):
    labels = app.MODELS["gru"].labels
    for name, tool in tools.items():
        properties = tool.inputSchema["properties"]
        assert '"gru"' in properties["model"]["description"] and '"rnn"' in properties["model"]["description"]
        if "k" in properties:
            assert properties["k"]["type"] == "integer" and properties["k"]["default"] == 3
            assert f"from 1 to {len(labels)}" in properties["k"]["description"]
        assert "not a nationality" in tool.description or name == "trace"
    assert ", ".join(labels) in tools["predict"].description
    assert str(namecls.MAX_NAME_LENGTH) in tools["predict"].inputSchema["properties"]["name"]["description"]
    details = tools["predict_details"].description
    for field in ('"set"', '"seen_as"', '"novelty"', '"unfamiliar"', '"low_confidence"', '"threshold"'):
        assert field in details
    assert "prediction set" in details and "not per language" in details and "not \"from another" in details
    assert f"at most {service.MAX_BATCH_NAMES:,}" in tools["predict_batch"].description
    assert tools["predict_batch"].inputSchema["properties"]["names"] == {
        "type": "array", "items": {"type": "string"},
        "description": tools["predict_batch"].inputSchema["properties"]["names"]["description"]}


def test_every_tool_takes_the_prior_last_and_says_what_it_does(tools):
    for name, tool in tools.items():
        properties = tool.inputSchema["properties"]
        assert list(properties)[-1] == "prior" and "prior" not in tool.inputSchema["required"]
        prior = properties["prior"]
        assert prior["enum"] == list(prior_rule.PRIORS) == ["lists", "equal"] and prior["default"] == "lists"
        assert prior["description"] == api.PRIOR_ARG
        for says in ('"lists" (the default)', "training lists (half of them Russian)",
                     '"equal" every language equally likely', 'use "equal" for names whose mix favours no language'):
            assert says in prior["description"], (name, says)
        assert api.PRIOR_SENTENCE in tool.description  # and once in the description, as the API page shows it


# ---------------------------------------------------------------------------------------------------------------
# Calls


@pytest.mark.slow
@pytest.mark.parametrize("name, model, k", [("Nguyen", "gru", 3), ("O'Connell", "rnn", 5), ("Ślusàrski", "gru", 1),
                                            ("Fujita", "rnn", 18)])
def test_predict_equals_the_library(mcp_url, reference, name, model, k):
    got = value(call(mcp_url, "predict", name=name, model=model, k=k))
    expected = reference[model].predict(name, k)
    assert list(got) == [lang for lang, _ in expected]
    assert list(got.values()) == pytest.approx([p for _, p in expected], abs=1e-6)


def test_predict_defaults(mcp_url, reference):
    got = value(call(mcp_url, "predict", name="Qin"))  # model "gru", k 3
    assert list(got) == [lang for lang, _ in reference["gru"].predict("Qin", 3)]


def test_predict_details_equals_the_library(mcp_url, reference):
    got = value(call(mcp_url, "predict_details", name="Hong", model="gru", k=2))
    direct = reference["gru"].predict_details("Hong", 2)
    assert got["normalized"] == "Hong" and got["model"] == "gru"
    assert list(got["top"]) == [lang for lang, _ in direct.top]
    assert got["set"] == direct.set and got["seen_as"] == direct.seen_as and len(got["seen_as"]) >= 2
    assert got["low_confidence"] == direct.low_confidence
    assert got["novelty"] == pytest.approx(direct.novelty, abs=1e-6) and got["unfamiliar"] == direct.unfamiliar


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["predict", "predict_details"])
def test_the_equal_prior_is_the_librarys(mcp_url, reference, tool):
    got = value(call(mcp_url, tool, name="Abel", model="gru", k=3, prior="equal"))
    direct = reference["gru"].predict_details("Abel", 3, prior="equal")
    top = got if tool == "predict" else got["top"]
    assert list(top) == [lang for lang, _ in direct.top] and list(top)[0] == "German"  # Russian under "lists"
    assert list(top.values()) == pytest.approx([p for _, p in direct.top], abs=1e-6)
    if tool == "predict_details":
        assert got["prior"] == "equal" and got["set"] == direct.set
        assert value(call(mcp_url, tool, name="Abel", model="gru", k=3))["prior"] == "lists"


def test_trace(mcp_url, reference):
    got = value(call(mcp_url, "trace", name="Nguyen", model="rnn"))
    assert got["chars"] == list("Nguyen") and got["labels"] == reference["rnn"].labels
    assert len(got["probs"]) == len(got["hidden"]) == len(got["attribution"]) == 6
    final = dict(zip(got["labels"], got["probs"][-1]))
    for lang, p in reference["rnn"].predict("Nguyen", 3):
        assert final[lang] == pytest.approx(p, abs=1e-5)


def test_predict_batch(mcp_url, reference):
    names = ["Nguyen", "12345", "Schmidt", "Ślusàrski"]
    rows = value(call(mcp_url, "predict_batch", names=names, model="gru", k=2))
    assert [row["name"] for row in rows] == names
    assert rows[1]["error"] and rows[1]["top1"] is None  # a bad name gets its reason, the batch goes on
    for row in (rows[0], rows[2], rows[3]):
        expected = reference["gru"].predict(row["name"], 2)
        assert row["error"] is None and row["top1"] == expected[0][0]
        assert list(row["top_k"]) == [lang for lang, _ in expected]


# ---------------------------------------------------------------------------------------------------------------
# Bad input: the app's own message, as a tool error


@pytest.mark.slow
@pytest.mark.parametrize("tool, arguments, message", [
    ("predict", {"name": "Nguyen", "k": 0}, "k must be a whole number from 1 to 18, not 0"),
    ("predict", {"name": "Nguyen", "k": 19}, "k must be a whole number from 1 to 18, not 19"),
    ("predict", {"name": ""}, "name is empty"),
    ("predict_details", {"name": "12345"}, "no letters"),
    ("trace", {"name": "x" * 300}, "too long"),
    ("predict_batch", {"names": ["Li"] * (service.MAX_BATCH_NAMES + 1)}, "too many"),
    ("predict", {"name": "Nguyen", "model": "lstm"}, "'lstm' is not one of ['rnn', 'gru']"),  # the schema's enum
    ("predict_details", {"name": "Nguyen", "prior": "flat"}, "'flat' is not one of ['lists', 'equal']"),
])
def test_bad_input_is_a_tool_error_with_the_reason(mcp_url, tool, arguments, message):
    assert message in error_text(call(mcp_url, tool, **arguments))


def test_the_server_keeps_serving_after_errors(mcp_url):
    async def work(session):
        bad = await session.call_tool("predict", {"name": "", "k": 0})
        good = await session.call_tool("predict", {"name": "Nguyen", "k": 1})
        return bad, good

    bad, good = run(mcp_url, work)
    assert bad.isError and list(value(good)) == ["Vietnamese"]


# ---------------------------------------------------------------------------------------------------------------
# The answer is JSON (issue 22), the same as the REST API's


CALLS = [("predict_details", {"name": "Qin"}, ["Qin", "gru", 3, "lists"]),
         ("trace", {"name": "Li", "model": "rnn"}, ["Li", "rnn", "lists"]),
         ("predict_batch", {"names": ["Qin", "Abel", "12345"]}, [["Qin", "Abel", "12345"], "gru", 3, "lists"]),
         ("predict", {"name": "Nakamura"}, ["Nakamura", "gru", 3, "lists"])]


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.mark.slow
@pytest.mark.parametrize("tool, arguments, args", CALLS, ids=[call[0] for call in CALLS])
def test_every_answer_is_json_equal_to_the_rest_answer(mcp_url, client, tool, arguments, args):
    result = call(mcp_url, tool, **arguments)
    written = text(result)
    got = json.loads(written)  # strict JSON: no None, True, False, NaN or single quotes
    rest = client.predict(*args, api_name=f"/{tool}")
    assert got == rest and type(got) is type(rest) is (list if tool == "predict_batch" else dict)
    endpoint = {fn.__name__: fn for fn in api.endpoints(app.MODELS)}[tool]
    assert got == json.loads(json.dumps(endpoint(*args)))  # and the endpoint function's own, through JSON
    between_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', written)  # what is written outside the strings
    assert set(re.findall(r"[A-Za-z_']+", between_strings)) <= {"true", "false", "null", "e"}  # no None, True, nan, '
    # structuredContent, if gradio ever adds one, must carry the same value
    assert result.structuredContent in (None, rest, {"result": rest})


@pytest.mark.slow
def test_python_literals_became_json_literals(mcp_url):
    details = text(call(mcp_url, "predict_details", name="Qin"))
    got = json.loads(details)
    assert got["low_confidence"] is True and '"low_confidence":true' in details  # was True
    assert got["unfamiliar"] is False and '"unfamiliar":false' in details  # was False
    assert got["seen_as"] == ["Chinese"] and '"seen_as":["Chinese"]' in details  # was ['Chinese']
    assert '"gates":null' in text(call(mcp_url, "trace", name="Li", model="rnn"))  # was None
    batch = text(call(mcp_url, "predict_batch", names=["Qin", "12345"]))
    rows = json.loads(batch)
    assert rows[0]["error"] is None and rows[1]["top1"] is None and '"error":null' in batch
    assert json.loads(text(call(mcp_url, "predict", name="O'Connell", k=1)))  # a quote in the name: still JSON
    assert json.loads(text(call(mcp_url, "trace", name="O'Connell")))["normalized"] == "O'Connell"


# ---------------------------------------------------------------------------------------------------------------
# The one private gradio method replaced (namecls/ui/mcp_json.py): guarded, and still needed


def test_the_replaced_gradio_method_is_the_tested_one(mcp_url):
    """Fails on another gradio: check gradio/mcp.py's GradioMCPServer.postprocess_output_data (does it still
    write str(value)?), then update mcp_json.TESTED_GRADIO (requirements.txt and README's sdk_version pin it)."""
    from gradio.mcp import GradioMCPServer

    assert gradio.__version__ == mcp_json.TESTED_GRADIO
    replaced = GradioMCPServer.postprocess_output_data
    assert getattr(replaced, mcp_json._MARK) and replaced.__wrapped__.__module__ == "gradio.mcp"
    assert app.demo.mcp_server_obj.postprocess_output_data.__func__ is replaced  # the served app's MCP server uses it


def test_gradio_alone_still_writes_python_literals(mcp_url):
    """Fails once gradio writes JSON itself: then namecls/ui/mcp_json.py can go."""
    from gradio.mcp import GradioMCPServer

    server = app.demo.mcp_server_obj
    original = GradioMCPServer.postprocess_output_data.__wrapped__
    [item] = original(server, [{"seen_as": None, "low_confidence": True}], "http://127.0.0.1")
    assert item.text == "{'seen_as': None, 'low_confidence': True}"
    [item] = server.postprocess_output_data([{"seen_as": None, "low_confidence": True}], "http://127.0.0.1")
    assert item.type == "text" and item.text == '{"seen_as":null,"low_confidence":true}'


def test_only_the_apps_that_ask_and_only_values_json_can_hold(mcp_url):
    import gradio as gr
    from gradio.mcp import GradioMCPServer

    def echo(x: str) -> dict:
        return {"x": None}

    with gr.Blocks() as other:
        gr.api(echo, api_name="echo")
    untouched = GradioMCPServer(other)  # another app in the process: gradio's own text
    assert [item.text for item in untouched.postprocess_output_data([{"x": None}], "http://127.0.0.1")] == [
        "{'x': None}"]
    ours = app.demo.mcp_server_obj
    texts = [item.text for item in ours.postprocess_output_data(
        ["a string", [1.5, True, None], float("nan"), {"k": 2}], "http://127.0.0.1")]
    assert texts == ["a string", "[1.5,true,null]", "null", '{"k":2}']  # a string stays as gradio writes it
    assert mcp_json.json_text({1, 2}) is None  # what JSON cannot hold: gradio's text (not a failed call)


def test_another_gradio_keeps_gradios_text_with_a_warning(monkeypatch):
    monkeypatch.setattr(gradio, "__version__", "99.0.0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mcp_json._gradio_hook() is None
        assert mcp_json.answer_in_json(object()) is False
    assert caught and all("not 6.31.0" in str(w.message) and "postprocess_output_data" in str(w.message)
                          for w in caught)
