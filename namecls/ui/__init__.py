"""The Gradio app: one module per tab (``tabs/``), rendering without a model (``render/``), the page's stylesheet
(``style.css``), what every tab shares (``common``), the session's own model (``yours``), the public endpoints
(``api``, with MCP results as JSON: ``mcp_json``) and what keeps the server bounded (``server``).

Nothing here runs a model except through the library's ``Classifier`` (``predict``/``trace``) in an event handler.
"""
