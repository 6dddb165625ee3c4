"""Checkpoints (save → load round trip, the promised errors) and the public inference API on loaded checkpoints."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

import namecls
from namecls import ALPHABET, CheckpointError, checkpoint
from namecls.data.names import pad_batch
from namecls.inference import CHECKPOINTS
from namecls.models.networks import GRUConfig, RNNConfig, build

from conftest import PROJECT_ROOT, require

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded

LANGUAGES = ["Arabic", "Chinese", "Czech", "Dutch", "English", "French", "German", "Greek", "Irish", "Italian",
             "Japanese", "Korean", "Polish", "Portuguese", "Russian", "Scottish", "Spanish", "Vietnamese"]
KINDS = ["rnn", "gru"]
NAMES = ["Qin", "Mikhailovich", "O'Neill", "Иванов", "de la Cruz", "Ślusàrski", "Li", "Nakamura"]


def make_model(kind: str, num_classes: int = 18, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "rnn":
        model = build(RNNConfig(num_classes=num_classes, hidden_size=12))
        with torch.no_grad():
            model.h0.uniform_(-1, 1)
    else:
        model = build(GRUConfig(num_classes=num_classes, hidden_size=10, embedding_size=6, num_layers=2))
    return model.eval()


def save_model(folder, kind="rnn", labels=LANGUAGES, seed=0):
    model = make_model(kind, len(labels), seed)
    extra = {"protocol": "clean", "split_seed": 3, "data_fingerprint": "f" * 64}
    checkpoint.save(folder, model, labels, extra, {"test": {"accuracy": 0.5}})
    return model


@pytest.fixture(scope="module", params=KINDS)
def saved(request, tmp_path_factory):
    """(kind, original model, folder) of a tiny checkpoint with the 18 real labels; read-only."""
    folder = tmp_path_factory.mktemp(f"ckpt_{request.param}") / request.param
    model = save_model(folder, request.param)
    return request.param, model, folder


@pytest.fixture(scope="module")
def clf(saved):
    return namecls.load(saved[2])


# --- round trip ------------------------------------------------------------------------------------------------

def test_round_trip_same_outputs(saved, clf):
    """Exact on purpose: both sides are computed here, in this process, by the same kernels from bit-identical
    weights (test_weights_are_safetensors_not_pickle), so any difference is the round trip's, not the CPU's. A
    comparison with numbers recorded on another machine (the committed files) must allow float32 kernel differences
    instead (rtol ~1e-5, atol ~1e-6 on probabilities and logits)."""
    kind, model, folder = saved
    assert clf.kind == kind
    assert clf.labels == LANGUAGES
    assert not clf.model.training
    x, lengths = pad_batch(["Qin", "Mikhailovich", "Li"])
    with torch.no_grad():
        torch.testing.assert_close(clf.model(x, lengths), model(x, lengths), atol=0, rtol=0)
        a, b = clf.model.steps(x, lengths), model.steps(x, lengths)
    torch.testing.assert_close(a.hidden, b.hidden, atol=0, rtol=0)
    assert clf.metrics == {"test": {"accuracy": 0.5}}


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_keeps_a_non_alphabetical_label_order(tmp_path, kind):
    labels = ["Zulu", "Alpha", "Mike", "Bravo", "Echo"]
    model = save_model(tmp_path / kind, kind, labels)
    loaded = namecls.load(str(tmp_path / kind))  # a str path works as well as a Path
    assert loaded.labels == labels
    assert json.loads((tmp_path / kind / "config.json").read_text())["labels"] == labels
    x, lengths = pad_batch(["Qin"])
    with torch.no_grad():
        probs = torch.softmax(model(x, lengths), dim=-1)[0].numpy()
    expected = [(labels[i], float(probs[i])) for i in np.argsort(-probs)]
    got = loaded.predict("Qin", k=5)
    assert [label for label, _ in got] == [label for label, _ in expected]
    assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-6)


def test_config_json_records_everything(saved):
    kind, model, folder = saved
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["model"]["kind"] == kind
    assert config["model"]["hidden_size"] == model.config.hidden_size
    assert config["alphabet"] == ALPHABET
    assert config["labels"] == LANGUAGES
    assert config["normalization"]
    assert config["protocol"] == "clean" and config["split_seed"] == 3 and config["data_fingerprint"] == "f" * 64
    assert {"python", "torch", "numpy", "scikit-learn"} <= set(config["versions"])
    assert config["versions"]["torch"] == torch.__version__


def test_config_json_records_the_unidecode_version(saved):
    from importlib.metadata import version

    config = json.loads((saved[2] / "config.json").read_text(encoding="utf-8"))
    assert config["versions"]["unidecode"] == version("unidecode")


def test_save_writes_only_the_three_files(saved):
    folder = saved[2]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]


def test_weights_are_safetensors_not_pickle(saved):
    from safetensors.torch import load_file

    kind, model, folder = saved
    tensors = load_file(folder / "model.safetensors")
    state = model.state_dict()
    assert tensors.keys() == state.keys()
    assert all(torch.equal(tensors[k], state[k]) for k in state)
    assert not (folder / "model.safetensors").read_bytes().startswith(b"\x80")  # no pickle protocol header


def test_save_overwrites_an_existing_checkpoint(tmp_path):
    save_model(tmp_path / "m", "rnn", seed=0)
    newer = save_model(tmp_path / "m", "rnn", seed=1)
    loaded = namecls.load(tmp_path / "m")
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in newer.state_dict().items())
    assert not list((tmp_path / "m").glob("*.tmp"))


def test_missing_metrics_is_allowed(tmp_path):
    save_model(tmp_path / "m")
    (tmp_path / "m" / "metrics.json").unlink()
    assert namecls.load(tmp_path / "m").metrics == {}


def test_load_by_model_name_points_at_the_committed_folder():
    assert CHECKPOINTS == PROJECT_ROOT / "checkpoints"
    require((CHECKPOINTS / "gru" / "config.json").is_file(), "no committed checkpoints/gru")
    loaded = namecls.load("GRU")
    assert loaded.source == CHECKPOINTS / "gru"
    assert loaded.kind == "gru"


# --- the promised errors ---------------------------------------------------------------------------------------

@pytest.fixture
def broken(saved, tmp_path):
    """A private copy of the saved checkpoint, to damage."""
    folder = tmp_path / "broken"
    shutil.copytree(saved[2], folder)
    return folder


def _load_error(folder, file_name: str) -> str:
    with pytest.raises(CheckpointError) as info:
        namecls.load(folder)
    message = str(info.value)
    assert str(folder / file_name) in message, message
    return message


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    edit(config)
    path.write_text(json.dumps(config), encoding="utf-8")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError) as info:
        namecls.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    assert "not found" in str(info.value)


@pytest.mark.parametrize("file_name", ["model.safetensors", "config.json"])
def test_missing_file(broken, file_name):
    (broken / file_name).unlink()
    assert "missing" in _load_error(broken, file_name)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_truncated_weights(broken, keep):
    path = broken / "model.safetensors"
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    _load_error(broken, "model.safetensors")


def test_garbage_weights(broken):
    (broken / "model.safetensors").write_bytes(b"\x00" * 64 + b"not a tensor file" * 10)
    _load_error(broken, "model.safetensors")


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", "null", '{"labels": []}'])
def test_config_not_json_or_incomplete(broken, text):
    (broken / "config.json").write_text(text, encoding="utf-8")
    _load_error(broken, "config.json")


def test_config_not_utf8(broken):
    (broken / "config.json").write_bytes(b"\xff\xfe\x00{")
    _load_error(broken, "config.json")


def test_config_labels_count_disagrees(broken):
    _edit_config(broken, lambda c: c.update(labels=c["labels"][:-1]))
    assert "labels" in _load_error(broken, "config.json")


def test_config_and_weights_disagree_on_number_of_classes(broken):
    def edit(c):
        c["labels"] = c["labels"][:-1]
        c["model"]["num_classes"] = len(c["labels"])
    _edit_config(broken, edit)
    _load_error(broken, "model.safetensors")


def test_duplicate_labels(broken):
    _edit_config(broken, lambda c: c["labels"].__setitem__(1, c["labels"][0]))
    _load_error(broken, "config.json")


def test_hidden_size_disagrees_with_weights(broken):
    _edit_config(broken, lambda c: c["model"].update(hidden_size=c["model"]["hidden_size"] + 4))
    message = _load_error(broken, "model.safetensors")
    assert "config.json" in message  # says what the weights disagree with


def test_weights_of_the_other_kind(broken, saved):
    kind = saved[0]
    other = make_model("gru" if kind == "rnn" else "rnn")
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, broken / "model.safetensors")
    _load_error(broken, "model.safetensors")


def test_unknown_model_kind(broken):
    _edit_config(broken, lambda c: c["model"].update(kind="lstm"))
    _load_error(broken, "config.json")


def test_other_alphabet(broken):
    _edit_config(broken, lambda c: c.update(alphabet=c["alphabet"][:-1]))
    assert "alphabet" in _load_error(broken, "config.json")


def test_corrupt_metrics(broken):
    (broken / "metrics.json").write_text("{oops", encoding="utf-8")
    _load_error(broken, "metrics.json")


# --- the inference API -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 5])
def test_predict_top_k(clf, k):
    result = clf.predict("Nakamura", k=k)
    assert len(result) == k
    labels, probs = zip(*result)
    assert len(set(labels)) == k and set(labels) <= set(clf.labels)
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probs)
    assert list(probs) == sorted(probs, reverse=True)


def test_predict_default_k_is_3(clf):
    assert len(clf.predict("Qin")) == 3


def test_predict_all_languages_sums_to_one(clf):
    result = clf.predict("Qin", k=18)
    assert sorted(label for label, _ in result) == sorted(LANGUAGES)
    assert sum(p for _, p in result) == pytest.approx(1.0, abs=1e-5)


def test_predict_matches_the_model(saved, clf):
    model = saved[1]
    x, lengths = pad_batch(["Ivanov"])
    with torch.no_grad():
        probs = torch.softmax(model(x, lengths), dim=-1)[0].numpy()
    assert dict(clf.predict("Иванов", k=18)) == pytest.approx(dict(zip(LANGUAGES, probs.tolist())), abs=1e-6)


def test_predict_batch_equals_predict(clf):
    batch = clf.predict_batch(NAMES, k=18, batch_size=3)  # several length-sorted batches
    assert len(batch) == len(NAMES)
    for name, result in zip(NAMES, batch):
        alone = clf.predict(name, k=18)
        assert dict(result) == pytest.approx(dict(alone), abs=1e-6)
        assert result[0][0] == alone[0][0]
        probs = [p for _, p in result]
        assert probs == sorted(probs, reverse=True)


def test_predict_batch_keeps_input_order(clf):
    names = NAMES[::-1] + NAMES
    forward = clf.predict_batch(names, k=2, batch_size=2)
    singles = [clf.predict(n, k=2) for n in names]
    assert [r[0][0] for r in forward] == [r[0][0] for r in singles]
    assert all(len(r) == 2 for r in forward)


def test_predict_batch_empty(clf):
    assert clf.predict_batch([]) == []


def test_trace(saved, clf):
    kind = saved[0]
    trace = clf.trace("Иванов")
    assert trace.chars == list("Ivanov")
    T = len(trace.chars)
    assert trace.normalized.text == "Ivanov" and trace.name == "Иванов"
    L = 1 if kind == "rnn" else 2
    H = clf.model.config.hidden_size
    assert trace.probs.shape == (T, 18)
    assert trace.layers.shape == (L, T, H)
    assert trace.hidden.shape == (T, H)
    np.testing.assert_array_equal(trace.hidden, trace.layers[-1])
    np.testing.assert_allclose(trace.probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(trace.probs >= 0)
    assert dict(zip(clf.labels, trace.probs[-1].tolist())) == pytest.approx(dict(clf.predict("Иванов", k=18)),
                                                                            abs=1e-5)
    assert [label for label, _ in trace.top(k=3)] == [label for label, _ in clf.predict("Иванов", k=3)]
    if kind == "rnn":
        assert np.all((trace.layers > 0) & (trace.layers < 1))


def test_trace_prefixes_match_predictions(clf):
    """Step t of a trace is the prediction for the prefix of t + 1 characters."""
    trace = clf.trace("Mikhail")
    for t in range(1, len("Mikhail") + 1):
        prefix = dict(clf.predict("Mikhail"[:t], k=18))
        assert dict(zip(clf.labels, trace.probs[t - 1].tolist())) == pytest.approx(prefix, abs=1e-5)


BAD = ["", "   ", "x" * 65, "1234", "\U0001F600", None]


@pytest.mark.parametrize("bad", BAD)
def test_bad_input_raises_value_error(clf, bad):
    with pytest.raises(ValueError):
        clf.predict(bad)
    with pytest.raises(ValueError):
        clf.trace(bad)
    with pytest.raises(ValueError):
        clf.predict_batch([bad])


def test_bad_input_messages(clf):
    with pytest.raises(ValueError, match="empty"):
        clf.predict("  ")
    with pytest.raises(ValueError, match="too long"):
        clf.trace("x" * 65)


def test_predict_batch_error_names_the_index(clf):
    with pytest.raises(ValueError, match=r"#2\b") as info:
        clf.predict_batch(["Qin", "Mike", "   ", "Li"])
    assert "empty" in str(info.value)
    with pytest.raises(ValueError, match=r"#0\b.*too long"):
        clf.predict_batch(["x" * 70, "Qin"])


@pytest.mark.parametrize("edit", [
    lambda c: c.update(model=None),
    lambda c: c["model"].update(hidden_size=-1),
    lambda c: c["model"].update(hidden_size="12"),
], ids=["model-null", "hidden-negative", "hidden-string"])
def test_invalid_model_section(broken, edit):
    _edit_config(broken, edit)
    _load_error(broken, "config.json")


# --- refusals of hostile or damaged checkpoints (issue 12) -------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_weights(broken, value):
    from safetensors.torch import load_file, save_file

    path = broken / "model.safetensors"
    tensors = load_file(path)
    key = sorted(tensors)[-1]
    tensors[key].view(-1)[0] = value
    save_file(tensors, path)
    message = _load_error(broken, "model.safetensors")
    assert key in message and "finite" in message


@pytest.mark.parametrize("bad", [1e-300, 1e-40, 1e-30, 1e3, 5e3, 1e308, 10 ** 400, "inf", "nan", [1.0], {}, True,
                                 -1.0, 0, "1.0", None],
                         ids=["1e-300", "subnormal", "tiny-normal", "1e3", "5e3", "1e308", "huge-int", "inf", "nan",
                              "list", "dict", "bool", "negative", "zero", "string", "null"])
def test_temperature_must_be_a_normal_float32_in_range(broken, bad):
    """1e-300 becomes 0 in float32 (every probability NaN); 1e-40 is subnormal; 1e-30 overflows logits / T."""
    path = broken / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["temperature"] = "__T__"
    text = {"inf": "Infinity", "nan": "NaN"}.get(bad, json.dumps(bad)) if isinstance(bad, str) else json.dumps(bad)
    path.write_text(json.dumps(config).replace('"__T__"', text), encoding="utf-8")
    assert "temperature" in _load_error(broken, "config.json")


@pytest.mark.parametrize("good", [0.05, 1, 1.31, 20.0])
def test_a_good_temperature_loads(broken, good):
    _edit_config(broken, lambda c: c.update(temperature=good))
    assert namecls.load(broken).temperature == good


@pytest.mark.parametrize("edit", [
    lambda c: c["labels"].__setitem__(0, ["Arabic"]),
    lambda c: c["labels"].__setitem__(0, {"name": "Arabic"}),
    lambda c: c["labels"].__setitem__(0, 7),
    lambda c: c["labels"].__setitem__(0, None),
    lambda c: c["labels"].__setitem__(0, ""),
    lambda c: c["labels"].__setitem__(0, "  "),
    lambda c: c.update(labels={str(i): label for i, label in enumerate(c["labels"])}),
    lambda c: c.update(labels="".join(c["labels"])[:18]),
    lambda c: c["labels"].__setitem__(0, True),
    lambda c: c.update(labels=True),
    lambda c: c.update(labels=None),
], ids=["a-list", "a-dict", "an-int", "null", "empty", "blank", "labels-a-dict", "labels-a-string", "a-bool",
        "labels-a-bool", "labels-null"])
def test_labels_must_be_distinct_non_empty_strings(broken, edit):
    _edit_config(broken, edit)
    assert "labels" in _load_error(broken, "config.json")


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [100_000, 100])
def test_config_nested_too_deep(broken, levels):
    """100,000 levels raised RecursionError from json; 100 parse but are far beyond any real config."""
    path = broken / "config.json"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.rstrip().rstrip("}") + f', "deep": {_deep(levels)}}}', encoding="utf-8")
    assert "deep" in _load_error(broken, "config.json")


def test_config_too_large(broken):
    path = broken / "config.json"
    _edit_config(broken, lambda c: c.update(padding="x" * (checkpoint.JSON_MAX_BYTES["config.json"] + 1)))
    message = _load_error(broken, "config.json")
    assert "bytes" in message and f"{path.stat().st_size:,}" in message


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deep", "large", "not-an-object"])
def test_metrics_too_deep_too_large_or_not_an_object(broken, damage):
    path = broken / "metrics.json"
    if damage == "deep":
        path.write_text('{"test": ' + _deep(100_000) + "}", encoding="utf-8")
    elif damage == "large":
        path.write_text(json.dumps({"pad": "x" * (checkpoint.JSON_MAX_BYTES["metrics.json"] + 1)}), encoding="utf-8")
    else:
        path.write_text('"calibration"', encoding="utf-8")
    _load_error(broken, "metrics.json")


def test_every_json_file_has_a_size_cap_with_margin():
    """Each cap is at least 8x the committed file (and the committed files load)."""
    for kind in ("rnn", "gru"):
        folder = CHECKPOINTS / kind
        require((folder / "config.json").is_file(), f"no committed checkpoints/{kind}")
        for path in folder.glob("*.json"):
            assert path.stat().st_size * 8 <= checkpoint.JSON_MAX_BYTES[path.name], path


# --- values that make every answer wrong (issue 18, part 2.5) ---------------------------------------------------
# Each attack once loaded: a NaN dropout (every predict raised RuntimeError), a finite 1e38 weight (every
# probability NaN, the prediction set ['Arabic'], low_confidence False), a NaN low-confidence threshold (nothing
# ever flagged).


@pytest.fixture(params=KINDS)
def committed(request, tmp_path):
    """(kind, a private copy of the committed checkpoints/<kind> folder), to damage."""
    source = CHECKPOINTS / request.param
    require((source / "config.json").is_file(), f"no committed checkpoints/{request.param}")
    folder = tmp_path / request.param
    shutil.copytree(source, folder)
    return request.param, folder


def _zip_of(folder, path):
    """The files of ``folder`` as a checkpoint zip, written directly (save_zip refuses a folder that does not load)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, file.name)
    return path


