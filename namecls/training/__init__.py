"""Training a network: the loop (``loop``), its scores (``evaluation``), the pipeline ``train.py`` runs
(``experiment``), training in memory for the library and the app (``fit``), and refitting the post-training parts of
an existing checkpoint (``refit``)."""
