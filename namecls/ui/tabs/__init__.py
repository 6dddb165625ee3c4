"""One module per tab; each ``build(...)`` lays out its tab and wires its own events. Views never run inference:
they call :mod:`namecls.serving.service` and render what it returns."""
