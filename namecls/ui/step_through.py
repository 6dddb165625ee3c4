"""Tab "Step through": what the network holds and predicts after every character of one name.

A name is traced once (one model call, :meth:`namecls.Classifier.trace`) into the session's state as a
:class:`StepView`; moving to another character re-renders from that state without the model and sends only the
parts that depend on the character (:meth:`StepView.step`). If "Yours" is chosen after the server let the session's
model go, the tab says so in place of a trace, and its radio stops offering it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import gradio as gr
import numpy as np

from .. import service
from ..data import Normalized
from ..inference import Classifier, Trace
from . import server
from .common import DEFAULT_MODEL, MODEL_CHOICES, TOP_K, Picked, clear_when_rejected, gone_notice, \
    name_validator, offered, set_facts, stop_offering_gone, top_k_dict, user_errors, whole_name
from .figures import map_path_svg, map_svg, trajectory_figure, trajectory_languages, units_figure
from .html import MODEL_LABELS, answer_html, clamp_step, decision_html, heatmap_html, legend_html, \
    letters_html, letters_key_html, name_caption_html, neighbours_html, normalisation_html, percent, unit_html, \
    unit_label
from .overlay import FigureImage
from .yours import session_models

N_UNITS = 24  # heatmap rows: the units that moved most over the name

MAP_NOTE = """\
**Where the name travels.** Each dot is a training name (hover to read it), placed by the network's top-layer
state after its last letter and coloured by its language; each language's name sits at the centre of its dots.
The black path is the current name's state after each prefix; the red dot is the current letter, the rings its
nearest training names (listed above). The map is a flat picture of a {hidden}-number state ({method}; kept
over LDA, whose map separated validation names' languages less): a path can end in empty space or among another
language's dots while the network, which reads the whole state, answers firmly. Read the answer from the
probabilities, not from the map.
"""


@dataclass(frozen=True)
class StepView:
    """One traced name and what is drawn once for it; :meth:`step` renders one character from it (no model)."""

    trace: Trace
    kind: str  # the cell: "rnn" | "gru"
    k: int
    units: tuple  # ((layer, unit), ...): the heatmap's rows, in the checkpoint's clustered order
    trajectory: FigureImage
    key: str = ""  # the model choice it was traced with: "rnn", "gru" or "yours" (a model trained in the session)
    projection: object | None = None  # the model's map (shared with the model, not copied), or None
    explain: object | None = None  # the model's explanation data (shared), or None

    @classmethod
    def build(cls, classifier: Classifier, name: str | Normalized, k: int, key: str = "") -> "StepView":
        trace = classifier.trace(name)  # ValueError on bad input
        explain = getattr(classifier, "explain", None)
        units = trace.key_units(N_UNITS)
        if explain is not None:  # rows in clustered order: units that behave alike side by side
            rank = {(l, int(u)): r for l, order in enumerate(explain.unit_order) for r, u in enumerate(order)}
            units = sorted(units, key=lambda lu: (lu[0], rank[lu]))
        return cls(trace, classifier.kind, k, tuple(units), _trajectory(trace, k), key or classifier.kind,
                   classifier.projection, explain)

    def with_k(self, k: int) -> "StepView":
        return self if k == self.k else replace(self, k=k, trajectory=_trajectory(self.trace, k))

    @property
    def length(self) -> int:
        return len(self.trace.chars)

    def unit_choices(self) -> list[tuple[str, str]]:
        n_layers = np.asarray(self.trace.layers).shape[0]
        return [(unit_label(l, u, n_layers), f"{l}:{u}") for l, u in self.units]


def _trajectory(trace: Trace, k: int) -> FigureImage:
    return FigureImage.from_figure(trajectory_figure(trace, k, "Probability after each prefix"))


def build(models: dict, ui: dict, follow: Picked) -> gr.Radio:
    """Lay out the tab and wire its events; the tab takes over the name and model classified in ``follow``.
    Returns its model choice (the Train tab adds "Yours" to it)."""
    n_labels = len(models["gru"].labels)
    with gr.Tab("Step through", id="step-through") as tab:
        with gr.Row():
            name = gr.Textbox(value="Nguyen", label="Surname", elem_id="trace-name", max_lines=1, max_length=256,
                              scale=3, min_width=200)
            model = gr.Radio(MODEL_CHOICES, value=DEFAULT_MODEL, label="Model", elem_id="trace-model", scale=2,
                             min_width=140)
            k = gr.Slider(1, n_labels, value=TOP_K, step=1, precision=0, label="Top-k", scale=2, min_width=160,
                          elem_id="trace-k")
            button = gr.Button("Trace", variant="primary", scale=1, min_width=100, elem_id="trace-btn")
        norm_line = gr.HTML(elem_id="trace-normalisation")
        letters = gr.HTML(elem_id="trace-display")
        with gr.Row(elem_id="step-controls"):
            prev_btn = gr.Button("◀ Previous", elem_id="prev", size="md", min_width=90)
            play_btn = gr.Button("▶ Play", elem_id="play", size="md", min_width=90)
            next_btn = gr.Button("Next ▶", elem_id="next", size="md", min_width=90)
            step = gr.Slider(1, 6, value=6, step=1, precision=0, label="Character (← / → keys)", elem_id="step",
                             scale=4, min_width=200)
        letters_key = gr.HTML(elem_id="letters-key")
        answer = gr.HTML(elem_id="trace-answer")
        with gr.Row():
            with gr.Column(scale=2, min_width=240):
                step_label = gr.Label(num_top_classes=n_labels, label="Prediction for this prefix",
                                      elem_id="step-label")
            with gr.Column(scale=5, min_width=280):
                with gr.Column(elem_id="trajectory", elem_classes="fig-stack"):
                    trajectory_img = gr.HTML(elem_classes="fig-base")
                    trajectory_marks = gr.HTML(elem_classes="fig-marks")
                trajectory_key = gr.HTML(elem_id="trajectory-key")
                decision = gr.HTML(elem_id="decision")
        gr.Markdown("### Names like this one")
        neighbours = gr.HTML(elem_id="neighbours")
        with gr.Row():
            with gr.Column(scale=5, min_width=280):
                with gr.Column(elem_id="state-map", elem_classes="fig-stack"):
                    map_img = gr.HTML(elem_classes="fig-base")
                    map_marks = gr.HTML(elem_classes="fig-marks")
                map_key = gr.HTML(elem_id="map-key")
            with gr.Column(scale=2, min_width=240):
                map_note = gr.Markdown(elem_classes="small-note", elem_id="map-note")
        gr.Markdown("### Inside the network: the hidden units")
        with gr.Row():
            with gr.Column(scale=4, min_width=280):
                heatmap = gr.HTML(elem_id="heatmap")
                gr.Markdown(f"Each row is one hidden unit (*L2 #119*: unit 119 of layer 2), each column the state "
                            f"after that letter; the outlined column is the current letter. Shown: the "
                            f"{N_UNITS} units that moved most over this name, units that behave alike (clustered "
                            f"on training names) side by side. *Δ here*: the unit's change at the current letter, "
                            f"the five largest in bold. For the RNN, the prediction at a letter reads that letter "
                            f"and the state *before* it.", elem_classes="small-note")
            with gr.Column(scale=3, min_width=280):
                unit = gr.Dropdown(label="What does a unit do? Pick one", elem_id="unit", interactive=True)
                unit_view = gr.HTML(elem_id="unit-view")
        with gr.Accordion("All hidden units (clustered)", open=False) as all_units:
            units_img = gr.HTML(elem_id="all-units")
        view = gr.State(None, time_to_live=server.STATE_SECONDS)  # the current StepView
        playing = gr.State(False)
        timer = gr.Timer(0.8, active=False)

    def parts(v: StepView, index: int) -> dict:
        """What changes with the character: everything else stays as the trace drew it."""
        index = clamp_step(index, v.length)
        t = v.trace
        near = t.neighbours[index] if t.neighbours is not None else []
        has_map = v.projection is not None and t.map_points is not None
        return {
            step: index + 1,
            letters: letters_html(t, index) + name_caption_html(t, index),
            step_label: top_k_dict(t.top(index, v.k)),
            trajectory_marks: v.trajectory.overlay_html(index),
            neighbours: neighbours_html(near, t.labels, "".join(t.chars[: index + 1]), _bank_size(v.projection)),
            map_marks: map_path_svg(v.projection, t.map_points, t.chars, index, [n.index for n in near])
            if has_map else "",
            heatmap: heatmap_html(t, v.kind, list(v.units), index),
        }

    def unit_parts(v: StepView, choice) -> dict:
        try:
            layer, number = (int(x) for x in str(choice).split(":"))
        except ValueError:
            return {unit_view: ""}
        contexts = v.explain.unit_contexts(layer, number) if v.explain is not None else []
        return {unit_view: unit_html(v.trace, v.kind, layer, number, contexts)}

    def new_trace(name_value, kind, k_value, old, request: gr.Request = None):
        """Trace a name once into the session's state; show its last character."""
        gone = gone_notice(kind, request)
        if gone is not None:  # "Yours", no longer on the server: why, and nothing of an earlier trace beside it
            return {**cleared, view: None, answer: gone, unit: gr.update(choices=[], value=None), map_img: "",
                    map_key: "", map_note: ""}
        with user_errors():
            norm = service.check_name(name_value)
            clf = service.pick_model(session_models(models, request), kind)
            v = StepView.build(clf, norm, int(k_value), kind)
        t, n = v.trace, v.length
        details = whole_name(t)
        has_map = clf.projection is not None and t.map_points is not None
        first_choice = v.unit_choices()[0][1]
        out = {
            view: v,
            norm_line: normalisation_html(t.normalized),
            letters_key: letters_key_html(t),
            answer: answer_html(details, set_facts(clf)),
            trajectory_img: v.trajectory.image_html(f"{MODEL_LABELS[v.kind]}: probability of the top languages "
                                                    f"after each prefix of {''.join(t.chars)}"),
            trajectory_key: legend_html(trajectory_languages(t, v.k), t.labels),
            decision: decision_html(t),
            unit: gr.update(choices=v.unit_choices(), value=first_choice),
            units_img: "",
            all_units: gr.update(open=False),
            **parts(v, n - 1),
            **unit_parts(v, first_choice),
            step: gr.update(maximum=max(n, 2), value=n, interactive=n > 1),  # after parts(): it sets the value only
        }
        if old is None or old.projection is not v.projection:  # the map's background changes only with the model
            out[map_img] = map_svg(clf.projection, v.kind) if has_map else NO_MAP_HTML
            out[map_key] = legend_html(t.labels, t.labels) if has_map else ""
            out[map_note] = _map_note(clf) if has_map else ""
        return out

    def trace_if_stale(name_value, kind, k_value, old, request: gr.Request = None):
        """On opening the tab: trace again only if the name or model changed since the last trace (or the model
        traced with, "Yours", is gone)."""
        if gone_notice(kind, request) is None and ((old is not None and old.trace.name == name_value
                                                     and old.key == kind) or not str(name_value).strip()):
            return gr.skip()
        return new_trace(name_value, kind, k_value, old, request)

    def index_of(position, v: StepView, delta: int = 0) -> int:
        """The 0-based step ``delta`` away from the slider's 1-based ``position``, kept inside the name."""
        try:
            return clamp_step(int(float(position)) - 1 + delta, v.length)
        except (TypeError, ValueError):
            return v.length - 1

    def show(position, v):
        return gr.skip() if v is None else parts(v, index_of(position, v))

    def move(delta):
        def handler(position, v):
            return gr.skip() if v is None else parts(v, index_of(position, v, delta))
        return handler

    def change_k(position, v, k_value):
        """Top-k changed: the trajectory draws that many languages, the prediction lists that many."""
        if v is None:
            return gr.skip()
        v = v.with_k(int(k_value))
        t = v.trace
        return {view: v, trajectory_img: v.trajectory.image_html(f"{MODEL_LABELS[v.kind]}: probability of the "
                                                                  f"top languages after each prefix"),
                trajectory_key: legend_html(trajectory_languages(t, v.k), t.labels),
                **parts(v, index_of(position, v))}

    def stopped() -> dict:
        return {playing: False, timer: gr.Timer(active=False), play_btn: gr.Button("▶ Play")}

    def toggle_play(is_playing, position, v):
        """Play from the current character (from the first if at the end), or pause."""
        if is_playing or v is None or v.length < 2:
            return stopped()
        index = index_of(position, v)
        index = 0 if index >= v.length - 1 else index
        return {playing: True, timer: gr.Timer(active=True), play_btn: gr.Button("⏸ Pause"), **parts(v, index)}

    def tick(is_playing, position, v):
        """One timer tick while playing: advance a character; stop at the last one."""
        if not is_playing or v is None:
            return stopped()
        index = index_of(position, v, +1)
        return {**(stopped() if index >= v.length - 1 else {}), **parts(v, index)}

    def draw_all_units(v):
        if v is None:
            return gr.skip()
        order = None if v.explain is None else v.explain.unit_order
        figure = units_figure(v.trace, v.kind, order, list(v.units))
        return {units_img: FigureImage.from_figure(figure).image_html(f"{MODEL_LABELS[v.kind]}: every hidden unit")}

    # What a trace shows, emptied: for a rejected name, and for a "Yours" that is gone.
    cleared = {norm_line: "", letters: "", letters_key: "", answer: "", step_label: None, trajectory_img: "",
               trajectory_marks: "", trajectory_key: "", decision: "", neighbours: "", map_marks: "", heatmap: "",
               unit_view: "", units_img: ""}
    per_step = [step, letters, step_label, trajectory_marks, neighbours, map_marks, heatmap]
    traced = [view, norm_line, letters_key, answer, trajectory_img, trajectory_key, decision, unit, unit_view,
              units_img, all_units, map_img, map_key, map_note, *per_step]
    triggers = [name.submit, button.click, model.input]
    clear_when_rejected(triggers, name, cleared, **ui)  # before the trace
    traced_event = gr.on(triggers, new_trace, [name, model, k, view], traced, validator=name_validator,
                         api_name="ui_trace", **ui)
    reopened = tab.select(trace_if_stale, [name, model, k, view], traced, api_name="ui_trace_tab", **ui)
    stop_offering_gone([traced_event, reopened], model, "ui_trace_choices", **ui)
    quiet = dict(show_progress="hidden", **ui)
    step.input(show, [step, view], per_step, api_name="ui_step", trigger_mode="always_last", **quiet)
    k.release(change_k, [step, view, k], [view, trajectory_img, trajectory_key, *per_step], api_name="ui_step_k",
              **quiet)
    prev_btn.click(move(-1), [step, view], per_step, api_name="ui_prev", **quiet)
    next_btn.click(move(+1), [step, view], per_step, api_name="ui_next", **quiet)
    play_outputs = [playing, timer, play_btn, *per_step]
    play_btn.click(toggle_play, [playing, step, view], play_outputs, api_name="ui_play", **quiet)
    timer.tick(tick, [playing, step, view], play_outputs, api_name="ui_tick", **quiet)
    unit.input(unit_parts, [view, unit], unit_view, api_name="ui_unit", **quiet)
    all_units.expand(draw_all_units, view, units_img, api_name="ui_all_units", **ui)
    def take_over(n, m, request: gr.Request = None):
        """Classify's name and model; without "Yours" if the session's model is gone."""
        update = offered(m, request)
        return {name: n, model: m if update is None else update}

    for event in follow.events:
        event.success(take_over, [follow.name, follow.model], [name, model], queue=False, **ui)
    return model


NO_MAP_HTML = ('<div class="small-note">This checkpoint has no hidden-state map. Add one with '
               '<code>python -m namecls.refit --checkpoint &lt;folder&gt; --data-dir &lt;names&gt;</code>.</div>')


def _bank_size(projection) -> int:
    return 0 if projection is None else len(projection.sample()[0])


def _map_note(classifier) -> str:
    summary = classifier.projection.summary
    share = summary.get("axis_share") or summary.get("explained_variance_ratio") or []
    method = str(summary.get("method_name", "pca")).upper()
    held = f"; its two axes hold {' + '.join(percent(v) for v in share)} of the sample's variance" \
        if method == "PCA" and share else ""
    return MAP_NOTE.format(hidden=classifier.projection.hidden_size, method=method + held)
