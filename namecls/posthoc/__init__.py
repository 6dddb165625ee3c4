"""Everything fitted after training, on held-out names, that turns logits into the app's answers: temperature and the
low-confidence rule (``calibration``), prediction sets (``conformal``), the prior a visitor expects (``prior``),
"seen in training" (``seen``), the novelty score (``novelty``), and the value that holds them all (``parts``).
:mod:`namecls.training.posthoc` fits them."""
