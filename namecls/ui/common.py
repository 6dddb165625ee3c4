"""What every tab shares: the model choices and the one top-k default, the examples and what the page says about
each, turning bad input into a clear message, and clearing a tab's answer when its name is rejected."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import gradio as gr

from ..data.names import Normalized
from ..errors import InputError
from ..serving import service
from ..inference import CHECKPOINTS
from .render.html import MODEL_LABELS, esc, notice_html, percent
from .yours import YOURS, picked_gone, session_mine

LOG = logging.getLogger("namecls")
MODEL_CHOICES = [("RNN", "rnn"), ("GRU", "gru")]
DEFAULT_MODEL = "gru"  # every model radio's first choice, and its choice once "Yours" is gone
TOP_K = 3  # the top-k every tab starts with (the trajectory draws as many languages)


@dataclass(frozen=True)
class Example:
    """An example name and what the page says about it. ``tests/test_ui.py`` checks every claim against the data
    and the committed checkpoints: ``languages`` are the data files listing the name (none: from elsewhere);
    ``held_out``: in neither checkpoint's training split (so "seen in training" is empty); otherwise a name of the
    data is in the training lists under exactly ``languages``. One language: both models' top-1 is it; two: both
    models' top two are exactly those. ``single``: both models' 90% prediction set is one language (False: several;
    None: no claim)."""

    name: str
    says: str
    languages: tuple[str, ...] = ()
    held_out: bool = False
    single: bool | None = None


EXAMPLES = [
    Example("O'Connell", "O'Connell · Irish, unseen in training: both say Irish alone", ("Irish",), held_out=True,
            single=True),
    Example("Fujita", "Fujita · Japanese, unseen: both say Japanese alone", ("Japanese",), held_out=True,
            single=True),
    Example("Ślusàrski", "Ślusàrski · read as Slusarski: Polish, in the training lists", ("Polish",)),
    Example("Nguyen", "Nguyen · Vietnamese, in the training lists", ("Vietnamese",)),
    Example("Brady", "Brady · English and Irish in the data: both sets hold both", ("English", "Irish"),
            single=False),
    Example("Hong", "Hong · Chinese and Korean in the data: both sets hold both", ("Chinese", "Korean"),
            single=False),
    Example("Yilmaz", "Yilmaz · Turkish: both give several languages", single=False),
    Example("Demirkan", "Demirkan · Turkish: both say Russian alone, wrongly", single=True),
]


@dataclass(frozen=True)
class Picked:
    """The Classify tab's name and model, and the events after which the other tabs take them over."""

    name: gr.Textbox
    model: gr.Radio
    events: tuple  # dependencies: chain ``.success(...)`` on each
    accepted: gr.State  # after each of ``events``: the name it answered, None if rejected (no need to check it again)


FAULT_MESSAGE = "Something went wrong on the server: it has been logged. Please try again, or report it."


@contextmanager
def user_errors(html: bool = True):
    """Input the caller can put right (:class:`namecls.errors.InputError`) → a gr.Error with its reason (no stack
    trace); ``html``: escape it for the browser's modal. Anything else is a fault of namecls (a bug, a broken
    checkpoint): logged with its traceback, and a gr.Error that says so without its details."""
    try:
        yield
    except gr.Error:
        raise
    except InputError as err:
        message = str(err)
        raise gr.Error(esc(message) if html else message, title="Cannot do that", print_exception=False) from None
    except Exception:
        LOG.exception("namecls: a fault while answering")
        raise gr.Error(FAULT_MESSAGE, title="Sorry", print_exception=False) from None


def checked(name) -> tuple[Normalized, None] | tuple[None, str]:
    """A request's one normalisation and check of ``name``: (its :class:`~namecls.data.names.Normalized`, None), or
    (None, why it cannot be classified)."""
    try:
        return service.check_name(name), None
    except ValueError as err:
        return None, str(err)


def gone_notice(kind, request: gr.Request | None) -> str | None:
    """The page's notice (HTML) when the chosen model is the session's trained one and the server has let it go
    (:func:`namecls.ui.yours.picked_gone`), saying too that the tab's radio now offers the default model in its
    place (:func:`stop_offering_gone` does that after the event); None when there is a model to answer with."""
    why = picked_gone(kind, request)
    if why is None:
        return None
    return notice_html(f"{why} “Yours” is no longer a choice here: the {MODEL_LABELS[DEFAULT_MODEL]} is chosen in "
                       f"its place.")


def offered(value, request: gr.Request | None = None):
    """A model radio's update once the session's trained model is gone: its choices without "Yours" (the default
    model chosen in its place if "Yours" was chosen); None while the session has its model or never had one."""
    if session_mine(request).gone is None:
        return None
    return gr.Radio(choices=MODEL_CHOICES, value=DEFAULT_MODEL if value == YOURS else value)


def stop_offering_gone(events, radio: gr.Radio, api_name: str, **event) -> None:
    """After each of ``events`` (a tab's own), take "Yours" out of ``radio`` if the session's model is gone, so
    that the tab stops offering what it can no longer answer with (:func:`offered`)."""
    def refresh(value, request: gr.Request | None = None):
        update = offered(value, request)
        return gr.skip() if update is None else update

    for i, dependency in enumerate(events):
        dependency.then(refresh, radio, radio, queue=False, show_progress="hidden",
                        api_name=f"{api_name}_{i}" if i else api_name, **event)


