r"""Backpropagation through time by hand for :class:`~namecls.models.networks.RNNClassifier`, checked against autograd.

The forward pass, for one name of length L (characters x_1 … x_L, one-hot over the V-letter alphabet):

    h_0 = h0                                            (learned initial state, or zeros)
    a_t = W_h [x_t; h_{t-1}] + b_h = W_hx x_t + W_hh h_{t-1} + b_h        t = 1 … L-1
    h_t = sigmoid(a_t)
    z   = W_o [x_L; h_{L-1}] + b_o = W_ox x_L + W_oh h_{L-1} + b_o        (the logits, C classes)
    p   = softmax(z)
    loss = cross-entropy(z, y), with class weights w and label smoothing ε (as ``nn.CrossEntropyLoss``)

``W_h`` is ``i2h.weight`` (H, V+H), split into its input half W_hx (H, V) and recurrent half W_hh (H, H);
likewise ``W_o`` is ``i2o.weight`` (C, V+H) = [W_ox | W_oh]. The logits read the state *before* the last character,
h_{L-1}; the state h_L is never used, so only the transitions t = 1 … L-1 are on the gradient's path.

The backward pass, by the chain rule (δ for ∂loss/∂·, ⊙ elementwise, σ' = h (1 - h)):

    Loss → logits.  With the smoothed, weighted target q_c = (1-ε) w_y [c = y] + (ε/C) w_c and the batch
    normaliser N = Σ_b w_{y_b} (``reduction="mean"`` divides by the summed weights of the targets):
        loss_b = -Σ_c q_c log p_c                   δz = ((Σ_c q_c) p - q) / N

    Logits → output layer and the last state read:
        δW_ox[:, x_L] += δz     δW_oh += δz h_{L-1}^T     δb_o += δz     δh_{L-1} = W_oh^T δz

    Back through time, t = L-1 down to 1 (the recurrence that makes it "through time"):
        δa_t = δh_t ⊙ h_t ⊙ (1 - h_t)
        δW_hx[:, x_t] += δa_t   δW_hh += δa_t h_{t-1}^T   δb_h += δa_t   δh_{t-1} = W_hh^T δa_t

    And finally δh0 = δh_0 (summed over the batch, since every name starts from the same h0).

The δh_t of every step on the way, each state's total gradient, is :func:`state_gradients` (for any δz, e.g. that
of a log-probability: :mod:`namecls.explain.gradient` shows how far back the answer's gradient reaches).

A padded batch holds names of different lengths L_b, right-padded to T = max L_b. Name b's gradient enters the
recurrence at its own last step, δh_{L_b - 1}, and is zero at every later (padded) step: padding never contributes,
without any explicit mask. Only the recurrence δh_t → δh_{t-1} has to be a loop; the weight gradients are sums
over every (name, step) pair, so they are computed after the loop in one matrix product each.

Everything below is plain tensor algebra under ``torch.no_grad()``. :class:`RNNLogits` and
:class:`CrossEntropyByHand` wrap the two halves as ``torch.autograd.Function``\ s, so a training loop calls
``loss.backward()``, clips, steps and schedules exactly as before — but every gradient it gets was computed here.
``python -m namecls.models.gradcheck`` compares them all with autograd's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .networks import RNNClassifier


class ForwardCache(NamedTuple):
    """What the backward pass needs from the forward pass."""

    x: torch.Tensor  # (B, T) character indices, right-padded
    lengths: torch.Tensor  # (B,) each name's length L_b ≥ 1
    states: torch.Tensor  # (B, T, H): states[:, t] = h_t for t = 0 … T-1 (states[:, 0] = h0)


class RNNGrads(NamedTuple):
    """Gradients of the loss with respect to every parameter of the RNN, shaped like the parameters."""

    i2h_weight: torch.Tensor  # (H, V+H) = [δW_hx | δW_hh]
    i2h_bias: torch.Tensor  # (H,)
    i2o_weight: torch.Tensor  # (C, V+H) = [δW_ox | δW_oh]
    i2o_bias: torch.Tensor  # (C,)
    h0: torch.Tensor  # (H,)


@torch.no_grad()
def rnn_forward(x: torch.Tensor, lengths: torch.Tensor, W_h: torch.Tensor, b_h: torch.Tensor, W_o: torch.Tensor,
                b_o: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, ForwardCache]:
    """The logits (B, C) at each name's last character, and the states the backward pass needs.

    The same numbers as ``RNNClassifier.forward``; it only stops one step earlier, since h_T is never read.
    """
    B, T = x.shape
    H = W_h.shape[0]
    V = W_h.shape[1] - H
    W_hx, W_hh = W_h[:, :V], W_h[:, V:]  # (H, V), (H, H)
    W_ox, W_oh = W_o[:, :V], W_o[:, V:]  # (C, V), (C, H)
    x_to_h = W_hx.t()[x] + b_h  # (B, T, H): W_hx x_t + b_h, a column lookup since x_t is one-hot
    states = W_h.new_empty(B, T, H)  # (B, T, H)
    states[:, 0] = h0  # h_0, the same for every name
    for t in range(1, T):  # h_t from x_t = x[:, t-1] and h_{t-1} (0-based columns, 1-based maths)
        states[:, t] = torch.sigmoid(x_to_h[:, t - 1] + states[:, t - 1] @ W_hh.t())  # (B, H)
    rows, last = torch.arange(B, device=x.device), lengths - 1  # (B,), (B,)
    # Column L_b - 1 of x and of states holds name b's last character x_{L_b} and the state it reads, h_{L_b - 1}.
    logits = W_ox.t()[x[rows, last]] + states[rows, last] @ W_oh.t() + b_o  # (B, C)
    return logits, ForwardCache(x, lengths, states)


@torch.no_grad()
def _through_time(dh_read: torch.Tensor, cache: ForwardCache,
                  W_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence of the backward pass: from δh_{L_b - 1} = W_oh^T δz (B, H), the gradient entering each name's
    last read state, to (δa, δh), both (B, T, H): δa[:, t] = δa_t (column 0 zero: h_0 has no a_0) and
    δh[:, t] = δh_t, the total gradient of the state h_t = ``cache.states[:, t]`` (through every later step)."""
    x, lengths, states = cache
    B, T, H = states.shape
    last = lengths - 1  # (B,)
    # dh holds δh_t for every name; it is zero until t reaches the name's last read state L_b - 1, where the
    # output's gradient enters, so padded steps t ≥ L_b add nothing.
    da = dh_read.new_zeros(B, T, H)  # (B, T, H): da[:, t] = δa_t (column 0 unused: h_0 has no a_0)
    dhs = dh_read.new_zeros(B, T, H)  # (B, T, H): dhs[:, t] = δh_t
    dh = dh_read.new_zeros(B, H)  # (B, H)
    for t in range(T - 1, 0, -1):
        dh = dh + (last == t).unsqueeze(1) * dh_read  # (B, H): inject δh_{L-1} where L_b - 1 = t
        dhs[:, t] = dh
        h_t = states[:, t]  # (B, H)
        da[:, t] = dh * h_t * (1 - h_t)  # (B, H): δa_t = δh_t ⊙ σ'(a_t)
        dh = da[:, t] @ W_hh  # (B, H): δh_{t-1} = W_hh^T δa_t
    dhs[:, 0] = dh + (last == 0).unsqueeze(1) * dh_read  # (B, H): names of length 1 read h_0 directly
    return da, dhs


