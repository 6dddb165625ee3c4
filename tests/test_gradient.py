"""How learning reaches back (namecls.explain.gradient): state gradients against independent computations.

Each check computes the same derivative another way: the readout's gradient by hand at the last state the answer
reads, finite differences that perturb one unit of a mid-name state and run the rest of the network from it,
autograd through a separate step-by-step recomputation (RNN: the hand-written BPTT's check; GRU: the fused
``nn.GRU`` layer called one step at a time).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import namecls
from namecls.models import bptt
from namecls.data.names import ALPHABET, pad_batch
from namecls.explain.gradient import StateGradients, fade_summary, state_gradients, state_vectors
from namecls.models.networks import GRUClassifier, GRUConfig, RNNClassifier, RNNConfig

# Compares the committed checkpoints' numbers across two computations: .ci/run reruns it under emulated CPUs.
pytestmark = pytest.mark.recorded

NAMES = ["Nakamura", "Kowalski", "Shirinsky-Shikhmatov", "Ng", "O'Neill", "A"]


@pytest.fixture(scope="module")
def committed():
    """The committed checkpoints, ``{"rnn": Classifier, "gru": Classifier}``."""
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


def random_model(kind: str, seed: int = 0, dtype=torch.float64) -> torch.nn.Module:
    """A small random model (weights scaled up so gradients are sizeable), in evaluation mode."""
    torch.manual_seed(seed)
    if kind == "rnn":
        model = RNNClassifier(RNNConfig(num_classes=5, hidden_size=12))
    else:
        model = GRUClassifier(GRUConfig(num_classes=5, hidden_size=12, embedding_size=6, num_layers=2))
    model = model.to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0).add_(0.1 * torch.randn_like(p))
    return model


def models(committed) -> list[tuple[str, torch.nn.Module, float]]:
    """(label, model, temperature): both random models and both committed ones (float64 copies)."""
    out = [(f"random {k}", random_model(k), 1.3) for k in ("rnn", "gru")]
    out += [(f"committed {k}", copy.deepcopy(clf.model).double(), clf.temperature) for k, clf in committed.items()]
    return out


def final_logits(model: torch.nn.Module, name: str) -> torch.Tensor:
    """(C,): the model's own logits for the whole name."""
    x, lengths = pad_batch([name])
    with torch.no_grad():
        return model(x, lengths)[0]


def readout_delta(logits: torch.Tensor, c: int, temperature: float) -> torch.Tensor:
    """(C,): ∂ log softmax(z / τ)[c] / ∂z = (onehot_c - p) / τ."""
    p = torch.softmax(logits / temperature, dim=-1)
    return (torch.nn.functional.one_hot(torch.tensor(c), len(logits)).to(p.dtype) - p) / temperature


# ---------------------------------------------------------------------------------------------------------------
# Independent computations of the final logits from one top-layer state onwards.

def rnn_rest(model: RNNClassifier, name: str, k: int, h: torch.Tensor) -> torch.Tensor:
    """(C,): the RNN's final logits when the state after character k (0-based; -1: the initial state) is ``h``,
    through ``nn.Linear`` on the concatenated one-hot input (not the model's column lookups)."""
    codes = pad_batch([name])[0][0]
    onehot = torch.nn.functional.one_hot(codes, model.config.vocab_size).to(h.dtype)  # (T, V)
    T = len(codes)
    for t in range(k + 1, T - 1):  # the states after characters k+1 … T-2
        h = torch.sigmoid(model.i2h(torch.cat([onehot[t], h])))
    if k == T - 1:  # the state after the last character: nothing reads it
        h = model.steps(codes[None], torch.tensor([T])).hidden[0, 0, T - 2] if T > 1 else model.h0
    return model.i2o(torch.cat([onehot[T - 1], h]))


def gru_rest(model: GRUClassifier, name: str, k: int, h: torch.Tensor) -> torch.Tensor:
    """(C,): the GRU's final logits when the top layer's state after character k (-1: the initial zeros) is ``h``,
    the layers below as the model computes them, the top layer's rest run by its own fused ``nn.GRU``."""
    x, lengths = pad_batch([name])
    below = model.steps(x, lengths).hidden[-2, 0] if len(model.layers) > 1 else model.embed(x)[0]  # (T, ·)
    T = x.shape[1]
    if k < T - 1:
        out, _ = model.layers[-1](below[k + 1 :].unsqueeze(0), h.view(1, 1, -1))  # (1, T-k-1, H)
        h = out[0, -1]
    return model.head(h)


