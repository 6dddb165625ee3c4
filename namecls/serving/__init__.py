"""Answering outside the app: the checked entry points the API, MCP and CLI share (``service``), names in bulk as
table columns or a Dask job (``bulk``), and the ``namecls`` command line (``cli``)."""
