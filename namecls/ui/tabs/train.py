"""Tab "Train your own": train a small RNN or GRU in the page and watch it learn (:func:`namecls.fit`).

One training runs at a time on a server: the event's concurrency limit is 1 (the others see their place in the
queue), and the training itself holds a process-wide slot (:data:`SLOT`) from before its thread starts until that
thread has ended, so a training whose page went away cannot run on beside the next one. A closed page (or a
cancelled event) stops its training within a second (:func:`namecls.training.fit.fit`'s ``abort``), and a client that
left
a training so waits :data:`COOL_DOWN_SECONDS` from that training's start before the next (:class:`CoolDown`).

The model trained in a session becomes the choice "Yours" in Classify, Step through and Batch, and a column of
Compare, for that session (kept in :data:`namecls.ui.yours.TRAINED`, capped and released when the session ends);
it can be downloaded as a checkpoint zip that ``namecls.load`` reads.

Where the names data is not on disk (a Space), the first training fetches the tutorial's archive once into a cache
folder, checked by SHA-256 (:func:`namecls.data.names.find_or_download_data`); if it cannot, the tab says what
failed and
how to fix it, and changes nothing else.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from typing import Any

import gradio as gr
import pandas as pd

from ...data.names import DATA_URL, data_on_disk, find_or_download_data
from ...training.fit import FitAborted, fit, validation_accuracy
from ...recipes import FIT_DEFAULTS
from ...serving import service
from .. import server
from ..common import MODEL_CHOICES, user_errors
from ..render.html import MODEL_LABELS, esc, notice_html, percent
from ..yours import TRAINED, YOURS
from ...errors import InputError

log = logging.getLogger(__name__)

MAX_BUDGET_SECONDS = 60
BUDGET_SECONDS = 30  # the Time budget slider's first value: what fit()'s defaults were chosen for (docs/training.md)
ZIP_LABEL = "Download your model (.zip)"
_STOPS: dict[str, threading.Event] = {}  # session → the stop signal of its running training

# One training at a time in this process. Acquired by the event before it starts the training's thread, released
# by that thread when it ends (its ``finally``): held for as long as the work runs, not as long as the event does.
SLOT = threading.Lock()
# How long a training waits for the slot before it is refused. The event's concurrency limit means the slot is only
# ever held at the start of an event by a training whose page went away, and that one ends within a second of it.
SLOT_WAIT_SECONDS = 2.0
# While training, the event yields a progress update at least this often: gradio only notices a closed page (and
# then closes the event's generator, which stops the training) when the generator yields.
TICK_SECONDS = 0.25
COOL_DOWN_SECONDS = 10.0  # a client whose training was abandoned waits this long from that training's start
MAX_CLIENTS = 1024  # clients remembered by the cool-down (least recently started forgotten first)


class CoolDown:
    """When each client's last abandoned training started, so that a client cannot start trainings and leave them
    in a loop (each such start costs a data read and a few batches before its training stops).

    A training is remembered from its start; one that runs to its end while its page is open (done, stopped by
    the Stop button, or an error) is forgotten then, so a visitor who waits for the answer is never kept waiting.
    A client is ``request.client.host`` (the session hash when there is none): behind a proxy that does not pass
    the visitor's address on, every visitor is one client, which at worst makes one visitor's abandoned training
    hold back the others' for ``seconds``.

    Worst case: ``capacity`` entries of a key (an IP address or a session hash, ≤ 64 characters) and a float,
    about 200 bytes each: ~0.2 MB at 1,024. Entries older than ``seconds`` are dropped at each start, so only the
    clients that started within the last ``seconds`` are held; since a start needs the one training slot and a
    left training holds it until its data is read and split (≥ ~0.05 s), that is at most ~200 in 10 s, so the cap
    never forgets a client that is still cooling down."""

    def __init__(self, seconds: float = COOL_DOWN_SECONDS, capacity: int = MAX_CLIENTS):
        self.seconds, self.capacity = seconds, capacity
        self._starts: OrderedDict[str, float] = OrderedDict()  # client → its last start (monotonic), oldest first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._starts)

    def wait(self, client: str, now: float | None = None) -> float:
        """Seconds ``client`` must still wait before a new training (0: it may start one)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            began = self._starts.get(client)
        return 0.0 if began is None else max(0.0, began + self.seconds - now)

    def start(self, client: str, now: float | None = None) -> float:
        """Record that ``client`` starts a training now; returns the token :meth:`finished` takes."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._starts.pop(client, None)
            self._starts[client] = now
            while self._starts:  # the oldest first: drop those past their cool-down, then any over the cap
                oldest, began = next(iter(self._starts.items()))
                if began + self.seconds > now and len(self._starts) <= self.capacity:
                    break
                del self._starts[oldest]
        return now

    def finished(self, client: str, token: float) -> None:
        """``client``'s training started at ``token`` ran to its end with its page open: no cool-down after it."""
        with self._lock:
            if self._starts.get(client) == token:
                del self._starts[client]