def _refused_everywhere(folder, tmp_path, file_name: str, *words) -> str:
    """The CheckpointError of loading ``folder`` by checkpoint.load, namecls.load and as a zip, and of packing it
    with save_zip; each names ``file_name`` (a path inside ``folder``, or the folder itself for "") and ``words``."""
    message = _load_error(folder, file_name)
    for word in words:
        assert word in message, message
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(folder)
    assert str(info.value) == message
    with pytest.raises(CheckpointError, match=re.escape(words[0])):
        checkpoint.save_zip(folder, tmp_path / "packed.zip")
    assert not (tmp_path / "packed.zip").exists()
    with pytest.raises(CheckpointError) as info:  # the zip's error names the zip, not its vanished temporary copy
        namecls.load(_zip_of(folder, tmp_path / "broken.zip"))
    assert all(word in str(info.value) for word in words) and (not file_name or file_name in str(info.value))
    assert str(tmp_path / "broken.zip") in str(info.value) and "namecls-load-" not in str(info.value)
    return message


def test_committed_checkpoints_load_and_pass_the_probe(committed):
    kind, folder = committed
    model, config, _ = checkpoint.load(folder)
    assert not model.training
    x, lengths = pad_batch(list(checkpoint.PROBE_NAMES))
    with torch.no_grad():
        probs = torch.softmax(model.steps(x, lengths).logits / config["temperature"], dim=-1)
    sums = probs.sum(dim=-1)[torch.arange(x.shape[1]) < lengths[:, None]]
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=1e-5, atol=1e-5)  # float32 rounding only


