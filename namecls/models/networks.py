"""The two character-level classifiers, behind one interface.

Both read a right-padded batch of character indices ``x`` (B, T) with ``lengths`` (B,) and offer:

- ``forward(x, lengths)`` → logits (B, C) at each name's last character (what training and ``predict`` use);
- ``final(x, lengths)`` → (logits, state): ``forward``'s logits, bit for bit, from the same pass, with the top
  layer's state (B, H) after each name's last character (what the novelty score reads), so one name's whole
  answer needs one pass;
- ``steps(x, lengths)`` → :class:`Steps`: logits after every prefix (B, T, C) and hidden states of every layer
  (L, B, T, H). Steps past a name's length hold padding garbage; callers cut them at ``lengths``;
- ``initial_state()`` → (L, H): the state before the first character.

Both are unidirectional, so a padded step never reaches a real step: a name's outputs in a padded batch equal its
outputs alone. Both start from a fixed state (zeros or a learned vector), so the same name always gets the same answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..data.names import ALPHABET


@dataclass
class RNNConfig:
    """The article's hand-written recurrent cell."""

    vocab_size: int = len(ALPHABET)
    num_classes: int = 18
    hidden_size: int = 384  # train.py's default recipe (namecls.recipes)
    learn_initial_state: bool = True  # a learned h_0 instead of zeros (never random)
    kind: str = "rnn"


@dataclass
class GRUConfig:
    """A unidirectional stack of GRU layers over character embeddings, with a linear head."""

    vocab_size: int = len(ALPHABET)
    num_classes: int = 18
    embedding_size: int = 64
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.4  # on the embeddings, between layers, and before the head (training only)
    kind: str = "gru"


class Steps(NamedTuple):
    logits: torch.Tensor  # (B, T, C): the prediction after each prefix
    hidden: torch.Tensor  # (L, B, T, H): every layer's state after each character


def last_step(seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Pick ``seq[b, lengths[b] - 1]`` for every row b of a (B, T, ...) tensor."""
    return seq[torch.arange(seq.shape[0]), lengths - 1]


class RNNClassifier(nn.Module):
    """The article's RNN, batched:

        h_t      = sigmoid(W_h [x_t; h_{t-1}] + b_h)        (i2h)
        logits_t = W_o [x_t; h_{t-1}] + b_o                 (i2o)

    ``x_t`` is the one-hot of character t. Note which state a prediction depends on: the logits at step t read
    the current character and the state *before* it, h_{t-1}; h_t itself only feeds the next step. So a name's
    prediction is ``logits_T``, computed from ``x_T`` and ``h_{T-1}``.

    The one-hot product ``W [x_t; h]`` is computed as a column lookup plus ``W_hh h``, which is the same number.
    """

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = config
        V, H, C = config.vocab_size, config.hidden_size, config.num_classes
        self.i2h = nn.Linear(V + H, H)
        self.i2o = nn.Linear(V + H, C)
        self.h0 = nn.Parameter(torch.zeros(H), requires_grad=config.learn_initial_state)

    def steps(self, x: torch.Tensor, lengths: torch.Tensor) -> Steps:
        B, T = x.shape
        V = self.config.vocab_size
        # One-hot inputs select columns of the input half of each weight matrix.
        x_to_h = self.i2h.weight[:, :V].t()[x] + self.i2h.bias  # (B, T, H)
        x_to_o = self.i2o.weight[:, :V].t()[x] + self.i2o.bias  # (B, T, C)
        W_hh = self.i2h.weight[:, V:]  # (H, H)
        W_ho = self.i2o.weight[:, V:]  # (C, H)
        h = self.h0.expand(B, -1)  # (B, H)
        previous, states = [], []
        for t in range(T):
            previous.append(h)
            h = torch.sigmoid(x_to_h[:, t] + h @ W_hh.t())  # (B, H)
            states.append(h)
        h_prev = torch.stack(previous, dim=1)  # (B, T, H): h_{t-1} for every t
        logits = x_to_o + h_prev @ W_ho.t()  # (B, T, C)
        return Steps(logits, torch.stack(states, dim=1).unsqueeze(0))  # hidden (1, B, T, H)

    def initial_state(self) -> torch.Tensor:
        """(1, H): the state before the first character, the learned (or zero) ``h0``."""
        return self.h0.detach().reshape(1, -1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return last_step(self.steps(x, lengths).logits, lengths)  # (B, C)

    def final(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, C), top-layer state (B, H)) at each name's last character, from one ``steps`` pass: the
        logits are ``forward``'s."""
        steps = self.steps(x, lengths)
        return last_step(steps.logits, lengths), last_step(steps.hidden[-1], lengths)

    @property
    def readout(self) -> nn.Linear:
        """The layer that produces the logits."""
        return self.i2o


class GRUClassifier(nn.Module):
    """Embedding → a stack of unidirectional ``nn.GRU`` layers → dropout → linear head.

    The layers are kept as single-layer ``nn.GRU`` modules (the same computation as one multi-layer ``nn.GRU``)
    so that every layer's per-step states are available to ``steps``. The initial state is zeros.
    """

    def __init__(self, config: GRUConfig):
        super().__init__()
        self.config = config
        E, H = config.embedding_size, config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, E)
        self.layers = nn.ModuleList(
            nn.GRU(E if i == 0 else H, H, batch_first=True) for i in range(config.num_layers)
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(H, config.num_classes)

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.drop(self.embed(x))  # (B, T, E)
        h0 = out.new_zeros(1, x.shape[0], self.config.hidden_size)  # (1, B, H)
        states = []
        for i, layer in enumerate(self.layers):
            out, _ = layer(out if i == 0 else self.drop(out), h0)  # (B, T, H)
            states.append(out)
        return states

    def initial_state(self) -> torch.Tensor:
        """(L, H): the state before the first character, zeros in every layer."""
        return torch.zeros(self.config.num_layers, self.config.hidden_size)

    def steps(self, x: torch.Tensor, lengths: torch.Tensor) -> Steps:
        states = self._run(x)
        logits = self.head(self.drop(states[-1]))  # (B, T, C)
        return Steps(logits, torch.stack(states))  # hidden (L, B, T, H)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.final(x, lengths)[0]  # (B, C)

    def final(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, C), top-layer state (B, H)) at each name's last character: ``forward`` is this pass's
        logits. (The head reads the last state alone, so these logits need not equal ``steps``' last step in every
        bit: ``steps`` applies the head to every step at once.)"""
        top = last_step(self._run(x)[-1], lengths)  # (B, H)
        return self.head(self.drop(top)), top  # (B, C), (B, H)

    @property
    def readout(self) -> nn.Linear:
        """The layer that produces the logits."""
        return self.head


# Either classifier: what `build` and `namecls.checkpoint.load` return, and what the functions that read a model take.
Model = RNNClassifier | GRUClassifier

CONFIGS = {"rnn": RNNConfig, "gru": GRUConfig}
MODELS = {"rnn": RNNClassifier, "gru": GRUClassifier}


def build(config: RNNConfig | GRUConfig) -> Model:
    return MODELS[config.kind](config)


def config_from_dict(d: dict) -> RNNConfig | GRUConfig:
    kind = d.get("kind")
    if kind not in CONFIGS:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {sorted(CONFIGS)}")
    return CONFIGS[kind](**d)


def config_to_dict(config: RNNConfig | GRUConfig) -> dict:
    return asdict(config)
