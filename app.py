"""namecls: which of 18 languages a surname comes from, and how a recurrent network reaches its answer.

    python app.py            # serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

Layout and wiring only: the logic lives in ``namecls.service`` (checked, JSON-able endpoint functions) and
``namecls.render`` (figures, tables, HTML). Public API (``gradio_client``): ``/predict``, ``/predict_details``,
``/trace``, ``/predict_batch``; every UI event is private.
"""

import os

# No network: no analytics or version check, no hub lookups (must precede the gradio import).
for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("MPLBACKEND", "Agg")):
    os.environ.setdefault(_key, _value)

import functools  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Literal  # noqa: E402

from namecls import service  # noqa: E402
from namecls.checkpoint import CheckpointError  # noqa: E402

# Both models, loaded once. NAMECLS_CHECKPOINTS may point at another folder holding rnn/ and gru/.
# Loaded before gradio is imported, so a broken checkpoint stops start-up within seconds, naming the file and the fix.
try:
    MODELS = service.load_models(os.environ.get("NAMECLS_CHECKPOINTS") or None)
except CheckpointError as err:
    raise SystemExit(f"namecls: cannot start: {err}") from None

import gradio as gr  # noqa: E402
from gradio.components.plot import PlotData  # noqa: E402
from gradio.processing_utils import encode_plot_to_base64  # noqa: E402

from namecls import render  # noqa: E402

LABELS = MODELS["gru"].labels
N_LABELS = len(LABELS)
MODEL_CHOICES = [("RNN", "rnn"), ("GRU", "gru")]
Model = Literal["rnn", "gru"]  # the API's model parameter (documented as an enum; matched case-insensitively)
EXAMPLES = ["Mike", "Qin", "Slaveya", "Fernando", "Demirkan", "Ślusàrski", "O'Neill", "Nguyen"]
MAX_MB = service.MAX_UPLOAD_BYTES / 2**20

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="rose")
CSS = """
.gradio-container { max-width: 1200px !important; margin: 0 auto; }
.norm-line { font-size: 0.95rem; padding: 0.2rem 0.1rem; }
.step-caption { color: var(--body-text-color-subdued); margin-top: 0.1rem; }
.decision { font-size: 0.95rem; padding: 0.2rem 0.1rem; }
#step-controls { align-items: end; }
.fig-stack { position: relative; gap: 0 !important; }
.fig-stack > .fig-marks { position: absolute !important; top: 0; left: 0; width: 100%; pointer-events: none; }
#step-controls button { max-width: 8.5rem; }
.small-note { font-size: 0.85rem; color: var(--body-text-color-subdued); }
"""
# Everything launch() needs besides host and port; tests launch with the same settings.
# state_session_capacity: a session's trace (figures as PNG + states) is ~0.1-0.5 MB; keep at most 1,000 sessions.
LAUNCH_KWARGS = dict(theme=THEME, css=CSS, max_file_size=service.MAX_UPLOAD_BYTES, ssr_mode=False,
                     footer_links=["api", "gradio"], run_history=False, state_session_capacity=1000)

INTRO = f"""\
# Where does a surname come from?
A character-level **RNN** (the PyTorch tutorial's hand-written cell, sigmoid state) and a **GRU** read a surname
one letter at a time and guess which of {N_LABELS} languages' surname lists it resembles. *Step through* shows the
network's hidden state and its running guess after every letter. A surname is not a nationality: see *Model card*.
"""


@contextmanager
def user_errors(html: bool = True):
    """Bad input → a gr.Error with the reason (no stack trace); ``html``: escape it for the browser's modal."""
    try:
        yield
    except ValueError as err:
        message = str(err)
        raise gr.Error(render.esc(message) if html else message, title="Cannot do that", print_exception=False)


# ---------------------------------------------------------------------------------------------------------------
# Public API: plain JSON in and out


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
        return service.predict(MODELS, name, model, k)