@pytest.mark.parametrize("committed", ["gru"], indirect=True)  # the RNN has no dropout
def test_attack_nan_dropout(tmp_path, committed):
    kind, folder = committed
    _edit_config(folder, lambda c: c["model"].update(dropout=float("nan")))
    assert '"dropout": NaN' in (folder / "config.json").read_text()
    message = _refused_everywhere(folder, tmp_path, "config.json", "model.dropout", "nan")
    assert "retrain" in message and "git checkout" in message


def test_attack_absurd_finite_weight(tmp_path, committed):
    """head.weight[0] = 1e38 (the RNN: i2o.weight[0]): finite, so the finiteness check passed, but a logit overflows
    to infinity and every probability is NaN. The probe refuses it, naming the folder and its weights file."""
    from safetensors.torch import load_file, save_file

    kind, folder = committed
    path = folder / "model.safetensors"
    tensors = load_file(path)
    tensors["head.weight" if kind == "gru" else "i2o.weight"][0] = 1e38
    save_file(tensors, path)
    message = _refused_everywhere(folder, tmp_path, "", "its weights give non-finite probabilities",
                                  "model.safetensors")
    assert message.startswith(f"{folder}: ") and "retrain" in message and f"git checkout -- {folder}" in message


@pytest.mark.parametrize("score", ["top_probability", "entropy"])
def test_attack_nan_threshold(tmp_path, committed, score):
    kind, folder = committed
    _edit_config(folder, lambda c: c["low_confidence"].update(score=score, threshold=float("nan")))
    _refused_everywhere(folder, tmp_path, "config.json", "low_confidence.threshold", "nan")


