"""The app's public API (``gradio_client`` and the "Use via API" page): plain JSON in and out.

Each endpoint's docstring and type hints are its documentation. Bad input raises ``gr.Error`` with the reason.
"""

from __future__ import annotations

from typing import Literal

from .. import service
from .common import user_errors

Model = Literal["rnn", "gru"]  # the API's model parameter (documented as an enum; matched case-insensitively)


def endpoints(models: dict) -> list:
    """The four public endpoint functions, bound to ``models``; each is registered under its own name."""

    def predict(name: str, model: Model = "gru", k: int = 3) -> dict[str, float]:
        """The k most probable languages of a surname, most probable first.

        Parameters:
            name: a surname, in any script (transliterated with unidecode, then restricted to a-z A-Z .,:;-')
            model: "rnn" or "gru"
            k: how many languages to return, 1 to 18
        Returns:
            {language: probability}
        """
        with user_errors(html=False):
            return service.predict(models, name, model, k)

    def predict_details(name: str, model: Model = "gru", k: int = 3) -> dict:
        """The k most probable languages of a surname, with how sure the network is.

        Parameters:
            name: a surname, in any script (transliterated with unidecode, then restricted to a-z A-Z .,:;-')
            model: "rnn" or "gru"
            k: how many languages to return, 1 to 18
        Returns:
            {"name", "normalized", "model", "top": {language: probability}, "top_probability", "entropy" (nats),
            "set": [languages] (the prediction set, most probable first: over held-out names like the training
            ones, such sets hold the right language "coverage" of the time; less for some small languages),
            "coverage" (0.9), "seen_as": [languages] (the exact normalised name's languages in the training
            lists; [] when it is not in them), "low_confidence" (true: the top probability is below "threshold",
            chosen on validation names so that names below it get the right language at most half the time; it
            does not detect names from outside the 18 languages), "threshold"}
        """
        with user_errors(html=False):
            return service.predict_details(models, name, model, k)

    def trace(name: str, model: Model = "gru") -> dict:
        """The network's prediction after every prefix of a surname, its hidden state after every character, and
        which letters decided the answer.

        Parameters:
            name: a surname
            model: "rnn" or "gru"
        Returns:
            {"name", "normalized", "model", "labels": [18], "chars": [T], "probs": [T][18] (row t = after
            chars[:t+1], columns in the order of labels), "hidden": [T][H] (the top layer's state after each
            character), "entropy": [T] (nats, of each row of probs), "low_confidence" (the whole name's flag, as
            /predict_details), "map": [T][2] (the top state after each character on the model's 2-D map of
            training names, or null), "attribution": [T] (for the final top language, the change in its
            log-probability as each character is read), "deletion": [T] (its log-probability minus that of the
            name without that character, or null), "neighbours": [T][n] ({"name", "language", "distance"}: the
            nearest training names to the state after each prefix, or null), "sets": [T][m] (the prediction set
            after each prefix), "coverage", "seen_as" (as /predict_details)}
        """
        with user_errors(html=False):
            return service.trace(models, name, model)

    def predict_batch(names: list[str], model: Model = "gru", k: int = 3) -> list[dict]:
        """Classify up to 10,000 surnames at once; a bad name gets an error in its row instead of failing the batch.

        Parameters:
            names: the surnames
            model: "rnn" or "gru"
            k: how many languages per name, 1 to 18
        Returns:
            one row per name, in order: {"name", "normalized", "top1", "probability", "top_k": {language: p},
            "set", "seen_as", "low_confidence" (as /predict_details), "error"}
        """
        with user_errors(html=False):
            return service.predict_batch(models, names, model, k)

    return [predict, predict_details, trace, predict_batch]