PRIOR_CHOICES = [("the training lists' mix (half of them Russian)", "lists"),
                 ("every language equally (a mix that favours none)", "equal")]
OUTSIDE_LISTS = CHECKPOINTS / "outside_lists.json"  # written by: python bench/surnames.py --final --write


@lru_cache(maxsize=1)
def outside_lists() -> dict:
    """The committed models measured under each prior on the test split and on real surnames from outside the lists
    (``bench/surnames.py``); {} when the report is missing or unreadable (the page then quotes the test split only)."""
    try:
        return json.loads(OUTSIDE_LISTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _real_surnames(classifier, prior: str) -> dict | None:
    """The committed ``classifier``'s row on real surnames under ``prior`` (the untouched final set if measured,
    else the development set), or None (a model trained on the page, or no report)."""
    source = getattr(classifier, "source", None)
    if source is None or Path(source).resolve() != (CHECKPOINTS / classifier.kind).resolve():
        return None
    report = outside_lists()
    rows = ((report.get("results") or {}).get(classifier.kind) or {}).get(prior) or {}
    part = "final" if "final" in rows else "dev" if "dev" in rows else None
    return None if part is None else {**rows[part], "part": part, "test": rows.get("test")}


def prior_control(models: dict) -> gr.Radio:
    """The page's one choice of prior (:mod:`namecls.posthoc.prior`), explained in a sentence with the measured
    effect."""
    gru = {prior: _real_surnames(models["gru"], prior) for prior in ("lists", "equal")}
    effect = ""
    if gru["lists"] and gru["equal"]:
        effect = (f" On {gru['equal']['n']:,} real surnames from outside the lists (as many of each language), the "
                  f"GRU's first answer was right {percent(gru['lists']['top1'])} of the time under the lists' mix and "
                  f"{percent(gru['equal']['top1'])} under equal odds, its sets larger.")
    return gr.Radio(PRIOR_CHOICES, value="lists", label="Which languages do you expect?",
                    info=("The network learned the lists' proportions along with their spellings: half the names "
                          "it trained on are Russian, so it leans Russian. Bayes' rule can swap those proportions "
                          f"for equal ones.{effect}"), elem_id="prior")


def set_facts(classifier, prior: str = "lists") -> dict:
    """What the page says about a checkpoint's prediction sets under ``prior``: the coverage asked, the coverage
    measured on the held-out test split (under the equal prior, every language counted equally), the language it
    covers worst (among those with at least 5 test names; lists prior), and the coverage and mean size on real
    surnames from outside the lists (committed models only)."""
    conformal = (classifier.metrics.get("conformal") or {})
    test = conformal.get("test") or {}
    real = _real_surnames(classifier, prior)
    if prior == "lists":
        test_coverage = test.get("coverage")
        worst = min(((lang, s["coverage"], s["support"]) for lang, s in (test.get("per_language") or {}).items()
                     if s.get("support", 0) >= 5), key=lambda row: row[1], default=None)
    else:
        measured = (real or {}).get("test") or conformal.get("test_equal_prior") or {}
        test_coverage, worst = measured.get("coverage"), None
    novelty = classifier.metrics.get("novelty") or {}
    heldout = (novelty.get("measured") or {}).get("heldout") or {}
    return {"coverage": conformal.get("coverage_asked", 0.9), "test_coverage": test_coverage, "prior": prior,
            "real_coverage": None if real is None else real.get("coverage"),
            "real_size": None if real is None else real.get("mean_size"),
            "real_n": None if real is None else real.get("n"),
            "worst": worst, "n_labels": len(classifier.labels), "labels": list(classifier.labels),
            "unusual_share": 1 - (novelty.get("threshold") or {}).get("quantile", 0.95),
            "novelty_threshold": (novelty.get("threshold") or {}).get("value"),
            "novelty_auroc_in_language": heldout.get("auroc_vs_in_language"),
            "novelty_auroc_test": heldout.get("auroc_vs_test_split")}


def whole_name(trace) -> dict:
    """The whole name's answer from its trace, as :func:`namecls.ui.render.html.answer_html` reads it: the prediction
    set
    after the last letter, the languages it is filed under in the training lists, its novelty, top probability and
    entropy."""
    final = trace.probs[-1]
    return {"set": trace.sets[-1] if trace.sets else [trace.top(-1, 1)[0][0]], "seen_as": trace.seen_as,
            "novelty": trace.novelty, "unfamiliar": trace.unfamiliar,
            "top_probability": float(final.max()), "entropy": float(trace.entropy[-1])}


def top_k_for(n_labels: int, k_value) -> tuple[int, gr.Slider]:
    """The top-k a model of ``n_labels`` languages can give (the slider's value, at most ``n_labels``), and the
    Top-k slider's update to that range, so the slider follows the chosen model (a 3-language "Yours", then the
    18-language GRU) instead of offering a k the model cannot answer."""
    try:
        k = min(max(int(k_value), 1), n_labels)
    except (TypeError, ValueError):
        k = min(TOP_K, n_labels)
    return k, gr.Slider(minimum=1, maximum=n_labels, value=k)


def top_k_dict(pairs) -> dict[str, float]:
    """[(language, probability)] → {language: probability} with plain floats, in the given order (gr.Label)."""
    return {lang: float(p) for lang, p in pairs}
