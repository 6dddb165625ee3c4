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

from ...explain import cell
from ...serving import service
from ...data.names import Normalized
from ...explain.units import Explain
from ...inference import Classifier, Trace
from ...models.networks import Model
from ...explain.projection import Projection
from .. import server
from ..common import (
    DEFAULT_MODEL,
    MODEL_CHOICES,
    TOP_K,
    Picked,
    checked,
    gone_notice,
    offered,
    set_facts,
    stop_offering_gone,
    top_k_dict,
    top_k_for,
    user_errors,
    whole_name,
)
from ..render.figures import map_path_svg, map_svg, trajectory_figure, trajectory_languages, units_figure
from ..render.html import (
    MODEL_LABELS,
    answer_html,
    clamp_step,
    contribution_along_html,
    contributions_html,
    decision_html,
    edit_choice,
    esc,
    gates_html,
    gradient_html,
    heatmap_html,
    legend_html,
    letters_html,
    letters_key_html,
    name_caption_html,
    neighbours_html,
    normalisation_html,
    notice_html,
    percent,
    rejected_html,
    story_html,
    top_contributors,
    unit_html,
    unit_label,
)
from ..render.overlay import FigureImage
from ..yours import session_models

N_PUSHERS = 6  # units shown for and against the answer (so at most 12 rows)
N_EDITS = 6  # one-letter variants offered

MAP_NOTE = """\
**Where the name travels.** Each dot is a training name (hover or tap it to read it), placed by the network's
top-layer state after its last letter and coloured by its language; each language's name sits near the centre of
its dots. The black path, from the square, is the current name's state after each prefix; the large black dot is
the current letter, the rings its nearest training names (listed above). The map is a flat picture of a \
{hidden}-number state ({method}; kept
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
    units: tuple  # ((layer, unit), ...): the units that pushed the answer most, for it first, then against it
    trajectory: FigureImage
    key: str = ""  # the model choice it was traced with: "rnn", "gru" or "yours" (a model trained in the session)
    projection: Projection | None = None  # the model's map (shared with the model, not copied), or None
    explain: Explain | None = None  # the model's explanation data (shared), or None
    gradients: tuple = ()  # ((model key, (StateGradients, its labels)), ...): this model's, then the committed ones'
    model: Model | None = None  # the model itself (shared, not copied), for one unit's equation at one letter
    unit: str = ""  # the unit written out ("layer:unit"), chosen in the dropdown

    @property
    def prior(self) -> str:
        """The prior it was traced under (namecls.posthoc.prior)."""
        return self.trace.prior

    @classmethod
    def build(cls, classifier: Classifier, name: str | Normalized, k: int, key: str = "",
              others: dict | None = None, prior: str = "lists") -> "StepView":
        """Trace ``name`` with ``classifier`` under ``prior``; ``others`` ({key: Classifier}) are traced too, only
        for their gradients beside this one's (the RNN beside the GRU)."""
        trace = classifier.trace(name, prior)  # ValueError on bad input
        assert trace.contributions is not None  # Classifier.trace always computes them
        pushed_for, pushed_against = top_contributors(trace.contributions, N_PUSHERS)
        units = tuple((u["layer"], u["unit"]) for u in pushed_for + pushed_against)
        gradients = [(key or classifier.kind, (trace.gradient, classifier.labels))]
        for other_key, other in (others or {}).items():
            if other is not classifier:  # its gradient alone (~3 ms), not a whole trace
                gradients.append((other_key, (other.state_gradients(trace.normalized, prior), other.labels)))
        return cls(trace, classifier.kind, k, units, _trajectory(trace, k), key or classifier.kind,
                   classifier.projection, getattr(classifier, "explain", None),
                   tuple((g, v) for g, v in gradients if v[0] is not None), classifier.model)

    def with_k(self, k: int) -> "StepView":
        return self if k == self.k else replace(self, k=k, trajectory=_trajectory(self.trace, k))

    @property
    def length(self) -> int:
        return len(self.trace.chars)

    @property
    def n_layers(self) -> int:
        return int(np.asarray(self.trace.layers).shape[0])

    def unit_choices(self) -> list[tuple[str, str]]:
        """The dropdown's units, each with its push on the answer: 'L2 #44: +1.23 for Japanese'."""
        assert self.trace.contributions is not None  # (build checked it)
        contrib = {(u["layer"], u["unit"]): u["contribution"] for u in self.trace.contributions["units"]}
        language = self.trace.labels[self.trace.target]
        return [(f"{unit_label(l, u, self.n_layers)}: {contrib[(l, u)]:+.2f} for {language}".replace("-", "−"),
                 f"{l}:{u}") for l, u in self.units]


