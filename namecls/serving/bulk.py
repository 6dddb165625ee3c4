"""Names in bulk as table columns: the answers of the library's batch path,
:func:`namecls.serving.service.predict_batch`,
laid out flat beside a table's own columns.

:func:`annotate` (pandas in, pandas out) is the unit of work of ``namecls batch`` (one chunk of a file at a time)
and of a Dask dataframe (``ddf.map_partitions(namecls.annotate, ...)``, one partition at a time). The answer columns,
in order, with their pandas dtypes (:func:`answer_dtypes`):

- ``normalized`` (str): the text the model read;
- ``top1``, ``probability``, then ``top2``, ``probability2`` … ``top{k}``, ``probability{k}``: the k most probable
  languages, most probable first, with their (calibrated) probabilities (str, float64);
- ``low_confidence`` (boolean): the checkpoint's "not sure" flag;
- ``set`` (str): the prediction set at the default coverage, languages joined by ``;``;
- ``seen_as`` (str): the name's languages in the training split, joined by ``;`` (empty: not a training name);
- ``error`` (str): why a name could not be read (the library's message); the row's answers are then missing.
  A missing cell (None, NaN, NA) is an empty name.

A process loads each committed checkpoint once (:func:`classifier`), however many frames it annotates: on a Dask
cluster, once per worker.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import pandas as pd

from . import service
from ..inference import MODEL_NAMES, Classifier, load
from ..errors import InputError

LIST_SEPARATOR = ";"


@functools.lru_cache(maxsize=None)
def classifier(kind: str) -> Classifier:
    """The committed ``kind`` checkpoint ("rnn" or "gru"), loaded on the first call of this process and kept."""
    return load(kind)


class _CommittedModels(Mapping):
    """The committed classifiers by name, as :mod:`namecls.serving.service` takes them, each loaded only when picked."""

    def __getitem__(self, kind: str) -> Classifier:
        if kind not in MODEL_NAMES:
            raise KeyError(kind)
        return classifier(kind)

    def __contains__(self, kind) -> bool:
        return kind in MODEL_NAMES

    def __iter__(self):
        return iter(MODEL_NAMES)

    def __len__(self) -> int:
        return len(MODEL_NAMES)


MODELS = _CommittedModels()


def top_columns(k: int) -> list[tuple[str, str]]:
    """(language column, probability column) of each of the k answers, most probable first."""
    return [(f"top{i}", "probability" if i == 1 else f"probability{i}") for i in range(1, k + 1)]


def answer_dtypes(k: int) -> dict[str, str]:
    """The answer columns :func:`annotate` appends for top-``k`` answers, in order, with their pandas dtypes."""
    dtypes = {"normalized": "str"}
    for language, probability in top_columns(k):
        dtypes.update({language: "str", probability: "float64"})
    dtypes.update({"low_confidence": "boolean", "set": "str", "seen_as": "str", "error": "str"})
    return dtypes


def _joined(languages: list[str] | None) -> str | None:
    return None if languages is None else LIST_SEPARATOR.join(languages)


def check_k(model: str, k) -> int:
    """``k`` checked against the number of languages of ``model`` (itself checked: "rnn" or "gru")."""
    return service.check_k(k, len(service.pick_model(MODELS, model).labels))


def _columns(rows: list[dict], k: int) -> pd.DataFrame:
    """Rows of :func:`namecls.serving.service.predict_batch` as the answer columns."""
    tops = [list(row["top_k"].items()) for row in rows]
    columns = {"normalized": [row["normalized"] for row in rows]}
    for i, (language, probability) in enumerate(top_columns(k)):
        columns[language] = [top[i][0] if top else None for top in tops]
        columns[probability] = [top[i][1] if top else None for top in tops]
    columns["low_confidence"] = [row["low_confidence"] for row in rows]
    columns["set"] = [_joined(row["set"]) for row in rows]
    columns["seen_as"] = [_joined(row["seen_as"]) for row in rows]
    columns["error"] = [row["error"] for row in rows]
    return pd.DataFrame({name: pd.array(columns[name], dtype=dtype) for name, dtype in answer_dtypes(k).items()})


def answers(names: list, model: str = "gru", k: int = 3, prior: str = "lists") -> pd.DataFrame:
    """The answer columns (see the module's docstring) of ``names``, one row per name, in order (a fresh
    ``RangeIndex``): :func:`namecls.serving.service.predict_batch` on at most ``MAX_BATCH_NAMES`` names at a time.
    ``ValueError`` for an unknown model, a bad ``k`` or ``prior`` (:mod:`namecls.posthoc.prior`); a name that cannot
    be read
    only gets its ``error``."""
    k = check_k(model, k)
    step = service.MAX_BATCH_NAMES
    parts = [_columns(service.predict_batch(MODELS, names[start : start + step], model, k, prior), k)
             for start in range(0, len(names), step)]
    return pd.concat(parts or [_columns([], k)], ignore_index=True)


def annotate(df: pd.DataFrame, column: str = "name", model: str = "gru", k: int = 3,
             prior: str = "lists") -> pd.DataFrame:
    """``df`` with the answer columns for the names in ``column`` appended (see the module's docstring); its own
    columns, index and row order kept. An empty ``df`` gives the empty result with the right dtypes: the ``meta``
    of ``ddf.map_partitions(namecls.annotate, ...)``. ``ValueError`` for a missing column, an answer column that
    ``df`` already has, an unknown model, a bad ``k`` or ``prior``; every answer under ``prior`` (:mod:`namecls.
    prior`: "lists", the default, or "equal")."""
    if column not in df.columns:
        raise InputError(f"no column {column!r} (the columns are: {', '.join(map(str, df.columns)) or 'none'})")
    clash = [name for name in answer_dtypes(check_k(model, k)) if name in df.columns]
    if clash:
        raise InputError(f"the table already has answer columns ({', '.join(clash)}): rename them first")
    names = df[column]
    found = answers(names.astype(object).where(names.notna(), "").tolist(), model, k, prior)
    return df.assign(**{name: found[name].array for name in found.columns})
