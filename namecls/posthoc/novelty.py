"""How unlike the training names a name is: a "from elsewhere" score, fitted once on the training names.

Components (each: higher = less like the training names), every one fitted on the training split only:

- ``lm_lang``: one character n-gram language model per language, fitted on that language's training names
  (interpolated Kneser-Ney, lower-cased, padded with ``order - 1`` start symbols and one end symbol); the score
  is the mean negative log-likelihood (nats) per predicted symbol (every character and the end of the name)
  under the language whose model fits the name best: how unlike *every one* of the 18 lists the name is.
  Stored as count tables (:class:`LanguageNGrams`).
- ``knn``: the mean Euclidean distance from the name's final top-layer state to its ``k`` nearest training names'
  final states, in a PCA projection of those states (fitted on the training states; stored as float16).

:class:`Novelty` combines the components in :data:`CHOSEN`, picked on ``bench/data/novelty-dev.csv`` among other
candidates (one language model of all the names, the top probability, the energy; ``bench/novelty.py``): each
is z-scored with the mean and standard deviation of the clean validation names'
scores, and the score is the mean of the z-scores. ``threshold`` is the score above which a name is flagged
"unfamiliar": the ``FLAG_QUANTILE`` quantile of the validation names' scores, i.e. about 1 - FLAG_QUANTILE of
names like the training data get the flag.

Stored as plain data (never pickle): :meth:`Novelty.tensors` (count tables, projected states, projection) and
:attr:`Novelty.summary` (JSON-able: method, parameters, what it was fitted on). How well the score separates
foreign names is measured outside the library, by ``python bench/novelty.py --heldout --write``, which records it
in the committed checkpoints (``novelty.measured``).
"""

from __future__ import annotations

from typing import ClassVar, overload

import numpy as np
import torch

from ..errors import SavedPartError
from ..models.networks import Model

FORMAT_VERSION = 1
CHOSEN = ("lm_lang", "knn")  # the components of the score (the only ones a Novelty computes)
LM_ORDER = 5
KNN_K = 5
KNN_DIMS = 32  # PCA dimensions kept for the stored training states
FLAG_QUANTILE = 0.95  # the flag fires above the 95th percentile of clean validation names' scores
# Symbols of the n-gram model: 0 = start, 1 = end, then the lower-cased alphabet.
_CHARS = "abcdefghijklmnopqrstuvwxyz .,:;-'"
_SYMBOL = {c: i + 2 for i, c in enumerate(_CHARS)}
BOS, EOS = 0, 1
BASE = len(_CHARS) + 2  # 35: an n-gram is the base-35 number of its symbols, the last symbol least significant
PREDICTED = len(_CHARS) + 1  # symbols a model can predict: every character and the end


def symbols(name: str) -> list[int]:
    """The n-gram model's symbols for a normalised name (lower-cased; a character outside the alphabet raises)."""
    return [_SYMBOL[c] for c in name.lower()]


