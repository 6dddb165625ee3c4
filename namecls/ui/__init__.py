"""The Gradio app's views: one module per tab (``classify``, ``step_through``, ``compare``, ``batch``,
``model_card``), each with a ``build(models, ui, ...)`` that lays out its tab and wires its own events; ``figures``
(matplotlib and SVG figures), ``html`` (HTML fragments and all CSS), ``overlay`` (the current character marked over
a rendered figure), ``palette`` (colours), ``common`` (what the tabs share) and ``api`` (the public endpoints).

Nothing here runs a model except through the library's ``Classifier`` (``predict``/``trace``) in an event handler.
"""
