"""Checkpoints (save → load round trip, the promised errors) and the public inference API on loaded checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import namecls
from namecls import ALPHABET, CheckpointError, checkpoint
from namecls.data import pad_batch
from namecls.inference import CHECKPOINTS
from namecls.models import GRUConfig, RNNConfig, build

from conftest import PROJECT_ROOT, require

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


@pytest.mark.parametrize("bad", [1e-300, 1e-40, 1e-30, 1e3, 5e3, 1e308, 10 ** 400, "inf", "nan", [1.0], {}],
                         ids=["1e-300", "subnormal", "tiny-normal", "1e3", "5e3", "1e308", "huge-int", "inf", "nan",
                              "list", "dict"])
def test_temperature_must_be_a_normal_float32_in_range(broken, bad):
    """1e-300 becomes 0 in float32 (every probability NaN); 1e-40 is subnormal; 1e-30 overflows logits / T."""
    path = broken / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["temperature"] = "__T__"
    text = {"inf": "Infinity", "nan": "NaN"}[bad] if isinstance(bad, str) else json.dumps(bad)
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
], ids=["a-list", "a-dict", "an-int", "null", "empty", "blank", "labels-a-dict", "labels-a-string"])
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
