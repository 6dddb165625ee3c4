"""namecls.explain.cell: the logit split into units, the gates and one unit's equation, each checked against the
network's
own outputs (``model.steps``) on the committed checkpoints, and the GRU's states checked against a per-step
recomputation from its weights on hundreds of real names."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import namecls
from namecls.explain import cell
from namecls.data.names import encode, pad_batch
from test_models import tiny_model  # the same small random models as the model tests

# Compares the committed checkpoints' numbers across two computations: .ci/run reruns it under emulated CPUs.
pytestmark = pytest.mark.recorded

KINDS = ["rnn", "gru"]
NAMES = ["Nakamura", "O'Neill", "A", "de la Cruz", "Mikhailovich", "Qin", "x" * 64]
# float32 recomputation of a state from the gates vs the GRU kernel (4e-6 here, 1.2e-5 under MKL_CBWR=AVX2)
STATE_ATOL = 5e-5


@pytest.fixture(scope="module")
def committed():
    return {kind: namecls.load(kind) for kind in KINDS}


def _steps(model, name: str):
    """(logits (T, C), hidden (L, T, H)) of ``name`` from the model itself."""
    x, lengths = pad_batch([name])
    with torch.inference_mode():
        steps = model.steps(x, lengths)
    return steps.logits[0].double(), steps.hidden[:, 0]


def _previous(model, hidden: np.ndarray) -> np.ndarray:
    """(L, T, H): the state before each character, built here from the model's states and initial state."""
    initial = model.initial_state().numpy()  # (L, H)
    return np.concatenate([initial[:, None], hidden[:, :-1]], axis=1)


# contributions ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NAMES)
def test_contributions_sum_to_the_models_logit_for_every_language(committed, kind, name):
    model = committed[kind].model
    logits, _ = _steps(model, name)
    for c in range(logits.shape[1]):
        parts = cell.contributions(model, encode(name), c)
        total = parts["bias"] + parts["input"] + sum(u["contribution"] for u in parts["units"])
        assert parts["language"] == c
        assert parts["logit"] == pytest.approx(float(logits[-1, c]), abs=1e-4)
        assert total == pytest.approx(parts["logit"], abs=1e-9)  # float64: the parts are exact
        if kind == "gru":
            assert parts["input"] == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_contributions_list_every_unit_of_the_read_state_sorted(committed, kind):
    model = committed[kind].model
    name = "Nakamura"
    _, hidden = _steps(model, name)
    read = hidden[-1, -1] if kind == "gru" else torch.from_numpy(_previous(model, hidden.numpy())[-1, -1])  # (H,)
    parts = cell.contributions(model, name)
    units = parts["units"]
    H = model.config.hidden_size
    assert sorted(u["unit"] for u in units) == list(range(H))
    assert {u["layer"] for u in units} == {hidden.shape[0] - 1}
    values = [u["contribution"] for u in units]
    assert values == sorted(values, reverse=True)
    for a, b in zip(units, units[1:]):
        assert a["contribution"] > b["contribution"] or a["unit"] < b["unit"]  # ties by unit
    weight = model.readout.weight[parts["language"]].detach().double()
    offset = 0 if kind == "gru" else model.config.vocab_size
    for u in units:
        assert u["state"] == pytest.approx(float(read[u["unit"]]), abs=1e-7)
        assert u["weight"] == float(weight[offset + u["unit"]])
        assert u["contribution"] == pytest.approx(u["weight"] * u["state"], rel=1e-12, abs=1e-15)


def test_contributions_ties_are_ordered_by_unit():
    """Units with equal contributions (here: a readout row with zeroed weights) come in unit order."""
    clf = namecls.load("gru")
    with torch.no_grad():
        clf.model.head.weight[0, ::2] = 0.0
    units = cell.contributions(clf.model, "Nakamura", 0)["units"]
    zeros = [u["unit"] for u in units if u["contribution"] == 0.0]
    assert len(zeros) >= clf.model.config.hidden_size // 2
    assert zeros == sorted(zeros)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["Nakamura", "A", "de la Cruz"])
def test_contributions_along_the_name_are_each_steps_readout(committed, kind, name):
    """Row t of ``along`` plus the bias (and, for the RNN, character t's direct term) is the logit after prefix t;
    the last row is the final contributions; for the RNN row 0 reads the learned initial state."""
    model = committed[kind].model
    logits, _ = _steps(model, name)
    parts = cell.contributions(model, name)
    c, along = parts["language"], parts["along"]
    T, H = len(name), model.config.hidden_size
    assert along.shape == (T, H) and along.dtype == np.float64
    direct = np.zeros(T)  # (T,)
    if kind == "rnn":
        direct = model.i2o.weight[c, encode(name)].detach().double().numpy()
        V = model.config.vocab_size
        np.testing.assert_allclose(along[0], (model.i2o.weight[c, V:] * model.h0).detach().double().numpy(),
                                   atol=1e-7)
    np.testing.assert_allclose(along.sum(axis=1) + parts["bias"] + direct, logits[:, c].numpy(), atol=1e-4)
    final = np.zeros(H)
    final[[u["unit"] for u in parts["units"]]] = [u["contribution"] for u in parts["units"]]
    np.testing.assert_array_equal(along[-1], final)


