"""The app's endpoint logic as plain functions: checked inputs in, JSON-able data out, ``ValueError`` on bad input.

No gradio here: ``app.py`` wraps these functions (turning ``ValueError`` into ``gr.Error``) and tests call them
directly. ``models`` is always a ``{"rnn": Classifier, "gru": Classifier}`` mapping (see :func:`load_models`).
"""

from __future__ import annotations

import csv
import io
import numbers
import os
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from ..posthoc import prior as prior_rule
from ..posthoc.conformal import CONFIG as CONFORMAL
from ..data.names import ALPHABET, Normalized, check_normalized, check_raw, normalize, printable
from ..inference import MODEL_NAMES, Classifier, _top_k_rows, load
from ..errors import InputError

MAX_BATCH_NAMES = 10_000  # names per batch, uploaded, pasted or sent to /predict_batch
MAX_UPLOAD_BYTES = 1024 * 1024  # size of an uploaded file, 1 MB (app.py gives the server the same max_file_size)
UPLOAD_TYPES = (".csv", ".txt")
NAME_HEADERS = {"name", "names", "surname", "surnames", "last_name", "lastname", "last name", "family_name",
                "family name"}
_PUNCTUATION = "".join(c for c in ALPHABET if not c.isalpha())


def load_models(folder: str | os.PathLike | None = None) -> dict[str, Classifier]:
    """Both classifiers: the committed checkpoints, or ``folder/rnn`` and ``folder/gru``."""
    return {kind: load(kind if folder is None else Path(folder) / kind) for kind in MODEL_NAMES}


