"""What every tab shares: the model choices and the one top-k default, the examples and what the page says about
each, turning bad input into a clear message, and clearing a tab's answer when its name is rejected."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import gradio as gr

from .. import service
from .html import esc

MODEL_CHOICES = [("RNN", "rnn"), ("GRU", "gru")]
TOP_K = 3  # the top-k every tab starts with (the trajectory draws as many languages)


@dataclass(frozen=True)
class Example:
    """An example name and what the page says about it. ``tests/test_ui.py`` checks every claim against the data
    and the committed checkpoints: ``languages`` are the data files listing the name (none: from elsewhere),
    ``held_out`` that it is in neither checkpoint's training split, ``confident`` the flag of both models (None:
    no claim). One language: both models' top-1 is it; two: both models' top two are exactly those."""

    name: str
    says: str
    languages: tuple[str, ...] = ()
    held_out: bool = False
    confident: bool | None = None


EXAMPLES = [
    Example("O'Connell", "O'Connell · Irish, unseen in training: both right, confident",
            ("Irish",), held_out=True, confident=True),
    Example("Fujita", "Fujita · Japanese, unseen: both right, confident", ("Japanese",), held_out=True,
            confident=True),
    Example("Ślusàrski", "Ślusàrski · read as Slusarski: Polish, both right", ("Polish",)),
    Example("Nguyen", "Nguyen · Vietnamese: both right", ("Vietnamese",)),
    Example("Brady", "Brady · English and Irish in the data: both split",
            ("English", "Irish")),
    Example("Hong", "Hong · Chinese and Korean in the data: both split", ("Chinese", "Korean")),
    Example("Yilmaz", "Yilmaz · Turkish, none of the 18: both not sure", confident=False),
    Example("Demirkan", "Demirkan · Turkish: both confident, and wrong", confident=True),
]


@dataclass(frozen=True)
class Picked:
    """The Classify tab's name and model, and the events after which the other tabs take them over."""

    name: gr.Textbox
    model: gr.Radio
    events: tuple  # dependencies: chain ``.success(...)`` on each


@contextmanager
def user_errors(html: bool = True):
    """Bad input → a gr.Error with the reason (no stack trace); ``html``: escape it for the browser's modal."""
    try:
        yield
    except ValueError as err:
        message = str(err)
        raise gr.Error(esc(message) if html else message, title="Cannot do that", print_exception=False)


def rejected(name) -> str | None:
    """Why ``name`` cannot be classified, or None if it can."""
    try:
        service.check_name(name)
    except ValueError as err:
        return str(err)
    return None


def name_validator(name, *others):
    """Runs before a name's event: marks the name box with the reason it cannot be classified."""
    reason = rejected(name)
    return [gr.validate(reason is None, reason or ""), *[gr.validate(True, "") for _ in others]]


def clear_when_rejected(triggers, name: gr.Textbox, cleared: dict, **event) -> None:
    """Beside a name's validated event: when the name is rejected, set ``cleared`` ({component: empty value}), so
    no answer of an earlier name stays on screen next to it; otherwise change nothing.

    Call it BEFORE registering the validated event on the same triggers: gradio's frontend runs a trigger's events
    one after another and stops at a validator's refusal, so an event registered after it never runs then."""
    def clear(value):
        return cleared if rejected(value) is not None else gr.skip()

    gr.on(triggers, clear, name, list(cleared), queue=False, show_progress="hidden", **event)


def flag_facts(classifier) -> dict:
    """What the page says about a checkpoint's "not sure" rule: its threshold, the accuracy it was chosen for
    (validation) and the accuracy of the names it leaves unflagged (test)."""
    rule = classifier.low_confidence_rule
    rates = ((classifier.metrics.get("low_confidence") or {}).get("test") or {})
    return {"threshold": float(rule["threshold"]), "target_accuracy": float(rule.get("target_accuracy", 0.5)),
            "accuracy_confident": rates.get("accuracy_confident"), "n_labels": len(classifier.labels)}


def whole_name(classifier, trace) -> dict:
    """The whole name's top probability, entropy and flag from its trace (what :func:`confidence_html` needs)."""
    final = trace.probs[-1]
    return {"top_probability": float(final.max()), "entropy": float(trace.entropy[-1]),
            "low_confidence": classifier.is_low_confidence(final)}


def top_k_dict(pairs) -> dict[str, float]:
    """[(language, probability)] → {language: probability} with plain floats, in the given order (gr.Label)."""
    return {lang: float(p) for lang, p in pairs}
