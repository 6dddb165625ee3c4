r"""How learning reaches back: the size of the answer's gradient with respect to the state after each character.

For one name of T characters, let c be the final answer's language (top-1 after the whole name, or a given target)
and log p = log softmax(logits_T / temperature)[c] its calibrated log-probability. Entry t of
:func:`state_gradients`' ``norms`` is

    ‖ ∂ log p / ∂h_t ‖₂        h_t = the top layer's state after character t, t = 0 … T-1 (0-based)

— the *total* derivative: h_t treated as an intermediate variable of the computation graph, so its gradient flows
through every later step of the top layer and through the readout, exactly what training's backpropagation through
time sends back to step t. A small entry means that a mistake in the answer barely reaches that character: the
article's "how RNNs can be difficult to train", on one name.

The two models differ in where the answer reads the state:

- **RNN** (:class:`~namecls.models.networks.RNNClassifier`): the logits at step t read the current character and the
  state
  *before* it, h_{t-1}. So the state after the last character, h_{T-1}, feeds nothing: its entry is exactly 0
  (``reads_state_before_last`` is True), and entry T-2, the state before the last character, gets only the
  readout's gradient W_oh^T (onehot_c - p) / temperature. Computed with the hand-written backpropagation through
  time of :mod:`namecls.models.bptt` (:func:`namecls.models.bptt.state_gradients`), checked against autograd in the
  tests.
- **GRU** (:class:`~namecls.models.networks.GRUClassifier`): the logits read the top layer's state after the
  character, so
  entry T-1 is the readout's gradient W_head^T (onehot_c - p) / temperature, and every earlier entry adds the paths
  through the later top-layer steps. The fused ``torch.gru`` kernel does not expose its per-step states as graph
  nodes, so the layers below the top run fused (they do not depend on the top layer: a unidirectional stack only
  feeds upwards, so they are constants for this derivative), and the top layer is recomputed one step at a time
  from its weights; ``torch.autograd.grad`` then gives the gradient of every step's state in one backward pass.
  Always in evaluation semantics (no dropout), whatever ``model.training`` says; the model is never changed.

Both also give ``initial``, the norm of the gradient with respect to the top layer's state *before* the first
character (the RNN's learned h0; the GRU's zeros), which costs nothing extra.

    >>> clf = namecls.load("gru")
    >>> g = state_gradients(clf.model, "Nakamura", temperature=clf.temperature)
    >>> g.norms, g.fade().ratio, fade_summary(g, "Nakamura", clf.labels[g.target])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..models import bptt
from ..posthoc import prior as prior_rule
from ..data.names import pad_batch
from ..models.networks import GRUClassifier, Model, RNNClassifier


class StateVectors(NamedTuple):
    """The full gradients behind :class:`StateGradients` (tensors, for tests and further analysis)."""

    after: torch.Tensor  # (T, H): ∂ log p / ∂h_t, the top layer's state after character t
    initial: torch.Tensor  # (H,): ∂ log p / ∂(the top layer's state before the first character)
    target: int  # c
    log_prob: float  # log p, the calibrated log-probability of c after the whole name


@dataclass(frozen=True)
class Fade:
    """How much the gradient shrinks from the last state the answer reads back to the state after the first letter.

    ``ratio`` and ``per_letter`` are None when there is nothing to compare: a name whose answer reads only one
    letter's state (GRU: one letter; RNN: one or two letters) or a reference gradient that is exactly 0.
    """

    first: int  # the index compared: 0, the state after the first letter
    reference: int  # the last state the answer reads: T-1 (GRU), T-2 (RNN; -1 for a one-letter name)
    first_norm: float
    reference_norm: float  # 0.0 when reference is -1
    ratio: float | None  # first_norm / reference_norm
    per_letter: float | None  # ratio ** (1 / (reference - first)): the average factor per letter going back

    def to_dict(self) -> dict:
        return {"first": self.first, "reference": self.reference, "first_norm": self.first_norm,
                "reference_norm": self.reference_norm, "ratio": self.ratio, "per_letter": self.per_letter}


@dataclass(frozen=True)
class StateGradients:
    """For one name: the size of the calibrated log-probability's gradient with respect to the top layer's state
    after each character (:func:`state_gradients`)."""

    kind: str  # "rnn" or "gru"
    norms: np.ndarray  # (T,) float64: ‖∂ log p / ∂h_t‖ for the state after character t
    initial: float  # ‖∂ log p / ∂h‖ for the top layer's state before the first character
    target: int  # c, the language whose log-probability is differentiated
    log_prob: float  # log p: the calibrated log-probability of c after the whole name
    temperature: float
    reads_state_before_last: bool  # True (RNN): the answer reads the state before the last character; norms[-1] = 0

    @property
    def reference(self) -> int:
        """Index of the last state the answer reads directly: T-2 for the RNN (-1 for a one-letter name), T-1 for
        the GRU."""
        return len(self.norms) - 1 - int(self.reads_state_before_last)

    def fade(self) -> Fade:
        """The numbers of :func:`fade_summary`: the first letter's entry against the last read state's entry."""
        ref = self.reference
        first_norm = float(self.norms[0])
        ref_norm = float(self.norms[ref]) if ref >= 0 else 0.0
        if ref <= 0 or ref_norm == 0.0:
            return Fade(0, ref, first_norm, ref_norm, None, None)
        ratio = first_norm / ref_norm
        return Fade(0, ref, first_norm, ref_norm, ratio, ratio ** (1.0 / ref))

    def to_dict(self) -> dict:
        """A JSON-friendly copy (plain floats, ints and lists), with :meth:`fade`'s numbers."""
        return {"kind": self.kind, "norms": [float(v) for v in self.norms], "initial": self.initial,
                "target": self.target, "log_prob": self.log_prob, "temperature": self.temperature,
                "reads_state_before_last": self.reads_state_before_last, "fade": self.fade().to_dict()}


