"""namecls: which of 18 languages a surname comes from, with a hand-written RNN and a GRU, and a trace of how
the recurrent network reaches its answer, one character at a time.

    >>> import namecls
    >>> clf = namecls.load("gru")
    >>> clf.predict("Qin", k=3)
    >>> mine = namecls.fit(languages=["Chinese", "Japanese", "Korean"], time_budget=30)  # train in memory
    >>> namecls.annotate(df, column="surname")  # a pandas DataFrame with the answers appended (namecls.serving.bulk)
"""

import os

# Idle OpenMP threads sleep instead of spinning. With torch's default (spin), two threads on two cores shared with
# any other busy process ran 10-15x slower than one (bench/README.md, "Training speed"); passive, two threads beat
# one even then. libgomp reads this when torch is first imported, so it must be set before that; a value already
# in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoint import CheckpointError  # noqa: E402
from .data.names import ALPHABET, MAX_NAME_LENGTH, Normalized, normalize  # noqa: E402
from .errors import InputError  # noqa: E402
from .training.fit import FitConfig, fit  # noqa: E402
from .inference import Classifier, Trace, load  # noqa: E402

__all__ = ["ALPHABET", "MAX_NAME_LENGTH", "CheckpointError", "Classifier", "FitConfig", "InputError", "Normalized",
           "Trace", "annotate", "fit", "load", "normalize"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``namecls.annotate`` (:func:`namecls.serving.bulk.annotate`), imported on first use: it brings pandas, which
    ``import namecls`` does not otherwise need."""
    if name == "annotate":
        from .serving.bulk import annotate

        return annotate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
