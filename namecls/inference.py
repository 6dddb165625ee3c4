"""The public inference API: load a checkpoint, predict languages, and trace a name character by character."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .data import Normalized, pad_batch, validate

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
MODEL_NAMES = ("rnn", "gru")


@dataclass(frozen=True)
class Trace:
    """What the network holds and predicts after each character of one name."""

    name: str  # as given
    normalized: Normalized
    chars: list[str]  # the normalised name, one entry per step
    layers: np.ndarray  # (L, T, H): every layer's hidden state after each character (RNN: L = 1)
    probs: np.ndarray  # (T, C): the full prediction after each prefix
    labels: list[str]

    @property
    def hidden(self) -> np.ndarray:
        """(T, H): the top layer's hidden state after each character."""
        return self.layers[-1]

    def top(self, step: int = -1, k: int = 3) -> list[tuple[str, float]]:
        """The k most probable languages after prefix ``step`` (default: the whole name)."""
        return _top_k(self.probs[step], self.labels, k)


def _top_k(probs: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    k = max(1, min(int(k), len(labels)))
    order = np.argsort(-probs, kind="stable")[:k]
    return [(labels[i], float(probs[i])) for i in order]


class Classifier:
    """A loaded checkpoint. Thread-safe for concurrent calls: inference never changes the model."""

    def __init__(self, model: torch.nn.Module, config: dict, metrics: dict, source: Path):
        self.model = model
        self.config = config
        self.metrics = metrics
        self.source = source
        self.labels: list[str] = list(config["labels"])
        self.kind: str = config["model"]["kind"]

    def __repr__(self) -> str:
        return f"Classifier({self.kind!r}, source={str(self.source)!r})"

    @torch.inference_mode()
    def _probs(self, names: list[str]) -> np.ndarray:
        x, lengths = pad_batch(names)
        return torch.softmax(self.model(x, lengths), dim=-1).numpy()  # (B, C)

    def predict(self, name: str, k: int = 3) -> list[tuple[str, float]]:
        """Top-k (language, probability) for one name, most probable first. Bad input raises ``ValueError``."""
        return _top_k(self._probs([validate(name).text])[0], self.labels, k)

    def predict_batch(self, names: list[str], k: int = 3, batch_size: int = 512) -> list[list[tuple[str, float]]]:
        """:meth:`predict` for many names, computed in length-sorted batches; results in input order.

        Raises ``ValueError`` naming the first bad name's position.
        """
        texts = []
        for i, name in enumerate(names):
            try:
                texts.append(validate(name).text)
            except ValueError as err:
                raise ValueError(f"name #{i} ({str(name)[:40]!r}): {err}") from None
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            for row, probs in zip(rows, self._probs([texts[i] for i in rows])):
                results[row] = _top_k(probs, self.labels, k)
        return results

    @torch.inference_mode()
    def trace(self, name: str) -> Trace:
        """Hidden states and predictions after every prefix of ``name``. Bad input raises ``ValueError``."""
        norm = validate(name)
        x, lengths = pad_batch([norm.text])
        steps = self.model.steps(x, lengths)
        probs = torch.softmax(steps.logits[0], dim=-1).numpy()  # (T, C)
        layers = steps.hidden[:, 0].numpy()  # (L, T, H)
        return Trace(name, norm, list(norm.text), layers, probs, self.labels)


def load(name_or_path: str | os.PathLike = "gru") -> Classifier:
    """Load ``"rnn"`` / ``"gru"`` (the committed checkpoints) or any checkpoint folder."""
    key = str(name_or_path).lower()
    folder = CHECKPOINTS / key if key in MODEL_NAMES else Path(name_or_path)
    model, config, metrics = checkpoint.load(folder)
    return Classifier(model, config, metrics, folder)
