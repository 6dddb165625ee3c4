"""Tab "Train your own": train a small RNN or GRU in the page and watch it learn (:func:`namecls.fit`).

One training runs at a time on a server (the event's concurrency limit is 1; the others see their place in the
queue). The model trained in a session becomes the choice "Yours" in Classify, Step through and Batch, and a
column of Compare, for that session (kept in :data:`namecls.ui.yours.TRAINED`, capped and released when the session
ends); it can be downloaded as a checkpoint zip that ``namecls.load`` reads.

Where the names data is not on disk (a Space), the first training fetches the tutorial's archive once into a cache
folder, checked by SHA-256 (:func:`namecls.fit.find_or_download_data`); if it cannot, the tab says what failed and
how to fix it, and changes nothing else.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from pathlib import Path

import gradio as gr
import pandas as pd

from ..data import DATA_URL
from ..fit import FIT_DEFAULTS, data_on_disk, find_or_download_data, fit, validation_accuracy
from .. import service
from ..checkpoint import save_zip
from .common import MODEL_CHOICES, user_errors
from .html import MODEL_LABELS, esc, notice_html, percent
from .yours import TRAINED, YOURS

MAX_BUDGET_SECONDS = 60
_STOPS: dict[str, threading.Event] = {}  # session → the stop signal of its running training


def curves(history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training loss, validation accuracy) as gr.LinePlot tables, x = seconds since training began."""
    loss = pd.DataFrame([{"seconds": h["seconds"], "value": h["loss"]} for h in history
                         if h.get("loss") is not None and not h.get("final")], columns=["seconds", "value"])
    accuracy = pd.DataFrame([{"seconds": h["seconds"], "value": h["val_accuracy"]} for h in history
                             if h.get("val_accuracy") is not None and not h.get("final")],
                            columns=["seconds", "value"])
    return loss, accuracy


def progress_html(info: dict, budget: float) -> str:
    """A progress bar with the seconds left (by the time budget or the epochs, whichever ends first)."""
    fraction = min(1.0, max(0.0, float(info.get("fraction") or 0.0)))
    seconds = float(info.get("seconds") or 0.0)
    left = max(0.0, seconds / fraction - seconds) if fraction > 0 else budget
    words = "done" if info.get("final") else f"about {min(left, budget):.0f} s left"
    return (f'<div class="train-progress"><div style="background:#e5e7eb;border-radius:4px;height:0.8rem">'
            f'<div style="width:{100 * fraction:.1f}%;background:#4c5bd4;height:100%;border-radius:4px"></div>'
            f'</div><div class="small-note">epoch {info.get("epoch", 0)} · {seconds:.1f} s · {words}</div></div>')