def test_the_probe_reads_every_character(tmp_path):
    """A weight that overflows only on the letter z: 'Smith' stays finite, 'Lopez' is all NaN. The probe's pieces
    of ALPHABET read every character, so it is refused."""
    from namecls.data.names import CHAR_TO_INDEX

    model = make_model("rnn")
    with torch.no_grad():
        model.i2o.weight[0, CHAR_TO_INDEX["z"]] = 3e38
        model.i2o.bias[0] = 3e38
        probs = {name: torch.softmax(model(*pad_batch([name])), dim=-1) for name in ("Smith", "Lopez")}
    assert torch.isfinite(probs["Smith"]).all() and torch.isnan(probs["Lopez"]).all()
    assert set("".join(checkpoint.PROBE_NAMES)) == set(ALPHABET)
    assert any(len(name) == 1 for name in checkpoint.PROBE_NAMES)
    checkpoint.save(tmp_path / "z", model, LANGUAGES, {}, {})
    message = _load_error(tmp_path / "z", "")
    assert "its weights give non-finite probabilities" in message and "yzABCDEFGHIJ" in message
    assert "'Smith'" not in message


def test_the_probe_runs_in_eval_mode_without_grad(saved, monkeypatch):
    seen = []
    steps = type(saved[1]).steps

    def spy(self, x, lengths):
        seen.append((self.training, torch.is_grad_enabled()))
        return steps(self, x, lengths)

    monkeypatch.setattr(type(saved[1]), "steps", spy)
    checkpoint.load(saved[2])
    assert seen == [(False, False)]


