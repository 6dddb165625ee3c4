"""What a visitor needs to read a trace: reference names to compare a state with, and what each hidden unit does.

Fitted once at training time on the training names (:func:`fit`, called by
:func:`namecls.training.posthoc.fit`) and stored beside the weights as plain data, never pickle:

- **Reference bank**: exactly the training names the hidden-state map scatters (:mod:`namecls.explain.projection`'s
  fixed-seed sample of at most ``PER_LANGUAGE`` per language), with their languages and the top layer's state
  after their last character. A trace's state after each prefix gets its nearest reference names
  (Euclidean distance): "Nguy…" sits among Nguyen, Nguy and other Vietnamese names.
- **Unit order**: per layer, the units ordered by hierarchical clustering (average linkage, correlation distance,
  optimal leaf ordering) of their activations over every prefix of the reference names, so that units that rise
  and fall together sit side by side in a heatmap.
- **Unit contexts** (the "interpretable cell" view of Karpathy et al., 2015, "Visualizing and Understanding
  Recurrent Networks", and LSTMVis): for every unit of every layer, the ``K_CONTEXTS`` training names (each
  distinct name once, at its best position) where the unit's value is highest over all their prefixes.

Files: ``explain.safetensors`` (``bank_states`` (N, H) float16 — halved to keep the repository small, float32 once
loaded; ``unit_order`` (L, H) int32; ``context_name``, ``context_pos`` (L, H, K) int32; ``context_value`` (L, H, K)
float32) and ``explain.json`` (the names and languages the indices refer to, and what was fitted on what).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np
import torch

from ..data.names import length_batches
from ..errors import SavedPartError
from ..models.networks import Model
from .projection import PER_LANGUAGE, SAMPLE_SEED, _sample_rows, top_states

K_CONTEXTS = 20  # stored top contexts per unit
N_NEIGHBOURS = 8  # reference names per step of a trace
FORMAT_VERSION = 1
METHODS = {
    "reference_bank": (f"the training names the hidden-state map scatters (fixed-seed sample of at most "
                       f"{PER_LANGUAGE} per language, seed {SAMPLE_SEED}) with the top layer's hidden state after "
                       "their last character, stored as float16; neighbours by Euclidean distance, ties by bank "
                       "order"),
    "unit_order": ("per layer, the leaf order of a hierarchical clustering of the units (scipy linkage, method "
                   "'average', correlation distance between the units' activations over every prefix of the "
                   "reference bank's names, a constant unit at distance 1 from all, optimal leaf ordering)"),
    "unit_contexts": (f"per unit, the {K_CONTEXTS} distinct training names where the unit's value is highest over "
                      "every prefix (position: 0-based index of the character just read; ties by first training "
                      "occurrence); language: that of the name's first training occurrence"),
}


class Neighbour(NamedTuple):
    """A reference training name near a hidden state."""

    name: str
    language: str
    distance: float  # Euclidean, in the top layer's hidden space
    index: int  # type: ignore[assignment]  # row in the reference bank (the field shadows tuple.index)


class UnitContext(NamedTuple):
    """A training name at the character where one hidden unit's value is highest."""

    name: str
    language: str
    position: int  # 0-based index of the character just read: the unit's state after name[: position + 1]
    value: float