@pytest.mark.parametrize("kind", KINDS)
def test_contributions_default_target_is_the_answer_and_probability_is_calibrated(committed, kind):
    clf = committed[kind]
    trace = clf.trace("Kowalski")
    parts = cell.contributions(clf.model, "Kowalski", temperature=clf.temperature)
    assert parts["language"] == trace.target
    assert parts["temperature"] == clf.temperature
    assert parts["probability"] == pytest.approx(float(trace.probs[-1, trace.target]), abs=1e-5)
    plain = cell.contributions(clf.model, "Kowalski")
    assert plain["logit"] == parts["logit"]  # the logit is before the temperature


@pytest.mark.parametrize("kind", KINDS)
def test_given_trace_layers_give_the_same_results(committed, kind):
    clf = committed[kind]
    name = "Mikhailovich"
    trace = clf.trace(name)
    x = torch.tensor([encode(name)])
    for form in (name, encode(name), np.array(encode(name)), x, x[0]):
        a = cell.contributions(clf.model, form, trace.target, clf.temperature)
        b = cell.contributions(clf.model, form, trace.target, clf.temperature, hidden=trace.layers)
        assert a["units"] == b["units"] and a["logit"] == b["logit"]
        np.testing.assert_array_equal(a["along"], b["along"])
        ga, gb = cell.gates(clf.model, form), cell.gates(clf.model, form, hidden=trace.layers)
        for key in ga:
            np.testing.assert_array_equal(ga[key], gb[key])
    assert cell.unit_equation(clf.model, name, 0, 3, 2) == cell.unit_equation(clf.model, name, 0, 3, 2,
                                                                               hidden=trace.layers)


def test_bad_inputs_are_refused(committed):
    model = committed["gru"].model
    with pytest.raises(ValueError, match="shape"):
        cell.contributions(model, [])
    with pytest.raises(ValueError, match="shape"):
        cell.gates(model, torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="target"):
        cell.contributions(model, "Li", 18)
    with pytest.raises(ValueError, match="hidden"):
        cell.gates(model, "Li", hidden=np.zeros((2, 3, 256), dtype=np.float32))


# gates --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_gru_gates_reproduce_every_layers_states(committed, name):
    """h_t = (1 − z) ⊙ n + z ⊙ h_{t-1} from the returned gates is the network's state, in both layers."""
    model = committed["gru"].model
    _, hidden = _steps(model, name)
    hidden = hidden.numpy()  # (L, T, H)
    g = cell.gates(model, encode(name))
    assert set(g) == set(cell.GATE_KEYS["gru"]) == {"update", "reset", "candidate"}
    L, T, H = hidden.shape
    assert L == 2
    for key in g:
        assert g[key].shape == (L, T, H)
    assert np.all((g["update"] >= 0) & (g["update"] <= 1)) and np.all((g["reset"] >= 0) & (g["reset"] <= 1))
    assert np.all(np.abs(g["candidate"]) <= 1)
    z = g["update"]
    recomputed = (1 - z) * g["candidate"] + z * _previous(model, hidden)  # (L, T, H)
    np.testing.assert_allclose(recomputed, hidden, atol=STATE_ATOL, rtol=0)


def test_gru_gates_follow_pytorchs_gru_cell():
    """The gate equations and the r, z, n row order agree with an nn.GRUCell holding the same weights (an
    independent implementation), on a small random GRU."""
    model = tiny_model("gru")
    name = "Slusarski"
    x = torch.tensor(encode(name))
    _, hidden = _steps(model, name)
    g = cell.gates(model, name)
    previous = _previous(model, hidden.numpy())
    with torch.no_grad():
        layer_input = model.embed(x)  # (T, E)
        for i, layer in enumerate(model.layers):
            reference = torch.nn.GRUCell(layer.input_size, layer.hidden_size)
            for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, part).copy_(getattr(layer, f"{part}_l0"))
            expected = reference(layer_input, torch.from_numpy(previous[i]))  # (T, H): one step from each h_{t-1}
            z = g["update"][i]
            np.testing.assert_allclose((1 - z) * g["candidate"][i] + z * previous[i], expected.numpy(), atol=1e-6)
            layer_input = hidden[i]


@pytest.mark.parametrize("name", NAMES)
def test_rnn_drive_reproduces_the_states(committed, name):
    model = committed["rnn"].model
    _, hidden = _steps(model, name)
    g = cell.gates(model, name)
    assert set(g) == set(cell.GATE_KEYS["rnn"]) == {"input_drive", "recurrent_drive"}
    H = model.config.hidden_size
    for key in g:
        assert g[key].shape == (1, len(name), H)
    states = torch.sigmoid(torch.from_numpy(g["input_drive"] + g["recurrent_drive"]))
    np.testing.assert_allclose(states.numpy(), hidden.numpy(), atol=STATE_ATOL, rtol=0)
    # the input drive is the character's column of i2h plus the bias: the same for the same character
    V = model.config.vocab_size
    column = (model.i2h.weight[:, :V].t()[encode(name)] + model.i2h.bias).detach().numpy()
    np.testing.assert_array_equal(g["input_drive"][0], column)