# Each case: (kinds it applies to, field path in config.json, JSON text of the bad value). The value is spliced in
# as text so NaN / Infinity / true reach the parser as a hostile file would have them.
NAN, INF = "NaN", "Infinity"
MODEL_CASES = {
    "hidden_size": ["true", "false", "12.0", '"12"', NAN, INF, "-1", "0", "4097", "null", "[12]", str(10 ** 400)],
    "num_classes": ["true", "1", "0", "1001", "18.0", NAN],
    "vocab_size": ["58", "60", "true", "59.0", '"59"', NAN],
}
GRU_CASES = {
    "embedding_size": ["true", "0", "-6", "4097", "6.5", NAN, INF],
    "num_layers": ["true", "0", "17", "2.0", '"2"', INF, "-1"],
    "dropout": [NAN, INF, "-Infinity", "-0.1", "1", "1.0", "1.5", "true", '"0.3"', "null"],
}
RNN_CASES = {"learn_initial_state": ["1", "0", '"true"', "null", NAN]}


def _splice(folder, keys: tuple, text: str) -> None:
    """Set config.json's ``keys`` path to the JSON ``text``."""
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    node = config
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = "__BAD__"
    path.write_text(json.dumps(config).replace('"__BAD__"', text), encoding="utf-8")


def _cases(table: dict, kinds: list[str]):
    return [pytest.param(kind, field, text, id=f"{kind}-{field}={text[:12]}")
            for kind in kinds for field, texts in table.items() for text in texts]


