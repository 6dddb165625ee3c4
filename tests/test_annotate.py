"""namecls.annotate (namecls.serving.bulk): a pandas frame in, the same frame with the library's batch answers
appended out;
checked against the Classifier itself, against the app's Batch tab, and mapped over a Dask dataframe on a local
cluster of two worker processes."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pandas as pd
import pytest

import namecls
from namecls.serving import bulk, service
from namecls.serving.bulk import LIST_SEPARATOR

from conftest import PROJECT_ROOT, require_module

# Names of every kind a table holds: plain, accented, transliterated, with spaces and apostrophes, and unreadable
# ones (empty, blank, emoji only, digits, too long, not a string).
NAMES = ["Qin", "Nakamura", "O'Connell", "Müller", "Ślusàrski", "Иванов", "de la Cruz", "Smith", "Nguyen",
         "", "   ", "😀", "12345", "x" * 300, None, 42, "NA", "Brady"]


@functools.cache
def loaded(model: str) -> namecls.Classifier:
    return namecls.load(model)


def expected_answer(name, model: str, k: int) -> dict:
    """What one table row should say, computed on the Classifier itself (not through the batch path)."""
    clf = loaded(model)
    try:
        norm = service.check_name("" if name is None else name)  # a missing cell is an empty name
    except ValueError as err:
        return {"error": str(err)}
    details = clf.predict_details(norm, k)
    return {"normalized": details.normalized, "top": details.top, "low_confidence": details.low_confidence,
            "set": details.set, "seen_as": clf.seen_as(norm), "error": None}


def assert_row(row: pd.Series, want: dict, k: int) -> None:
    """One annotated row against :func:`expected_answer`."""
    if want["error"] is not None:
        assert row["error"] == want["error"]
        assert all(pd.isna(row[column]) for column in bulk.answer_dtypes(k) if column not in ("normalized", "error"))
        return
    assert pd.isna(row["error"])
    assert row["normalized"] == want["normalized"]
    for (language, probability), (lang, p) in zip(bulk.top_columns(k), want["top"], strict=True):
        assert row[language] == lang
        assert row[probability] == pytest.approx(p, rel=1e-5, abs=1e-7)
    assert bool(row["low_confidence"]) == want["low_confidence"]
    assert row["set"].split(LIST_SEPARATOR) == want["set"]
    assert row["seen_as"] == LIST_SEPARATOR.join(want["seen_as"])


@pytest.mark.slow
@pytest.mark.parametrize("model, k", [("gru", 3), ("rnn", 5), ("GRU", 1)])
def test_annotate_matches_the_classifier(model, k):
    frame = pd.DataFrame({"id": range(len(NAMES)), "surname": pd.array(NAMES, dtype=object), "city": "Lyon"},
                         index=[7, 7, 3, *range(len(NAMES) - 3)])  # a repeated, unsorted index is kept as it is
    out = namecls.annotate(frame, column="surname", model=model, k=k)
    assert list(out.columns) == [*frame.columns, *bulk.answer_dtypes(k)]
    assert out.index.equals(frame.index)
    pd.testing.assert_frame_equal(out[frame.columns], frame)
    assert {column: str(out[column].dtype) for column in bulk.answer_dtypes(k)} == bulk.answer_dtypes(k)
    for (_, row), name in zip(out.iterrows(), NAMES, strict=True):
        assert_row(row, expected_answer(name, model.lower(), k), k)


@pytest.mark.slow
def test_annotate_agrees_with_the_batch_tab():
    """The Batch tab's table (its CSV export) and annotate say the same thing about the same names."""
    from namecls.ui.tabs.batch import batch_table

    names = [name for name in NAMES if isinstance(name, str)]
    out = namecls.annotate(pd.DataFrame({"name": names}), k=3)
    tab = batch_table(service.predict_batch(service.load_models(), names, "gru", 3))
    ok = out["error"].isna()
    assert out["top1"].fillna("").tolist() == tab["top-1"].tolist()
    assert out["probability"].round(4).tolist() == pytest.approx(tab["probability"].tolist(), abs=1e-4, nan_ok=True)
    assert [s.replace(LIST_SEPARATOR, " or ") if good else "" for s, good in zip(out["set"], ok)] == \
        tab["prediction set"].tolist()
    assert [s.replace(LIST_SEPARATOR, ", ") if good else "" for s, good in zip(out["seen_as"], ok)] == \
        tab["in training as"].tolist()
    assert out["error"].fillna("").tolist() == tab["error"].tolist()


