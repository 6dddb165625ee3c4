"""The app's MCP server, driven by a real MCP client: ``python app.py`` serves the four public endpoints, and only
they, as tools at ``/gradio_api/mcp/``; their descriptions are the endpoints' docstrings; their answers equal the
library's; bad input comes back as a tool error carrying the app's own message.

The app runs in-process on a free port (``test_app``'s launcher, the settings of ``app.launch_kwargs()``); the
client is the ``mcp`` package's streamable-HTTP client. Nothing leaves 127.0.0.1.
"""

import ast
import asyncio
import os

for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("NO_PROXY", "localhost,127.0.0.1")):
    os.environ.setdefault(_key, _value)

import httpx  # noqa: E402
import pytest  # noqa: E402
from conftest import require_module  # noqa: E402
from gradio.utils import get_function_description  # noqa: E402
from test_app import _launch  # noqa: E402  (the same launcher and launch settings as the gradio_client tests)

import app  # noqa: E402
import namecls  # noqa: E402
from namecls import prior as prior_rule  # noqa: E402
from namecls import service  # noqa: E402
from namecls.ui import api  # noqa: E402

TOOLS = ["predict", "predict_details", "trace", "predict_batch"]
PARAMETERS = {"predict": ["name", "model", "k", "prior"], "predict_details": ["name", "model", "k", "prior"],
              "trace": ["name", "model", "prior"], "predict_batch": ["names", "model", "k", "prior"]}


@pytest.fixture(scope="module")
def mcp_url():
    require_module("mcp")  # gradio[mcp] brings it; without it launch records demo.mcp_error and serves no tools
    url = _launch(app.demo)
    assert app.demo.mcp_error is None, app.demo.mcp_error
    yield url.rstrip("/") + "/gradio_api/mcp/"
    app.demo.close()


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


def value(result):
    """A successful tool call's value: gradio sends the endpoint's return value as one text item, ``str(value)``."""
    assert not result.isError, result.content
    assert len(result.content) == 1 and result.content[0].type == "text"
    return ast.literal_eval(result.content[0].text)


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
                     '"equal" every language equally likely', 'use "equal" for names from around the world'):
            assert says in prior["description"], (name, says)
        assert api.PRIOR_SENTENCE in tool.description  # and once in the description, as the API page shows it


# ---------------------------------------------------------------------------------------------------------------
# Calls


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