@pytest.mark.slow
@pytest.mark.parametrize("kind, field, text", _cases(MODEL_CASES, KINDS) + _cases(GRU_CASES, ["gru"])
                         + _cases(RNN_CASES, ["rnn"]))
def test_model_fields_must_have_their_type_and_range(tmp_path, kind, field, text):
    save_model(tmp_path / kind, kind)
    _splice(tmp_path / kind, ("model", field), text)
    message = _load_error(tmp_path / kind, "config.json")
    assert f"model.{field}" in message, message


@pytest.mark.parametrize("kind, field, value", [("gru", "dropout", 0), ("gru", "dropout", 0.0),
                                                ("gru", "dropout", 0.999), ("rnn", "learn_initial_state", False)])
def test_good_model_field_values_load(tmp_path, kind, field, value):
    save_model(tmp_path / kind, kind)
    _edit_config(tmp_path / kind, lambda c: c["model"].update({field: value}))
    assert getattr(namecls.load(tmp_path / kind).model.config, field) == value


def test_a_model_too_large_is_refused_before_it_is_built(tmp_path, monkeypatch):
    save_model(tmp_path / "gru", "gru")
    _edit_config(tmp_path / "gru", lambda c: c["model"].update(hidden_size=4096, num_layers=16, embedding_size=4096))
    monkeypatch.setattr(checkpoint.store, "build", lambda config: pytest.fail("built a model of 1.6 G parameters"))
    message = _load_error(tmp_path / "gru", "config.json")
    assert "MAX_PARAMETERS" in message


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_larger_than_its_weights_is_refused_before_it_is_built(tmp_path, monkeypatch, kind):
    """Within every cap (a few hundred MB once built) but not what the tiny weights file holds."""
    save_model(tmp_path / kind, kind)
    _edit_config(tmp_path / kind, lambda c: c["model"].update(hidden_size=2048))
    monkeypatch.setattr(checkpoint.store, "build", lambda config: pytest.fail("built the model before comparing"))
    message = _load_error(tmp_path / kind, "model.safetensors")
    assert "config.json" in message