COOL_DOWN = CoolDown()


def client_of(request: gr.Request | None) -> str:
    """Who asks: the client's host address, else the session hash ("anonymous" without either)."""
    try:  # (type: ignore: a None request raises the AttributeError caught here, as one without a client does)
        host = request.client.host  # type: ignore[union-attr]
    except AttributeError:
        host = None
    return str(host or getattr(request, "session_hash", None) or "anonymous")


def checked_number(value, what: str, low: float, high: float, whole: bool = False) -> float:
    """``value`` (a box's or slider's value; None when the box is empty) as a number from ``low`` to ``high``, a
    whole one if ``whole``; else ValueError saying what it must be."""
    message = f"the {what} must be {'a whole number' if whole else 'a number'} from {low:g} to {high:g}"
    if value is None or isinstance(value, bool):
        raise InputError(message)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(message) from None
    if not math.isfinite(number) or not low <= number <= high or (whole and number != int(number)):
        raise InputError(message)
    return int(number) if whole else number


def ticking(info: dict, elapsed: float, budget: float) -> dict:
    """``info`` (the last progress message) moved on by ``elapsed`` seconds: what the bar shows between them."""
    seconds = float(info.get("seconds") or 0.0)
    fraction = float(info.get("fraction") or 0.0)
    later = seconds + elapsed
    guess = max(fraction * later / seconds if seconds > 0 else 0.0, later / budget if budget else 0.0)
    return {**info, "seconds": later, "fraction": min(1.0, max(fraction, guess))}