def top_state(model: torch.nn.Module, name: str, k: int) -> torch.Tensor:
    """(H,): the top layer's state after character k (-1: before the first character)."""
    x, lengths = pad_batch([name])
    with torch.no_grad():
        if k < 0:
            return model.initial_state()[-1].to(model.readout.weight.dtype)
        return model.steps(x, lengths).hidden[-1, 0, k]


# ---------------------------------------------------------------------------------------------------------------

def test_last_read_state_gets_exactly_the_readout_gradient(committed):
    for label, model, temperature in models(committed):
        for name in NAMES:
            logits = final_logits(model, name)
            T = len(name)
            for target in (None, 2):
                g = state_gradients(model, name, target, temperature)
                c = int(torch.argmax(logits)) if target is None else target
                assert g.target == c
                assert g.log_prob == pytest.approx(float(torch.log_softmax(logits / temperature, -1)[c]), abs=1e-9)
                delta = readout_delta(logits, c, temperature)  # (C,)
                if isinstance(model, RNNClassifier):
                    W_oh = model.i2o.weight[:, model.config.vocab_size :]  # (C, H)
                    expected = float(torch.linalg.vector_norm(W_oh.detach().t() @ delta))
                    assert g.reads_state_before_last and g.norms[-1] == 0.0  # h after the last letter feeds nothing
                    read = g.norms[T - 2] if T > 1 else g.initial  # a one-letter name reads h0
                else:
                    expected = float(torch.linalg.vector_norm(model.head.weight.detach().t() @ delta))
                    assert not g.reads_state_before_last
                    read = g.norms[T - 1]
                assert read == pytest.approx(expected, rel=1e-9), (label, name, target)


@pytest.mark.parametrize("where", ["mid", "initial"])
def test_finite_differences_on_one_unit_of_a_state(committed, where):
    eps = 1e-6
    for label, model, temperature in models(committed):
        rest = rnn_rest if isinstance(model, RNNClassifier) else gru_rest
        for name in ("Nakamura", "Shirinsky-Shikhmatov"):
            k = len(name) // 2 - 1 if where == "mid" else -1
            vectors = state_vectors(model, name, None, temperature)
            grad = vectors.after[k] if k >= 0 else vectors.initial  # (H,)
            c = vectors.target
            h = top_state(model, name, k)
            with torch.no_grad():
                assert torch.allclose(rest(model, name, k, h), final_logits(model, name), rtol=0, atol=1e-10)
                for unit in (int(torch.argmax(grad.abs())), 3):
                    e = torch.zeros_like(h)
                    e[unit] = eps
                    up = torch.log_softmax(rest(model, name, k, h + e) / temperature, -1)[c]
                    down = torch.log_softmax(rest(model, name, k, h - e) / temperature, -1)[c]
                    numeric = float(up - down) / (2 * eps)
                    assert numeric == pytest.approx(float(grad[unit]), rel=1e-5, abs=1e-9), (label, name, unit)


