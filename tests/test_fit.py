"""namecls.training.fit: training in memory on the tiny made-up data (languages, limits, progress, stop, determinism),
the
returned classifier (predict, trace, sets, save/load), checkpoint zips (round trip and refusals), and the training
hooks' schedule. No timing asserts: the machine is shared."""

from __future__ import annotations

import math
import threading
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch

import namecls
from namecls import checkpoint
from namecls.training.fit import FIT_DEFAULTS
from namecls.training.loop import one_cycle

from conftest import tiny_names, without_timings

SMALL = {"hidden_size": 16, "batch_size": 16}  # fast on 160 names



def _all_names() -> list[str]:
    return [name for names in tiny_names().values() for name in names]


def _probs(clf, names):
    """Calibrated probabilities (N, C) of ``names`` in label order."""
    return np.array([[p for _, p in sorted(top, key=lambda lp: clf.labels.index(lp[0]))]
                     for top in clf.predict_batch(names, k=len(clf.labels))])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One 3-epoch fit on all 4 made-up languages, with its progress calls (read-only for the tests)."""
    from conftest import write_tiny_data

    data = write_tiny_data(tmp_path_factory.mktemp("fit") / "names")
    calls = []
    clf = namecls.fit(data, epochs=3, on_progress=calls.append, **SMALL)
    return data, clf, calls


def test_languages_subset_in_data_order(tiny_data_dir):
    clf = namecls.fit(tiny_data_dir, languages=["Orcish", "Dwarvish"], epochs=1, **SMALL)
    assert clf.labels == ["Dwarvish", "Orcish"] == clf.metrics["languages"] == clf.config["languages"]
    assert clf.model.config.num_classes == 2
    assert {lang for lang, _ in clf.predict("Gorbag", k=5)} == {"Dwarvish", "Orcish"}
    # the clean split restricted: 80 of the 160 names, each in the part it has in the full split
    assert sum(clf.metrics["split_sizes"].values()) == 80
    assert clf.training_names.seen_as("Gorbag") in ([], ["Orcish"])
    elvish = tiny_names()["Elvish"][0]
    assert clf.training_names.seen_as(elvish) == []  # not a training name of this subset


def test_all_languages_by_default(fitted):
    _, clf, _ = fitted
    assert clf.labels == sorted(tiny_names()) == clf.metrics["languages"]
    assert clf.metrics["split_sizes"] == {"train": 128, "val": 16, "test": 16}  # the clean split, as train.py's


def test_epoch_limit(fitted):
    _, clf, _ = fitted
    history = clf.metrics["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert clf.metrics["stopped_by"] == "epochs" and clf.metrics["epochs_run"] == 3
    assert not any(row.get("partial") for row in history)
    assert clf.metrics["val_accuracy"] == clf.metrics["validation"]["accuracy"]
    assert 0 <= clf.metrics["val_macro_f1"] <= 1
    assert clf.metrics["fit_config"]["epochs"] == 3 and clf.metrics["fit_config"]["hidden_size"] == 16
    assert clf.metrics["seconds"] >= clf.metrics["training_seconds"] > 0


@pytest.mark.slow
def test_time_budget_stops_early(tiny_data_dir, monkeypatch):
    import sys

    # No early stopping: on a fast machine 8 stale epochs of the tiny data would end it before the budget does.
    fit_module = sys.modules["namecls.training.fit"]
    monkeypatch.setitem(fit_module.FIT_DEFAULTS, "gru", replace(FIT_DEFAULTS["gru"], patience=10**6))
    clf = namecls.fit(tiny_data_dir, epochs=10**6, time_budget=0.5, hidden_size=16, batch_size=4)
    history = clf.metrics["history"]
    assert clf.metrics["stopped_by"] == "time_budget" == history[-1]["stopped"]
    assert len(history) < 10**6
    assert clf.metrics["time_budget"] == 0.5
    assert clf.predict("Gorbag")  # still a working classifier: the best validated weights


def test_progress_calls(tiny_data_dir, monkeypatch):
    monkeypatch.setitem(FIT_DEFAULTS, "gru", replace(FIT_DEFAULTS["gru"], progress_every=5))
    calls = []
    clf = namecls.fit(tiny_data_dir, epochs=3, on_progress=calls.append, **SMALL)  # 8 batches an epoch
    keys = {"epoch", "batches", "loss", "val_accuracy", "seconds", "fraction", "final"}
    assert all(keys <= set(c) for c in calls)
    assert [c["final"] for c in calls].count(True) == 1 and calls[-1]["final"]
    assert calls[-1]["fraction"] == 1.0 and calls[-1]["stopped_by"] == "epochs"
    assert calls[-1]["val_accuracy"] == clf.metrics["val_accuracy"]
    seconds, fractions = [c["seconds"] for c in calls], [c["fraction"] for c in calls]
    assert seconds == sorted(seconds) and fractions == sorted(fractions)
    assert all(0 <= f <= 1 for f in fractions)
    between = [c for c in calls if c["val_accuracy"] is None]
    epochs = [c for c in calls[:-1] if c["val_accuracy"] is not None]
    assert [c["batches"] for c in between] == [5, 10, 15, 20]
    assert [c["epoch"] for c in epochs] == [1, 2, 3] and [c["batches"] for c in epochs] == [8, 16, 24]
    assert [c["val_accuracy"] for c in epochs] == [r["val_accuracy"] for r in clf.metrics["history"]]
    assert all(c["loss"] > 0 for c in calls)


def test_progress_fraction_follows_the_epochs(fitted):
    _, _, calls = fitted
    assert [c["fraction"] for c in calls if not c["final"]] == pytest.approx([1 / 3, 2 / 3, 1])


def test_stop_event_set_from_the_callback_stops_after_that_batch(tiny_data_dir, monkeypatch):
    monkeypatch.setitem(FIT_DEFAULTS, "gru", replace(FIT_DEFAULTS["gru"], progress_every=3))
    stop, calls = threading.Event(), []

    def on_progress(info):
        calls.append(info)
        if info["batches"] == 3:
            stop.set()

    clf = namecls.fit(tiny_data_dir, epochs=50, on_progress=on_progress, stop=stop, **SMALL)
    history = clf.metrics["history"]
    assert clf.metrics["stopped_by"] == "stop" and len(history) == 1
    assert history[0]["partial"] and history[0]["stopped"] == "stop"
    assert calls[-1]["final"] and calls[-1]["batches"] == 3 and calls[-1]["stopped_by"] == "stop"
    assert calls[-2]["val_accuracy"] is not None  # the partial epoch was validated


def test_stop_event_already_set(tiny_data_dir):
    stop = threading.Event()
    stop.set()
    clf = namecls.fit(tiny_data_dir, epochs=5, stop=stop, **SMALL)  # validated as initialised, still usable
    assert clf.metrics["stopped_by"] == "stop" and len(clf.metrics["history"]) == 1
    assert clf.metrics["history"][0]["train_loss"] is None
    assert len(clf.predict("Gorbag", k=4)) == 4


def _fit_module():
    import sys

    return sys.modules["namecls.training.fit"]


def _calls_after(event: threading.Event, monkeypatch, *names: str) -> list[str]:
    """Record which of the post-training steps (``namecls.training.posthoc.fit``,
    ``namecls.training.evaluation.predict_logits``,
    ``namecls.training.adjust.fit_logit_adjustment``) run once ``event`` is set."""
    import namecls.training.adjust
    import namecls.training.evaluation
    import namecls.training.posthoc

    called = []
    modules = {"fit": namecls.training.posthoc, "predict_logits": namecls.training.evaluation,
               "fit_logit_adjustment": namecls.training.adjust}
    for name in names:
        original = getattr(modules[name], name)

        def wrapped(*args, _original=original, _name=name, **kwargs):
            if event.is_set():
                called.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(modules[name], name, wrapped)
    return called


def test_abort_from_the_callback_stops_after_that_batch_and_makes_no_model(tiny_data_dir, monkeypatch):
    """``abort``: the caller has gone. Training stops as with ``stop``, but the post-training fits are skipped and
    fit raises FitAborted (a stopped fit would spend them on a model nobody takes)."""
    monkeypatch.setitem(FIT_DEFAULTS, "gru", replace(FIT_DEFAULTS["gru"], progress_every=3))
    abort, calls = threading.Event(), []

    def on_progress(info):
        calls.append(info)
        if info["batches"] == 3:
            abort.set()

    after = _calls_after(abort, monkeypatch, "fit", "predict_logits", "fit_logit_adjustment")
    with pytest.raises(_fit_module().FitAborted, match="after training"):
        namecls.fit(tiny_data_dir, epochs=50, on_progress=on_progress, abort=abort, **SMALL)
    assert [c["batches"] for c in calls] == [3, 3]  # that batch's report, then its partial epoch's; no final
    assert after == []  # no logit adjustment, no logits of the validation or test names, no posthoc fit


def test_abort_already_set_trains_nothing(tiny_data_dir):
    abort, calls = threading.Event(), []
    abort.set()
    with pytest.raises(_fit_module().FitAborted, match="before training"):
        namecls.fit(tiny_data_dir, epochs=5, on_progress=calls.append, abort=abort, **SMALL)
    assert calls == []


def test_abort_during_the_post_training_fits_skips_the_rest(tiny_data_dir, monkeypatch):
    import namecls.training.adjust

    abort = threading.Event()
    adjust = namecls.training.adjust.fit_logit_adjustment

    def adjust_then_abort(*args, **kwargs):
        result = adjust(*args, **kwargs)
        abort.set()  # the page closes while the first post-training step runs
        return result

    monkeypatch.setattr(namecls.training.adjust, "fit_logit_adjustment", adjust_then_abort)
    after = _calls_after(abort, monkeypatch, "fit", "predict_logits")
    with pytest.raises(_fit_module().FitAborted, match="after the logit adjustment"):
        namecls.fit(tiny_data_dir, epochs=1, abort=abort, **SMALL)
    assert after == []


def test_stop_with_an_abort_event_unset_still_gives_a_model(tiny_data_dir, monkeypatch):
    stop, abort = threading.Event(), threading.Event()
    stop.set()
    after = _calls_after(stop, monkeypatch, "fit", "predict_logits", "fit_logit_adjustment")
    clf = namecls.fit(tiny_data_dir, epochs=5, stop=stop, abort=abort, **SMALL)
    assert clf.metrics["stopped_by"] == "stop" and len(clf.predict("Gorbag", k=4)) == 4
    # The post-training fits ran (what the abort tests see skipped is seen here when they run).
    assert sorted(after) == ["fit", "fit_logit_adjustment", "predict_logits", "predict_logits"]


def test_classifier_predicts_and_traces(fitted):
    _, clf, _ = fitted
    assert clf.source is None and "source=None" in repr(clf)
    assert clf.projection is None and clf.explain is None and clf.novelty is None
    assert clf.conformal is not None and clf.training_names is not None
    assert 1e-3 <= clf.temperature < 1e3
    details = clf.predict_details("Gorbag")
    assert details.set and details.set[0] == details.top[0][0]
    assert details.novelty is None and details.unfamiliar is None
    assert details.seen_as == clf.seen_as("Gorbag")
    trace = clf.trace("Gorbag")
    T = len("Gorbag")
    assert trace.probs.shape == (T, 4) and trace.layers.shape == (1, T, 16)
    assert trace.attribution.shape == (T,) and np.isfinite(trace.attribution).all()
    assert trace.attribution.sum() == pytest.approx(math.log(trace.probs[-1, trace.target]) + math.log(4), abs=1e-5)
    assert len(trace.sets) == T and all(trace.sets)
    assert trace.map_points is None and trace.neighbours is None and trace.novelty is None
    assert trace.deletion.shape == (T,)
    assert clf.predict_set("Gorbag") == trace.sets[-1]
    with pytest.raises(ValueError, match="this classifier has no reference bank"):
        clf.neighbours(trace.hidden[-1])


def test_save_zip_round_trip(fitted, tmp_path):
    _, clf, _ = fitted
    names = _all_names()
    path = clf.save_zip(tmp_path / "out" / "tiny.zip")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(["config.json", "metrics.json", "model.safetensors", "conformal.json",
                                                "conformal.safetensors", "training_names.json"])
    loaded = namecls.load(path)
    assert loaded.source == path and loaded.labels == clf.labels and loaded.kind == "gru"
    assert np.array_equal(_probs(loaded, names), _probs(clf, names))
    assert loaded.temperature == clf.temperature
    assert loaded.predict_set("Gorbag") == clf.predict_set("Gorbag")
    assert loaded.seen_as("Gorbag") == clf.seen_as("Gorbag")
    assert loaded.metrics["val_accuracy"] == clf.metrics["val_accuracy"]
    assert loaded.config["trained_by"] == "namecls.fit"
    # a folder, then a zip of that folder (checkpoint.save_zip of a path), read the same
    folder = clf.save(tmp_path / "folder")
    assert np.array_equal(_probs(namecls.load(folder), names), _probs(clf, names))
    again = checkpoint.save_zip(folder, tmp_path / "again.zip")
    assert np.array_equal(_probs(namecls.load(again), names), _probs(clf, names))
    # and save()'s arguments as a dict
    parts = {"model": clf.model, "labels": clf.labels, "extra": {"protocol": "clean"}, "metrics": {},
             "posthoc": clf.posthoc}
    third = namecls.load(checkpoint.save_zip(parts, tmp_path / "parts.zip"))
    assert np.array_equal(_probs(third, names), _probs(clf, names))


def test_load_zip_of_a_folder(fitted, tmp_path):
    """``zip -r gru.zip gru/``: the files inside one folder."""
    _, clf, _ = fitted
    folder = clf.save(tmp_path / "gru")
    path = tmp_path / "nested.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("gru/", "")
        for file in folder.iterdir():
            zf.write(file, f"gru/{file.name}")
        zf.writestr("gru/README.txt", "not a checkpoint file: skipped")
    assert np.array_equal(_probs(namecls.load(path), ["Gorbag"]), _probs(clf, ["Gorbag"]))


@pytest.mark.parametrize("entry", ["../evil.json", "/etc/evil.json", "gru/../../evil.json", "C:/evil.json",
                                   "..\\evil.json"])
def test_zip_refuses_unsafe_paths(fitted, tmp_path, entry):
    _, clf, _ = fitted
    path = clf.save_zip(tmp_path / "ok.zip")
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(entry, "{}")
    with pytest.raises(namecls.CheckpointError, match="absolute path or a '..' part"):
        namecls.load(path)
    assert not (tmp_path / "evil.json").exists()


def test_zip_refuses_too_large(fitted, tmp_path, monkeypatch):
    _, clf, _ = fitted
    path = clf.save_zip(tmp_path / "ok.zip")
    monkeypatch.setattr(checkpoint.archive, "ZIP_MAX_BYTES", 1000)
    with pytest.raises(namecls.CheckpointError, match="bytes once extracted"):
        namecls.load(path)


def test_zip_refuses_a_bomb(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.safetensors", b"\0" * (checkpoint.ZIP_MAX_BYTES + 1))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(namecls.CheckpointError, match="bytes once extracted"):
        namecls.load(path)


@pytest.mark.parametrize("content", [b"not a zip at all", b""])
def test_zip_refuses_other_files(tmp_path, content):
    path = tmp_path / "x.zip"
    path.write_bytes(content)
    with pytest.raises(namecls.CheckpointError, match="not a readable checkpoint zip"):
        namecls.load(path)


def test_zip_without_config(fitted, tmp_path):
    _, clf, _ = fitted
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metrics.json", "{}")
    with pytest.raises(namecls.CheckpointError, match="one config.json, this one has 0"):
        namecls.load(path)


def test_zip_checks_its_checkpoint_like_a_folder(fitted, tmp_path):
    _, clf, _ = fitted
    path = clf.save_zip(tmp_path / "ok.zip")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:100] if name == "model.safetensors" else data)
    with pytest.raises(namecls.CheckpointError, match="model.safetensors"):
        namecls.load(broken)


def test_deterministic_for_a_seed(tiny_data_dir, fitted):
    _, first, _ = fitted
    second = namecls.fit(tiny_data_dir, epochs=3, **SMALL)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert without_timings(first.metrics) == without_timings(second.metrics)
    assert first.temperature == second.temperature
    other = namecls.fit(tiny_data_dir, epochs=3, seed=1, **SMALL)
    c = other.model.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert other.config["split_seed"] == 1


@pytest.mark.parametrize("languages, message", [
    (["Orcish", "Klingon"], "unknown language.*'Klingon'.*Dwarvish, Elvish, Hobbitish, Orcish"),
    (["Orcish"], "at least 2"),
    ([], "at least 2"),
    (["Orcish", "Orcish"], "repeats"),
    ("Orcish", "list of language names"),
])
def test_bad_languages(tiny_data_dir, languages, message):
    with pytest.raises(ValueError, match=message):
        namecls.fit(tiny_data_dir, languages=languages, epochs=1, **SMALL)


@pytest.mark.parametrize("kwargs", [{"kind": "lstm"}, {"epochs": 0}, {"hidden_size": 2.5}, {"lr": -1},
                                    {"time_budget": 0}, {"batch_size": True}, {"time_budget": float("nan")}])
def test_bad_arguments(tiny_data_dir, kwargs):
    with pytest.raises(ValueError):
        namecls.fit(tiny_data_dir, **kwargs)


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="namecls.data.names.download"):
        namecls.fit(tmp_path / "nowhere")
    monkeypatch.setenv("NAMECLS_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="NAMECLS_DATA_DIR"):
        namecls.fit()


def test_data_dir_from_the_environment(tiny_data_dir, monkeypatch):
    monkeypatch.setenv("NAMECLS_DATA_DIR", str(tiny_data_dir))
    clf = namecls.fit(epochs=1, **SMALL)
    assert clf.labels == sorted(tiny_names())


def test_rnn(tiny_data_dir):
    clf = namecls.fit(tiny_data_dir, kind="rnn", epochs=2, languages=["Elvish", "Hobbitish"], **SMALL)
    assert clf.kind == "rnn" and clf.labels == ["Elvish", "Hobbitish"]
    assert clf.trace("Baggins").layers.shape[0] == 1


def test_one_cycle_shape():
    assert one_cycle(0, 1.0) == (pytest.approx(1 / 25), pytest.approx(0.95))
    assert one_cycle(0.15, 1.0) == (pytest.approx(1.0), pytest.approx(0.85))
    assert one_cycle(1, 1.0) == (pytest.approx(1 / 25 / 1e4), pytest.approx(0.95))
    lrs = [one_cycle(f, 1.0)[0] for f in np.linspace(0.15, 1, 20)]
    assert lrs == sorted(lrs, reverse=True)
    assert one_cycle(2, 1.0) == one_cycle(1, 1.0)


def test_fit_restores_the_thread_count(tiny_data_dir):
    before = torch.get_num_threads()
    seen = []
    namecls.fit(tiny_data_dir, epochs=1, on_progress=lambda info: seen.append(torch.get_num_threads()), **SMALL)
    assert torch.get_num_threads() == before
    assert seen[0] == FIT_DEFAULTS["gru"].threads


def test_watched_name_gets_the_current_weights_answer_each_epoch(tiny_data_dir):
    calls = []
    clf = namecls.fit(tiny_data_dir, epochs=3, on_progress=calls.append, watch="Gorbag", **SMALL)
    epochs = [c for c in calls if c.get("val_accuracy") is not None and not c["final"]]
    assert len(epochs) == 3 and all("watch" not in c for c in calls if c.get("val_accuracy") is None)
    for call in epochs:
        languages, probs = zip(*call["watch"])
        assert len(languages) == 3 and set(languages) <= set(clf.labels)
        assert list(probs) == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    with pytest.raises(ValueError):
        namecls.fit(tiny_data_dir, epochs=1, watch="12345", **SMALL)


def test_validation_accuracy_restricts_the_answer_to_the_languages(fitted):
    """Against a scan: each validation name of the chosen languages, predicted by itself with all the model's
    languages, the best of the chosen ones kept."""
    from namecls.data.names import read_names
    from namecls.training.fit import restrict
    from namecls.data.splits import make_split

    data_dir, clf, _ = fitted
    chosen = ["Elvish", "Orcish"]
    data = read_names(data_dir)
    names, targets = restrict(make_split(data, "clean", 0), data.labels, chosen).part("val")
    right = 0
    for name, target in zip(names, targets):
        probs = dict(clf.predict(name, k=len(clf.labels)))
        right += max(chosen, key=probs.__getitem__) == chosen[target]
    from namecls.training.fit import validation_accuracy

    assert validation_accuracy(clf, chosen, data_dir) == pytest.approx(right / len(names))
