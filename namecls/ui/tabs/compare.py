"""Tab "Compare": the RNN and the GRU side by side on one name: answers, prediction sets, which letters decided
it. Once the session has trained a model ("Train your own"), it is a third column, "Yours", and a line above the
columns says what it is; if the server has let it go (too old, or pushed out by newer ones), that line says so."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ...serving import service
from ..common import TOP_K, Picked, checked, set_facts, top_k_dict, user_errors, whole_name
from ..render.figures import trajectory_figure, trajectory_languages
from ..render.html import (
    ALL_LANGUAGES,
    MODEL_LABELS,
    answer_html,
    decision_html,
    esc,
    legend_html,
    letters_html,
    letters_key_html,
    listed_and,
    notice_html,
    rejected_html,
)
from ..render.overlay import FigureImage
from ..yours import YOURS, Mine, gone_message, session_mine

PARTS = ("label", "answer", "letters", "trajectory", "decision")  # what each column shows, top to bottom


def column(trace, k: int, label: str, facts: dict) -> dict:
    """One model's column for a traced name: {part: value} for :data:`PARTS` (``label``: the model's name)."""
    details = whole_name(trace)
    figure = FigureImage.from_figure(trajectory_figure(trace, k, f"{label}: after each prefix"))
    model = f'<div class="compare-model">{esc(label)}</div>'  # on a phone the parts of the models interleave
    return {"label": top_k_dict(trace.top(-1, k)),
            "answer": model + answer_html(details, facts),
            "letters": model + letters_html(trace) + letters_key_html(trace),
            "trajectory": figure.image_html(f"{label}: probability of the top languages after each prefix")
            + legend_html(trajectory_languages(trace, k), trace.labels),
            "decision": decision_html(trace, label)}


def about_yours_html(classifier) -> str:
    """What the session's model is, above the columns: its cell and the languages it can answer."""
    labels = classifier.labels
    which = (f"all {len(labels)} languages" if len(labels) >= ALL_LANGUAGES else
             f"{len(labels)} languages ({listed_and(labels)}): its answer is always one of them")
    return (f'<div class="small-note" data-languages="{len(labels)}"><b>Yours</b>: the '
            f'{esc(MODEL_LABELS[classifier.kind])} you trained in “Train your own”, on {which}.</div>')


def mine_key(mine: Mine):
    """What about the session's model decides the columns: which training it is, or why it is gone."""
    return mine.serial, mine.gone


def build(models: dict, ui: dict, follow: Picked, prior: gr.Radio) -> None:
    """Lay out the tab and wire its events (answering under the page's ``prior``); the tab takes over the name
    classified in ``follow``."""
    n_labels = len(models["gru"].labels)
    facts = {(kind, p): set_facts(clf, p) for kind, clf in models.items() for p in ("lists", "equal")}
    with gr.Tab("Compare", id="compare") as tab:
        with gr.Row():
            name = gr.Textbox(value="Nguyen", label="Surname", elem_id="compare-name", max_lines=1, max_length=256,
                              scale=3, min_width=200)
            k = gr.Slider(1, n_labels, value=TOP_K, step=1, precision=0, label="Top-k", scale=2, min_width=160,
                          elem_id="compare-k")
            button = gr.Button("Compare", variant="primary", scale=1, min_width=100, elem_id="compare-btn")
        note = gr.HTML(elem_id="compare-note")  # what the session's model is, or why it is gone
        compared = gr.State(None)  # the (name, k, model key) on screen: reopening the tab recomputes if it changed
        views, columns = {}, {}
        with gr.Row(elem_id="compare-columns"):
            for kind in (*models, YOURS):
                with gr.Column(min_width=280, visible=kind != YOURS, elem_id=f"compare-{kind}-column") as col:
                    columns[kind] = col
                    views[kind] = {
                        "label": gr.Label(num_top_classes=n_labels, label="Yours" if kind == YOURS else
                                          MODEL_LABELS[kind], elem_id=f"compare-{kind}"),
                        "answer": gr.HTML(elem_id=f"compare-{kind}-answer"),
                        "letters": gr.HTML(elem_id=f"compare-{kind}-letters"),
                        "trajectory": gr.HTML(elem_id=f"compare-{kind}-trajectory"),
                        "decision": gr.HTML(elem_id=f"compare-{kind}-decision"),
                    }
    blank = {key: (None if key == "label" else "") for key in PARTS}

    def compare(name_value, k_value, prior_value="lists", request: gr.Request | None = None):
        norm, reason = checked(name_value)
        if norm is None:  # said above the columns; nothing of an earlier name in them
            return {compared: None, note: rejected_html(str(reason)),
                    **{c[key]: blank[key] for c in views.values() for key in PARTS}}
        mine = session_mine(request)
        chosen = models if mine.classifier is None else {**models, YOURS: mine.classifier}
        with user_errors():
            prior_value = service.check_prior(models["gru"], prior_value)
            traces = {kind: clf.trace(norm, prior_value) for kind, clf in chosen.items()}
        out: dict[gr.components.Component | gr.Column, Any] = {
            compared: (name_value, k_value, mine_key(mine), prior_value)}
        for kind, t in traces.items():
            values = column(t, int(k_value), "Yours" if kind == YOURS else MODEL_LABELS[kind],
                            facts.get((kind, prior_value)) or set_facts(mine.classifier, prior_value))
            out |= {views[kind][key]: value for key, value in values.items()}
        if mine.classifier is not None:
            out |= {note: about_yours_html(mine.classifier), columns[YOURS]: gr.Column(visible=True),
                    views[YOURS]["label"]: gr.Label(value=out[views[YOURS]["label"]],
                                                    label=f"Yours ({MODEL_LABELS[mine.classifier.kind]})")}
        else:  # no model (never trained, or gone): no third column, and no answer of an earlier one left in it
            out |= {note: notice_html(gone_message(mine.gone)) if mine.gone else "",
                    columns[YOURS]: gr.Column(visible=False), **{views[YOURS][key]: v for key, v in blank.items()}}
        return out

    def compare_if_stale(name_value, k_value, last, prior_value="lists", request: gr.Request | None = None):
        if (last == (name_value, k_value, mine_key(session_mine(request)), prior_value)
                or not str(name_value or "").strip()):
            return gr.skip()
        return compare(name_value, k_value, prior_value, request)

    shown = [component for c in views.values() for component in c.values()]
    outputs = [compared, note, columns[YOURS], *shown]
    triggers = [name.submit, button.click, k.release]
    def answer_new_prior(name_value, k_value, last, prior_value, request: gr.Request | None = None):
        """The page's prior changed: compare again what these columns show, so no answer of the other prior stays
        beside the new choice (nothing shown yet: nothing to do until the tab is opened)."""
        if last is None:
            return gr.skip()
        return compare_if_stale(name_value, k_value, last, prior_value, request)

    gr.on(triggers, compare, [name, k, prior], outputs, api_name="ui_compare", trigger_mode="always_last", **ui)
    tab.select(compare_if_stale, [name, k, compared, prior], outputs, api_name="ui_compare_tab", **ui)
    prior.input(answer_new_prior, [name, k, compared, prior], outputs, api_name="ui_compare_prior",
                trigger_mode="always_last", **ui)
    for event in follow.events:
        event.success(lambda n: gr.skip() if n is None else n, follow.accepted, name, queue=False, **ui)
