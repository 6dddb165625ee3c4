"""The app's public API (``gradio_client``, the "Use via API" page and the MCP tools): plain JSON in and out.

Each endpoint's docstring and type hints are its documentation, and the MCP tool's description an AI assistant
reads before calling it. Gradio (``gradio.utils.get_function_description``) reads a docstring in three parts:
the text before ``Args:`` is the description (its lines joined by spaces); each ``Args:`` line ``name: text`` is
that parameter's description (one line each: a continuation line is dropped); the lines after ``Returns:`` are
appended to the MCP description joined by ", " (so a Returns line breaks where a comma would go, and has none
at its end). The ``${...}`` fields are filled in from the served checkpoints (:func:`_facts`).
Bad input raises ``gr.Error`` with the reason. :func:`register` serves each endpoint; its MCP tool's result is
the same value as JSON text (:mod:`namecls.ui.mcp_json`: gradio alone would write it as a Python literal).
"""

from __future__ import annotations

from string import Template
from typing import Literal

from ..posthoc import prior as prior_rule
from ..serving import service
from ..data.names import MAX_NAME_LENGTH
from . import mcp_json
from .common import set_facts, user_errors
from .render.html import MODEL_LABELS, percent

Model = Literal["rnn", "gru"]  # the API's model parameter (documented as an enum; matched case-insensitively)
# the API's prior parameter: namecls.posthoc.prior.PRIORS, documented and matched as model
Prior = Literal["lists", "equal"]

# A parameter's description is one docstring line for gradio: the long ones are written here once.
NAME_ARG = ("one surname (not a full name) in any script: it is transliterated with unidecode, then only the letters "
            f"a-z A-Z and the signs .,:;-' are kept; at least one letter and at most {MAX_NAME_LENGTH} characters "
            "after that")
NAMES_ARG = f"the surnames, a list of at most {service.MAX_BATCH_NAMES:,} strings, each as the name of predict"
PRIOR_ARG = ('how likely each language is before the name is read: "lists" (the default) as common as in the '
             'training lists (half of them Russian), "equal" every language equally likely; use "equal" for names '
             'whose mix favours no language')
PRIOR_SENTENCE = f'"prior", the optional last argument, sets {PRIOR_ARG}.'  # in each description (the API page)
MODEL_ARG = ('"gru" (the default) or "rnn" (the PyTorch tutorial\'s hand-written RNN); share of held-out test names '
             "each gets right: ${accuracy}")


def _facts(models: dict) -> dict[str, str]:
    """What the docstrings state about the served checkpoints: the languages, the limits, the measured scores."""
    facts = {kind: set_facts(clf) for kind, clf in models.items()}
    first = next(iter(facts.values()))

    def per_model(values: dict) -> str:
        shown = [f"{MODEL_LABELS.get(kind, kind)} {percent(v)}" for kind, v in values.items() if v is not None]
        return ", ".join(shown) or "not measured"

    accuracy = per_model({kind: (clf.metrics.get("test") or {}).get("accuracy") for kind, clf in models.items()})
    worst = min((f["worst"] for f in facts.values() if f["worst"]), key=lambda row: row[1], default=None)
    aurocs = sorted(f["novelty_auroc_in_language"] for f in facts.values() if f["novelty_auroc_in_language"])
    return {
        "name_arg": NAME_ARG, "names_arg": NAMES_ARG, "model_arg": Template(MODEL_ARG).substitute(accuracy=accuracy),
        "prior_arg": PRIOR_ARG, "prior": PRIOR_SENTENCE,
        "n": str(first["n_labels"]), "languages": ", ".join(next(iter(models.values())).labels),
        "max_batch": f"{service.MAX_BATCH_NAMES:,}",
        "coverage": f"{100 * first['coverage']:g}%",
        "test_coverage": per_model({kind: f["test_coverage"] for kind, f in facts.items()}),
        "worst": "" if worst is None else f" (least covered: {worst[0]}, {100 * worst[1]:g}% of {worst[2]} test names)",
        "unusual_share": f"{100 * first['unusual_share']:.0f}%",
        "novelty_power": "" if not aurocs else (
            " (on held-out surnames it ranked a foreign surname above an unseen surname of these languages only "
            f"{100 * aurocs[0]:.0f}–{100 * aurocs[-1]:.0f}% of the time)"),
    }


