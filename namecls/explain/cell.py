"""The cell at work, in numbers: which units pushed the final answer, every gate after every character, and one
unit's equation with its actual values.

Pure functions of a model (:class:`namecls.models.networks.RNNClassifier` or
:class:`namecls.models.networks.GRUClassifier`, in eval
mode as :func:`namecls.load` returns it) and one name's character indices ``x``: a (T,) or (1, T) sequence of
indices into :data:`namecls.data.names.ALPHABET` (or an already normalised ``str``). Each function also takes the name's
hidden states ``hidden`` (L, T, H), a :class:`namecls.inference.Trace`'s ``layers``, so that a caller that already
ran ``model.steps`` does not run the network again; without it the function runs ``model.steps`` itself.

Every per-step quantity is computed for all T steps at once, from the states the network actually held (the state
before step t is the state after step t - 1, or the model's ``initial_state()`` at t = 0): the gates are exactly the
ones the network used, and the update rule applied to them reproduces the network's states.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..posthoc import prior as prior_rule
from ..data.names import ALPHABET, encode
from ..models.networks import GRUClassifier, Model, RNNClassifier

# What gates() returns for each kind of cell: every value is an (L, T, H) array.
GATE_KEYS = {
    "gru": ("update", "reset", "candidate"),
    "rnn": ("input_drive", "recurrent_drive"),
}


def _indices(x) -> torch.Tensor:
    """One name's character indices as a (1, T) int64 tensor (from a str, a list, a NumPy array or a tensor)."""
    if isinstance(x, str):
        x = encode(x)
    x = torch.as_tensor(x, dtype=torch.int64)
    if x.dim() == 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError("expected one name's character indices, shape (T,) or (1, T) with T >= 1; "
                         f"got {tuple(x.shape)}")
    return x.unsqueeze(0)  # (1, T)


def _kind(model: Model) -> str:
    kind = model.config.kind
    if kind not in GATE_KEYS:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {sorted(GATE_KEYS)}")
    return kind


def _states(model: Model, x: torch.Tensor, hidden) -> torch.Tensor:
    """(L, T, H): every layer's state after each character of ``x`` (1, T): ``hidden`` if given, else from
    ``model.steps``."""
    if hidden is None:
        return model.steps(x, torch.tensor([x.shape[1]])).hidden[:, 0]  # (L, T, H)
    hidden = torch.as_tensor(hidden)
    L, H = model.initial_state().shape
    if hidden.shape != (L, x.shape[1], H):
        raise ValueError(f"hidden has shape {tuple(hidden.shape)}; expected (L, T, H) = {(L, x.shape[1], H)}")
    return hidden


def _previous(model: Model, states: torch.Tensor) -> torch.Tensor:
    """(L, T, H): every layer's state *before* each character: the initial state, then the states shifted by one."""
    initial = model.initial_state().to(states.dtype)  # (L, H)
    return torch.cat([initial[:, None], states[:, :-1]], dim=1)  # (L, T, H)