def predict_details(name: str, model: Model = "gru", k: int = 3) -> dict:
    """The k most probable languages of a surname, with how sure the network is.

    Parameters:
        name: a surname, in any script (transliterated with unidecode, then restricted to a-z A-Z .,:;-')
        model: "rnn" or "gru"
        k: how many languages to return, 1 to 18
    Returns:
        {"name", "normalized", "model", "top": {language: probability}, "top_probability", "entropy" (nats),
        "low_confidence" (true: the top probability is below "threshold", chosen on validation names: the name may
        be from none of the 18 languages), "threshold"}
    """
    with user_errors(html=False):
        return service.predict_details(MODELS, name, model, k)


def trace(name: str, model: Model = "gru") -> dict:
    """The network's prediction after every prefix of a surname and its hidden state after every character.

    Parameters:
        name: a surname
        model: "rnn" or "gru"
    Returns:
        {"name", "normalized", "model", "labels": [18], "chars": [T], "probs": [T][18] (row t = after chars[:t+1],
        columns in the order of labels), "hidden": [T][H] (the top layer's state after each character),
        "entropy": [T] (nats, of each row of probs), "low_confidence" (the whole name's flag, as /predict_details),
        "map": [T][2] (the top state after each character on the model's 2-D map of training names, or null)}
    """
    with user_errors(html=False):
        return service.trace(MODELS, name, model)


def predict_batch(names: list[str], model: Model = "gru", k: int = 3) -> list[dict]:
    """Classify up to 10,000 surnames at once; a bad name gets an error in its row instead of failing the batch.

    Parameters:
        names: the surnames
        model: "rnn" or "gru"
        k: how many languages per name, 1 to 18
    Returns:
        one row per name, in order: {"name", "normalized", "top1", "probability", "top_k": {language: p}, "error"}
    """
    with user_errors(html=False):
        return service.predict_batch(MODELS, names, model, k)


# ---------------------------------------------------------------------------------------------------------------
# UI handlers (private events)


def name_validator(name, *others):
    """Runs before a name's event: marks the name box with the reason it cannot be classified."""
    try:
        service.check_name(name)
        verdict = gr.validate(True, "")
    except ValueError as err:
        verdict = gr.validate(False, str(err))
    return [verdict, *[gr.validate(True, "") for _ in others]]


def classify(name, model, k):
    with user_errors():
        norm = service.check_name(name)
        details = service.predict_details(MODELS, name, model, k)
    return details["top"], render.normalisation_html(norm), render.confidence_html(details, N_LABELS)


def reclassify(name, model, k):
    """Model or top-k changed: classify again if there is a name."""
    if not str(name or "").strip():
        return gr.skip()  # a single skip leaves every output as it is
    return classify(name, model, k)


def sync_name(name, model):
    """Carry the classified name over to the other tabs (they compute when opened)."""
    return name, model, name


def new_trace(name, model, k):
    """Trace a name once into the session's state; show its last character."""
    with user_errors():
        service.check_name(name)
        view = render.TraceView.build(service.pick_model(MODELS, model), name)
    n = view.length
    slider = gr.update(maximum=max(n, 2), value=n, interactive=n > 1)
    return (view, slider, *view.step(n - 1, k), render.decision_html(view.trace), *view.images())


def trace_if_stale(name, model, k, view):
    """On opening the tab: trace again only if the name or model changed since the last trace."""
    unchanged = view is not None and view.trace.name == name and view.kind == model
    if unchanged or not str(name or "").strip():
        return gr.skip()
    return new_trace(name, model, k)


def _index(position, view, delta: int = 0) -> int:
    """The 0-based step ``delta`` away from the slider's 1-based ``position``, kept inside the name."""
    try:
        step = int(float(position)) - 1 + delta
    except (TypeError, ValueError):
        step = view.length - 1
    return render.clamp_step(step, view.length)


def show_step(position, view, k):
    """Re-render one step from the stored trace (no model call)."""
    if view is None:
        return gr.skip()
    return view.step(_index(position, view), k)


def _moved(position, view, k, delta):
    if view is None:
        return gr.skip()
    step = _index(position, view, delta)
    return (step + 1, *view.step(step, k))