# The lines are not the current prefix's top k (the panel beside them): they are the languages that rose highest.
TRAJECTORY_LEAD = "Lines: the final answer and the languages that rose highest at any letter —"


def _trajectory(trace: Trace, k: int) -> FigureImage:
    return FigureImage.from_figure(trajectory_figure(trace, k, "Probability after each prefix"))


def build(models: dict, ui: dict, follow: Picked, prior: gr.Radio) -> gr.Radio:
    """Lay out the tab and wire its events (answering under the page's ``prior``); the tab takes over the name and
    model classified in ``follow`` and traces them when it is opened. Returns its model choice (the Train tab adds
    "Yours" to it)."""
    n_labels = len(models["gru"].labels)
    with gr.Tab("Step through", id="step-through") as tab:
        gr.Markdown("The network reads a surname one letter at a time. Type one (the answer follows as you type): "
                    "first what happened, in words and letter by letter; then what it remembered, how the cell "
                    "works, how training's signal reaches back through the letters, and which training names "
                    "it resembles.", elem_classes="lead")
        with gr.Row():
            name = gr.Textbox(value="Nguyen", label="Surname", elem_id="trace-name", max_lines=1, max_length=256,
                              scale=3, min_width=200)
            model = gr.Radio(MODEL_CHOICES, value=DEFAULT_MODEL, label="Model", elem_id="trace-model", scale=2,
                             min_width=140)
            k = gr.Slider(1, n_labels, value=TOP_K, step=1, precision=0, label="Top-k", scale=2, min_width=160,
                          elem_id="trace-k")
            button = gr.Button("Trace", variant="primary", scale=1, min_width=100, elem_id="trace-btn")
        norm_line = gr.HTML(elem_id="trace-normalisation")
        story = gr.HTML(elem_id="trace-story")
        answer = gr.HTML(elem_id="trace-answer")
        gr.Markdown("### Letter by letter\nEach tile is a letter, coloured by what reading it did to the final "
                    "answer (blue raised it, red lowered it). Step through with ◀ ▶, the ← → keys or Play.")
        letters = gr.HTML(elem_id="trace-display")
        with gr.Row(elem_id="step-controls"):
            prev_btn = gr.Button("◀ Previous", elem_id="prev", size="md", min_width=90)
            play_btn = gr.Button("▶ Play", elem_id="play", size="md", min_width=90)
            next_btn = gr.Button("Next ▶", elem_id="next", size="md", min_width=90)
            step = gr.Slider(1, 6, value=6, step=1, precision=0, label="Letter (← / → keys)", elem_id="step",
                             scale=4, min_width=200)
        letters_key = gr.HTML(elem_id="letters-key")
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
        gr.Markdown("### Push on it: one-letter variants\nThe one-letter changes (a letter replaced, added or "
                    "removed) that change the answer, or move it most. Pick one to trace it.")
        with gr.Row():
            edits = gr.Radio([], label="Variants", elem_id="trace-edits", scale=4, min_width=240)
            target = gr.Dropdown([("the answer itself", "")] + [(lang, lang) for lang in models["gru"].labels],
                                 value="", label="What would make it …", elem_id="trace-target", scale=1,
                                 min_width=160, interactive=True)
        gr.Markdown("### What it remembered: the units that pushed the answer\nThe answer's score is a sum of one "
                    "part per hidden unit. These are the units that pushed it hardest either way, and, below, what "
                    "each would have added had the name stopped at each letter.")
        contributions = gr.HTML(elem_id="contributions")
        heatmap = gr.HTML(elem_id="heatmap")
        gr.Markdown("### The cell at work\nWhat the recurrent cell did at each letter: how much of its past it "
                    "kept (the GRU's gates) or how much of its push came from the letter (the RNN), and one unit's "
                    "update written out with its numbers.")
        gates = gr.HTML(elem_id="gates")
        with gr.Row():
            with gr.Column(scale=4, min_width=280):
                state_heatmap = gr.HTML(elem_id="state-heatmap")
                gr.Markdown("Each row is one of the units above (*L2 #119*: unit 119 of layer 2; a one-layer "
                            "model's are just *#119*), each column its value after that letter, light low, dark "
                            "high; the outlined column is the current letter and *Δ here* the unit's change there.",
                            elem_classes="small-note")
            with gr.Column(scale=3, min_width=280):
                unit = gr.Dropdown(label="One unit, written out", elem_id="unit", interactive=True)
                unit_view = gr.HTML(elem_id="unit-view")
        gr.Markdown("### How learning reaches back\nTraining nudges every weight by the gradient of the answer's "
                    "log-probability. Here is how large that gradient is at the state after each letter: the "
                    "signal that reaches the early letters is what lets a network learn from them — in the "
                    "tutorial's plain RNN it fades fast.")
        gradient = gr.HTML(elem_id="gradient")
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
        with gr.Accordion("All hidden units (clustered)", open=False) as all_units:
            units_img = gr.HTML(elem_id="all-units")
        view = gr.State(None, time_to_live=server.STATE_SECONDS)  # the current StepView
        playing = gr.State(False)
        # A name Classify has just handed over (take_over): its change of the name box traces nothing; the tab
        # traces it when it is opened (trace_if_stale), not behind every Classify answer.
        handed_over = gr.State(None)
        timer = gr.Timer(0.8, active=False)

    def unit_parts(v: StepView, choice, index: int) -> dict:
        try:
            layer, number = (int(x) for x in str(choice).split(":"))
        except ValueError:
            return {unit_view: ""}
        index = clamp_step(index, v.length)
        contexts = v.explain.unit_contexts(layer, number) if v.explain is not None else []
        assert v.model is not None  # StepView.build sets it
        equation = cell.unit_equation(v.model, v.trace.normalized.text, layer, number, index,
                                      hidden=v.trace.layers)["text"]
        return {unit_view: unit_html(v.trace, v.kind, layer, number, contexts)
                + f'<div class="equation">{esc(equation)}</div>'}

    def parts(v: StepView, index: int) -> dict:
        """What changes with the character: everything else stays as the trace drew it."""
        index = clamp_step(index, v.length)
        t = v.trace
        near = t.neighbours[index] if t.neighbours is not None else []
        has_map = v.projection is not None and t.map_points is not None
        assert t.contributions is not None  # (StepView.build checked it)
        out = {
            step: index + 1,
            letters: letters_html(t, index) + name_caption_html(t, index),
            step_label: top_k_dict(t.top(index, v.k)),
            trajectory_marks: v.trajectory.overlay_html(index),
            neighbours: neighbours_html(near, t.labels, "".join(t.chars[: index + 1]), _bank_size(v.projection)),
            map_marks: map_path_svg(v.projection, t.map_points, t.chars, index, [n.index for n in near])
            if has_map else "",
            heatmap: contribution_along_html(t.contributions, t.chars, list(v.units), index, v.n_layers, v.kind),
            state_heatmap: heatmap_html(t, v.kind, list(v.units), index),
            gates: gates_html(t.gates, t.chars, index, v.kind, v.n_layers, list(v.units)),
            gradient: gradient_html(dict(v.gradients), t.chars, index),
        }
        out.update(unit_parts(v, v.unit, index))
        return out

    def new_trace(name_value, kind, k_value, old, prior_value="lists", request: gr.Request | None = None):
        """Trace a name once into the session's state; show its last character."""
        gone = gone_notice(kind, request)
        if gone is not None:  # "Yours", no longer on the server: why, and nothing of an earlier trace beside it
            return {**cleared, view: None, norm_line: "", answer: gone, map_img: "", map_key: "", map_note: ""}
        norm, reason = checked(name_value)
        if norm is None:  # said under the box; nothing of an earlier trace beside it
            return {**cleared, view: None, norm_line: rejected_html(str(reason))}
        with user_errors():
            mine = session_models(models, request)
            clf = service.pick_model(mine, kind)
            v = StepView.build(clf, norm, top_k_for(len(clf.labels), k_value)[0], kind,
                               others={key: mine[key] for key in ("rnn", "gru")}, prior=prior_value)
        return traced_parts(v, old, clf)

    def traced_parts(v: StepView, old, clf) -> dict:
        t, n = v.trace, v.length
        details = whole_name(t)
        has_map = clf.projection is not None and t.map_points is not None
        first_choice = v.unit_choices()[0][1] if v.units else ""
        v = replace(v, unit=first_choice)
        assert t.contributions is not None  # (StepView.build checked it)
        out = {
            view: v,
            norm_line: normalisation_html(t.normalized),
            story: story_html(t.story),
            letters_key: letters_key_html(t),
            answer: answer_html(details, set_facts(clf, v.prior)),
            trajectory_img: v.trajectory.image_html(f"{MODEL_LABELS[v.kind]}: probability of the top languages "
                                                    f"after each prefix of {''.join(t.chars)}"),
            trajectory_key: legend_html(trajectory_languages(t, v.k), t.labels, TRAJECTORY_LEAD),
            decision: decision_html(t),
            contributions: contributions_html(t.contributions, t.labels, v.n_layers, N_PUSHERS),
            unit: gr.update(choices=v.unit_choices(), value=first_choice),
            units_img: "",
            all_units: gr.update(open=False),
            edits: gr.update(choices=[], value=None),
            **parts(v, n - 1),
            step: gr.update(maximum=max(n, 2), value=n, interactive=n > 1),  # after parts(): it sets the value only
            k: top_k_for(len(t.labels), v.k)[1],
        }
        if old is None or old.projection is not v.projection:  # the map's background changes only with the model
            out[map_img] = map_svg(clf.projection, v.kind) if has_map else no_map_html(v.key)
            out[map_key] = legend_html(t.labels, t.labels) if has_map else ""
            out[map_note] = _map_note(clf) if has_map else ""
        return out

    def live(name_value, kind, k_value, old, prior_value="lists", handed=None, request: gr.Request | None = None):
        """As the name is typed: trace it again (the queue keeps only the last keystroke's event); a name that
        cannot be read clears the answer and says why in the normalisation line, without an error box. The change
        Classify's hand-over makes (``handed``) traces nothing: the tab does when it is opened."""
        if handed is not None and handed == name_value:
            return {handed_over: None}
        if shows(old, name_value, kind, prior_value):
            return gr.skip()
        try:
            return new_trace(name_value, kind, k_value, old, prior_value, request)
        except gr.Error as err:
            return {**cleared, view: None, norm_line: notice_html(str(err.message))}

    def variants(v, wanted, request: gr.Request | None = None):
        """The one-letter variants of the traced name (after its first paint): those that change the answer or
        move it most, or, with a language chosen, those that raise that language most."""
        if v is None:
            return {edits: gr.update(choices=[], value=None)}
        clf = session_models(models, request).get(v.key)
        if clf is None:
            return {edits: gr.update(choices=[], value=None)}
        if wanted and wanted not in clf.labels:  # a model trained in the page on a few languages
            return {edits: gr.update(choices=[], value=None,
                                     label=f"This model knows only {', '.join(clf.labels)}: pick one of them")}
        found = clf.edits(v.trace.normalized, target=wanted or None, n=N_EDITS, prior=v.prior)
        label = "Variants" if not wanted else f"Variants that raise {wanted} most"
        return {edits: gr.update(choices=[(edit_choice(e), e["name"]) for e in found], value=None, label=label)}

    def trace_variant(picked, kind, k_value, old, prior_value="lists", request: gr.Request | None = None):
        if not picked:
            return gr.skip()
        return {name: picked, **new_trace(picked, kind, k_value, old, prior_value, request)}

    def trace_if_stale(name_value, kind, k_value, old, prior_value="lists", request: gr.Request | None = None):
        """On opening the tab: trace again only if the name, model or prior changed since the last trace (or the
        model traced with, "Yours", is gone)."""
        if gone_notice(kind, request) is None and (shows(old, name_value, kind, prior_value)
                                                    or not str(name_value).strip()):
            return gr.skip()
        return new_trace(name_value, kind, k_value, old, prior_value, request)

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
        v = v.with_k(top_k_for(len(v.trace.labels), k_value)[0])
        t = v.trace
        return {view: v, k: top_k_for(len(t.labels), v.k)[1],
                trajectory_img: v.trajectory.image_html(f"{MODEL_LABELS[v.kind]}: probability of the top languages "
                                                        f"after each prefix"),
                trajectory_key: legend_html(trajectory_languages(t, v.k), t.labels, TRAJECTORY_LEAD),
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

    def pick_unit(v, choice, position):
        """Write out another unit (kept in the view, so stepping keeps it)."""
        if v is None:
            return gr.skip()
        v = replace(v, unit=str(choice or ""))
        return {view: v, **unit_parts(v, v.unit, index_of(position, v))}

    def draw_all_units(v):
        if v is None:
            return gr.skip()
        order = None if v.explain is None else v.explain.unit_order
        figure = units_figure(v.trace, v.kind, order, list(v.units))
        return {units_img: FigureImage.from_figure(figure).image_html(f"{MODEL_LABELS[v.kind]}: every hidden unit")}

    # What a trace shows, emptied: for a rejected name, and for a "Yours" that is gone.
    cleared = {story: "", letters: "", letters_key: "", answer: "", step_label: None,
               trajectory_img: "", trajectory_marks: "", trajectory_key: "", decision: "", neighbours: "",
               map_marks: "", heatmap: "", state_heatmap: "", contributions: "", gates: "", gradient: "",
               unit_view: "", units_img: "", edits: gr.update(choices=[], value=None),
               unit: gr.update(choices=[], value=None)}
    per_step = [step, letters, step_label, trajectory_marks, neighbours, map_marks, heatmap, state_heatmap, gates,
                gradient, unit_view]
    traced = [view, norm_line, story, letters_key, answer, trajectory_img, trajectory_key, decision, contributions,
              unit, units_img, all_units, map_img, map_key, map_note, edits, k, *per_step]
    triggers = [name.submit, button.click, model.input]
    inputs = [name, model, k, view, prior]  # the prior last: a client call without it traces under the lists'
    traced_event = gr.on(triggers, new_trace, inputs, traced, api_name="ui_trace",
                         trigger_mode="always_last", **ui)  # a model picked mid-trace is traced next, not dropped
    # .change, not .input: gradio 6.31's Textbox fires input on keypress, which Backspace and Delete never fire.
    # A change made by another event finds that name traced (a variant picked) or handed over by Classify, and is
    # skipped.
    typed = name.change(live, [*inputs, handed_over], [*traced, handed_over], api_name="ui_trace_live",
                        trigger_mode="always_last", show_progress="hidden", **ui)
    reopened = tab.select(trace_if_stale, inputs, traced, api_name="ui_trace_tab", **ui)

    def trace_new_prior(name_value, kind, k_value, old, prior_value="lists", request: gr.Request | None = None):
        """The page's prior changed: trace again what the tab shows, so nothing of the other prior stays beside
        the new choice (nothing shown, e.g. a name Classify handed over: nothing to do until the tab is opened)."""
        if old is None:
            return gr.skip()
        return new_trace(name_value, kind, k_value, old, prior_value, request)

    new_prior = prior.input(trace_new_prior, inputs, traced, api_name="ui_trace_prior", trigger_mode="always_last",
                            **ui)
    picked_variant = edits.input(trace_variant, [edits, model, k, view, prior], [name, *traced],
                                 api_name="ui_variant", **ui)
    for i, dependency in enumerate((traced_event, typed, reopened, picked_variant, new_prior)):  # after first paint
        dependency.then(variants, [view, target], edits, show_progress="hidden", api_name=f"ui_variants_{i}", **ui)
    target.input(variants, [view, target], edits, api_name="ui_variants", show_progress="hidden", **ui)
    stop_offering_gone([traced_event, reopened, new_prior], model, "ui_trace_choices", **ui)
    quiet = dict(show_progress="hidden", **ui)
    step.input(show, [step, view], per_step, api_name="ui_step", trigger_mode="always_last", **quiet)
    k.release(change_k, [step, view, k], [view, k, trajectory_img, trajectory_key, *per_step], api_name="ui_step_k",
              **quiet)
    prev_btn.click(move(-1), [step, view], per_step, api_name="ui_prev", **quiet)
    next_btn.click(move(+1), [step, view], per_step, api_name="ui_next", **quiet)
    play_outputs = [playing, timer, play_btn, *per_step]
    play_btn.click(toggle_play, [playing, step, view], play_outputs, api_name="ui_play", **quiet)
    timer.tick(tick, [playing, step, view], play_outputs, api_name="ui_tick", **quiet)
    unit.input(pick_unit, [view, unit, step], [view, unit_view], api_name="ui_unit", **quiet)
    all_units.expand(draw_all_units, view, units_img, api_name="ui_all_units", **ui)

    def take_over(n, m, request: gr.Request | None = None, old=None, prior_value="lists", shown=None):
        """Classify's name (as it answered it: None when it rejected it, which then stays there; not checked again)
        and model; without "Yours" if the session's model is gone. Not traced now: the tab traces it when it is
        opened, and until then shows nothing of an earlier trace beside the new name."""
        if n is None:
            return gr.skip()
        update = offered(m, request)
        out = {name: n, model: m if update is None else update}
        if shows(old, n, m, prior_value):
            return out  # already traced as it is
        # The box's change (only if the name differs from the one it shows) is told not to trace.
        return {**out, handed_over: n if n != shown else None, **cleared, view: None, norm_line: ""}

    for event in follow.events:
        event.success(take_over, [follow.accepted, follow.model, view, prior, name],
                      [name, model, handed_over, *traced], queue=False, **ui)
    return model


def shows(view: StepView | None, name: str, kind: str, prior: str) -> bool:
    """Whether ``view`` (the tab's state) is the trace of ``name`` by the model ``kind`` under ``prior``."""
    return view is not None and view.trace.name == name and view.key == kind and view.prior == prior


def no_map_html(key: str) -> str:
    """Why there is no map: a model trained in the page has none (the page runs no separate fit); any other checkpoint
    can have one added."""
    if key == "yours":
        return ('<div class="small-note">The model you trained in this page has no map of training names, no '
                'nearest training names and no novelty score: the committed models get them from a separate fit '
                'after training, which the page does not run. Every view above is there.</div>')
    return NO_MAP_HTML


NO_MAP_HTML = ('<div class="small-note">This checkpoint has no hidden-state map. Add one with '
               '<code>python -m namecls.training.refit --checkpoint &lt;folder&gt; --data-dir &lt;names&gt;</code>.'
               '</div>')


def _bank_size(projection) -> int:
    return 0 if projection is None else len(projection.sample()[0])


def _map_note(classifier) -> str:
    summary = classifier.projection.summary
    share = summary.get("axis_share") or summary.get("explained_variance_ratio") or []
    method = str(summary.get("method_name", "pca")).upper()
    held = f"; its two axes hold {' + '.join(percent(v) for v in share)} of the sample's variance" \
        if method == "PCA" and share else ""
    return MAP_NOTE.format(hidden=classifier.projection.hidden_size, method=method + held)