def rnn_autograd(model: RNNClassifier, name: str, c: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """((T, H), (H,)): ∂ log p / ∂h_t and ∂ log p / ∂h0 by autograd through a step-by-step recomputation; the
    state after the last character is unused (autograd returns None for it, here a zero row)."""
    codes = pad_batch([name])[0][0]
    V = model.config.vocab_size
    h_init = model.h0.detach().clone().requires_grad_()
    h, states = h_init, []
    for t in range(len(codes)):
        states.append(torch.sigmoid(model.i2h.weight[:, codes[t]] + model.i2h.weight[:, V:] @ h + model.i2h.bias))
        if t < len(codes) - 1:
            h = states[-1]
    read = h_init if len(codes) == 1 else states[-2]
    logits = model.i2o.weight[:, codes[-1]] + model.i2o.weight[:, V:] @ read + model.i2o.bias
    log_p = torch.log_softmax(logits / temperature, -1)[c]
    grads = torch.autograd.grad(log_p, [h_init, *states], allow_unused=True)
    assert grads[-1] is None  # the state after the last character is not on any path to the answer
    after = torch.stack([torch.zeros_like(h_init) if g is None else g for g in grads[1:]])
    return after, grads[0]


def test_rnn_hand_bptt_matches_autograd(committed):
    cases = [("random float64", random_model("rnn"), 1.3), ("committed float32", committed["rnn"].model,
                                                           committed["rnn"].temperature)]
    for label, model, temperature in cases:
        for name in NAMES + ["Zhelekhovsky", "van der Berg"]:
            vectors = state_vectors(model, name, None, temperature)
            after, initial = rnn_autograd(model, name, vectors.target, temperature)
            # float32 through a dozen steps: a component 1e-5 of the largest is rounding, whatever the kernels
            # (other thread counts and CPUs sum in another order); float64 holds to 1e-7 of it.
            floor = (1e-7 if after.dtype == torch.float64 else 1e-5) * float(after.abs().max())
            torch.testing.assert_close(vectors.after, after, rtol=1e-4, atol=floor)
            torch.testing.assert_close(vectors.initial, initial, rtol=1e-4, atol=floor)
            norms = state_gradients(model, name, None, temperature).norms
            np.testing.assert_allclose(norms, torch.linalg.vector_norm(after.double(), dim=1).numpy(), rtol=1e-4)
            assert norms[-1] == 0.0, (label, name)


def test_gru_step_by_step_matches_autograd_through_the_fused_layer(committed):
    """The same derivatives by autograd through the model's own ``nn.GRU`` top layer, called one step at a time
    (the fused kernel, not the module's hand-written cell)."""
    for label, model, temperature in [("random", random_model("gru"), 1.3),
                                      ("committed", committed["gru"].model, committed["gru"].temperature)]:
        for name in NAMES:
            x, lengths = pad_batch([name])
            with torch.no_grad():
                below = model.steps(x, lengths).hidden[-2, 0]  # (T, H): layer 1, a constant here
            h0 = torch.zeros(1, 1, model.config.hidden_size, dtype=below.dtype, requires_grad=True)
            h, states = h0, []
            for t in range(x.shape[1]):
                _, h = model.layers[-1](below[t : t + 1].unsqueeze(0), h)  # (1, 1, H)
                states.append(h)
            logits = model.head(h[0, 0])
            vectors = state_vectors(model, name, None, temperature)
            log_p = torch.log_softmax(logits / temperature, -1)[vectors.target]
            grads = torch.autograd.grad(log_p, [h0, *states])
            expected = torch.cat(grads[1:]).reshape(x.shape[1], -1)  # (T, H)
            scale = float(expected.abs().max())
            torch.testing.assert_close(vectors.after, expected, rtol=1e-4, atol=1e-6 * scale)
            torch.testing.assert_close(vectors.initial, grads[0].reshape(-1), rtol=1e-4, atol=1e-6 * scale)
            assert vectors.log_prob == pytest.approx(float(log_p.detach()), abs=1e-5), (label, name)


def test_bptt_state_gradients_of_a_padded_batch_are_each_names_own():
    model = random_model("rnn", seed=4)
    names = ["Abe", "X", "O'Neill", "Nakamura"]
    x, lengths = pad_batch(names)
    W_h, b_h, W_o, b_o = model.i2h.weight, model.i2h.bias, model.i2o.weight, model.i2o.bias
    logits, cache = bptt.rnn_forward(x, lengths, W_h, b_h, W_o, b_o, model.h0)
    dz = torch.randn(logits.shape, dtype=logits.dtype, generator=torch.Generator().manual_seed(0))  # (B, C)
    dh = bptt.state_gradients(dz, cache, W_h, W_o)  # (B, T, H)
    for b, name in enumerate(names):
        xb, lb = pad_batch([name])
        _, cb = bptt.rnn_forward(xb, lb, W_h, b_h, W_o, b_o, model.h0)
        torch.testing.assert_close(dh[b, : len(name)], bptt.state_gradients(dz[b : b + 1], cb, W_h, W_o)[0])
        assert torch.count_nonzero(dh[b, len(name) :]) == 0  # padding gets nothing
    # δh_0 summed over the batch is rnn_backward's gradient of h0.
    torch.testing.assert_close(dh[:, 0].sum(0), bptt.rnn_backward(dz, cache, W_h, W_o).h0)


def test_inputs_inference_mode_and_the_model_left_alone(committed):
    for kind, clf in committed.items():
        model = clf.model
        before = {k: v.clone() for k, v in model.state_dict().items()}
        codes = pad_batch(["Nakamura"])[0]
        reference = state_gradients(model, "Nakamura", temperature=clf.temperature)
        with torch.inference_mode():  # as inside Classifier.trace
            inside = state_gradients(model, pad_batch(["Nakamura"])[0], temperature=clf.temperature)
        np.testing.assert_array_equal(inside.norms, reference.norms)
        np.testing.assert_array_equal(state_gradients(model, codes[0], temperature=clf.temperature).norms,
                                      reference.norms)
        assert reference.norms.shape == (8,) and reference.norms.dtype == np.float64
        assert reference.target == clf.trace("Nakamura").target
        assert not model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())
        data = json.loads(json.dumps(reference.to_dict()))
        assert data["kind"] == kind and len(data["norms"]) == 8 and data["fade"]["reference"] == 7 - (kind == "rnn")