def step_prev(position, view, k):
    return _moved(position, view, k, -1)


def step_next(position, view, k):
    return _moved(position, view, k, +1)


def _stopped():
    return False, gr.Timer(active=False), gr.Button("▶ Play")


def toggle_play(playing, position, view, k):
    """Play from the current character (from the first if at the end), or pause."""
    if playing or view is None or view.length < 2:
        return (*_stopped(), *[gr.skip()] * 7)
    step = _index(position, view)
    if step >= view.length - 1:
        step = 0
    return (True, gr.Timer(active=True), gr.Button("⏸ Pause"), step + 1, *view.step(step, k))


def tick(playing, position, view, k):
    """One timer tick while playing: advance a character; stop at the last one."""
    if not playing or view is None:
        return (*_stopped(), *[gr.skip()] * 7)
    step = _index(position, view, +1)
    if step >= view.length - 1:
        return (*_stopped(), step + 1, *view.step(step, k))
    return (True, gr.skip(), gr.skip(), step + 1, *view.step(step, k))


def compare(name, k):
    with user_errors():
        service.check_name(name)
        traces = {kind: MODELS[kind].trace(name) for kind in ("rnn", "gru")}
    out = []
    for kind, t in traces.items():
        label = render.MODEL_LABELS[kind]
        out += [render.top_k_dict(t.top(-1, k)),
                render.trajectory_figure(t, title=f"{label}: probability of the top languages after each prefix",
                                         min_width=5.6),
                render.decision_html(t, label)]
    return (name, *out)


def compare_if_stale(name, k, last):
    if name == last or not str(name or "").strip():
        return gr.skip()
    return compare(name, k)


def run_batch(file, text, model):
    with user_errors():
        names = service.read_names_file(file) if file else []
        if text and text.strip():
            names += service.parse_lines(text)
        if not names:
            raise ValueError("upload a .csv or .txt file, or paste names one per line")
        if len(names) > service.MAX_BATCH_NAMES:
            raise ValueError(f"{len(names):,} names is too many: at most {service.MAX_BATCH_NAMES:,} per batch")
        rows = service.predict_batch(MODELS, names, model, 3)
    table = render.batch_table(rows)
    errors = int((table["error"] != "").sum())
    path = service.write_csv(table, f"namecls-{model}")
    summary = (f"**{len(table):,}** names classified with the {render.MODEL_LABELS[model]}"
               + (f"; **{errors:,}** could not be read (see the error column)." if errors else "."))
    return summary, table, gr.DownloadButton(value=path, visible=True)


# ---------------------------------------------------------------------------------------------------------------
# Layout


CARD_FIGURES = render.CARD_FIGURES


@functools.cache
def card_plots() -> list[PlotData]:
    """The model card's figures (``CARD_FIGURES`` of each model, in ``MODELS`` order) as PNG plot values.

    Drawn once, on the first visit to the tab: drawing them while building the page added ~2 s to start-up."""
    plots = []
    for kind, clf in MODELS.items():
        figures = render.card_figures(clf.metrics, clf.labels, render.MODEL_LABELS[kind])
        plots += [PlotData(type="matplotlib", plot=encode_plot_to_base64(figures[which], "png"))
                  for which in CARD_FIGURES]
    return plots


def show_card(drawn: bool):
    """The model card's figures on a session's first visit to the tab (then ``drawn``); later visits resend nothing."""
    return gr.skip() if drawn else [*card_plots(), True]