@pytest.mark.parametrize("kind, hidden, embedding, layers, classes",
                         [("rnn", 1, 0, 1, 2), ("rnn", 12, 0, 1, 18), ("rnn", 512, 0, 1, 5),
                          ("gru", 1, 1, 1, 2), ("gru", 10, 6, 2, 18), ("gru", 32, 8, 3, 7)])
def test_parameter_count_is_the_built_models(kind, hidden, embedding, layers, classes):
    if kind == "rnn":
        config = RNNConfig(num_classes=classes, hidden_size=hidden)
    else:
        config = GRUConfig(num_classes=classes, hidden_size=hidden, embedding_size=embedding, num_layers=layers)
    assert checkpoint.parameter_count(config) == sum(v.numel() for v in build(config).state_dict().values())


RULE_CASES = [
    ("threshold", NAN), ("threshold", INF), ("threshold", "-Infinity"), ("threshold", "-0.1"), ("threshold", "1.5"),
    ("threshold", "true"), ("threshold", '"0.5"'), ("threshold", "null"), ("threshold", "[0.5]"),
    ("target_accuracy", NAN), ("target_accuracy", "1.5"), ("target_accuracy", "true"), ("target_accuracy", "-1"),
    ("score", '"margin"'), ("score", "null"), ("score", "1"), ("rule", "7"), ("rule", "null"),
]