def test_gru_is_computed_without_dropout_even_in_training_mode(committed):
    model = copy.deepcopy(committed["gru"].model).train()
    torch.manual_seed(0)
    trained = state_gradients(model, "Kowalski").norms
    np.testing.assert_array_equal(trained, state_gradients(committed["gru"].model, "Kowalski").norms)


def test_bad_inputs_are_refused():
    rnn = random_model("rnn")
    with pytest.raises(ValueError, match="one non-empty name"):
        state_gradients(rnn, pad_batch(["Ab", "Cd"])[0])
    with pytest.raises(ValueError, match="one non-empty name"):
        state_gradients(rnn, torch.zeros(1, 0, dtype=torch.int64))
    with pytest.raises(ValueError, match="not a class index"):
        state_gradients(rnn, "Ab", target=5)
    with pytest.raises(TypeError, match="RNNClassifier and GRUClassifier"):
        state_gradients(torch.nn.Linear(2, 2), "Ab")
    assert len(ALPHABET) == rnn.config.vocab_size


def grads(norms, rnn: bool) -> StateGradients:
    return StateGradients("rnn" if rnn else "gru", np.asarray(norms, dtype=np.float64), 0.01, 3, -0.1, 1.0, rnn)


def test_fade_numbers_and_sentence():
    g = grads([0.003, 0.03, 0.3, 1.0], rnn=False)
    f = g.fade()
    assert (f.first, f.reference, f.ratio) == (0, 3, pytest.approx(0.003))
    assert f.per_letter == pytest.approx(0.003 ** (1 / 3))
    text = fade_summary(g, "Abcd", "Polish")
    assert text == ("The gradient of the answer (Polish) with respect to the state after 'A' is 0.3% of its size "
                    "after 'd': going back, it shrinks by a factor of 0.14 per letter on average.")
    r = grads([2e-6, 0.5, 0.1, 0.0], rnn=True)  # the RNN's reference is the state before the last letter
    assert r.reference == 2 and r.fade().ratio == pytest.approx(2e-5)
    assert fade_summary(r, "abcd") == (
        "The gradient of the answer with respect to the state after 'a' is about 1/50,000 of its size after 'c' (the "
        "last state this RNN's answer reads: the one before the final letter): going back, it shrinks by a factor "
        "of 0.0045 per letter on average.")
    assert "after letter 1" in fade_summary(r)  # no characters given
    assert "2 times its size" in fade_summary(grads([1.0, 0.5], rnn=False))  # growing, not fading
    assert "42% of" in fade_summary(grads([0.42, 1.0], rnn=False))
    assert "no earlier letter" in fade_summary(grads([0.2], rnn=False), "A")
    assert "no earlier letter" in fade_summary(grads([0.2, 0.0], rnn=True), "Ab")
    assert grads([0.0], rnn=True).fade().reference == -1
    assert "only the state before the first letter" in fade_summary(grads([0.0], rnn=True), "A")
    assert json.loads(json.dumps(r.to_dict()))["fade"]["ratio"] == pytest.approx(2e-5)