def _gru_pieces(model: GRUClassifier, x: torch.Tensor, states: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every GRU layer's gate pre-activations and gates after every character, each (L, T, H).

    PyTorch stores a layer's three gates stacked in the order r, z, n (rows of ``weight_ih_l0`` / ``weight_hh_l0``):

        r  = σ(W_ir x + b_ir + W_hr h + b_hr)        reset gate
        z  = σ(W_iz x + b_iz + W_hz h + b_hz)        update gate
        n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))  candidate
        h' = (1 − z) ⊙ n + z ⊙ h

    ``x`` is the layer's input (the character's embedding for layer 0, the layer below's new state above it) and
    ``h`` the layer's state before the character. Keys: ``{r,z,n}_input`` (W_i· x + b_i), ``{r,z,n}_hidden``
    (W_h· h + b_h), ``reset``, ``update``, ``candidate`` and ``previous`` (h).
    """
    previous = _previous(model, states)  # (L, T, H)
    # Layer 0 reads the embeddings (dropout is off in eval mode), layer i > 0 the new states of layer i - 1.
    layer_inputs = [model.embed(x[0])] + list(states[:-1])  # [(T, E), (T, H), ...]
    # (type: ignore below: nn.GRU sets its weights by setattr, so mypy sees Module.__getattr__'s Tensor | Module)
    from_input = torch.stack([F.linear(inp, layer.weight_ih_l0, layer.bias_ih_l0)  # type: ignore[arg-type]
                              for inp, layer in zip(layer_inputs, model.layers)])  # (L, T, 3H)
    from_past = torch.stack([F.linear(h, layer.weight_hh_l0, layer.bias_hh_l0)  # type: ignore[arg-type]
                             for h, layer in zip(previous, model.layers)])  # (L, T, 3H)
    pieces = {}
    for gate, a, b in zip("rzn", from_input.chunk(3, dim=-1), from_past.chunk(3, dim=-1)):  # each (L, T, H)
        pieces[f"{gate}_input"], pieces[f"{gate}_hidden"] = a, b
    pieces["reset"] = torch.sigmoid(pieces["r_input"] + pieces["r_hidden"])
    pieces["update"] = torch.sigmoid(pieces["z_input"] + pieces["z_hidden"])
    pieces["candidate"] = torch.tanh(pieces["n_input"] + pieces["reset"] * pieces["n_hidden"])
    pieces["previous"] = previous
    return pieces


def _rnn_pieces(model: RNNClassifier, x: torch.Tensor, states: torch.Tensor) -> dict[str, torch.Tensor]:
    """The hand-written RNN's drive after every character, each (1, T, H): h_t = σ(input_drive + recurrent_drive),
    ``input_drive`` = the character's column of i2h plus its bias, ``recurrent_drive`` = W_hh h_{t-1}; and
    ``previous`` = h_{t-1} (h_0 the learned initial state)."""
    V = model.config.vocab_size
    previous = _previous(model, states)  # (1, T, H)
    input_drive = model.i2h.weight[:, :V].t()[x[0]] + model.i2h.bias  # (T, H)
    recurrent_drive = previous[0] @ model.i2h.weight[:, V:].t()  # (T, H)
    return {"input_drive": input_drive[None], "recurrent_drive": recurrent_drive[None], "previous": previous}


def _pieces(model: Model, kind: str, x: torch.Tensor, states: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`_gru_pieces` or :func:`_rnn_pieces`, by ``kind`` (the model's ``config.kind``, which names its class)."""
    if kind == "gru":
        return _gru_pieces(cast(GRUClassifier, model), x, states)
    return _rnn_pieces(cast(RNNClassifier, model), x, states)