class Explain:
    """A checkpoint's fitted explanation data: reference bank, unit order and unit contexts."""

    def __init__(self, tensors: dict[str, np.ndarray], summary: dict):
        self.bank_states = np.asarray(tensors["bank_states"], dtype=np.float32)  # (N, H)
        self.unit_order = np.asarray(tensors["unit_order"], dtype=np.int64)  # (L, H)
        self.context_name = np.asarray(tensors["context_name"], dtype=np.int64)  # (L, H, K)
        self.context_pos = np.asarray(tensors["context_pos"], dtype=np.int64)  # (L, H, K)
        self.context_value = np.asarray(tensors["context_value"], dtype=np.float32)  # (L, H, K)
        self.summary = summary  # the JSON-able part (explain.json)
        _check(self)

    def __repr__(self) -> str:
        L, H = self.unit_order.shape
        return f"Explain(layers={L}, hidden_size={H}, bank={len(self.bank_states)}, k={self.context_name.shape[2]})"

    @property
    def bank_names(self) -> list[str]:
        return self.summary["bank"]["names"]

    @property
    def bank_languages(self) -> list[str]:
        return self.summary["bank"]["languages"]

    def nearest(self, states, n: int = N_NEIGHBOURS) -> list[list[Neighbour]]:
        """For each of ``states`` (T, H), its ``n`` nearest reference names, nearest first (ties by bank order)."""
        from scipy.spatial.distance import cdist

        states = np.atleast_2d(np.asarray(states, dtype=np.float64))
        distances = cdist(states, self.bank_states.astype(np.float64))  # (T, N)
        order = np.argsort(distances, axis=1, kind="stable")[:, : max(0, int(n))]
        names, langs = self.bank_names, self.bank_languages
        return [[Neighbour(names[i], langs[i], float(d[i]), int(i)) for i in row.tolist()]
                for row, d in zip(order, distances)]

    def unit_contexts(self, layer: int, unit: int) -> list[UnitContext]:
        """The stored training names where unit ``unit`` of layer ``layer`` is highest, highest first."""
        names, langs = self.summary["contexts"]["names"], self.summary["contexts"]["languages"]
        return [UnitContext(names[i], langs[i], int(p), float(v)) for i, p, v in
                zip(self.context_name[layer, unit].tolist(), self.context_pos[layer, unit].tolist(),
                    self.context_value[layer, unit].tolist())]

    def tensors(self) -> dict[str, torch.Tensor]:
        """What ``explain.safetensors`` holds."""
        arrays = {"bank_states": self.bank_states.astype(np.float16), "unit_order": self.unit_order.astype(np.int32),
                  "context_name": self.context_name.astype(np.int32), "context_pos": self.context_pos.astype(np.int32),
                  "context_value": self.context_value}
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    # saved in a checkpoint as these files (namecls.checkpoint.parts.Part)
    FILES: ClassVar[tuple[str, ...]] = ("explain.safetensors", "explain.json")
    LABEL: ClassVar[str] = "explanation data"

    @classmethod
    def from_saved(cls, tensors: dict, summary: dict, config: dict) -> "Explain":
        """Rebuild from :meth:`tensors` and :attr:`summary`, checked against each other and the model of the
        checkpoint's ``config``; :class:`SavedPartError` naming the file at fault."""
        tensors_file, json_file = cls.FILES
        try:
            arrays = {k: v.numpy() for k, v in tensors.items()}
            shape = cls(arrays, {}).unit_order.shape  # checks the arrays against each other
        except (KeyError, ValueError, TypeError) as err:
            raise SavedPartError(tensors_file, f"corrupt or incomplete explanation data ({err})") from err
        expected = (config["model"].get("num_layers", 1), config["model"]["hidden_size"])
        if shape != expected:
            raise SavedPartError(tensors_file, f"explanation data is for (layers, units) {shape}, the model has "
                                               f"{expected}")
        try:
            check_summary(summary, config)
            return cls(arrays, summary)  # checks the name lists against the arrays
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise SavedPartError(json_file, f"unreadable explanation summary ({err})") from err


def _check(explain: Explain) -> None:
    """Raise ``ValueError`` if the arrays disagree with each other or with the summary's name lists."""
    L, H = explain.unit_order.shape
    if explain.bank_states.ndim != 2 or explain.bank_states.shape[1] != H:
        raise ValueError(f"bank_states {explain.bank_states.shape} does not fit unit_order {(L, H)}")
    if not (np.sort(explain.unit_order, axis=1) == np.arange(H)).all():
        raise ValueError("unit_order is not a permutation of the units in every layer")
    shape = explain.context_name.shape
    if len(shape) != 3 or shape[:2] != (L, H) or explain.context_pos.shape != shape or \
            explain.context_value.shape != shape:
        raise ValueError(f"context arrays {shape}, {explain.context_pos.shape}, {explain.context_value.shape} do "
                         f"not fit unit_order {(L, H)}")
    if not explain.summary:
        return  # arrays only, before the JSON is attached
    bank, contexts = explain.summary.get("bank"), explain.summary.get("contexts")
    if not (isinstance(bank, dict) and len(bank.get("names", ())) == len(bank.get("languages", ()))
            == len(explain.bank_states)):
        raise ValueError(f"the bank lists do not name the {len(explain.bank_states)} stored states")
    n = len(contexts.get("names", ())) if isinstance(contexts, dict) else -1
    if not isinstance(contexts, dict) or len(contexts.get("languages", ())) != n or \
            (explain.context_name.size and not 0 <= explain.context_name.min() <= explain.context_name.max() < n):
        raise ValueError("context_name indices do not fit the stored context names")


def check_summary(summary: dict, config: dict) -> None:
    """Raise ``ValueError`` if a loaded ``explain.json`` does not belong to the model of ``config``."""
    if not isinstance(summary, dict):
        raise ValueError("not a JSON object")
    if summary.get("labels") != list(config["labels"]):
        raise ValueError("its labels differ from config.json's")
    model = config["model"]
    expected = (model.get("num_layers", 1), model["hidden_size"])
    if (summary.get("num_layers"), summary.get("hidden_size")) != expected:
        raise ValueError(f"it is for {summary.get('num_layers')} layer(s) of {summary.get('hidden_size')} units, "
                         f"the model has {expected[0]} of {expected[1]}")


