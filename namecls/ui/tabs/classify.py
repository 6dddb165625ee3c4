"""Tab "Classify": a name in, its most probable languages out, with its prediction set and whether the name is in
the training lists. If "Yours" is chosen after the server let the session's model go, the tab says so in place of
an answer, and its radio stops offering it."""

from __future__ import annotations

import gradio as gr

from ...serving import service
from ..common import (
    DEFAULT_MODEL,
    EXAMPLES,
    MODEL_CHOICES,
    TOP_K,
    Picked,
    checked,
    gone_notice,
    set_facts,
    stop_offering_gone,
    top_k_for,
    user_errors,
)
from ..render.html import answer_html, normalisation_html, rejected_html
from ..yours import session_models


def build(models: dict, ui: dict, prior: gr.Radio) -> Picked:
    """Lay out the tab and wire its events (answering under the page's ``prior``); returns the name and model the
    other tabs follow."""
    n_labels = len(models["gru"].labels)
    with gr.Tab("Classify", id="classify"):
        with gr.Row():
            with gr.Column(scale=5, min_width=280):
                name = gr.Textbox(label="Surname", placeholder="e.g. O'Connell, then press Enter", elem_id="name",
                                  max_lines=1, max_length=256, autofocus=True)
                with gr.Row():
                    model = gr.Radio(MODEL_CHOICES, value=DEFAULT_MODEL, label="Model", elem_id="model", min_width=140)
                    k = gr.Slider(1, n_labels, value=TOP_K, step=1, precision=0, label="Top-k", elem_id="k",
                                  min_width=160)
                button = gr.Button("Classify", variant="primary", elem_id="classify-btn")
                norm_line = gr.HTML(elem_id="normalisation")
            with gr.Column(scale=4, min_width=280):
                answer = gr.HTML(elem_id="answer")  # the prediction set leads; the bars follow
                label = gr.Label(num_top_classes=n_labels, label="Languages", elem_id="label")
        # Below the answer, not beside the box: on a phone the columns stack and the answer comes first.
        examples = gr.Examples([[e.name] for e in EXAMPLES], inputs=[name], cache_examples=False,
                               example_labels=[e.says for e in EXAMPLES], label="Examples: what to expect",
                               api_visibility="private", examples_per_page=len(EXAMPLES))
        accepted = gr.State(None)  # the name last answered (None: rejected), which the other tabs take over

    def answer_for(name_value, norm, reason, gone, kind, k_value, prior_value, request):
        """The tab's answer for a name already checked (``norm`` or ``reason``) and the model's ``gone`` notice."""
        if gone is not None:  # "Yours", no longer on the server: why, and no earlier answer beside it
            return {label: None, norm_line: "", answer: gone, k: top_k_for(n_labels, k_value)[1],
                    accepted: None if norm is None else name_value}
        if reason is not None:  # said under the box; no answer of an earlier name beside it
            return {label: None, norm_line: rejected_html(reason), answer: "", accepted: None}
        with user_errors():
            choices = session_models(models, request)
            classifier = service.pick_model(choices, kind)
            k_int, slider = top_k_for(len(classifier.labels), k_value)
            details = service.details(classifier, norm, len(classifier.labels),
                                      prior=service.check_prior(classifier, prior_value))
        # The bars show the top k and every language of the set; a set of several languages leads (the label's big
        # heading would single out a top language the set does not).
        several = len(details["set"] or []) > 1
        bars = dict(list(details["top"].items())[:max(k_int, len(details["set"] or []))])
        return {label: gr.Label(value=bars, show_heading=not several), norm_line: normalisation_html(norm),
                k: slider, answer: answer_html(details, set_facts(classifier, details["prior"])),
                accepted: name_value}

    def classify(name_value, kind, k_value, prior_value="lists", request: gr.Request | None = None):
        """One request, one path: the name normalised and checked once, the model run once
        (:meth:`namecls.Classifier.predict_details`)."""
        norm, reason = checked(name_value)
        return answer_for(name_value, norm, reason, gone_notice(kind, request), kind, k_value, prior_value, request)

    def reclassify(name_value, kind, k_value, prior_value="lists", request: gr.Request | None = None):
        """Model, top-k or prior changed: classify again if there is a name (or say that "Yours" is gone)."""
        norm, reason = checked(name_value)
        gone = gone_notice(kind, request)
        if reason is not None and gone is None:
            choices = session_models(models, request)
            return {k: top_k_for(len(choices[kind].labels), k_value)[1]} if kind in choices else gr.skip()
        return answer_for(name_value, norm, reason, gone, kind, k_value, prior_value, request)

    outputs = [label, norm_line, answer, k, accepted]
    triggers = [name.submit, button.click]
    # No validator: a rejected name is an answer in place (gradio's 422 refusal logged a console error each time,
    # and its mark on the box vanished when another event reading the box answered).
    inputs = [name, model, k, prior]  # the prior last: a client call without it answers under the lists' prior
    classified = gr.on(triggers, classify, inputs, outputs, api_name="ui_classify", **ui)
    # always_last: a model picked while a top-k change is still answered is answered next, not dropped
    reclassified = gr.on([model.input, k.release, prior.input], reclassify, inputs, outputs,
                         api_name="ui_reclassify", trigger_mode="always_last", **ui)
    example = examples.load_input_event.then(classify, inputs, outputs, api_name="ui_example", **ui)
    stop_offering_gone([classified, reclassified, example], model, "ui_classify_choices", **ui)
    return Picked(name, model, (classified, example), accepted)