@torch.inference_mode()
def contributions(model: Model, x, target: int | None = None, temperature: float = 1.0,
                  hidden=None, shift=None) -> dict:
    """Split the final answer's logit exactly into a bias, the last character's direct term and one term per unit.

    The logit of language c after the whole name is linear in the state the readout reads:

    - GRU: ``logit_c = head.bias[c] + sum_j head.weight[c, j] * h_T[j]``, h_T the top layer's state after the last
      character; ``input`` is 0.0.
    - RNN: its logits at step t read the character x_t and the state *before* it, h_{t-1}:
      ``logit_c = i2o.bias[c] + i2o.weight[c, x_T] + sum_j i2o.weight[c, V + j] * h_{T-1}[j]``; ``input`` is the
      last character's direct term i2o.weight[c, x_T].

    The logit is the raw one, *before* the temperature: the calibrated log-odds are logits / ``temperature``, so each
    part divided by ``temperature`` is its share of the calibrated logit (``probability`` is the calibrated one,
    under a prior's log ``shift`` (C,) when given: :mod:`namecls.posthoc.prior`; a prior adds the same to every name's
    logit of c, so it moves no unit's part).

    ``target`` is the language index c (default: the model's top answer for the name). Returns::

        {"language": c, "logit": float, "bias": float, "input": float, "temperature": float, "probability": float,
         "units": [{"layer", "unit", "state", "weight", "contribution"}, ...],   # all H units of the read state,
                                                    # by contribution descending (most for c first), ties by unit
         "along": (T, H) float64 array}   # weight_j * the state each step's logits read: after each character (GRU),
                                          # before it (RNN: h_{t-1}, h_0 the learned initial state); along[-1] is
                                          # the final contributions

    ``bias + input + sum(contribution)`` equals ``logit`` (computed in float64).
    """
    x = _indices(x)
    kind = _kind(model)
    states = _states(model, x, hidden)  # (L, T, H)
    readout = model.readout
    top = states.shape[0] - 1
    if kind == "gru":
        read = states[top]  # (T, H): the logits after step t read the top state after character t
        weight = readout.weight  # (C, H)
        direct = torch.zeros(readout.out_features, dtype=torch.float64)  # (C,)
    else:
        V = model.config.vocab_size
        read = _previous(model, states)[top]  # (T, H): the logits at step t read h_{t-1}
        weight = readout.weight[:, V:]  # (C, H)
        direct = readout.weight[:, int(x[0, -1])].double()  # (C,): the last character's one-hot column
    weight = weight.double()  # (C, H)
    read = read.double()  # (T, H)
    bias = readout.bias.double()  # (C,)
    logits = bias + direct + weight @ read[-1]  # (C,)
    scaled = logits / float(temperature)
    scaled = prior_rule.shift_logits(scaled, shift)
    c = int(torch.argmax(scaled)) if target is None else int(target)
    if not 0 <= c < logits.shape[0]:
        raise ValueError(f"target {c} is not a language index: expected 0 … {logits.shape[0] - 1}")
    along = (read * weight[c]).numpy()  # (T, H)
    final = along[-1]  # (H,)
    order = np.argsort(-final, kind="stable")  # most for c first; stable: ties by unit
    state, w = read[-1].numpy(), weight[c].numpy()
    units = [{"layer": top, "unit": j, "state": s, "weight": wj, "contribution": v}
             for j, s, wj, v in zip(order.tolist(), state[order].tolist(), w[order].tolist(), final[order].tolist())]
    probability = torch.softmax(scaled, dim=0)[c]
    return {"language": c, "logit": float(logits[c]), "bias": float(bias[c]), "input": float(direct[c]),
            "temperature": float(temperature), "probability": float(probability), "units": units, "along": along}


@torch.inference_mode()
def gates(model: Model, x, hidden=None) -> dict | None:
    """The cell's inner values after every character, every layer, from the layer weights and the states the network
    held. One key set per cell (:data:`GATE_KEYS`), every value an (L, T, H) float32 array:

    - GRU: ``update`` z, ``reset`` r and ``candidate`` n (PyTorch's gate order r, z, n; see :func:`_gru_pieces`),
      with ``h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}`` (h_0 = 0) equal to the network's states;
    - RNN (L = 1): ``input_drive`` (the character's column of i2h plus its bias) and ``recurrent_drive``
      (W_hh h_{t-1}, h_0 the learned initial state), with ``sigmoid(input_drive + recurrent_drive)`` equal to the
      states.

    None for a model kind this module has no cell equations for (not "gru" or "rnn").
    """
    kind = getattr(getattr(model, "config", None), "kind", None)
    if kind not in GATE_KEYS:
        return None
    x = _indices(x)
    states = _states(model, x, hidden)  # (L, T, H)
    pieces = _pieces(model, kind, x, states)
    return {k: pieces[k].numpy() for k in GATE_KEYS[kind]}


def _num(v: float) -> str:
    """A number as the equation text prints it: two decimals, a true minus sign."""
    return f"{v:.2f}".replace("-", "−")