def model_card() -> list[gr.Plot]:
    """Lay out the model card; returns its empty figures, which ``card_plots`` fills."""
    metrics = {kind: clf.metrics for kind, clf in MODELS.items()}
    gr.Markdown("Scores on each checkpoint's held-out **test split**, read from its `metrics.json`; baselines "
                "scored on the same split.")
    gr.Dataframe(render.headline_table(metrics), label="Headline numbers (test set)", interactive=False,
                 elem_id="headline")
    plots = []
    with gr.Tabs():
        for kind, clf in MODELS.items():
            label = render.MODEL_LABELS[kind]
            figure = {which: dict(label=which.capitalize(), format="png", show_label=False,
                                  elem_id=f"card-{kind}-{which}") for which in CARD_FIGURES}
            with gr.Tab(label, id=f"card-{kind}"):
                with gr.Row():
                    with gr.Column(scale=2):
                        gr.Dataframe(render.per_language_table(clf.metrics), label=f"{label}: per language",
                                     interactive=False, max_height=800)
                    with gr.Column(scale=3):
                        confusion = gr.Plot(**figure["confusion"])
                training = gr.Plot(**figure["training"])
                calibration = render.calibration_md(clf.metrics)
                gr.Markdown(calibration or "", elem_id=f"calibration-{kind}", visible=bool(calibration))
                reliability = gr.Plot(visible=bool(calibration), **figure["reliability"])
                plots += [confusion, training, reliability]
                gr.Dataframe(render.facts_table(clf.config, clf.metrics), label=f"{label}: data, protocol, settings",
                             interactive=False, wrap=True, column_widths=["22%", "78%"])
                share = render.test_share_md(clf.metrics)
                if share:
                    gr.Markdown(share)
    gr.Markdown(render.LIMITATIONS_MD)
    return plots