@torch.inference_mode()
def _every_step(model: Model, names: list[str], batch_size: int = 512):
    """Yield (rows, hidden (L, B, T, H) float32, lengths (B,)) for ``names`` in length-sorted batches."""
    model.eval()
    for rows, x, lengths in length_batches(names, batch_size):
        yield rows, model.steps(x, lengths).hidden.numpy(), lengths.numpy()


def _unit_order(states: np.ndarray) -> np.ndarray:
    """(H,) leaf order of the units, clustered by their activation profiles ``states`` (S, H)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import pdist

    with np.errstate(invalid="ignore", divide="ignore"):
        distances = pdist(states.T.astype(np.float64), "correlation")
    # A constant unit has no correlation with anything (0 / 0): put it at distance 1, as an uncorrelated unit.
    distances = np.clip(np.nan_to_num(distances, nan=1.0), 0.0, 2.0)
    return leaves_list(linkage(distances, method="average", optimal_ordering=True))


def _top_contexts(model, names: list[str], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For distinct ``names``: per (layer, unit) the indices of the k names with the highest value over all their
    prefixes, the position of that value and the value, highest first (ties by name index): each (L, H, k)."""
    best_value: np.ndarray | None = None
    best_pos: np.ndarray | None = None
    for rows, hidden, lengths in _every_step(model, names):
        L, B, T, H = hidden.shape
        if best_value is None or best_pos is None:  # (both None until the first batch)
            best_value = np.empty((len(names), L, H), dtype=np.float32)
            best_pos = np.empty((len(names), L, H), dtype=np.int32)
        padded = np.arange(T)[None, :] >= lengths[:, None]  # (B, T)
        hidden[:, padded] = -np.inf  # padding never wins
        best_pos[rows] = hidden.argmax(axis=2).transpose(1, 0, 2)  # (B, L, H): first position of the maximum
        best_value[rows] = hidden.max(axis=2).transpose(1, 0, 2)
    assert best_value is not None and best_pos is not None  # names is never empty: fit's bank names are among them
    N, L, H = best_value.shape
    k = min(k, N)
    # A stable sort of the negated values: highest first, equal values in name order.
    top = np.argsort(-best_value.reshape(N, L * H), axis=0, kind="stable")[:k]  # (k, L*H)
    units = np.arange(L * H)
    values = best_value.reshape(N, L * H)[top, units]
    positions = best_pos.reshape(N, L * H)[top, units]
    return (top.T.reshape(L, H, k), positions.T.reshape(L, H, k), values.T.reshape(L, H, k))


def fit(model: Model, names: list[str], targets, labels: list[str], k: int = K_CONTEXTS,
        per_language: int = PER_LANGUAGE, seed: int = SAMPLE_SEED) -> Explain:
    """Fit the explanation data on the training ``names`` (normalised) and their ``targets``; deterministic."""
    targets = np.asarray(targets)
    bank_rows = np.concatenate(_sample_rows(targets, len(labels), per_language, seed))
    bank_names = [names[i] for i in bank_rows]
    batches = [np.concatenate([hidden[:, b, :n] for b, n in enumerate(lengths)], axis=1)
               for _, hidden, lengths in _every_step(model, bank_names)]
    prefix = np.concatenate(batches, axis=1)  # (L, S, H): every prefix state of the bank's names
    unit_order = np.stack([_unit_order(layer) for layer in prefix])  # (L, H)

    first: dict[str, int] = {}  # distinct name -> its first training row
    for i, name in enumerate(names):
        first.setdefault(name, i)
    distinct = list(first)
    chosen, positions, values = _top_contexts(model, distinct, k)
    used = np.unique(chosen)  # the distinct names any unit keeps, in first-occurrence order
    # float16 now, not only on disk: a freshly fitted bank gives the same neighbours as a loaded one
    tensors = {"bank_states": top_states(model, bank_names).astype(np.float16), "unit_order": unit_order,
               "context_name": np.searchsorted(used, chosen), "context_pos": positions, "context_value": values}
    L, H = unit_order.shape
    summary = {
        "format_version": FORMAT_VERSION,
        "fitted_on": "train",
        "methods": METHODS,
        "labels": list(labels),
        "num_layers": int(L),
        "hidden_size": int(H),
        "n_train_names": len(names),
        "n_distinct_train_names": len(distinct),
        "n_prefix_states": int(prefix.shape[1]),
        "per_language": int(per_language),
        "sample_seed": int(seed),
        "k": int(chosen.shape[2]),
        "bank": {"names": bank_names, "languages": [labels[targets[i]] for i in bank_rows]},
        "contexts": {"names": [distinct[i] for i in used],
                     "languages": [labels[targets[first[distinct[i]]]] for i in used]},
    }
    return Explain(tensors, summary)