def test_an_empty_frame_gives_the_meta():
    frame = pd.DataFrame({"surname": pd.Series(["Qin"], dtype="str"), "n": [1]})
    meta = namecls.annotate(frame.iloc[:0], column="surname", k=2)
    full = namecls.annotate(frame, column="surname", k=2)
    assert len(meta) == 0
    pd.testing.assert_series_equal(meta.dtypes, full.dtypes)


@pytest.mark.slow
def test_more_names_than_one_library_batch():
    """annotate runs the library's batch path on at most MAX_BATCH_NAMES names at a time; rows stay in order."""
    names = ["Qin", "Nakamura", "", "Smith"] * (service.MAX_BATCH_NAMES // 4 + 100)
    out = namecls.annotate(pd.DataFrame({"name": names}), model="rnn", k=1)
    assert len(out) == len(names) > service.MAX_BATCH_NAMES
    firsts = {name: expected_answer(name, "rnn", 1) for name in set(names)}
    for position in (0, 1, 2, 3, service.MAX_BATCH_NAMES - 1, service.MAX_BATCH_NAMES, len(names) - 1):
        assert_row(out.iloc[position], firsts[names[position]], 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"column": "surname"}, "no column 'surname'"),
    ({"model": "lstm"}, "unknown model 'lstm'"),
    ({"k": 0}, "k must be a whole number from 1 to 18"),
    ({"k": "3"}, "k must be a whole number"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        namecls.annotate(pd.DataFrame({"name": ["Qin"]}), **kwargs)


def test_a_table_that_already_has_answer_columns_is_refused():
    with pytest.raises(ValueError, match=r"already has answer columns \(top1, set\)"):
        namecls.annotate(pd.DataFrame({"name": ["Qin"], "top1": ["x"], "set": ["y"]}))


@pytest.mark.slow
def test_import_namecls_stays_light():
    """pandas comes with namecls.annotate, not with ``import namecls``."""
    code = ("import sys, namecls; assert 'pandas' not in sys.modules, 'pandas imported'; "
            "assert namecls.annotate.__module__ == 'namecls.serving.bulk'; assert 'pandas' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def _cache_info():
    """Run on each worker: how often this process loaded a checkpoint (misses) and reused it (hits)."""
    return bulk.classifier.cache_info()._asdict()


@pytest.mark.cluster
@pytest.mark.timeout(600)
def test_dask_local_cluster_gives_the_single_process_answers(tmp_path, names_data, monkeypatch):
    """~100,000 names in 10 Parquet files through ``map_partitions(namecls.annotate)`` on a LocalCluster of two
    worker processes (one thread each): row for row what one process computes; each worker loads the checkpoint
    once, not once per partition."""
    dd = require_module("dask.dataframe")
    distributed = require_module("distributed")
    from dask.dataframe.utils import make_meta

    names = (names_data.names * 5)[:99_990] + ["", "😀", "Ślusàrski", "Иванов", "x" * 300, "NA", "de la Cruz",
                                                "O'Connell", "   ", "12345"]
    files, per_file = 10, 10_000  # a partition per file, one library batch per partition
    for i in range(files):
        part = names[i * per_file : (i + 1) * per_file]
        pd.DataFrame({"id": range(i * per_file, i * per_file + len(part)), "surname": part}).to_parquet(
            tmp_path / f"part-{i:02d}.parquet", index=False)
    # The workers are fresh interpreters: they import this checkout's namecls.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        ddf = dd.read_parquet(tmp_path)
        assert ddf.npartitions == files
        meta = namecls.annotate(make_meta(ddf), column="surname", model="rnn")
        result = ddf.map_partitions(namecls.annotate, column="surname", model="rnn", meta=meta).compute()
        table = ddf.compute()
        loads = client.run(_cache_info)
    expected = namecls.annotate(table, column="surname", model="rnn")
    assert len(result) == len(names)
    pd.testing.assert_frame_equal(result, expected)
    assert result["error"].notna().sum() == 5  # "", "😀", "x" * 300, "   ", "12345"
    assert len(loads) == 2 and all(info["misses"] == 1 for info in loads.values()), loads
    # every partition looked the model up; only the first on each worker loaded it
    assert sum(info["hits"] for info in loads.values()) >= files * 2 - len(loads), loads