def _as_batch(x: torch.Tensor | str) -> torch.Tensor:
    """One name as a (1, T) index batch: from normalised text, a (T,) or a (1, T) tensor of character indices."""
    if isinstance(x, str):
        x = pad_batch([x])[0]
    x = torch.as_tensor(x, dtype=torch.int64)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2 or x.shape[0] != 1 or x.shape[1] < 1:
        raise ValueError(f"state gradients take one non-empty name, (T,) or (1, T) indices, not shape {tuple(x.shape)}")
    return x


def _readout_gradient(logits: torch.Tensor, target: int | None, temperature: float,
                      shift=None) -> tuple[torch.Tensor, int, float]:
    """δz = ∂ log softmax(z / τ + s)[c] / ∂z = (onehot_c - p) / τ for final logits z (C,) and a prior's shift s
    (:mod:`namecls.posthoc.prior`; None: 0); also c and log p_c."""
    log_p = torch.log_softmax(prior_rule.shift_logits(logits / temperature, shift), dim=-1)  # (C,)
    c = int(torch.argmax(log_p)) if target is None else int(target)
    dz = -log_p.exp() / temperature  # (C,)
    dz[c] += 1.0 / temperature
    return dz, c, float(log_p[c])


@torch.no_grad()
def _rnn_vectors(model: RNNClassifier, x: torch.Tensor, target: int | None, temperature: float,
                 shift=None) -> StateVectors:
    """The RNN's state gradients by the hand-written BPTT of :mod:`namecls.models.bptt`."""
    lengths = torch.tensor([x.shape[1]])
    W_h, b_h, W_o, b_o = model.i2h.weight, model.i2h.bias, model.i2o.weight, model.i2o.bias
    logits, cache = bptt.rnn_forward(x, lengths, W_h, b_h, W_o, b_o, model.h0)  # (1, C)
    dz, c, log_p = _readout_gradient(logits[0], target, temperature, shift)  # (C,)
    dh = bptt.state_gradients(dz.unsqueeze(0), cache, W_h, W_o)[0]  # (T, H): δh_t for h_0 … h_{T-1} (1-based)
    # The state after character t (0-based) is bptt's h_{t+1}; the one after the last character feeds nothing.
    after = torch.cat([dh[1:], dh.new_zeros(1, dh.shape[1])])  # (T, H)
    return StateVectors(after, dh[0], c, log_p)


def _gru_vectors(model: GRUClassifier, x: torch.Tensor, target: int | None, temperature: float,
                 shift=None) -> StateVectors:
    """The GRU's state gradients by autograd through a step-by-step recomputation of the top layer."""
    H = model.config.hidden_size
    with torch.inference_mode(False), torch.no_grad():  # the lower layers: constants for this derivative
        x = x.clone()  # a normal tensor even when the caller runs under inference_mode
        out = model.embed(x)  # (1, T, E); no dropout: evaluation semantics
        zeros = out.new_zeros(1, 1, H)  # (1, 1, H)
        # (type: ignore below: a ModuleList's items are typed Module; these are nn.GRU, which has all_weights)
        for layer in model.layers[:-1]:
            out, _ = torch.gru(out, zeros, layer.all_weights[0],  # type: ignore[index, arg-type]
                               True, 1, 0.0, False, False, True)  # (1, T, H)
        w_ih, w_hh, b_ih, b_hh = (w.detach() for w in model.layers[-1].all_weights[0])  # type: ignore[index]
        gi = (out[0] @ w_ih.t() + b_ih).chunk(3, dim=1)  # 3 × (T, H): input parts of the r, z, n gates
        W_head, b_head = model.head.weight.detach(), model.head.bias.detach()  # (C, H), (C,)
    with torch.inference_mode(False), torch.enable_grad():
        h0 = out.new_zeros(H).requires_grad_()  # (H,): the top layer's state before the first character
        h, states = h0, []
        for t in range(x.shape[1]):  # nn.GRU's cell, gate order r, z, n
            gh_r, gh_z, gh_n = (h @ w_hh.t() + b_hh).chunk(3)  # 3 × (H,)
            r = torch.sigmoid(gi[0][t] + gh_r)
            z = torch.sigmoid(gi[1][t] + gh_z)
            n = torch.tanh(gi[2][t] + r * gh_n)
            h = (1 - z) * n + z * h  # (H,): h_t, a node of the graph
            states.append(h)
        logits = h @ W_head.t() + b_head  # (C,): read from the state after the last character
        all_log_p = torch.log_softmax(prior_rule.shift_logits(logits / temperature, shift), dim=-1)  # (C,)
        c = int(torch.argmax(all_log_p)) if target is None else int(target)
        log_p = all_log_p[c]
        grads = torch.autograd.grad(log_p, [h0, *states])  # total derivatives: every later step and the head
    return StateVectors(torch.stack(grads[1:]), grads[0], c, float(log_p.detach()))  # after (T, H)


