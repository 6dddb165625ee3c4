"""Training a network: the loop (``loop``), its scores (``evaluation``), the logit adjustment folded into the trained
model (``adjust``), the one pipeline that ``train.py`` and :func:`namecls.fit` run (``experiment``), fitting the
post-training parts (``posthoc``), training in memory for the library and the app (``fit``), and refitting the
post-training parts of an existing checkpoint (``refit``)."""