@pytest.mark.parametrize("field, text", RULE_CASES, ids=[f"{f}={t[:10]}" for f, t in RULE_CASES])
def test_low_confidence_rule_numbers_must_be_finite_and_in_range(broken, field, text):
    _edit_config(broken, lambda c: c.update(low_confidence={"score": "top_probability", "threshold": 0.7,
                                                             "target_accuracy": 0.5, "rule": "below 0.7"}))
    _splice(broken, ("low_confidence", field), text)
    assert "low_confidence" in _load_error(broken, "config.json")


@pytest.mark.parametrize("rule", [None, "a string", [0.5], {}, {"score": "top_probability"}],
                         ids=["null-is-the-default", "string", "list", "empty", "no-threshold"])
def test_low_confidence_rule_must_be_an_object_with_a_threshold(broken, rule):
    _edit_config(broken, lambda c: c.update(low_confidence=rule))
    if rule is None:  # absent or null: the default rule (an uncalibrated checkpoint)
        assert namecls.load(broken).low_confidence_rule["threshold"] == 0.5
    else:
        assert "low_confidence" in _load_error(broken, "config.json")


def test_entropy_threshold_is_in_nats_up_to_ln_num_classes(broken):
    import math

    _edit_config(broken, lambda c: c.update(low_confidence={"score": "entropy", "threshold": math.log(18) + 0.01}))
    assert "low_confidence.threshold" in _load_error(broken, "config.json")
    for good in (0, 2.0, math.log(18)):
        _edit_config(broken, lambda c: c.update(low_confidence={"score": "entropy", "threshold": good}))
        assert namecls.load(broken).low_confidence_rule["threshold"] == good


@pytest.mark.parametrize("threshold", [0, 0.0, 0.7, 1, 1.0])
def test_good_top_probability_thresholds_load(broken, threshold):
    _edit_config(broken, lambda c: c.update(low_confidence={"score": "top_probability", "threshold": threshold}))
    assert namecls.load(broken).low_confidence_rule["threshold"] == threshold


FACT_CASES = [
    ("format_version", "2"), ("format_version", "0"), ("format_version", "true"), ("format_version", '"1"'),
    ("format_version", "1.0"), ("normalization", '"lowercase only"'), ("normalization", "7"),
    ("protocol", '""'), ("protocol", "7"), ("protocol", "null"), ("split_seed", "true"), ("split_seed", "-1"),
    ("split_seed", "1.5"), ("split_seed", NAN), ("split_seed", str(1 << 32)), ("split_seed", '"3"'),
    ("data_fingerprint", "7"), ("data_fingerprint", "null"), ("train_config", "[]"), ("train_config", "null"),
    ("train_config", '{"lr": NaN}'), ("train_config", '{"epochs": 3, "clip": Infinity}'), ("versions", "[]"),
    ("versions", '{"torch": 2}'),
]


@pytest.mark.parametrize("field, text", FACT_CASES, ids=[f"{f}={t[:10]}" for f, t in FACT_CASES])
def test_training_facts_must_have_their_type(broken, field, text):
    _splice(broken, (field,), text)
    assert field in _load_error(broken, "config.json")