def _preview(value, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a message (a huge value is not echoed back whole)."""
    try:
        text = repr(value)
    except ValueError:  # e.g. an int with more digits than Python will print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pick_model(models: Mapping[str, Classifier], model) -> Classifier:
    """The classifier named ``model``: exactly one of the keys of ``models`` ("rnn", "gru"), in any case; nothing
    around it (no surrounding spaces or newlines)."""
    if isinstance(model, str) and model.isascii() and model.lower() in models:
        return models[model.lower()]
    raise InputError(f"unknown model {_preview(model)}: choose one of {', '.join(repr(m) for m in models)}")


def check_k(k, n_labels: int) -> int:
    """``k`` as an int in 1 … n_labels. Only an integer is accepted: not a bool, a float (even 3.0), a string
    ("3", "1e1", "1_0") or anything else. (JSON ``3`` arrives as an int from gradio_client and raw REST alike.)"""
    # (type: ignore: typeshed's numbers.Integral declares no __ge__, which `1 <= k` needs; int and NumPy's have it)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n_labels:  # type: ignore[operator]
        raise InputError(f"k must be a whole number from 1 to {n_labels}, not {_preview(k)}")
    return int(k)


def check_coverage(coverage) -> float:
    """``coverage`` as a float in the range the prediction sets accept (0.5 … 0.99 by default)."""
    low, high = CONFORMAL.coverage_range
    try:
        value = float(coverage)
    except (TypeError, ValueError):
        raise InputError(f"coverage must be a number from {low} to {high}, not {coverage!r}") from None
    if isinstance(coverage, bool) or not low <= value <= high:  # NaN fails the comparison too
        raise InputError(f"coverage must be a number from {low} to {high}, not {coverage!r}")
    return value


def check_name(name) -> Normalized:
    """:func:`namecls.data.names.validate` with a clearer message for input made only of emoji or symbols; the result is
    what the Classifier methods take, so the name is normalised once per request. A :class:`Normalized` (from an
    earlier call) is checked again but not normalised again."""
    if isinstance(name, Normalized):
        return _check_normalized(name)
    return _check_normalized(normalize(check_raw(name)))


def _check_normalized(norm: Normalized) -> Normalized:
    """:func:`namecls.data.names.check_normalized` with :func:`check_name`'s messages; no second normalisation."""
    try:
        return check_normalized(norm)
    except ValueError:
        if norm.original.strip() and not norm.text.strip(_PUNCTUATION) and not norm.dropped:
            raise InputError("name has no letters the models can read (emoji and other symbols are "
                             "dropped)") from None
        raise


def check_prior(clf: Classifier, prior) -> str:
    """``prior`` as one of the priors ``clf`` answers under (:mod:`namecls.posthoc.prior`); ``ValueError`` otherwise.
    None (an API call that leaves it out) is the default, the lists'."""
    prior = prior_rule.check(prior_rule.DEFAULT if prior is None else prior)
    if prior not in clf.priors:
        raise InputError(f"the {prior!r} prior needs validation data this model does not have: "
                         f"use {', '.join(repr(p) for p in clf.priors)}")
    return prior


def predict(models, name: str | Normalized, model: str = "gru", k: int = 3,
            prior: str = prior_rule.DEFAULT) -> dict[str, float]:
    """{language: probability} for the k most probable languages, most probable first, under ``prior``."""
    clf = pick_model(models, model)
    k = check_k(k, len(clf.labels))
    prior = check_prior(clf, prior)
    return {lang: float(p) for lang, p in clf.predict(check_name(name), k, prior)}


def predict_details(models, name: str | Normalized, model: str = "gru", k: int = 3,
                    coverage: float = CONFORMAL.coverage, prior: str = prior_rule.DEFAULT) -> dict:
    """:func:`predict` plus how sure the network is: top probability, entropy (nats), the low-confidence flag,
    the prediction set at ``coverage`` (languages, most probable first; None without conformal data) and the
    languages this exact name had in the training split (``seen_as``; [] unseen, None without the table); every
    probability and the set under ``prior`` (:mod:`namecls.posthoc.prior`: "lists", the default, or "equal")."""
    clf = pick_model(models, model)
    k = check_k(k, len(clf.labels))
    coverage = check_coverage(coverage)
    prior = check_prior(clf, prior)
    return details(clf, check_name(name), k, coverage, prior)


def details(clf: Classifier, norm: Normalized, k: int = 3, coverage: float = CONFORMAL.coverage,
            prior: str = prior_rule.DEFAULT) -> dict:
    """:func:`predict_details`'s answer for a name :func:`check_name` has already passed (``norm``, neither
    normalised nor checked again: a request checks its name once) and arguments already checked (``k``:
    :func:`check_k`, ``coverage``: :func:`check_coverage`, ``prior``: :func:`check_prior`)."""
    d = clf.predict_details(norm, k, coverage, prior)
    return {
        "name": norm.original,  # what was typed
        "normalized": d.normalized,
        "model": clf.kind,
        "top": {lang: float(p) for lang, p in d.top},
        "top_probability": d.top_probability,
        "entropy": d.entropy,
        "low_confidence": d.low_confidence,
        "threshold": float(clf.low_confidence_rule["threshold"]),
        "set": d.set,
        "coverage": d.coverage,
        "seen_as": d.seen_as,
        "novelty": d.novelty,
        "unfamiliar": d.unfamiliar,
        "prior": d.prior,
    }


def trace(models, name: str | Normalized, model: str = "gru", prior: str = prior_rule.DEFAULT) -> dict:
    """The prediction after every prefix and the (top layer's) hidden state after every character, as lists; the
    prediction's entropy after every prefix, the whole name's low-confidence flag, the state's position on the
    model's 2-D map after every character (None if the checkpoint has no map), each character's attribution and
    leave-one-out effect on the final answer's log-probability, the nearest reference training names after
    every character (None if the checkpoint has no reference bank), the prediction set after every prefix at the
    default coverage (None without conformal data), and the whole name's languages in the training split; every
    probability and set under ``prior``."""
    clf = pick_model(models, model)
    prior = check_prior(clf, prior)
    t = clf.trace(check_name(name), prior)
    return {
        "name": getattr(name, "original", name),  # a Normalized from check_name: what was typed
        "normalized": t.normalized.text,
        "model": clf.kind,
        "labels": list(t.labels),
        "chars": list(t.chars),
        "story": t.story,  # [3-6 sentences]: how the network read the name, every number from this trace
        "probs": t.probs.astype(float).tolist(),  # [T][18]
        "hidden": t.hidden.astype(float).tolist(),  # [T][H]
        "entropy": t.entropy.astype(float).tolist(),  # [T]
        "low_confidence": clf.is_low_confidence(t.probs[-1]),
        "map": None if t.map_points is None else t.map_points.astype(float).tolist(),  # [T][2]
        "attribution": t.attribution.astype(float).tolist(),  # [T]
        "deletion": None if t.deletion is None else t.deletion.astype(float).tolist(),  # [T]
        "neighbours": None if t.neighbours is None else  # [T][n]
        [[{"name": nb.name, "language": nb.language, "distance": nb.distance} for nb in step] for step in t.neighbours],
        "sets": t.sets,  # [T][m]
        "coverage": CONFORMAL.coverage,
        "seen_as": t.seen_as,
        "novelty": t.novelty,
        "unfamiliar": t.unfamiliar,
        "prior": t.prior,
        "edits": [{key: e[key] for key in ("name", "edit", "top", "probability")}
                  for e in clf.edits(t.normalized, prior=prior)],
        "contributions": _contributions(t),
        "gradient": None if t.gradient is None else t.gradient.norms.astype(float).tolist(),  # [T]: |d log p / d h_t|
        "gates": None if t.gates is None or "update" not in t.gates else  # [L][T][H]; null for the RNN (no gates)
        {key: np.asarray(t.gates[key]).astype(float).tolist() for key in ("update", "reset")},
    }


def _contributions(t) -> dict | None:
    """The final answer's logit split over the units (namecls.explain.cell.contributions), JSON-able, languages by
    name."""
    c = t.contributions
    if c is None:
        return None
    return {"language": t.labels[c["language"]], "logit": c["logit"], "bias": c["bias"], "input": c["input"],
            "units": [{k: u[k] for k in ("layer", "unit", "state", "weight", "contribution")} for u in c["units"]]}


BATCH_KEYS = ("name", "normalized", "top1", "probability", "top_k", "low_confidence", "set", "seen_as", "error")


def predict_batch(models, names, model: str = "gru", k: int = 3, prior: str = prior_rule.DEFAULT) -> list[dict]:
    """One row per name, in order: name, normalized, top1, probability, top_k {language: p}, low_confidence
    (the checkpoint's "not sure" flag, as :func:`predict_details`), set (the prediction set at the default
    coverage), seen_as (its languages in the training split), error.

    A name that cannot be classified gets ``error`` (a message) and empty predictions; it does not fail the batch.
    Every probability and set under ``prior``.
    """
    clf = pick_model(models, model)
    k = check_k(k, len(clf.labels))
    prior = check_prior(clf, prior)
    if not isinstance(names, (list, tuple)):
        raise InputError(f"names must be a list of strings, not {type(names).__name__}")
    if len(names) > MAX_BATCH_NAMES:
        raise InputError(f"{len(names):,} names is too many: at most {MAX_BATCH_NAMES:,} per batch")
    rows: list[dict[str, Any]] = []
    good: list[tuple[int, Normalized]] = []
    for name in names:
        norm = None
        try:  # one normalisation per name, good or bad: the row's "normalized" text is the one checked
            norm = normalize(check_raw(name))
            _check_normalized(norm)
        except ValueError as err:
            shown = printable(name) if isinstance(name, str) else _preview(name, 100)
            rows.append({"name": shown[:100], "normalized": "" if norm is None else norm.text, "top_k": {},
                         "error": str(err)})
            continue
        good.append((len(rows), norm))
        rows.append({"name": name, "normalized": norm.text, "error": None})
    if good:
        # All C probabilities of each name: the flag and the set need the whole distribution, the answer its top k
        probs = clf.probabilities([norm for _, norm in good], prior=prior)  # (N, C)
        flags = cast(np.ndarray, clf.is_low_confidence(probs))  # rows: an array
        sets = clf.sets(probs, prior=prior)
        for j, ((i, norm), top, flag) in enumerate(zip(good, _top_k_rows(probs, clf.labels, k), flags)):
            rows[i].update(top1=top[0][0], probability=float(top[0][1]),
                           top_k={lang: float(p) for lang, p in top}, low_confidence=bool(flag),
                           set=None if sets is None else sets[j], seen_as=clf.seen_as(norm))
    return [{key: row.get(key) for key in BATCH_KEYS} for row in rows]


# ---------------------------------------------------------------------------------------------------------------
# Batch input and output


def read_names_file(path: str | os.PathLike) -> list[str]:
    """Names from an uploaded ``.txt`` (one a line) or ``.csv`` (a name/surname column, else the first column):
    :func:`read_upload_text`, then :func:`parse_csv` or :func:`parse_lines`. Blank lines are skipped
    (:func:`blank_rows` counts them). Raises ``ValueError`` as those do, or for more than ``MAX_BATCH_NAMES`` names."""
    return read_upload(path)[0]


def read_upload(path: str | os.PathLike) -> tuple[list[str], int]:
    """:func:`read_names_file`'s names, and how many blank rows it skipped (:func:`blank_rows`)."""
    text = read_upload_text(path)
    is_csv = Path(path).suffix.lower() == ".csv"
    return (parse_csv(text) if is_csv else parse_lines(text)), blank_rows(text, is_csv)


def read_upload_text(path: str | os.PathLike) -> str:
    """The text of an uploaded ``.txt`` or ``.csv``: UTF-8 (a BOM is allowed) or UTF-16 with a BOM. Raises
    ``ValueError`` for a wrong type, an oversized or binary file, or another encoding (naming the first line in it)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in UPLOAD_TYPES:
        raise InputError(f"{path.name!r} is not a .csv or .txt file")
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise InputError(f"{path.name!r} is {size / 2**20:.1f} MB: the limit is {MAX_UPLOAD_BYTES / 2**20:g} MB")
    raw = path.read_bytes()
    # UTF-16 with a byte-order mark is what spreadsheets save as "Unicode text": read it rather than call it binary.
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    if encoding == "utf-8-sig" and b"\x00" in raw:
        raise InputError(f"{path.name!r} is not a text file")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(f"{path.name!r} is not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text (line {line} is "
                         "in another encoding): "
                         "save it as UTF-8 and upload it again") from None
    if "\x00" in text:
        raise InputError(f"{path.name!r} is not a text file")
    return text


def blank_rows(text: str, is_csv: bool = False) -> int:
    """How many rows of ``text`` the readers above skip as blank (a CSV row whose cells are all blank), not
    counting blank lines after the last name: what a page says it left out."""
    if is_csv:
        try:
            blank = [not any(cell.strip() for cell in row) for row in csv.reader(io.StringIO(text))]
        except csv.Error:
            return 0
    else:
        blank = [not line.strip() for line in str(text).splitlines()]
    while blank and blank[-1]:
        blank.pop()
    return sum(blank)


def parse_lines(text: str) -> list[str]:
    """One name per non-blank line (surrounding whitespace stripped)."""
    names = [line.strip() for line in str(text).splitlines() if line.strip()]
    _check_count(len(names))
    return names


def parse_csv(text: str) -> list[str]:
    """The name column of CSV text: a column headed name/surname/…, else the first column; blank rows skipped."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise InputError(f"could not read the CSV: {err}") from None
    column = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        for i, cell in enumerate(header):
            if cell in NAME_HEADERS:
                column, rows = i, rows[1:]
                break
    names = [row[column].strip() if column < len(row) else "" for row in rows]
    _check_count(len(names))
    return names


def _check_count(n: int) -> None:
    if n > MAX_BATCH_NAMES:
        raise InputError(f"{n:,} names is too many: at most {MAX_BATCH_NAMES:,} per batch")


_EXPORT_DIR: Path | None = None


_FORMULA_SIGNS = ("=", "+", "-", "@")  # a cell starting with one (even after blanks) may run as a formula


def _defuse(value):
    """Keep a spreadsheet from running a cell as a formula: user text whose first character, after any leading
    whitespace or invisible format characters, is = + - @ or a full-width or small form of one (＝ ＋ － ＠ ﹦ …),
    or that starts with a tab or carriage return, gets a leading apostrophe."""
    if not isinstance(value, str):
        return value
    if value[:1] in ("\t", "\r"):
        return "'" + value
    for char in value:
        if char.isspace() or unicodedata.category(char) == "Cf":
            continue
        if unicodedata.normalize("NFKC", char)[:1] in _FORMULA_SIGNS:
            return "'" + value
        break
    return value


def is_text(dtype) -> bool:
    """Whether a column's cells are text (str, object, category, Arrow string or dictionary-encoded string)."""
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow  # an Arrow column means pyarrow is there

        return pd.api.types.is_string_dtype(dtype) or pyarrow.types.is_dictionary(dtype.pyarrow_dtype)
    return pd.api.types.is_string_dtype(dtype)


def defused(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell that a spreadsheet would run as a formula (= + - @ first, or a tab or
    carriage return) quoted with a leading apostrophe (:func:`_defuse`); the column names too."""
    safe = frame.copy(deep=False)
    safe.columns = [_defuse(name) for name in frame.columns]
    for i, dtype in enumerate(frame.dtypes):
        if is_text(dtype):
            safe.isetitem(i, frame.iloc[:, i].map(_defuse))
    return safe


def _has_carriage_return(frame: pd.DataFrame) -> bool:
    """Whether a text cell (or a column name) holds a carriage return, which ``to_csv`` (lines ending in \\n) would
    leave unquoted, so that a reader or spreadsheet splits the row there."""
    def cr(value):
        return isinstance(value, str) and "\r" in value

    return any(map(cr, frame.columns)) or any(frame.iloc[:, i].map(cr).any()
                                              for i, dtype in enumerate(frame.dtypes) if is_text(dtype))


def write_table(frame: pd.DataFrame, handle, separator: str = ",", header: bool = True, defuse: bool = True) -> None:
    """Write ``frame`` to the text ``handle`` as CSV (or TSV), the one writer of the Batch tab's download and of
    ``namecls batch``: with ``defuse``, formula-like text cells defused (:func:`defused`); a frame with a carriage
    return in a cell is written with every text cell quoted, so the cell stays whole."""
    frame = defused(frame) if defuse else frame
    frame.to_csv(handle, sep=separator, index=False, header=header,
                 quoting=csv.QUOTE_NONNUMERIC if _has_carriage_return(frame) else csv.QUOTE_MINIMAL)


def csv_bytes(table: pd.DataFrame) -> bytes:
    """``table`` as the bytes of a CSV file (:func:`write_table`), UTF-8 with a byte-order mark. Made in memory, so
    that its size is known before anything is written (the server reserves it on disk first)."""
    text = io.StringIO()
    write_table(table, text)
    return text.getvalue().encode("utf-8-sig")  # the BOM tells Excel it is UTF-8 (Ślusàrski, Иванов)


def write_csv(table: pd.DataFrame, stem: str = "namecls-batch", max_age: float = 3600.0) -> str:
    """Write ``table`` (:func:`csv_bytes`) to a fresh CSV file in this process's export folder; files older than
    ``max_age`` go. (The app's Batch tab writes its exports into gradio's cache instead, within a disk budget:
    ``namecls.ui.server.write_export``.)"""
    global _EXPORT_DIR
    if _EXPORT_DIR is None or not _EXPORT_DIR.is_dir():
        _EXPORT_DIR = Path(tempfile.mkdtemp(prefix="namecls-export-"))
    now = time.time()
    for old in _EXPORT_DIR.glob("*.csv"):
        try:
            if now - old.stat().st_mtime > max_age:
                old.unlink()
        except OSError:
            pass
    path = _EXPORT_DIR / f"{stem}-{uuid.uuid4().hex[:8]}.csv"
    path.write_bytes(csv_bytes(table))
    return str(path)
