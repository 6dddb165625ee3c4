"""MCP tool results as JSON text (issue 22), where gradio writes them as Python literals.

Gradio 6.31 turns an MCP tool's return value into one text item with ``str(value)``
(``gradio/mcp.py``, ``GradioMCPServer.postprocess_output_data``, the ``else`` branch), so an AI assistant
calling ``predict_details`` read ``{'low_confidence': True, 'seen_as': None}``: not JSON. Gradio offers no
public way to change that (``gr.mcp.tool(structured_output=True)`` only adds a ``structuredContent`` that wraps
the same text items), so this module replaces that one method, for the apps that ask (:func:`answer_in_json`),
with one that writes each dict, list, number, true/false or null result as JSON, serialised as gradio's REST
API serialises it (``orjson``, NaN as null); strings and files still go to gradio's own method. The REST API and
``gradio_client`` never pass through it and answer exactly as before; the tools' names and schemas are untouched.

The replaced method is gradio's, not public: :func:`_gradio_hook` checks the gradio version and the method's
signature first. On any other gradio the app runs unchanged, with gradio's Python-literal results and a warning
saying what to check; ``tests/test_mcp.py`` fails then, and fails too once gradio writes JSON itself (time to
remove this module).
"""

from __future__ import annotations

import functools
import inspect
import warnings
import weakref
from typing import Any

TESTED_GRADIO = "6.31.0"  # the gradio whose GradioMCPServer.postprocess_output_data this replaces (requirements.txt)
_MARK = "__namecls_json__"  # set on the replacement, so that it is installed once and recognisable
_APPS: weakref.WeakSet = weakref.WeakSet()  # the Blocks whose MCP results are JSON


def answer_in_json(demo) -> bool:
    """Make ``demo``'s MCP tool results JSON text. Returns whether they will be (False: an untested gradio,
    warned about; results stay gradio's ``str(value)``). Call it before or after launch; calling it again is free."""
    cls = _gradio_hook()
    if cls is None:
        return False
    if not getattr(cls.postprocess_output_data, _MARK, False):
        cls.postprocess_output_data = _json_results(cls.postprocess_output_data)
    _APPS.add(demo)
    return True


def json_text(value: Any) -> str | None:
    """``value`` as the JSON text an MCP client gets, or None where gradio's own text stays (strings, files,
    anything JSON cannot hold)."""
    import orjson
    from gradio_client import utils as client_utils

    if isinstance(value, str) or client_utils.is_file_obj_with_meta(value):
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:  # orjson.JSONEncodeError: a value REST could not send either
        return None


def _gradio_hook():
    """gradio's ``GradioMCPServer``, if its ``postprocess_output_data(self, data, root_url)`` is the one this
    module was written against (gradio ``TESTED_GRADIO``); otherwise None, with a warning. The only place that
    names gradio's private MCP internals."""
    import gradio

    try:
        from gradio.mcp import GradioMCPServer
        method = GradioMCPServer.postprocess_output_data
        parameters = list(inspect.signature(method).parameters)
    except (ImportError, AttributeError, TypeError, ValueError):
        parameters = None
    if gradio.__version__ != TESTED_GRADIO or parameters != ["self", "data", "root_url"]:
        warnings.warn(f"namecls: MCP tool results stay gradio's Python-literal text, not JSON: gradio "
                      f"{gradio.__version__} is not {TESTED_GRADIO}, for which namecls/ui/mcp_json.py replaces "
                      "gradio.mcp.GradioMCPServer.postprocess_output_data; check that method in the new gradio "
                      "(does it still write str(value)?) and update TESTED_GRADIO or remove the module",
                      RuntimeWarning, stacklevel=3)
        return None
    return GradioMCPServer


def _json_results(original):
    """gradio's ``postprocess_output_data`` writing JSON for the apps in ``_APPS``; one output at a time, in order,
    so that a string or a file among them still gets gradio's own content items."""
    from mcp import types

    @functools.wraps(original)
    def postprocess_output_data(self, data, root_url):
        if self.blocks not in _APPS:
            return original(self, data, root_url)
        content = []
        for output in data:
            text = json_text(output)
            content.extend(original(self, [output], root_url) if text is None
                           else [types.TextContent(type="text", text=text)])
        return content

    setattr(postprocess_output_data, _MARK, True)  # functools.wraps keeps gradio's as __wrapped__
    return postprocess_output_data