def build_demo(ui_visibility: str = "private") -> gr.Blocks:
    """The app. ``ui_visibility`` is the API visibility of the UI's own events: "private" in production;
    benchmarks pass "undocumented" to drive the exact UI path with gradio_client."""
    ui = dict(api_visibility=ui_visibility)
    with gr.Blocks(title="namecls: where does a surname come from?") as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            # -- Classify ---------------------------------------------------------------------------------------
            with gr.Tab("Classify", id="classify"):
                with gr.Row():
                    with gr.Column(scale=5):
                        name = gr.Textbox(label="Surname", placeholder="e.g. Nguyen, then press Enter",
                                          elem_id="name", max_lines=1, max_length=256, autofocus=True)
                        with gr.Row():
                            model = gr.Radio(MODEL_CHOICES, value="gru", label="Model", elem_id="model")
                            k = gr.Slider(1, N_LABELS, value=5, step=1, precision=0, label="Top-k", elem_id="k")
                        classify_btn = gr.Button("Classify", variant="primary", elem_id="classify-btn")
                        norm_line = gr.HTML(elem_id="normalisation")
                        examples = gr.Examples([[e] for e in EXAMPLES], inputs=[name], cache_examples=False,
                                               api_visibility="private", examples_per_page=8)
                    with gr.Column(scale=4):
                        label = gr.Label(num_top_classes=N_LABELS, label="Languages", elem_id="label")
                        confidence = gr.HTML(elem_id="confidence")

            # -- Step through ---------------------------------------------------------------------------------
            with gr.Tab("Step through", id="step-through") as step_tab:
                with gr.Row():
                    t_name = gr.Textbox(value="Nguyen", label="Surname", elem_id="trace-name", max_lines=1,
                                        max_length=256, scale=3)
                    t_model = gr.Radio(MODEL_CHOICES, value="gru", label="Model", elem_id="trace-model", scale=2)
                    t_k = gr.Slider(1, N_LABELS, value=3, step=1, precision=0, label="Top-k", scale=2,
                                    elem_id="trace-k")
                    t_btn = gr.Button("Trace", variant="primary", scale=1, elem_id="trace-btn")
                name_display = gr.HTML(elem_id="trace-display")
                with gr.Row(elem_id="step-controls"):
                    prev_btn = gr.Button("◀ Previous", elem_id="prev", size="md")
                    play_btn = gr.Button("▶ Play", elem_id="play", size="md")
                    next_btn = gr.Button("Next ▶", elem_id="next", size="md")
                    step = gr.Slider(1, 6, value=6, step=1, precision=0, label="Character", elem_id="step", scale=4)
                with gr.Row():
                    with gr.Column(scale=2, min_width=250):
                        step_label = gr.Label(num_top_classes=N_LABELS, label="Prediction for this prefix",
                                              elem_id="step-label")
                    with gr.Column(scale=5):
                        with gr.Column(elem_id="trajectory", elem_classes="fig-stack"):
                            trajectory_img = gr.HTML(elem_classes="fig-base")
                            trajectory = gr.HTML(elem_classes="fig-marks")
                        decision = gr.HTML(elem_id="decision")
                with gr.Row():
                    with gr.Column(scale=2, min_width=250):
                        gr.Markdown("**Where the name travels.** Each dot is a training name, placed by the "
                                    "network's top-layer hidden state after its last letter (a 2-D PCA fitted at "
                                    "training time) and coloured by its language; each language's name sits at "
                                    "the centre of its dots. The black path is the current name's state after each "
                                    "prefix, letter by letter; the red dot is the current character. A path that "
                                    "ends among one language's names is a confident answer.",
                                    elem_classes="small-note")
                    with gr.Column(scale=5):
                        with gr.Column(elem_id="state-map", elem_classes="fig-stack"):
                            map_img = gr.HTML(elem_classes="fig-base")
                            map_marks = gr.HTML(elem_classes="fig-marks")
                with gr.Row():
                    with gr.Column(scale=2, min_width=250):
                        units = gr.Dataframe(label="Hidden units that changed most at this character",
                                             interactive=False, elem_id="units", max_height=400)
                        gr.Markdown("Each column of the heatmap is the hidden state after that character "
                                    "(outlined: the current one; red ticks: the units listed above). The RNN's "
                                    "state is a sigmoid (0 … 1), the GRU's lies in −1 … 1, hence the two colour "
                                    "scales. For the RNN, the prediction at a character reads that character and "
                                    "the state *before* it.", elem_classes="small-note")
                    with gr.Column(scale=5):
                        with gr.Column(elem_id="heatmap", elem_classes="fig-stack"):
                            heatmap_img = gr.HTML(elem_classes="fig-base")
                            heatmap = gr.HTML(elem_classes="fig-marks")
                view = gr.State(None, time_to_live=3600)  # the current TraceView (render.TraceView)
                playing = gr.State(False)
                timer = gr.Timer(0.8, active=False)

            # -- Compare --------------------------------------------------------------------------------------
            with gr.Tab("Compare", id="compare") as compare_tab:
                with gr.Row():
                    c_name = gr.Textbox(value="Nguyen", label="Surname", elem_id="compare-name", max_lines=1,
                                        max_length=256, scale=3)
                    c_k = gr.Slider(1, N_LABELS, value=5, step=1, precision=0, label="Top-k", scale=2)
                    c_btn = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-btn")
                compared = gr.State(None)
                with gr.Row():
                    c_out = []
                    for kind in ("rnn", "gru"):
                        with gr.Column():
                            c_out += [
                                gr.Label(num_top_classes=N_LABELS, label=render.MODEL_LABELS[kind],
                                         elem_id=f"compare-{kind}"),
                                gr.Plot(label=f"{render.MODEL_LABELS[kind]} trajectory", format="png",
                                        show_label=False),
                                gr.HTML(),
                            ]

            # -- Batch ----------------------------------------------------------------------------------------
            with gr.Tab("Batch", id="batch"):
                gr.Markdown(f"Upload a **.csv** (a column headed *name* or *surname*, else the first column) or a "
                            f"**.txt** file (one name a line) of at most **{MAX_MB:g} MB** and "
                            f"**{service.MAX_BATCH_NAMES:,} names**, or paste names below. Names that cannot be "
                            f"read are reported in the *error* column.")
                with gr.Row():
                    b_file = gr.File(label=f".csv or .txt, ≤ {MAX_MB:g} MB, ≤ {service.MAX_BATCH_NAMES:,} names",
                                     file_types=list(service.UPLOAD_TYPES), type="filepath", elem_id="batch-file")
                    b_text = gr.Textbox(label="…or paste names, one per line", lines=6, max_lines=12,
                                        elem_id="batch-text")
                with gr.Row():
                    b_model = gr.Radio(MODEL_CHOICES, value="gru", label="Model", elem_id="batch-model")
                    b_btn = gr.Button("Classify all", variant="primary", elem_id="batch-btn")
                b_summary = gr.Markdown(elem_id="batch-summary")
                b_table = gr.Dataframe(headers=render.BATCH_COLUMNS, interactive=False, elem_id="batch-table",
                                       max_height=420, wrap=True,
                                       column_widths=["17%", "15%", "11%", "9%", "28%", "20%"])
                b_download = gr.DownloadButton("Download CSV", visible=False, elem_id="batch-download")

            # -- Model card -----------------------------------------------------------------------------------
            with gr.Tab("Model card", id="model-card") as card_tab:
                card = model_card()
                card_drawn = gr.State(False)

        # -- Events ---------------------------------------------------------------------------------------------
        gr.api(predict, api_name="predict")
        gr.api(predict_details, api_name="predict_details")
        gr.api(trace, api_name="trace")
        gr.api(predict_batch, api_name="predict_batch")

        answer = [label, norm_line, confidence]
        classified = gr.on([name.submit, classify_btn.click], classify, [name, model, k], answer,
                           validator=name_validator, api_name="ui_classify", **ui)
        classified.success(sync_name, [name, model], [t_name, t_model, c_name], api_name="ui_sync", queue=False,
                           **ui)
        gr.on([model.input, k.release], reclassify, [name, model, k], answer, api_name="ui_reclassify", **ui)
        examples.load_input_event.then(classify, [name, model, k], answer, api_name="ui_example",
                                       **ui).success(sync_name, [name, model], [t_name, t_model, c_name],
                                                     api_name="ui_example_sync", queue=False, **ui)

        step_views = [name_display, step_label, units, heatmap, trajectory, map_marks]
        trace_outputs = [view, step, *step_views, decision, heatmap_img, trajectory_img, map_img]
        gr.on([t_name.submit, t_btn.click, t_model.input], new_trace, [t_name, t_model, t_k], trace_outputs,
              validator=name_validator, api_name="ui_trace", **ui)
        step_tab.select(trace_if_stale, [t_name, t_model, t_k, view], trace_outputs, api_name="ui_trace_tab", **ui)
        gr.on([step.input, t_k.release], show_step, [step, view, t_k], step_views, api_name="ui_step",
              trigger_mode="always_last", show_progress="hidden", **ui)
        prev_btn.click(step_prev, [step, view, t_k], [step, *step_views], api_name="ui_prev", show_progress="hidden",
                       **ui)
        next_btn.click(step_next, [step, view, t_k], [step, *step_views], api_name="ui_next", show_progress="hidden",
                       **ui)
        play_outputs = [playing, timer, play_btn, step, *step_views]
        play_btn.click(toggle_play, [playing, step, view, t_k], play_outputs, api_name="ui_play",
                       show_progress="hidden", **ui)
        timer.tick(tick, [playing, step, view, t_k], play_outputs, api_name="ui_tick", show_progress="hidden", **ui)

        compare_outputs = [compared, *c_out]
        gr.on([c_name.submit, c_btn.click, c_k.release], compare, [c_name, c_k], compare_outputs,
              validator=name_validator, api_name="ui_compare", **ui)
        compare_tab.select(compare_if_stale, [c_name, c_k, compared], compare_outputs, api_name="ui_compare_tab",
                           **ui)

        card_tab.select(show_card, card_drawn, [*card, card_drawn], api_name="ui_card", show_progress="minimal",
                        **ui)

        b_btn.click(run_batch, [b_file, b_text, b_model], [b_summary, b_table, b_download], api_name="ui_batch",
                    **ui)
    demo.queue(default_concurrency_limit=4)
    return demo


demo = build_demo()

if __name__ == "__main__":
    import torch

    # One torch thread per request: requests run side by side on the queue's worker threads, and intra-op threads
    # of concurrent requests only wait for each other (measured in bench/README.md). NAMECLS_TORCH_THREADS overrides.
    torch.set_num_threads(int(os.environ.get("NAMECLS_TORCH_THREADS") or 1))
    demo.launch(**LAUNCH_KWARGS)