def build(models: dict, ui: dict, radios: list) -> None:
    """Lay out the tab and wire its events; ``radios`` are the other tabs' model choices, which gain "Yours"."""
    labels = models["gru"].labels
    defaults = FIT_DEFAULTS
    with gr.Tab("Train your own", id="train"):
        gr.Markdown(f"Train a small network in this page on the data's training names and watch it learn. Three "
                    f"languages separate within seconds; all {len(labels)} take longer. One training runs at a "
                    f"time on this server; your model is yours for this session only (download it to keep it).")
        with gr.Row():
            cell = gr.Radio(MODEL_CHOICES, value="gru", label="Cell", elem_id="train-cell", min_width=140)
            hidden = gr.Slider(16, 256, value=128, step=16, precision=0, label="Hidden size", min_width=160,
                               elem_id="train-hidden")
            layers = gr.Slider(1, 2, value=1, step=1, precision=0, label="GRU layers", min_width=140,
                               elem_id="train-layers")
            lr = gr.Number(value=defaults["gru"].lr, label="Learning rate", minimum=1e-4, maximum=0.1,
                           min_width=120, elem_id="train-lr")
        with gr.Row():
            epochs = gr.Slider(1, 30, value=defaults["gru"].epochs, step=1, precision=0, label="Epochs (at most)",
                               min_width=160, elem_id="train-epochs")
            budget = gr.Slider(5, MAX_BUDGET_SECONDS, value=30, step=5, precision=0, label="Time budget (s)",
                               min_width=160, elem_id="train-budget")
            watch = gr.Textbox(value="Nguyen", label="A name to watch", max_lines=1, max_length=64, min_width=160,
                               elem_id="train-watch")
        languages = gr.CheckboxGroup(labels, value=["Chinese", "Japanese", "Russian"], label="Languages",
                                     elem_id="train-languages")
        with gr.Row():
            start = gr.Button("Train", variant="primary", elem_id="train-btn", min_width=120)
            stop = gr.Button("Stop", elem_id="train-stop", min_width=120)
            everything = gr.Button(f"All {len(labels)} languages", size="sm", min_width=120)
        progress = gr.HTML(elem_id="train-progress")
        with gr.Row():
            loss_plot = gr.LinePlot(x="seconds", y="value", title="Training loss (running mean of the epoch)",
                                    x_title="seconds", y_title="cross-entropy", elem_id="train-loss",
                                    min_width=280, height=240)
            accuracy_plot = gr.LinePlot(x="seconds", y="value", y_lim=[0, 1], title="Validation accuracy",
                                        x_title="seconds", y_title="accuracy", elem_id="train-accuracy",
                                        min_width=280, height=240)
        watched = gr.Label(label="The watched name, as the model sees it after each epoch", elem_id="train-watched",
                           num_top_classes=3)
        result = gr.Markdown(elem_id="train-result")
        download = gr.DownloadButton("Download your model (.zip)", visible=False, elem_id="train-download")

    def run(kind, hidden_size, num_layers, rate, epoch_limit, seconds, chosen, name, request: gr.Request):
        with user_errors():
            if len(chosen or []) < 2:
                raise ValueError("choose at least two languages")
            if not 5 <= float(seconds) <= MAX_BUDGET_SECONDS:
                raise ValueError(f"the time budget is 5 to {MAX_BUDGET_SECONDS} seconds")
            watch_name = service.check_name(name).text if str(name or "").strip() else None
        if not data_on_disk():  # the first training on a server without the data: fetch it (once), then train
            yield {progress: notice_html(f"Fetching the names data from {DATA_URL} (once for this server)…")}
        try:
            folder = find_or_download_data()
        except (FileNotFoundError, RuntimeError) as err:  # the one message; nothing else changes
            yield {progress: notice_html(f"Cannot train: {err}")}
            return
        session = request.session_hash or "anonymous"
        events: queue.Queue = queue.Queue()
        _STOPS[session] = stop_event = threading.Event()
        outcome: dict = {}

        def work():
            try:
                outcome["model"] = fit(folder, kind=kind, languages=list(chosen), hidden_size=int(hidden_size),
                                               num_layers=int(num_layers) if kind == "gru" else None,
                                               lr=float(rate), epochs=int(epoch_limit), time_budget=float(seconds),
                                               on_progress=events.put, stop=stop_event, watch=watch_name)
            except (ValueError, FileNotFoundError) as err:
                outcome["error"] = str(err)
            finally:
                events.put(None)

        threading.Thread(target=work, name=f"namecls-fit-{session[:8]}", daemon=True).start()
        history: list[dict] = []
        shown = {progress: progress_html({"fraction": 0.0}, float(seconds)), result: "", watched: None,
                 download: gr.DownloadButton(visible=False)}
        yield shown
        while (info := events.get()) is not None:
            history.append(info)
            loss, accuracy = curves(history)
            shown |= {progress: progress_html(info, float(seconds)), loss_plot: loss, accuracy_plot: accuracy}
            if info.get("watch"):
                shown[watched] = dict(info["watch"])
            yield shown
        _STOPS.pop(session, None)
        if "error" in outcome:
            raise gr.Error(esc(outcome["error"]), title="Cannot train", print_exception=False)
        mine = outcome["model"]
        TRAINED.put(session, mine)
        path = Path(tempfile.mkdtemp(prefix="namecls-yours-")) / f"namecls-{kind}-yours.zip"
        save_zip(mine, path)
        # every output: the last yield is the answer
        yield {**shown, result: summary_md(mine, models, list(chosen), folder),
               download: gr.DownloadButton(value=str(path), visible=True),
               **{radio: gr.Radio(choices=[*MODEL_CHOICES, ("Yours", YOURS)]) for radio in radios}}

    def halt(request: gr.Request):
        event = _STOPS.get(request.session_hash or "anonymous")
        if event is not None:
            event.set()

    start.click(run, [cell, hidden, layers, lr, epochs, budget, languages, watch],
                [progress, loss_plot, accuracy_plot, watched, result, download, *radios], api_name="ui_train",
                concurrency_limit=1, concurrency_id="train", **ui)
    stop.click(halt, None, None, queue=False, api_name="ui_train_stop", **ui)
    everything.click(lambda: gr.CheckboxGroup(value=labels), None, languages, queue=False,
                     api_name="ui_train_all", **ui)
    cell.input(lambda kind: {layers: gr.Slider(interactive=kind == "gru"),
                             lr: defaults[kind].lr, epochs: defaults[kind].epochs},
               cell, [layers, lr, epochs], queue=False, api_name="ui_train_cell", **ui)


def summary_md(mine, models: dict, languages: list[str], data_dir=None) -> str:
    """The trained model's validation accuracy beside the committed models' on the same validation names."""
    ours = mine.metrics["val_accuracy"]
    rows = [f"| **yours** ({MODEL_LABELS[mine.kind]}, {mine.metrics['epochs_run']} epochs, "
            f"{mine.metrics['training_seconds']:.0f} s, stopped by {mine.metrics['stopped_by']}) | "
            f"**{percent(ours)}** |"]
    for kind, clf in models.items():
        accuracy = validation_accuracy(clf, languages, data_dir)
        rows.append(f"| committed {MODEL_LABELS[kind]}¹ | {percent(accuracy)} |")
    return (f"Validation accuracy on the {mine.metrics['split_sizes']['val']:,} validation names of "
            f"{', '.join(languages)} (names neither model trained on):\n\n| model | accuracy |\n|---|---|\n"
            + "\n".join(rows) + "\n\n¹ trained on all 18 languages; its answer restricted to these.\n\n"
            "*Yours* is now a model choice in Classify, Step through and Batch, and a column in Compare.")
