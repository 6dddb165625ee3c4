"""Tab "Compare": the RNN and the GRU side by side on one name: answers, prediction sets, which letters decided
it."""

from __future__ import annotations

import gradio as gr

from .. import service
from .common import TOP_K, Picked, clear_when_rejected, set_facts, name_validator, top_k_dict, user_errors, \
    whole_name
from .figures import trajectory_figure, trajectory_languages
from .html import MODEL_LABELS, answer_html, decision_html, legend_html, letters_html, letters_key_html
from .overlay import FigureImage


def build(models: dict, ui: dict, follow: Picked) -> None:
    """Lay out the tab and wire its events; the tab takes over the name classified in ``follow``."""
    n_labels = len(models["gru"].labels)
    facts = {kind: set_facts(clf) for kind, clf in models.items()}
    with gr.Tab("Compare", id="compare") as tab:
        with gr.Row():
            name = gr.Textbox(value="Nguyen", label="Surname", elem_id="compare-name", max_lines=1, max_length=256,
                              scale=3, min_width=200)
            k = gr.Slider(1, n_labels, value=TOP_K, step=1, precision=0, label="Top-k", scale=2, min_width=160,
                          elem_id="compare-k")
            button = gr.Button("Compare", variant="primary", scale=1, min_width=100, elem_id="compare-btn")
        compared = gr.State(None)  # the (name, k) on screen: reopening the tab recomputes only if it changed
        views = {}
        with gr.Row():
            for kind in models:
                with gr.Column(min_width=280):
                    views[kind] = {
                        "label": gr.Label(num_top_classes=n_labels, label=MODEL_LABELS[kind],
                                          elem_id=f"compare-{kind}"),
                        "answer": gr.HTML(elem_id=f"compare-{kind}-answer"),
                        "letters": gr.HTML(elem_id=f"compare-{kind}-letters"),
                        "trajectory": gr.HTML(elem_id=f"compare-{kind}-trajectory"),
                        "decision": gr.HTML(elem_id=f"compare-{kind}-decision"),
                    }

    def compare(name_value, k_value):
        with user_errors():
            norm = service.check_name(name_value)
            traces = {kind: clf.trace(norm) for kind, clf in models.items()}
        out = {compared: (name_value, k_value)}
        for kind, t in traces.items():
            c, label = views[kind], MODEL_LABELS[kind]
            details = whole_name(t)
            figure = FigureImage.from_figure(trajectory_figure(t, int(k_value), f"{label}: after each prefix"))
            out |= {c["label"]: top_k_dict(t.top(-1, int(k_value))),
                    c["answer"]: answer_html(details, facts[kind]),
                    c["letters"]: letters_html(t) + letters_key_html(t),
                    c["trajectory"]: figure.image_html(f"{label}: probability of the top languages after each prefix")
                    + legend_html(trajectory_languages(t, int(k_value)), t.labels),
                    c["decision"]: decision_html(t, label)}
        return out

    def compare_if_stale(name_value, k_value, last):
        if last == (name_value, k_value) or not str(name_value or "").strip():
            return gr.skip()
        return compare(name_value, k_value)

    outputs = [compared, *[component for c in views.values() for component in c.values()]]
    triggers = [name.submit, button.click, k.release]
    clear_when_rejected(triggers, name, {compared: None, **{component: (None if key == "label" else "")
                                                             for c in views.values() for key, component in c.items()}},
                        **ui)  # before the validated event: see there
    gr.on(triggers, compare, [name, k], outputs, validator=name_validator, api_name="ui_compare", **ui)
    tab.select(compare_if_stale, [name, k, compared], outputs, api_name="ui_compare_tab", **ui)
    for event in follow.events:
        event.success(lambda n: n, follow.name, name, queue=False, **ui)
