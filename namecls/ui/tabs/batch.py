"""Tab "Batch": classify a file or a pasted list of names; a table to read and a CSV to download. If "Yours" is
chosen after the server let the session's model go, the tab says so in place of a table, and its radio stops
offering it. The CSV counts against the server's disk budget for downloads and the client's export rate
(namecls/ui/server.py): past either the table is still shown and the download button says why there is no file."""

from __future__ import annotations

import math

import gradio as gr
import pandas as pd

from ...serving import service
from .. import server
from ..common import DEFAULT_MODEL, MODEL_CHOICES, TOP_K, gone_notice, set_facts, stop_offering_gone, user_errors
from ..render.html import MODEL_LABELS, percent, set_record
from ..yours import session_models
from ...errors import InputError

DOWNLOAD_LABEL = "Download CSV"
# "error" beside the name: a row that could not be read says why where it is seen, on a phone too.
COLUMNS = ["name", "error", "normalised", "top-1", "probability", "prediction set", "in training as", f"top-{TOP_K}"]


def batch_table(rows: list[dict]) -> pd.DataFrame:
    """Result rows of :func:`namecls.serving.service.predict_batch` → the table the tab shows and exports."""
    records = []
    for row in rows:
        ok = row.get("error") is None
        records.append({
            "name": row["name"],
            "normalised": row.get("normalized") or "",
            "top-1": row["top1"] if ok else "",
            "probability": round(float(row["probability"]), 4) if ok else math.nan,
            "prediction set": " or ".join(row["set"] or []) if ok else "",
            "in training as": ", ".join(row["seen_as"] or []) if ok else "",
            f"top-{TOP_K}": " · ".join(f"{lang} {percent(p)}" for lang, p in row["top_k"].items()) if ok else "",
            "error": "" if ok else row["error"],
        })
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def sources_note(n_file: int, n_text: int, skipped: int) -> str:
    """What went into the table besides the count: the file's and the pasted names when both were given (they are
    classified together), and the blank lines left out."""
    parts = []
    if n_file and n_text:
        parts.append(f"{n_file:,} from the file and {n_text:,} pasted, in that order")
    if skipped:
        parts.append(f"{skipped:,} blank {'line' if skipped == 1 else 'lines'} skipped")
    return f" ({'; '.join(parts)}.)" if parts else ""


def build(models: dict, ui: dict, prior: gr.Radio) -> gr.Radio:
    """Lay out the tab and wire its event (answering under the page's ``prior``); returns its model choice (the
    Train tab adds "Yours" to it)."""
    limit_mb = service.MAX_UPLOAD_BYTES / 2**20
    with gr.Tab("Batch", id="batch"):
        gr.Markdown(f"Upload a **.csv** (a column headed *name* or *surname*, else the first column) or a **.txt** "
                    f"file (one name a line) of at most **{limit_mb:g} MB** and **{service.MAX_BATCH_NAMES:,} "
                    f"names**, or paste names below. The *prediction set* and *in training as* columns give the "
                    f"same answers as the other tabs; names that cannot be read are reported in the *error* "
                    f"column. The CSV is UTF-8 with a byte-order mark, so spreadsheets read every letter.")
        with gr.Row():
            upload = gr.File(label=f".csv or .txt, ≤ {limit_mb:g} MB, ≤ {service.MAX_BATCH_NAMES:,} names",
                             file_types=list(service.UPLOAD_TYPES), type="filepath", elem_id="batch-file",
                             min_width=240)
            pasted = gr.Textbox(label="…or paste names, one per line", lines=6, max_lines=12, elem_id="batch-text",
                                min_width=240)
        with gr.Row():
            model = gr.Radio(MODEL_CHOICES, value=DEFAULT_MODEL, label="Model", elem_id="batch-model", min_width=140)
            button = gr.Button("Classify all", variant="primary", elem_id="batch-btn", min_width=140)
        summary = gr.Markdown(elem_id="batch-summary")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="batch-table", max_height=420, wrap=True)
        download = gr.DownloadButton(DOWNLOAD_LABEL, visible=False, elem_id="batch-download")

    def run(file, text, kind, prior_value="lists", request: gr.Request | None = None):
        gone = gone_notice(kind, request)
        if gone is not None:  # "Yours", no longer on the server: why, and no table of an earlier batch
            return {summary: gone, table: pd.DataFrame(columns=COLUMNS), download: gr.DownloadButton(visible=False)}
        with user_errors():
            from_file, skipped = service.read_upload(file) if file else ([], 0)
            from_text = service.parse_lines(text) if text and text.strip() else []
            skipped += service.blank_rows(text or "")
            names = from_file + from_text
            if len(names) > service.MAX_BATCH_NAMES:
                raise InputError(f"{len(names):,} names is too many: at most {service.MAX_BATCH_NAMES:,} per batch")
            if not names:  # not an error: one plain message, and no stale table
                return {summary: "Nothing to classify yet: upload a .csv or .txt file, or paste names one per line.",
                        table: pd.DataFrame(columns=COLUMNS), download: gr.DownloadButton(visible=False)}
            rows = service.predict_batch(session_models(models, request), names, kind, TOP_K, prior_value)
        result = batch_table(rows)
        errors = int((result["error"] != "").sum())
        several = int(result["prediction set"].str.contains(" or ").sum())
        seen = int((result["in training as"] != "").sum())
        odds = " expecting every language equally" if prior_value == "equal" else ""
        text_out = (f"**{len(result):,}** names classified with the {MODEL_LABELS[kind]}{odds}; **{several:,}** with "
                    f"more than one language in their prediction set; **{seen:,}** in the training lists"
                    + (f"; **{errors:,}** could not be read (see the error column)." if errors else ".")
                    + sources_note(len(from_file), len(from_text), skipped)
                    + "\n\n" + set_record(set_facts(session_models(models, request)[kind], prior_value)))
        stem = kind if prior_value == "lists" else f"{kind}-{prior_value}"  # the file says which prior it holds
        return {summary: text_out, table: result, download: export(result, stem, request)}

    def export(result: pd.DataFrame, kind: str, request) -> gr.DownloadButton:
        """The download of ``result``'s CSV, written into gradio's cache (served from there, not copied) within the
        server's disk budget and the client's export rate; past either the button says why, and nothing is written
        (namecls/ui/server.py)."""
        wait = server.export_wait(request)
        if wait > 0:
            why = (f"too many CSV exports from your address (at most {server.EXPORT_RATE.per_minute:g} a minute), "
                   f"try again in {math.ceil(wait)} s")
            path = None
        else:
            path = server.write_export(result, f"namecls-{kind}", download.GRADIO_CACHE)
            why = server.OutputSpace.FULL
        if path is None:
            return gr.DownloadButton(f"No CSV file: {why}", value=None, visible=True, interactive=False)
        return gr.DownloadButton(DOWNLOAD_LABEL, value=path, visible=True, interactive=True)

    # the prior last: a client call without it classifies under the lists' prior
    ran = button.click(run, [upload, pasted, model, prior], [summary, table, download], api_name="ui_batch", **ui)
    stop_offering_gone([ran], model, "ui_batch_choices", **ui)
    return model