def curves(history: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training loss, validation accuracy) as gr.LinePlot tables, x = seconds since training began."""
    loss = pd.DataFrame([{"seconds": h["seconds"], "value": h["loss"]} for h in history
                         if h.get("loss") is not None and not h.get("final")], columns=["seconds", "value"])
    accuracy = pd.DataFrame([{"seconds": h["seconds"], "value": h["val_accuracy"]} for h in history
                             if h.get("val_accuracy") is not None and not h.get("final")],
                            columns=["seconds", "value"])
    return loss, accuracy


def accuracy_range(accuracy: pd.DataFrame) -> list[float | None]:
    """The accuracy plot's y range (gr.LinePlot's ``y_lim``; both ends given): from a tenth below its lowest point
    (0.9 for a first epoch at 0.95) to 1, so a climb from 0.95 to 0.98 is seen, not a flat line on a 0-1 axis."""
    low = float(accuracy["value"].min()) if len(accuracy) else 0.0
    return [max(0.0, math.floor(10 * low - 0.5) / 10), 1.0]


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
            hidden = gr.Slider(16, 256, value=defaults["gru"].hidden_size, step=16, precision=0, label="Hidden size",
                               min_width=160, elem_id="train-hidden")
            layers = gr.Slider(1, 2, value=defaults["gru"].num_layers, step=1, precision=0, label="GRU layers",
                               min_width=140, elem_id="train-layers")
            lr = gr.Number(value=defaults["gru"].lr, label="Learning rate", minimum=1e-4, maximum=0.1,
                           min_width=120, elem_id="train-lr")
        with gr.Row():
            epochs = gr.Slider(1, 30, value=defaults["gru"].epochs, step=1, precision=0, label="Epochs (at most)",
                               min_width=160, elem_id="train-epochs")
            budget = gr.Slider(5, MAX_BUDGET_SECONDS, value=BUDGET_SECONDS, step=5, precision=0,
                               label="Time budget (s)", min_width=160, elem_id="train-budget")
            watch = gr.Textbox(value="Fujita", label="A name to watch", max_lines=1, max_length=64, min_width=160,
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
        watched = gr.Label(label="The watched name, after each epoch", elem_id="train-watched",
                           num_top_classes=3)
        result = gr.Markdown(elem_id="train-result")
        download = gr.DownloadButton(ZIP_LABEL, visible=False, elem_id="train-download")

    def run(kind, hidden_size, num_layers, rate, epoch_limit, seconds, chosen, name, request: gr.Request):
        with user_errors():
            if kind not in FIT_DEFAULTS:
                raise InputError(f"the cell must be one of {', '.join(FIT_DEFAULTS)}")
            hidden_size = checked_number(hidden_size, "hidden size", 16, 256, whole=True)
            num_layers = checked_number(num_layers, "number of GRU layers", 1, 2, whole=True)
            rate = checked_number(rate, "learning rate", 1e-4, 0.1)
            epoch_limit = checked_number(epoch_limit, "number of epochs", 1, 30, whole=True)
            seconds = checked_number(seconds, "time budget (seconds)", 5, MAX_BUDGET_SECONDS)
            if len(chosen or []) < 2:
                raise InputError("choose at least two languages")
            watch_name = service.check_name(name).text if str(name or "").strip() else None
        if not data_on_disk():  # the first training on a server without the data: fetch it (once), then train
            yield {progress: notice_html(f"Fetching the names data from {DATA_URL} (once for this server)…")}
        try:
            folder = find_or_download_data()
        except (FileNotFoundError, RuntimeError) as err:  # the one message; nothing else changes
            yield {progress: notice_html(f"Cannot train: {err}")}
            return
        client = client_of(request)
        if (wait := COOL_DOWN.wait(client)) > 0:
            raise gr.Error(f"Your last training was left before it ended (its page was closed): please wait "
                           f"{math.ceil(wait)} s before starting another. A training left that way keeps its "
                           f"client waiting {COOL_DOWN.seconds:.0f} s from its start.", title="Please wait",
                           print_exception=False)
        if not SLOT.acquire(timeout=SLOT_WAIT_SECONDS):
            raise gr.Error("Another training is still running on this server (its page was closed, and it is "
                           "stopping): please try again in a few seconds.", title="One training at a time",
                           print_exception=False)
        session = request.session_hash or "anonymous"
        events: queue.Queue = queue.Queue()
        stop_event, abandoned = threading.Event(), threading.Event()
        outcome: dict = {}

        def work():
            try:
                outcome["model"] = fit(folder, kind=kind, languages=list(chosen), hidden_size=hidden_size,
                                       num_layers=num_layers if kind == "gru" else None, lr=rate, epochs=epoch_limit,
                                       time_budget=seconds, on_progress=events.put, stop=stop_event,
                                       watch=watch_name, abort=abandoned)
            except FitAborted:  # nobody is waiting for it
                pass
            except (ValueError, FileNotFoundError) as err:
                outcome["error"] = str(err)
            except Exception:  # a bug: its traceback in the log, a message (not a second traceback) in the page
                log.exception("the training failed")
                outcome["error"] = "the training failed unexpectedly (the server's log says why)"
            finally:
                SLOT.release()
                events.put(None)

        thread = threading.Thread(target=work, name=f"namecls-fit-{session[:8]}", daemon=True)
        try:
            thread.start()
        except BaseException:
            SLOT.release()
            raise
        token = COOL_DOWN.start(client)
        _STOPS[session] = stop_event
        try:
            history: list[dict] = []
            shown: dict[gr.components.Component, Any] = {
                progress: progress_html({"fraction": 0.0}, seconds), result: "", watched: None,
                download: gr.DownloadButton(visible=False)}
            yield shown
            last, last_at = {"fraction": 0.0, "epoch": 0, "seconds": 0.0}, time.monotonic()
            while True:
                try:
                    info = events.get(timeout=TICK_SECONDS)
                except queue.Empty:  # nothing new: move the bar on (and let gradio see whether the page is there)
                    yield {progress: progress_html(ticking(last, time.monotonic() - last_at, seconds), seconds)}
                    continue
                if info is None:
                    break
                last, last_at = info, time.monotonic()
                history.append(info)
                loss, accuracy = curves(history)
                shown |= {progress: progress_html(info, seconds), loss_plot: loss,
                          accuracy_plot: gr.LinePlot(value=accuracy, y_lim=accuracy_range(accuracy))}
                if info.get("watch"):
                    shown[watched] = dict(info["watch"])
                yield shown
        finally:  # the training ended, or the generator was closed (page gone, event cancelled): stop it then
            if thread.is_alive():
                abandoned.set()
            if _STOPS.get(session) is stop_event:
                del _STOPS[session]
        COOL_DOWN.finished(client, token)  # it ran to its end with the page open
        if "error" in outcome:
            raise gr.Error(esc(outcome["error"]), title="Cannot train", print_exception=False)
        mine = outcome["model"]
        TRAINED.put(session, mine)
        # The zip goes into gradio's cache (served from there, not copied), within the server's disk budget for
        # downloads (server.OUTPUT_SPACE); past it, or if it cannot be written, the model is still the session's.
        try:
            path = server.write_zip(mine, f"namecls-{kind}-yours.zip", download.GRADIO_CACHE)
            why = server.OutputSpace.FULL
        except OSError as err:
            log.warning("the trained model's zip could not be written: %s", err)
            path, why = None, "the server could not write the file"
        offer = (gr.DownloadButton(ZIP_LABEL, value=path, visible=True, interactive=True) if path else
                 gr.DownloadButton(f"No zip to download: {why} (your model is still yours in this session)",
                                   value=None, visible=True, interactive=False))
        # every output: the last yield is the answer
        yield {**shown, result: summary_md(mine, models, list(chosen), folder), download: offer,
               **{radio: gr.Radio(choices=[*MODEL_CHOICES, ("Yours", YOURS)]) for radio in radios}}

    def halt(request: gr.Request):
        event = _STOPS.get(request.session_hash or "anonymous")
        if event is not None:
            event.set()

    start.click(run, [cell, hidden, layers, lr, epochs, budget, languages, watch],
                [progress, loss_plot, accuracy_plot, watched, result, download, *radios], api_name="ui_train",
                concurrency_limit=1, concurrency_id="train", show_progress="hidden", **ui)  # the tab's own bar
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
