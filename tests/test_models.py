"""The hand-written RNN and the GRU: padding invariance, shapes, the RNN's equations, and determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from namecls import ALPHABET
from namecls.data.names import pad_batch
from namecls.models.networks import (GRUClassifier, GRUConfig, RNNClassifier, RNNConfig, build, config_from_dict,
                            config_to_dict, last_step)

NAMES = ["Qin", "Mikhailovich", "O'Neill", "A", "de la Cruz", "Slusarski"]
ATOL = 1e-5


def tiny_config(kind: str, num_classes: int = 5):
    if kind == "rnn":
        return RNNConfig(num_classes=num_classes, hidden_size=12)
    return GRUConfig(num_classes=num_classes, hidden_size=10, embedding_size=6, num_layers=2, dropout=0.3)


def tiny_model(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build(tiny_config(kind))
    if kind == "rnn":  # a non-zero learned initial state, so that h_0 is exercised too
        with torch.no_grad():
            model.h0.uniform_(-1, 1)
    return model.eval()


KINDS = ["rnn", "gru"]


@pytest.mark.parametrize("kind", KINDS)
def test_build_gives_the_right_class(kind):
    model = build(tiny_config(kind))
    assert isinstance(model, {"rnn": RNNClassifier, "gru": GRUClassifier}[kind])
    assert model.config.vocab_size == len(ALPHABET)


@pytest.mark.parametrize("kind", KINDS)
def test_steps_shapes(kind):
    model = tiny_model(kind)
    x, lengths = pad_batch(NAMES)
    B, T = x.shape
    with torch.no_grad():
        steps = model.steps(x, lengths)
        logits = model(x, lengths)
    L = 1 if kind == "rnn" else 2
    H = model.config.hidden_size
    assert steps.logits.shape == (B, T, 5)
    assert steps.hidden.shape == (L, B, T, H)
    assert logits.shape == (B, 5)


@pytest.mark.parametrize("kind", KINDS)
def test_padded_batch_equals_one_at_a_time(kind):
    model = tiny_model(kind)
    x, lengths = pad_batch(NAMES)
    with torch.no_grad():
        batch_steps = model.steps(x, lengths)
        batch_logits = model(x, lengths)
        for i, name in enumerate(NAMES):
            xi, li = pad_batch([name])
            alone = model.steps(xi, li)
            n = len(name)
            assert xi.shape[1] == n
            torch.testing.assert_close(batch_steps.logits[i, :n], alone.logits[0], atol=ATOL, rtol=0)
            torch.testing.assert_close(batch_steps.hidden[:, i, :n], alone.hidden[:, 0], atol=ATOL, rtol=0)
            assert torch.allclose(batch_logits[i], model(xi, li)[0], atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_content_is_irrelevant(kind):
    """Whatever the padded positions hold, the real steps and the final logits do not change."""
    model = tiny_model(kind)
    x, lengths = pad_batch(NAMES)
    noisy = x.clone()
    pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
    noisy[pad] = torch.randint(0, len(ALPHABET), (int(pad.sum()),), generator=torch.Generator().manual_seed(1))
    assert not torch.equal(noisy, x)
    with torch.no_grad():
        a, b = model.steps(x, lengths), model.steps(noisy, lengths)
        torch.testing.assert_close(model(x, lengths), model(noisy, lengths), atol=ATOL, rtol=0)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(a.logits[i, :n], b.logits[i, :n], atol=ATOL, rtol=0)
        torch.testing.assert_close(a.hidden[:, i, :n], b.hidden[:, i, :n], atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_equals_last_real_step(kind):
    model = tiny_model(kind)
    x, lengths = pad_batch(NAMES)
    with torch.no_grad():
        steps = model.steps(x, lengths)
        logits = model(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(logits[i], steps.logits[i, n - 1], atol=ATOL, rtol=0)
    torch.testing.assert_close(last_step(steps.logits, lengths), logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_same_name_same_answer(kind):
    """No randomness at inference: the same name, twice in a batch and in two calls, gets identical outputs."""
    model = tiny_model(kind)
    x, lengths = pad_batch(["Ivanov", "Ivanov", "Li"])
    with torch.no_grad():
        first, second = model(x, lengths), model(x, lengths)
    assert torch.equal(first, second)
    assert torch.allclose(first[0], first[1], atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_weights(kind):
    a, b, c = tiny_model(kind, seed=7), tiny_model(kind, seed=7), tiny_model(kind, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() == sc.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_rnn_hidden_state_stays_in_unit_interval():
    torch.manual_seed(0)
    model = build(RNNConfig()).eval()  # the default recipe's size
    x, lengths = pad_batch(NAMES + ["x" * 64])
    with torch.no_grad():
        hidden = model.steps(x, lengths).hidden
    assert hidden.shape[0] == 1
    assert torch.all(hidden > 0) and torch.all(hidden < 1)


def test_rnn_follows_the_article_equations():
    """h_t = sigmoid(W_h [x_t; h_{t-1}] + b_h); logits_t = W_o [x_t; h_{t-1}] + b_o, with explicit one-hots."""
    model = tiny_model("rnn")
    name = "Mikhail"
    x, lengths = pad_batch([name])
    with torch.no_grad():
        steps = model.steps(x, lengths)
        h = model.h0.clone()
        for t, char in enumerate(name):
            onehot = torch.zeros(len(ALPHABET))
            onehot[ALPHABET.index(char)] = 1.0
            combined = torch.cat([onehot, h])
            expected_logits = model.i2o(combined)  # reads h_{t-1}, not h_t
            h = torch.sigmoid(model.i2h(combined))
            torch.testing.assert_close(steps.logits[0, t], expected_logits, atol=ATOL, rtol=0)
            torch.testing.assert_close(steps.hidden[0, 0, t], h, atol=ATOL, rtol=0)


def test_rnn_initial_state_is_fixed():
    default = build(RNNConfig(hidden_size=8))
    assert torch.equal(default.h0.detach(), torch.zeros(8))
    assert default.h0.requires_grad
    frozen = build(RNNConfig(hidden_size=8, learn_initial_state=False))
    assert not frozen.h0.requires_grad


def test_gru_layers_equal_one_multilayer_gru():
    """The stack of single-layer GRUs computes what one 2-layer nn.GRU computes (in eval mode)."""
    model = tiny_model("gru")
    cfg = model.config
    reference = nn.GRU(cfg.embedding_size, cfg.hidden_size, num_layers=2, batch_first=True)
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{i}").copy_(getattr(layer, f"{name}_l0"))
        x, lengths = pad_batch(NAMES)
        out, _ = reference(model.embed(x))
        steps = model.steps(x, lengths)
    torch.testing.assert_close(steps.hidden[-1], out, atol=ATOL, rtol=0)
    torch.testing.assert_close(steps.logits, model.head(out), atol=ATOL, rtol=0)


def test_gru_dropout_only_in_training():
    model = tiny_model("gru")
    x, lengths = pad_batch(NAMES)
    with torch.no_grad():
        eval_out = model(x, lengths)
        model.train()
        torch.manual_seed(0)
        train_out = model(x, lengths)
        model.eval()
        assert torch.equal(model(x, lengths), eval_out)
    assert not torch.allclose(train_out, eval_out)


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip(kind):
    config = tiny_config(kind)
    assert config_from_dict(config_to_dict(config)) == config


def test_config_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        config_from_dict({"kind": "lstm"})