@torch.inference_mode()
def unit_equation(model: Model, x, layer: int, unit: int, t: int, hidden=None) -> dict:
    """One unit's update at one letter, with the actual numbers, and the equation written out in words.

    ``layer`` and ``unit`` are 0-based, ``t`` the 0-based letter index (negative counts from the end). Returns the
    common fields ``kind``, ``layer``, ``unit``, ``t``, ``char``, ``h_prev`` (the unit's state before the letter),
    ``h_new`` (the network's state after it) and ``text``, plus:

    - GRU: ``r_input``, ``r_hidden``, ``z_input``, ``z_hidden``, ``n_input``, ``n_hidden`` (each gate's W_i·x + b_i
      and W_h·h + b_h) and ``r``, ``z``, ``n``: r = σ(r_input + r_hidden), z = σ(z_input + z_hidden),
      n = tanh(n_input + r·n_hidden), h_new = (1 − z)·n + z·h_prev;
    - RNN: ``input`` (the letter's i2h column plus bias), ``recurrent`` (row ``unit`` of W_hh times h_{t-1}),
      ``pre`` = input + recurrent, h_new = σ(pre).

    The fields recompute ``h_new`` to float32 precision; the text rounds them to two decimals.
    """
    x = _indices(x)
    kind = _kind(model)
    states = _states(model, x, hidden)  # (L, T, H)
    L, T, H = states.shape
    if not 0 <= layer < L:
        raise ValueError(f"layer {layer} out of range: the model has {L} layer(s), 0 … {L - 1}")
    if not 0 <= unit < H:
        raise ValueError(f"unit {unit} out of range: a layer has {H} units, 0 … {H - 1}")
    if not -T <= t < T:
        raise ValueError(f"letter {t} out of range: the name has {T} letters, 0 … {T - 1}")
    t %= T
    pieces = _pieces(model, kind, x, states)
    value = {k: float(v[layer, t, unit]) for k, v in pieces.items()}
    char = ALPHABET[int(x[0, t])]
    out: dict[str, Any] = {"kind": kind, "layer": layer, "unit": unit, "t": t, "char": char,
                           "h_prev": value["previous"], "h_new": float(states[layer, t, unit])}
    where = (f"L{layer + 1} #{unit}" if L > 1 else f"#{unit}") + f" at letter {t + 1} '{char}'"
    n_, h_prev, h_new = _num, out["h_prev"], out["h_new"]
    if kind == "gru":
        r, z, n = value["reset"], value["update"], value["candidate"]
        out.update({k: value[k] for k in ("r_input", "r_hidden", "z_input", "z_hidden", "n_input", "n_hidden")},
                   r=r, z=z, n=n)
        out["text"] = (
            f"{where}: reset r = σ(letter {n_(value['r_input'])} + past {n_(value['r_hidden'])}) = {n_(r)}; "
            f"update z = σ(letter {n_(value['z_input'])} + past {n_(value['z_hidden'])}) = {n_(z)}; "
            f"candidate n = tanh(letter {n_(value['n_input'])} + r·past {n_(r)}·{n_(value['n_hidden'])}) = {n_(n)}; "
            f"h = (1 − z)·n + z·h_prev = (1 − {n_(z)})·{n_(n)} + {n_(z)}·{n_(h_prev)} = {n_(h_new)}: "
            f"it kept {z:.0%} of its past and took {1 - z:.0%} of the candidate.")
    else:
        a, b = value["input_drive"], value["recurrent_drive"]
        out.update(input=a, recurrent=b, pre=a + b)
        out["text"] = (
            f"{where}: h = σ(letter + past) = σ({n_(a)} + {n_(b)}) = σ({n_(a + b)}) = {n_(h_new)} "
            f"(it was {n_(h_prev)}): the letter pushed it {'up' if a >= 0 else 'down'}, "
            f"the past {'up' if b >= 0 else 'down'}.")
    return out