def _document(fn, facts: dict[str, str]):
    """``fn`` with the ``${...}`` fields of its docstring filled in (an unknown field raises at start-up)."""
    fn.__doc__ = Template(fn.__doc__).substitute(facts)
    return fn


def last_defaults(fns: list) -> dict[str, tuple[int, object]]:
    """{endpoint: (its number of arguments, its last argument's default)} of the endpoint functions ``fns``
    (:func:`endpoints`): what a REST call may leave out (:class:`namecls.ui.server.LastArgumentDefault`), so that
    calls written before the last argument (the prior) existed still answer."""
    import inspect

    out = {}
    for fn in fns:
        parameters = list(inspect.signature(fn).parameters.values())
        out[fn.__name__] = (len(parameters), parameters[-1].default)
    return out


def register(demo, fns: list) -> None:
    """Register the endpoint functions ``fns`` (:func:`endpoints`) on ``demo``, inside its ``with`` block, each under
    its own name: public API endpoints and MCP tools, the tools' results as JSON text (:mod:`namecls.ui.mcp_json`)."""
    import gradio as gr

    for endpoint in fns:
        gr.api(endpoint, api_name=endpoint.__name__)
    mcp_json.answer_in_json(demo)


def endpoints(models: dict) -> list:
    """The four public endpoint functions, bound to ``models``; each is registered under its own name."""

    def predict(name: str, model: Model = "gru", k: int = 3, prior: Prior = prior_rule.DEFAULT) -> dict[str, float]:
        """Which of ${n} languages' surname lists a surname's spelling most resembles: the k most probable
        languages with their probabilities, most probable first.

        The ${n} languages: ${languages}. Every name gets some of them, however foreign (a Turkish surname gets
        one too). A surname is not a nationality, an ethnicity or a person's origin: report the answer as "the
        spelling resembles X surnames", not as where a person is from. Probabilities are calibrated over many
        names of these languages ("0.8" is right about 80% of the time), not per name; languages with few names
        in the data are predicted less reliably. For how sure the model is (the prediction set, whether the name
        is in the training lists, how unusual the spelling is) call predict_details instead; for many names, call
        predict_batch once. ${prior} Bad input (an empty name, no letters, too long, an unknown model or prior,
        k out of range) returns an error saying why.

        Args:
            name: ${name_arg}
            model: ${model_arg}
            k: how many languages to return, a whole number from 1 to ${n} (default 3)
            prior: ${prior_arg}
        Returns:
            {language: probability}: the k most probable languages, most probable first (all ${n} sum to 1)
        """
        with user_errors(html=False):
            return service.predict(models, name, model, k, prior)

    def predict_details(name: str, model: Model = "gru", k: int = 3, prior: Prior = prior_rule.DEFAULT) -> dict:
        """The k most probable languages of a surname with how sure the network is: the prediction set, whether
        the exact name is in the training lists, and how unusual its spelling is. The call to make for one name.

        Reading the result: "set" is the prediction set, the answer to report ("Vietnamese or Chinese"): over
        held-out names like the training ones such sets contain the right language ${coverage} of the time
        (measured on test names: ${test_coverage}), over names, not per language: languages with few names are
        covered far less often${worst}, and for a name from outside the ${n} languages a one-language set proves
        nothing. "seen_as" is the languages the exact normalised name has in the training lists ([] when it is not
        in them, so the answer is a generalisation; null when the checkpoint has no such table); a seen name's
        answer may be memorised, and some names are listed under two languages. "novelty" scores how unusual the
        spelling is for these lists and "unfamiliar" is true when it is higher than all but ${unusual_share} of
        validation names: that means "unusual spelling for these ${n} lists", not "from another
        language"${novelty_power}. "low_confidence" is true when the top probability is below "threshold",
        chosen on validation names so that names below it get the right language at most half the time; it does
        not detect names from outside the ${n} languages. "entropy" is in nats (0: certain). ${prior} Under "equal"
        every probability and the set are those for names whose languages are equally common (the set recalibrated
        to cover them as often). A surname is not a nationality, an ethnicity or a person's origin.

        Args:
            name: ${name_arg}
            model: ${model_arg}
            k: how many languages to return in "top", a whole number from 1 to ${n} (default 3)
            prior: ${prior_arg}
        Returns:
            {"name" (as sent), "normalized" (the text the model read), "model"
            "top": {language: probability} (the k most probable, most probable first), "top_probability"
            "entropy", "low_confidence", "threshold", "set": [languages], "coverage" (the level the sets aim at)
            "seen_as": [languages], "novelty", "unfamiliar", "prior" (the one answered under)}
        """
        with user_errors(html=False):
            return service.predict_details(models, name, model, k, prior=prior)

    def trace(name: str, model: Model = "gru", prior: Prior = prior_rule.DEFAULT) -> dict:
        """How the network reads a surname letter by letter: its prediction after every prefix ("N", "Ng",
        "Ngu", ...), which letters decided the final answer, the nearest training names after each letter, and its
        hidden state after each letter.

        For explaining an answer. The result is large (the hidden states are hundreds of numbers per letter):
        for the answer alone call predict_details. Reading the result: row t of "probs" is the prediction after
        the first t+1 characters in "chars", its columns in the order of "labels". "attribution"[t] is the change
        in the final top language's log-probability when character t is read, and "deletion"[t] that
        log-probability minus the one for the name without character t (both positive: the letter pushes toward
        the answer). "sets"[t] is the prediction set after the prefix and "neighbours"[t] the training names
        nearest to the network's state there. "low_confidence", "coverage", "seen_as", "novelty" and "unfamiliar"
        are the whole name's, read as in predict_details. ${prior}

        Args:
            name: ${name_arg}
            model: ${model_arg}
            prior: ${prior_arg}
        Returns:
            {"name", "normalized", "model", "labels": [the ${n} languages], "chars": [the T characters read]
            "probs": [T][${n}], "entropy": [T] (nats), "attribution": [T], "deletion": [T] or null
            "sets": [T][languages] or null, "neighbours": [T][{"name", "language", "distance"}] or null
            "map": [T][2] (the state on the model's 2-D map of training names) or null
            "hidden": [T][H] (the top layer's state after each character)
            "low_confidence", "coverage", "seen_as", "novelty", "unfamiliar", "prior"}
        """
        with user_errors(html=False):
            return service.trace(models, name, model, prior)

    def predict_batch(names: list[str], model: Model = "gru", k: int = 3,
                      prior: Prior = prior_rule.DEFAULT) -> list[dict]:
        """Classify many surnames in one call (at most ${max_batch}): for each, in order, the top language and its
        probability, the k most probable, the prediction set and the languages it has in the training lists.

        A name that cannot be classified (empty, no letters, too long) gets its reason in "error" and empty
        answer fields instead of failing the batch; too many names, an unknown model or prior or k out of range
        fails the call with an error saying why. Every row reads as predict_details does, with its caveats: the set
        is the answer to report, "seen_as" says whether the name was in the training lists, and a surname is not a
        nationality, an ethnicity or a person's origin. ${prior}

        Args:
            names: ${names_arg}
            model: ${model_arg}
            k: how many languages per name in "top_k", a whole number from 1 to ${n} (default 3)
            prior: ${prior_arg}
        Returns:
            one object per name, in the order sent: {"name", "normalized", "top1", "probability" (of top1)
            "top_k": {language: probability}, "low_confidence", "set", "seen_as" (as predict_details)
            "error" (null, or why the name could not be classified)}
        """
        with user_errors(html=False):
            return service.predict_batch(models, names, model, k, prior)

    facts = _facts(models)
    return [_document(fn, facts) for fn in (predict, predict_details, trace, predict_batch)]
