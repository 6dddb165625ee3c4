"""Hand-written backpropagation through time (namecls.models.bptt) against autograd: gradients, and a training run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from namecls.models import bptt
from namecls.data.names import pad_batch, read_names
from namecls.models.gradcheck import compare, random_case
from namecls.models.networks import GRUClassifier, GRUConfig, RNNClassifier, RNNConfig
from namecls.training.loop import TrainConfig, train

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("hidden_size, learn_initial_state", [(1, True), (16, True), (5, False)])
def test_manual_gradients_match_autograd(hidden_size, learn_initial_state):
    model, x, lengths, targets, loss_fn = random_case(hidden_size, batch_size=6, max_length=7, num_classes=4,
                                                      learn_initial_state=learn_initial_state, seed=hidden_size)
    assert lengths.min() == 1 and lengths.max() == 7  # mixed lengths, including a single character
    rows = compare(model, x, lengths, targets, loss_fn)
    assert [r["parameter"] for r in rows] == ["loss value", "i2h.weight", "i2h.bias", "i2o.weight", "i2o.bias", "h0"]
    for row in rows:
        assert row["max abs diff"] <= 1e-10 and row["max rel diff"] <= 1e-6, row
    assert (rows[-1]["shape"] == "frozen") == (not learn_initial_state)


def test_padding_does_not_change_the_gradients():
    model, x, lengths, targets, loss_fn = random_case(8, batch_size=5, max_length=6, seed=3)
    grads = []
    for fill in (0, 7):
        padded = x.clone()
        padded[torch.arange(6).expand(5, 6) >= lengths.unsqueeze(1)] = fill  # (B, T): rewrite every padded step
        model.zero_grad()
        bptt.manual_loss(model, padded, lengths, targets, loss_fn).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_manual_forward_is_the_models_forward_in_float32():
    torch.manual_seed(0)
    model = RNNClassifier(RNNConfig(num_classes=5, hidden_size=12))
    with torch.no_grad():
        model.h0.normal_()
    x, lengths = pad_batch(["Abe", "X", "O'Neill", "van der Berg"])
    torch.testing.assert_close(bptt.manual_logits(model, x, lengths), model(x, lengths))
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0]), label_smoothing=0.05)
    y = torch.tensor([0, 4, 2, 1])
    torch.testing.assert_close(bptt.manual_loss(model, x, lengths, y, loss_fn), loss_fn(model(x, lengths), y))


def _write_names(folder: Path) -> None:
    """Three made-up languages of 40 names each, told apart by their syllables."""
    rng = np.random.default_rng(0)
    syllables = {"Alpha": ["ka", "ro", "mi", "tsu"], "Beta": ["sch", "berg", "mann", "el"],
                 "Gamma": ["o", "ly", "va", "nko"]}
    folder.mkdir()
    for language, parts in syllables.items():
        names = {"".join(rng.choice(parts, size=rng.integers(1, 5))).capitalize() for _ in range(200)}
        (folder / f"{language}.txt").write_text("\n".join(sorted(names)[:40]) + "\n", encoding="utf-8")


def _train(names, targets, backprop: str):
    torch.manual_seed(0)
    model = RNNClassifier(RNNConfig(num_classes=3, hidden_size=16))
    config = TrainConfig(epochs=4, batch_size=16, lr=1e-2, patience=10, seed=0, backprop=backprop)
    model, history = train(model, names, targets, names, targets, config, progress=False)
    return model, history


@pytest.mark.slow
def test_manual_training_follows_the_autograd_loss_curve(tmp_path):
    _write_names(tmp_path / "names")
    data = read_names(tmp_path / "names")
    assert data.labels == ["Alpha", "Beta", "Gamma"] and len(data.names) >= 100
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        auto_model, auto = _train(data.names, data.targets, "autograd")
        hand_model, hand = _train(data.names, data.targets, "manual")
    finally:
        torch.set_num_threads(threads)
    auto_loss = np.array([row["train_loss"] for row in auto])
    hand_loss = np.array([row["train_loss"] for row in hand])
    assert auto_loss[-1] < auto_loss[0]  # it learns something at all
    np.testing.assert_allclose(hand_loss, auto_loss, rtol=1e-4)
    np.testing.assert_allclose([r["val_accuracy"] for r in hand], [r["val_accuracy"] for r in auto], atol=0.02)
    for a, b in zip(auto_model.parameters(), hand_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_manual_backprop_is_refused_for_the_gru_and_unknown_modes():
    gru = GRUClassifier(GRUConfig(num_classes=2, hidden_size=4, embedding_size=4, num_layers=1))
    with pytest.raises(ValueError, match="only written for the RNN"):
        train(gru, ["Ab"], [0], ["Ab"], [0], TrainConfig(epochs=1, backprop="manual"), progress=False)
    rnn = RNNClassifier(RNNConfig(num_classes=2, hidden_size=4))
    with pytest.raises(ValueError, match="backprop must be"):
        train(rnn, ["Ab"], [0], ["Ab"], [0], TrainConfig(epochs=1, backprop="numerical"), progress=False)


def test_train_script_flag():
    spec = importlib.util.spec_from_file_location("train_script", REPO / "train.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.parse_args([]).backprop == "autograd"
    assert script.parse_args(["--model", "rnn", "--backprop", "manual"]).backprop == "manual"
    for model in ("gru", "all"):
        with pytest.raises(SystemExit, match="RNN only"):
            script.main(["--model", model, "--backprop", "manual", "--data-dir", "/nonexistent"])