@torch.no_grad()
def state_gradients(grad_logits: torch.Tensor, cache: ForwardCache, W_h: torch.Tensor,
                    W_o: torch.Tensor) -> torch.Tensor:
    """(B, T, H): δh_t = ∂loss/∂h_t for every name and every state t = 0 … T-1 of ``cache.states`` (h_0 the
    initial state, h_t the state after character t), given δz = ∂loss/∂logits (B, C).

    Each δh_t is the total derivative: the direct path through the logits (only t = L_b - 1, the state the logits
    read) plus every path through the later steps. Name b's columns t ≥ L_b are zero (padding). The state after the
    last character, h_{L_b}, is not in the cache (the forward pass stops before it, since nothing reads it): its
    gradient is exactly 0. Any δz works, e.g. that of a log-probability instead of a loss.
    """
    H = W_h.shape[0]
    V = W_h.shape[1] - H
    dh_read = grad_logits @ W_o[:, V:]  # (B, H): W_oh^T δz
    return _through_time(dh_read, cache, W_h[:, V:])[1]


@torch.no_grad()
def rnn_backward(grad_logits: torch.Tensor, cache: ForwardCache, W_h: torch.Tensor, W_o: torch.Tensor) -> RNNGrads:
    """Backpropagation through time: from δz = ∂loss/∂logits (B, C) to the gradient of every parameter."""
    x, lengths, states = cache
    B, T, H = states.shape
    V = W_h.shape[1] - H
    W_hh, W_oh = W_h[:, V:], W_o[:, V:]  # (H, H), (C, H)
    rows, last = torch.arange(B, device=x.device), lengths - 1  # (B,), (B,)
    dz = grad_logits  # (B, C)

    # Output layer: z = W_ox x_L + W_oh h_{L-1} + b_o.
    h_read = states[rows, last]  # (B, H): h_{L_b - 1}
    dW_oh = dz.t() @ h_read  # (C, H): Σ_b δz_b h_{L_b-1}^T
    dW_ox = dz.new_zeros(W_o.shape[0], V).index_add_(1, x[rows, last], dz.t())  # (C, V)
    db_o = dz.sum(0)  # (C,)
    dh_read = dz @ W_oh  # (B, H): W_oh^T δz, the gradient entering each name's state h_{L_b - 1}

    da, dh = _through_time(dh_read, cache, W_hh)  # (B, T, H) each
    dh0 = dh[:, 0].sum(0)  # (H,): every name starts from the same h0

    # Recurrent layer: a_t = W_hx x_t + W_hh h_{t-1} + b_h, summed over every (name, step) pair at once.
    # Transition t (columns 1 … T-1) read x_t = x[:, t-1] and h_{t-1} = states[:, t-1].
    da_flat = da[:, 1:].reshape(-1, H)  # (B·(T-1), H)
    dW_hh = da_flat.t() @ states[:, :-1].reshape(-1, H)  # (H, H): Σ δa_t h_{t-1}^T
    dW_hx = dz.new_zeros(H, V).index_add_(1, x[:, :-1].reshape(-1), da_flat.t())  # (H, V)
    db_h = da_flat.sum(0)  # (H,)

    return RNNGrads(torch.cat([dW_hx, dW_hh], dim=1), db_h, torch.cat([dW_ox, dW_oh], dim=1), db_o, dh0)