def state_vectors(model: Model, x: torch.Tensor | str, target: int | None = None,
                  temperature: float = 1.0, shift=None) -> StateVectors:
    """The gradient vectors ∂ log p / ∂h_t (T, H) and ∂ log p / ∂(initial state) (H,) behind
    :func:`state_gradients`, same arguments."""
    x = _as_batch(x)
    if target is not None and not 0 <= int(target) < model.config.num_classes:
        raise ValueError(f"target {target} is not a class index 0 … {model.config.num_classes - 1}")
    if isinstance(model, RNNClassifier):
        return _rnn_vectors(model, x, target, float(temperature), shift)
    if isinstance(model, GRUClassifier):
        return _gru_vectors(model, x, target, float(temperature), shift)
    raise TypeError(f"state gradients are written for RNNClassifier and GRUClassifier, not {type(model).__name__}")


def state_gradients(model: Model, x: torch.Tensor | str, target: int | None = None,
                    temperature: float = 1.0, shift=None) -> StateGradients:
    """For one name, how strongly the final answer's calibrated log-probability depends on the top layer's state
    after each character: entry t of ``norms`` (T,) is ‖∂ log softmax(logits_T / temperature)[c] / ∂h_t‖₂, the
    total derivative (through every later step), with c = ``target`` or, when None, the final top-1 language.

    ``x`` is the name as (T,) or (1, T) character indices (``pad_batch([text])[0]``) or as normalised text.
    ``shift`` (C,): a prior's log shift added to the calibrated logits (:mod:`namecls.posthoc.prior`; None: the lists').
    For the RNN the last entry is exactly 0 (its answer reads the state before the last character; see the module
    docstring). Works under ``torch.inference_mode``; never changes the model.
    """
    vectors = state_vectors(model, x, target, temperature, shift)
    norms = torch.linalg.vector_norm(vectors.after.double(), dim=1).numpy()  # (T,)
    return StateGradients(model.config.kind, norms, float(torch.linalg.vector_norm(vectors.initial.double())),
                          vectors.target, vectors.log_prob, float(temperature), isinstance(model, RNNClassifier))


def _share(ratio: float) -> str:
    """A ratio as a short share: '42%', '3.1%', '0.31%', '0.031%', 'about 1/52,000', or '2.3 times'."""
    if ratio >= 1.0:
        return f"{ratio:.2g} times"
    if ratio >= 0.1:
        return f"{ratio * 100:.0f}%"
    if ratio >= 1e-4:
        return f"{ratio * 100:.2g}%"
    return f"about 1/{float(f'{1 / ratio:.2g}'):,.0f}" if ratio > 0 else "0%"


def fade_summary(grads: StateGradients, chars: str | list[str] | None = None, label: str | None = None) -> str:
    """One plain sentence on how far the answer's gradient reaches back through the name, its numbers taken from
    ``grads.norms`` (:meth:`StateGradients.fade`). ``chars`` (the normalised name) and ``label`` (the language of
    ``grads.target``) only make it read better."""
    f = grads.fade()
    T = len(grads.norms)
    letter = (lambda t: f"after '{chars[t]}'") if chars is not None and len(chars) == T else (
        lambda t: f"after letter {t + 1}")
    answer = f"the answer ({label})" if label else "the answer"
    before_last = (" (the last state this RNN's answer reads: the one before the final letter)"
                   if grads.reads_state_before_last else "")
    if f.ratio is None:
        if f.reference < 0:
            return (f"{answer[0].upper()}{answer[1:]} reads only the state before the first letter, so no state "
                    f"after a letter gets any gradient.")
        if f.reference == 0:
            return (f"{answer[0].upper()}{answer[1:]} reads the state {letter(0)} directly{before_last}: there is "
                    f"no earlier letter for the gradient to reach back to.")
        return f"The gradient of {answer} is exactly 0 at the last state it reads, so it reaches no letter."
    share = _share(f.ratio)
    if f.ratio >= 1.0:
        trend = f"is {share} its size {letter(f.reference)}{before_last}: the gradient does not fade here"
    else:
        trend = (f"is {share} of its size {letter(f.reference)}{before_last}: going back, it shrinks by a factor of "
                 f"{f.per_letter:.2g} per letter on average")
    return f"The gradient of {answer} with respect to the state {letter(0)} {trend}."