class CharNGram:
    """Interpolated Kneser-Ney character n-gram model (Chen & Goodman, 1999), stored as sorted count tables.

    ``counts[k-1]`` holds, for every k-gram ending in a predicted symbol, the count Kneser-Ney uses: the raw count
    for the highest order and for k-grams that begin with the start symbol, else the continuation count (how
    many distinct symbols precede the k-gram). With D_k the order's discount, ``c`` those counts, ``h`` the
    history and ``h'`` its shortening:

        p_k(w | h) = max(c(h w) - D_k, 0) / c(h .) + D_k N1+(h .) / c(h .) * p_{k-1}(w | h')
        p_0(w) = 1 / PREDICTED; a history never seen (c(h .) = 0) passes p_{k-1} on unchanged.
    """

    def __init__(self, keys: list[np.ndarray], counts: list[np.ndarray], discounts: list[float]):
        self.order = len(keys)
        self.keys = [np.asarray(k, dtype=np.int64) for k in keys]
        self.counts = [np.asarray(c, dtype=np.float64) for c in counts]
        self.discounts = [float(d) for d in discounts]
        # Per order: the histories (key // BASE) with their count totals and numbers of distinct continuations.
        self._hist, self._total, self._types = [], [], []
        for k, c in zip(self.keys, self.counts):
            hist, start = np.unique(k // BASE, return_index=True)  # keys are sorted, so are their histories
            self._hist.append(hist)
            self._total.append(np.add.reduceat(c, start) if len(c) else np.zeros(0))
            self._types.append(np.diff(np.append(start, len(c))).astype(np.float64))

    @classmethod
    def fit(cls, names: list[str], order: int = LM_ORDER, discount: float | None = None) -> "CharNGram":
        """Count the n-grams of ``names`` (normalised). ``discount=None``: D_k = n1 / (n1 + 2 n2) per order, from
        the numbers of k-grams counted once and twice (Ney et al., 1994), clipped to [0.1, 0.9]."""
        if order < 1:
            raise ValueError("order must be at least 1")
        raw: list[dict[int, int]] = [{} for _ in range(order)]
        for name in names:
            seq = [BOS] * (order - 1) + symbols(name) + [EOS]
            for end in range(order - 1, len(seq)):
                key = 0
                for k in range(1, order + 1):  # the k-gram ending at ``end``
                    s = seq[end - k + 1]
                    key += s * BASE ** (k - 1)
                    raw[k - 1][key] = raw[k - 1].get(key, 0) + 1
                    if s == BOS:  # longer grams only add more start symbols: counted at their own ends
                        break
        keys, counts, discounts = [], [], []
        for k in range(1, order + 1):
            if k == order:
                table = dict(raw[k - 1])
            else:  # continuation counts: distinct symbols before the k-gram in the (k+1)-grams
                table = {}
                for key in raw[k]:
                    lower = key % BASE**k
                    table[lower] = table.get(lower, 0) + 1
                for key, c in raw[k - 1].items():  # k-grams that start with the start symbol keep raw counts
                    if key // BASE ** (k - 1) == BOS:
                        table[key] = c
            ks = np.array(sorted(table), dtype=np.int64)
            cs = np.array([table[int(x)] for x in ks], dtype=np.int64)
            if discount is None:
                n1, n2 = int((cs == 1).sum()), int((cs == 2).sum())
                d = min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n1 + n2 else 0.5  # 0 < D < 1: no p = 0
            else:
                d = float(discount)
            keys.append(ks)
            counts.append(cs)
            discounts.append(d)
        return cls(keys, counts, discounts)

    def _lookup(self, table: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        """``values`` at the rows of sorted ``table`` equal to ``query`` (0 where absent)."""
        if len(table) == 0:
            return np.zeros(len(query))
        at = np.minimum(np.searchsorted(table, query), len(table) - 1)
        return np.where(table[at] == query, values[at], 0.0)

    def logprobs(self, names: list[str]) -> list[np.ndarray]:
        """Per name, the natural log-probability of each predicted symbol (its characters, then the end)."""
        n = self.order
        seqs = [[BOS] * (n - 1) + symbols(name) + [EOS] for name in names]
        lengths = [len(s) - (n - 1) for s in seqs]
        # grams[i, k-1] = the k-gram ending at predicted position i, for every name's every position
        grams = np.zeros((sum(lengths), n), dtype=np.int64)
        row = 0
        for seq, length in zip(seqs, lengths):
            arr = np.asarray(seq, dtype=np.int64)
            for j in range(length):
                window = arr[j : j + n][::-1]  # last symbol first
                grams[row + j] = np.cumsum(window * BASE ** np.arange(n))
            row += length
        p = np.full(len(grams), 1.0 / PREDICTED)
        for k in range(1, n + 1):
            key = grams[:, k - 1]
            hist = key // BASE
            total = self._lookup(self._hist[k - 1], self._total[k - 1], hist)
            types = self._lookup(self._hist[k - 1], self._types[k - 1], hist)
            c = self._lookup(self.keys[k - 1], self.counts[k - 1], key)
            d = self.discounts[k - 1]
            seen = total > 0
            safe = np.where(seen, total, 1.0)
            p = np.where(seen, np.maximum(c - d, 0.0) / safe + d * types / safe * p, p)
        logp = np.log(p)
        return np.split(logp, np.cumsum(lengths)[:-1])

    def nll(self, names: list[str]) -> np.ndarray:
        """(N,): mean negative log-likelihood (nats) per predicted symbol of each name."""
        return np.array([-lp.mean() for lp in self.logprobs(names)])

    def tensors(self, prefix: str = "lm") -> dict[str, np.ndarray]:
        out = {}
        for k, (keys, counts) in enumerate(zip(self.keys, self.counts), start=1):
            out[f"{prefix}_keys_{k}"] = keys.astype(np.int32 if BASE**k < 2**31 else np.int64)
            out[f"{prefix}_counts_{k}"] = counts.astype(np.int32)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict, discounts: list[float], prefix: str = "lm") -> "CharNGram":
        order = len(discounts)
        return cls([np.asarray(tensors[f"{prefix}_keys_{k}"]) for k in range(1, order + 1)],
                   [np.asarray(tensors[f"{prefix}_counts_{k}"]) for k in range(1, order + 1)], discounts)


class LanguageNGrams:
    """One :class:`CharNGram` per language, fitted on that language's training names.

    ``min_nll``: the mean negative log-likelihood per symbol under the language model that fits the name best,
    i.e. how unlike *every one* of the lists the name is. ``weights``: the languages' shares of the training names.
    """

    def __init__(self, models: list[CharNGram], weights: list[float]):
        self.models = models
        self.weights = np.asarray(weights, dtype=np.float64)

    @classmethod
    def fit(cls, names: list[str], targets, num_labels: int, order: int = LM_ORDER) -> "LanguageNGrams":
        targets = np.asarray(targets)
        per = [sorted({n for n, t in zip(names, targets) if t == label}) for label in range(num_labels)]
        if any(not p for p in per):
            raise ValueError("every language needs at least one training name")
        sizes = np.array([len(p) for p in per], dtype=np.float64)
        return cls([CharNGram.fit(p, order) for p in per], (sizes / sizes.sum()).tolist())

    def _totals(self, names: list[str]) -> np.ndarray:
        """(L, N): each language model's total log-probability of each name."""
        return np.stack([np.array([lp.sum() for lp in m.logprobs(names)]) for m in self.models])

    def min_nll(self, names: list[str]) -> np.ndarray:
        symbols_per_name = np.array([len(n) + 1 for n in names], dtype=np.float64)
        return -self._totals(names).max(0) / symbols_per_name

    def tensors(self) -> dict[str, np.ndarray]:
        out = {}
        for i, m in enumerate(self.models):
            out.update(m.tensors(prefix=f"lang{i}"))
        return out

    @classmethod
    def from_tensors(cls, tensors: dict, discounts: list[list[float]], weights: list[float]) -> "LanguageNGrams":
        return cls([CharNGram.from_tensors(tensors, d, prefix=f"lang{i}") for i, d in enumerate(discounts)], weights)


def knn_distance(queries: np.ndarray, reference: np.ndarray, k: int = KNN_K, chunk: int = 2048) -> np.ndarray:
    """(N,): the mean Euclidean distance from each query row to its ``k`` nearest rows of ``reference``."""
    queries = np.asarray(queries, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    ref_sq = (reference**2).sum(1)
    out = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        d2 = np.maximum((q**2).sum(1)[:, None] - 2 * q @ reference.T + ref_sq[None], 0.0)
        part = np.partition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else d2
        out[start : start + chunk] = np.sqrt(part).mean(1)
    return out


@torch.inference_mode()
def final_states(model: Model, names: list[str], batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(N, H) top-layer state after each name's last character and (N, C) logits, batched by length."""
    from ..data.names import length_batches
    from ..models.networks import last_step

    model.eval()
    states = np.empty((len(names), model.config.hidden_size), dtype=np.float32)
    logits = np.empty((len(names), model.config.num_classes), dtype=np.float32)
    for rows, x, lengths in length_batches(names, batch_size):
        steps = model.steps(x, lengths)
        states[rows] = last_step(steps.hidden[-1], lengths).numpy()
        logits[rows] = last_step(steps.logits, lengths).numpy()
    return states, logits


class Novelty:
    """The fitted "from elsewhere" score of one model (see the module docstring)."""

    def __init__(self, tensors: dict, summary: dict):
        self.summary = summary
        self.components: tuple[str, ...] = tuple(summary["components"])
        unknown = set(self.components) - set(CHOSEN)
        if unknown:
            raise ValueError(f"novelty components {sorted(unknown)} are not {CHOSEN} (candidates live in bench/)")
        p = summary["params"]
        self.k = int(p["knn_k"])
        arrays = {k: np.asarray(v) for k, v in tensors.items()}
        self.lm_lang = (LanguageNGrams.from_tensors(arrays, p["lm_lang_discounts"], p["lm_lang_weights"])
                        if "lm_lang" in self.components else None)
        if "knn" in self.components:
            # Stored as float32 (mean, basis) and float16 (states): rounded the same before and after saving.
            self.mean = np.asarray(tensors["knn_mean"], dtype=np.float32).astype(np.float64)  # (H,)
            self.basis = np.asarray(tensors["knn_basis"], dtype=np.float32).astype(np.float64)  # (H, d)
            self.reference = np.asarray(tensors["knn_states"], dtype=np.float16).astype(np.float32)  # (N, d)
        self.center = np.asarray(summary["standardize"]["mean"], dtype=np.float64)
        self.scale = np.asarray(summary["standardize"]["std"], dtype=np.float64)
        self.threshold = float(summary["threshold"]["value"])

    def __repr__(self) -> str:
        return f"Novelty({'+'.join(self.components)}, threshold={self.threshold:.3f})"

    @property
    def needs_states(self) -> bool:
        return "knn" in self.components

    def features(self, names: list[str], states=None) -> np.ndarray:
        """(N, len(components)): each component's raw score (before standardisation)."""
        cols = []
        for c in self.components:
            if c == "lm_lang":
                assert self.lm_lang is not None  # built in __init__ when "lm_lang" is a component
                cols.append(self.lm_lang.min_nll(names))
            elif c == "knn":
                if states is None:
                    raise ValueError("the knn component needs the names' final top-layer states")
                projected = (np.atleast_2d(np.asarray(states, dtype=np.float64)) - self.mean) @ self.basis
                cols.append(knn_distance(projected, self.reference, self.k))
        return np.stack(cols, axis=1)

    def score(self, names: list[str], states: np.ndarray | None = None) -> np.ndarray:
        """(N,): the novelty score of normalised ``names``; higher = less like the training names.

        ``states`` (N, H): each name's top-layer state after its last character (``Trace.hidden[-1]``, or
        :func:`final_states`), when :attr:`needs_states`.
        """
        return ((self.features(names, states) - self.center) / self.scale).mean(axis=1)

    @overload
    def unfamiliar(self, scores: float) -> bool: ...
    @overload
    def unfamiliar(self, scores: np.ndarray) -> np.ndarray: ...

    def unfamiliar(self, scores) -> np.ndarray | bool:
        """The "unfamiliar" flag: score above :attr:`threshold`."""
        flags = np.asarray(scores) > self.threshold
        return bool(flags) if flags.ndim == 0 else flags

    def score_model(self, model: Model, names: list[str]) -> np.ndarray:
        """:meth:`score` of normalised ``names``, running ``model`` for the states it needs."""
        return self.score(names, _states(self, model, names))

    # saved in a checkpoint as these files (namecls.checkpoint.parts.Part)
    FILES: ClassVar[tuple[str, ...]] = ("novelty.safetensors", "novelty.json")
    LABEL: ClassVar[str] = "novelty data"

    def tensors(self) -> dict[str, torch.Tensor]:
        """What a checkpoint's ``novelty.safetensors`` would hold."""
        arrays: dict[str, np.ndarray] = {}
        if self.lm_lang is not None:
            arrays.update(self.lm_lang.tensors())
        if "knn" in self.components:
            arrays.update({"knn_mean": self.mean.astype(np.float32), "knn_basis": self.basis.astype(np.float32),
                           "knn_states": self.reference.astype(np.float16)})
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    @classmethod
    def from_saved(cls, tensors: dict, summary: dict, config: dict | None = None) -> "Novelty":
        """Rebuild from :meth:`tensors` and :attr:`summary` (``config``, the checkpoint's, is the part protocol's)."""
        if summary.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"novelty format {summary.get('format_version')!r}, expected {FORMAT_VERSION}")
        missing = sorted({"knn_mean", "knn_basis", "knn_states"} - set(tensors)) if "knn" in summary.get(
            "components", ()) else []
        if missing:
            raise SavedPartError(cls.FILES[0], f"corrupt or incomplete {cls.LABEL} (no {', '.join(missing)})")
        arrays = {k: (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in tensors.items()}
        return cls(arrays, summary)


def fit(model: Model, train_names: list[str], train_targets, labels: list[str], dev=None, *,
        val_names: list[str] | None = None, order: int = LM_ORDER, k: int = KNN_K, dims: int = KNN_DIMS,
        quantile: float = FLAG_QUANTILE) -> Novelty:
    """Fit the score on the training names and standardise it on ``val_names``; return the :class:`Novelty`.

    ``train_names``/``train_targets``: the training split (rows; a name in two languages feeds both language
    models; the kNN reference holds each distinct name once). ``val_names``: the clean validation names, for the
    z-scoring and the flag's threshold (without them the training names stand in, and the threshold is optimistic:
    a training name's kNN distance includes itself).
    ``dev``: optional ``(names, groups, test_names)`` (groups: "foreign" / "in_language"; test_names may be None)
    whose AUROCs :func:`evaluate` records in the summary under "dev".
    """
    components = CHOSEN  # lm_lang, then knn
    unique = sorted(set(train_names))
    langs = LanguageNGrams.fit(list(train_names), train_targets, len(labels), order)
    states, _ = final_states(model, unique)
    mean = states.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(states - mean, full_matrices=False)
    basis = vt[: min(dims, vt.shape[0])].T  # (H, d)
    sign = np.sign(basis[np.abs(basis).argmax(0), np.arange(basis.shape[1])])  # fixed signs: deterministic
    basis = basis * sign
    projected = ((states - mean) @ basis).astype(np.float16)
    tensors = {**langs.tensors(), "knn_mean": mean, "knn_basis": basis, "knn_states": projected}
    params = {"knn_k": int(k), "lm_order": order, "lm_lang_discounts": [m.discounts for m in langs.models],
              "lm_lang_weights": langs.weights.tolist(), "knn_dims": int(basis.shape[1]),
              "knn_variance_kept": float(((states - mean) @ basis).var(0).sum() / (states - mean).var(0).sum())}
    summary = {
        "format_version": FORMAT_VERSION,
        "components": list(components),
        "params": params,
        "standardize": {"mean": [0.0] * len(components), "std": [1.0] * len(components)},
        "threshold": {"value": 0.0},
    }
    novelty = Novelty(tensors, summary)
    reference = list(val_names) if val_names else unique
    reference_states = _states(novelty, model, reference)  # the model run once for both uses below
    feats = novelty.features(reference, reference_states)
    center, scale = feats.mean(0), np.maximum(feats.std(0), 1e-12)
    summary["standardize"] = {"mean": center.tolist(), "std": scale.tolist(),
                              "fitted_on": f"{len(reference)} {'clean validation' if val_names else 'training'} "
                                           "names"}
    ref_scores = ((feats - center) / scale).mean(axis=1)  # Novelty.score's arithmetic, on the features above
    value = float(np.quantile(ref_scores, quantile))
    summary["threshold"] = {
        "value": value, "quantile": quantile,
        "rule": f"unfamiliar when the score is above the {quantile:.0%} quantile of the "
                f"{'clean validation' if val_names else 'training'} names' scores (so about "
                f"{1 - quantile:.0%} of names like the training data are flagged)"}
    summary["fitted_on"] = {"train_names": len(unique), "train_rows": len(train_names), "labels": list(labels),
                            "what": "the clean split's training names (language models: each language's distinct "
                                    "names; kNN: each distinct name once); z-scores and threshold: validation"}
    summary["method"] = describe(components, order, k, dims)
    novelty = Novelty(tensors, summary)
    if dev is not None:
        summary["dev"] = evaluate(novelty, model, *dev)
    return novelty


def _states(novelty: Novelty, model, names) -> np.ndarray | None:
    """The final top-layer states of ``names`` if ``novelty`` needs them, else None."""
    return final_states(model, names)[0] if novelty.needs_states else None


def describe(components, order: int, k: int, dims: int) -> str:
    parts = {"lm_lang": f"per-language character {order}-gram Kneser-Ney language models of the training names, "
                        "mean negative log-likelihood per character under the best-fitting language",
             "knn": f"mean distance of the final top-layer state to the {k} nearest training names' states "
                    f"(PCA to {dims} dimensions)"}
    return ("mean of the z-scores (clean validation names' mean and std) of: " +
            "; ".join(parts[c] for c in components))


def evaluate(novelty: Novelty, model, names: list[str], groups: list[str], test_names: list[str] | None = None,
             name: str = "novelty-dev.csv") -> dict:
    """AUROCs of the score: foreign vs unseen in-language names of a novelty file, and foreign vs ``test_names``."""
    from sklearn.metrics import roc_auc_score

    foreign = np.array([g == "foreign" for g in groups])
    scores = novelty.score_model(model, list(names))
    out = {"file": name, "foreign": int(foreign.sum()), "in_language": int((~foreign).sum()),
           "auroc_vs_in_language": round(float(roc_auc_score(foreign, scores)), 4)}
    if test_names is not None:
        test = novelty.score_model(model, list(test_names))
        y = np.r_[np.ones(foreign.sum()), np.zeros(len(test))]
        out["auroc_vs_test_split"] = round(float(roc_auc_score(y, np.r_[scores[foreign], test])), 4)
        out["test_names"] = len(test)
    return out