@torch.no_grad()
def cross_entropy_forward(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None,
                          label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.CrossEntropyLoss(weight, label_smoothing)(logits, targets)`` (mean reduction) and δz = ∂loss/∂logits.

    With q_bc = (1-ε) w_{y_b} [c = y_b] + (ε/C) w_c and N = Σ_b w_{y_b}:
        loss = -Σ_b Σ_c q_bc log p_bc / N           δz_b = ((Σ_c q_bc) p_b - q_b) / N
    """
    B, C = logits.shape
    w = logits.new_ones(C) if weight is None else weight.to(logits.dtype)  # (C,)
    log_p = logits - logits.logsumexp(dim=1, keepdim=True)  # (B, C): log softmax
    q = (label_smoothing / C) * w.expand(B, C).clone()  # (B, C): the smoothing part, ε/C · w_c
    q[torch.arange(B, device=logits.device), targets] += (1 - label_smoothing) * w[targets]  # true class: (1-ε) w_y
    norm = w[targets].sum()  # N
    loss = -(q * log_p).sum() / norm
    grad = (q.sum(1, keepdim=True) * log_p.exp() - q) / norm  # (B, C)
    return loss, grad


class RNNLogits(torch.autograd.Function):
    """Logits at each name's last character; the backward pass is :func:`rnn_backward`, not autograd's."""

    @staticmethod
    def forward(ctx, x, lengths, W_h, b_h, W_o, b_o, h0):
        logits, cache = rnn_forward(x, lengths, W_h, b_h, W_o, b_o, h0)
        ctx.save_for_backward(x, lengths, cache.states, W_h, W_o)
        return logits

    @staticmethod
    def backward(ctx, grad_logits):
        x, lengths, states, W_h, W_o = ctx.saved_tensors
        grads = rnn_backward(grad_logits, ForwardCache(x, lengths, states), W_h, W_o)
        needed = ctx.needs_input_grad[2:]  # e.g. h0 is frozen when the model learns no initial state
        return (None, None) + tuple(g if n else None for g, n in zip(grads, needed))


class CrossEntropyByHand(torch.autograd.Function):
    """Weighted, label-smoothed cross-entropy (as ``nn.CrossEntropyLoss``) with a hand-written gradient."""

    @staticmethod
    def forward(ctx, logits, targets, weight, label_smoothing):
        loss, grad = cross_entropy_forward(logits, targets, weight, label_smoothing)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad_loss * grad, None, None, None


def manual_logits(model: RNNClassifier, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``model(x, lengths)``, with gradients by hand."""
    return RNNLogits.apply(x, lengths, model.i2h.weight, model.i2h.bias, model.i2o.weight, model.i2o.bias, model.h0)


def manual_loss(model: RNNClassifier, x: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                loss_fn: nn.CrossEntropyLoss) -> torch.Tensor:
    """``loss_fn(model(x, lengths), targets)`` — the same class weights, label smoothing and value — whose
    ``backward()`` runs only the hand-written gradients of this module."""
    if not isinstance(model, RNNClassifier):
        raise TypeError(f"manual backprop is written for RNNClassifier only, not {type(model).__name__}")
    if loss_fn.reduction != "mean" or loss_fn.ignore_index >= 0:
        raise ValueError("manual backprop implements CrossEntropyLoss with reduction='mean' and no ignore_index")
    return CrossEntropyByHand.apply(manual_logits(model, x, lengths), targets, loss_fn.weight, loss_fn.label_smoothing)
