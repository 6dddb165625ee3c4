"""Turning library data into what the page shows, without running a model: HTML fragments (``html``), figures
(``figures``), the current character marked over a rendered figure (``overlay``) and the colours (``palette``)."""