def test_gates_of_an_unknown_cell_is_none():
    model = torch.nn.Module()
    model.config = type("Config", (), {"kind": "lstm"})()
    assert cell.gates(model, "Li") is None


@pytest.mark.slow
def test_gru_steps_equal_a_per_step_recomputation_on_hundreds_of_names(committed, names_data):
    """The GRU's steps() (what predict and trace read) against the states and logits recomputed one step at a time
    from the weights by cell.gates, on 300 real names: guards the nn.GRU call in GRUClassifier._run."""
    model = committed["gru"].model
    names = sorted(set(names_data.names))
    random.Random(0).shuffle(names)
    worst_state = worst_logit = 0.0
    with torch.inference_mode():
        for name in names[:300] + ["A", "x" * 64]:
            logits, hidden = _steps(model, name)
            hidden = hidden.numpy()  # (L, T, H)
            g = cell.gates(model, name, hidden=hidden)  # each step from the state before it (no second run)
            z = g["update"]
            states = (1 - z) * g["candidate"] + z * _previous(model, hidden)  # (L, T, H)
            head = model.head(torch.from_numpy(states[-1])).double()  # (T, C)
            worst_state = max(worst_state, float(np.abs(states - hidden).max()))
            worst_logit = max(worst_logit, float((head - logits).abs().max()))
            x, lengths = pad_batch([name])
            torch.testing.assert_close(model(x, lengths)[0].double(), logits[-1], atol=1e-5, rtol=0)  # same step
    assert worst_state < STATE_ATOL and worst_logit < 1e-4, (worst_state, worst_logit)


# unit_equation ------------------------------------------------------------------------------------------------------


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + np.exp(-v))


@pytest.mark.parametrize("layer,unit,t", [(0, 0, 0), (0, 17, 3), (1, 119, 5), (1, 255, -1), (1, 3, 0)])
def test_gru_unit_equation_recomputes_the_new_state(committed, layer, unit, t):
    model = committed["gru"].model
    name = "Nakamura"
    _, hidden = _steps(model, name)
    eq = cell.unit_equation(model, encode(name), layer, unit, t)
    step = t % len(name)
    assert (eq["kind"], eq["layer"], eq["unit"], eq["t"], eq["char"]) == ("gru", layer, unit, step, name[step])
    assert eq["h_new"] == float(hidden[layer, step, unit])
    assert eq["h_prev"] == (0.0 if step == 0 else float(hidden[layer, step - 1, unit]))
    r = _sigmoid(eq["r_input"] + eq["r_hidden"])
    z = _sigmoid(eq["z_input"] + eq["z_hidden"])
    n = np.tanh(eq["n_input"] + r * eq["n_hidden"])
    assert (r, z, n) == pytest.approx((eq["r"], eq["z"], eq["n"]), abs=1e-6)
    assert (1 - eq["z"]) * eq["n"] + eq["z"] * eq["h_prev"] == pytest.approx(eq["h_new"], abs=STATE_ATOL)
    text = eq["text"]
    assert f"'{name[step]}'" in text and f"{eq['z']:.0%} of its past" in text
    assert f"{eq['h_new']:.2f}".replace("-", "−") in text
    assert ("L1" if layer == 0 else "L2") + f" #{unit}" in text


@pytest.mark.parametrize("unit,t", [(0, 0), (5, 3), (200, -1)])
def test_rnn_unit_equation_recomputes_the_new_state(committed, unit, t):
    model = committed["rnn"].model
    name = "Nakamura"
    _, hidden = _steps(model, name)
    eq = cell.unit_equation(model, name, 0, unit, t)
    step = t % len(name)
    assert eq["kind"] == "rnn" and eq["char"] == name[step]
    assert eq["h_prev"] == float(model.h0.detach()[unit] if step == 0 else hidden[0, step - 1, unit])
    assert eq["pre"] == eq["input"] + eq["recurrent"]
    assert _sigmoid(eq["pre"]) == pytest.approx(eq["h_new"], abs=STATE_ATOL)
    assert eq["h_new"] == float(hidden[0, step, unit])
    assert f"σ({eq['pre']:.2f})".replace("-", "−") in eq["text"]


@pytest.mark.parametrize("kind", KINDS)
def test_unit_equation_refuses_out_of_range(committed, kind):
    model = committed[kind].model
    L = 2 if kind == "gru" else 1
    H = model.config.hidden_size
    for layer, unit, t, word in [(L, 0, 0, "layer"), (-1, 0, 0, "layer"), (0, H, 0, "unit"), (0, 0, 3, "letter"),
                                 (0, 0, -4, "letter")]:
        with pytest.raises(ValueError, match=word):
            cell.unit_equation(model, "Qin", layer, unit, t)
