"""A 2-D map of the hidden state: a linear projection (PCA) of the top layer's state after the last character of
the training names.

The projection is fitted on a fixed-seed sample of at most ``PER_LANGUAGE`` training names per language, so that
every language weighs alike (fitted on all names, Russian — half of them — decides the axes and the small languages
collapse into one crowd; language separation in 2-D, between- over within-language variance, GRU: 1.9 → 2.5).

PCA, not LDA, on evidence: fitted on the same balanced sample and scored on the validation names (5-NN language
accuracy against the sample's points, and :func:`separation`), LDA's two axes separate the languages no better —
with 256-512 dimensions and ~2,000 sampled names it overfits the sample (GRU 5-NN accuracy 0.57 PCA vs 0.48 LDA,
separation 3.4 vs 1.4; RNN 0.36 vs 0.41, 1.3 vs 1.2). ``bench/projection_choice.py`` prints the table;
``projection.json`` records it under ``"evidence"``.

Fitted once after training (:func:`fit`, called by :func:`namecls.training.posthoc.fit`, or refitted on an existing
checkpoint by ``python -m namecls.training.refit``) and stored beside the weights as plain data, never pickle:

- ``projection.safetensors``: ``mean`` (H,) and ``components`` (2, H), float32 — ``xy = (h - mean) @ components.T``;
- ``projection.json``: what was fitted on what, each axis's share, the evidence for the method, the plotting
  extent, and per language the number of training names, the centroid of their points and a fixed-seed sample of
  at most ``PER_LANGUAGE`` points with their names (what the app scatters).

Any hidden state of the top layer can then be placed on the map, in particular the state after each prefix of a
new name (:attr:`namecls.Trace.map_points`): "Ngu…" leaves the crowd and arrives among the Vietnamese names.
"""

from __future__ import annotations

from typing import ClassVar, cast

import numpy as np
import torch

from ..data.names import length_batches
from ..errors import SavedPartError
from ..models.networks import Model

PER_LANGUAGE = 150  # sampled training names per language in projection.json (all of them if fewer)
SAMPLE_SEED = 0
_STATE = "the top layer's hidden state after the last character of the training names"
METHODS = {
    "pca": f"PCA (scikit-learn, 2 components, full SVD) of {_STATE}",
    "lda": (f"linear discriminant analysis (scikit-learn, solver 'svd', 2 components) of {_STATE}: the two "
            "directions that best separate the languages relative to the spread within each"),
}
AXIS_SHARE_MEANING = {
    "pca": "each axis's share of the total variance of the fitted sample's states (PCA explained variance ratio)",
    "lda": ("each axis's share of the between-language separation that all discriminant directions together "
            "capture (LDA explained_variance_ratio_); not a share of the total variance"),
}
DEFAULT_METHOD = "pca"
NEIGHBOURS = 5  # k of the k-NN language accuracy that compares the methods
EVIDENCE_MEANING = (f"knn{NEIGHBOURS}_accuracy: share of validation names whose {NEIGHBOURS} nearest sample points on "
                    "the map vote for their own language (balanced: the same, averaged over languages); separation: "
                    "between- over within-language variance of the validation names' points")


class Projection:
    """A fitted 2-D projection of one model's top-layer hidden states, with its per-language summary."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, summary: dict):
        self.mean = np.asarray(mean, dtype=np.float32)  # (H,)
        self.components = np.asarray(components, dtype=np.float32)  # (2, H)
        if self.mean.ndim != 1 or self.components.shape != (2, self.mean.shape[0]):
            raise ValueError(f"projection shapes do not fit: mean {self.mean.shape}, components "
                             f"{self.components.shape} (expected (H,) and (2, H))")
        self.summary = summary  # the JSON-able part (projection.json)
        # transform() works in float64 (every trace request): convert once, here
        self._mean64, self._components64 = self.mean.astype(np.float64), self.components.T.astype(np.float64)

    def __repr__(self) -> str:
        return f"Projection(hidden_size={self.hidden_size}, names={self.summary.get('n_names')})"

    @property
    def hidden_size(self) -> int:
        return int(self.mean.shape[0])

    @property
    def labels(self) -> list[str]:
        return list(self.summary["labels"])

    def transform(self, hidden) -> np.ndarray:
        """(..., H) top-layer states → (..., 2) map coordinates (float32)."""
        h = np.asarray(hidden, dtype=np.float64)
        return ((h - self._mean64) @ self._components64).astype(np.float32)

    def centroids(self) -> np.ndarray:
        """(C, 2): the mean map point of each language's training names, in label order (NaN if none)."""
        langs = self.summary["languages"]
        return np.array([langs[lang]["centroid"] if langs[lang]["centroid"] is not None else [np.nan, np.nan]
                         for lang in self.labels], dtype=np.float32)

    def sample_names(self) -> list[str]:
        """The names of :meth:`sample`'s points, in the same order ("" for each point of an older projection.json
        that does not store them)."""
        names: list[str] = []
        for lang in self.labels:
            entry = self.summary["languages"][lang]
            stored = entry.get("names") or []
            names.extend(stored if len(stored) == len(entry["sample"]) else [""] * len(entry["sample"]))
        return names

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """(points (N, 2), label indices (N,)): the stored sample of training names, language by language."""
        points, labels = [], []
        for i, lang in enumerate(self.labels):
            pts = self.summary["languages"][lang]["sample"]
            points.extend(pts)
            labels.extend([i] * len(pts))
        return np.asarray(points, dtype=np.float32).reshape(-1, 2), np.asarray(labels, dtype=np.int64)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) of the map: the sample's final states and most prefix states, with a margin."""
        # four numbers: check_summary rejects any other extent
        return cast("tuple[float, float, float, float]", tuple(float(v) for v in self.summary["extent"]))

    # saved in a checkpoint as these files (namecls.checkpoint.parts.Part)
    FILES: ClassVar[tuple[str, ...]] = ("projection.safetensors", "projection.json")
    LABEL: ClassVar[str] = "projection"

    def tensors(self) -> dict[str, torch.Tensor]:
        """What ``projection.safetensors`` holds."""
        return {"mean": torch.from_numpy(self.mean.copy()), "components": torch.from_numpy(self.components.copy())}

    @classmethod
    def from_saved(cls, tensors: dict, summary: dict, config: dict) -> "Projection":
        """Rebuild from :meth:`tensors` and :attr:`summary`, checked against each other and the model of the
        checkpoint's ``config``; :class:`SavedPartError` naming the file at fault."""
        tensors_file, json_file = cls.FILES
        try:
            projection = cls(tensors["mean"].numpy(), tensors["components"].numpy(), {})
        except (KeyError, ValueError, TypeError) as err:
            raise SavedPartError(tensors_file, f"corrupt or incomplete projection ({err})") from err
        try:
            check_summary(summary, projection.hidden_size, config["labels"])
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise SavedPartError(json_file, f"unreadable projection summary ({err})") from err
        if projection.hidden_size != config["model"]["hidden_size"]:
            raise SavedPartError(tensors_file, f"projection is for hidden size {projection.hidden_size}, the model "
                                               f"has {config['model']['hidden_size']}")
        projection.summary = summary
        return projection


@torch.inference_mode()
def top_states(model: Model, names: list[str], batch_size: int = 512, every_step: bool = False):
    """Top-layer hidden states of already-normalised names, batched by length; input order kept.

    ``every_step=False``: (N, H), the state after each name's last character. ``every_step=True``: a list of
    (T_i, H) arrays, the state after every character.
    """
    model.eval()
    out: list = [None] * len(names)
    for rows, x, lengths in length_batches(names, batch_size):
        top = model.steps(x, lengths).hidden[-1].numpy()  # (B, T, H)
        for b, row in enumerate(rows):
            n = int(lengths[b])
            out[row] = top[b, :n].copy() if every_step else top[b, n - 1].copy()
    return out if every_step else np.stack(out).astype(np.float32)


def _sample_rows(targets: np.ndarray, num_classes: int, per_language: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(num_classes):
        members = np.flatnonzero(targets == c)
        if len(members) > per_language:
            members = np.sort(rng.choice(members, size=per_language, replace=False))
        rows.append(members)
    return rows


def _round(points: np.ndarray, digits: int = 4) -> list:
    return np.round(np.asarray(points, dtype=np.float64), digits).tolist()


def _axes(states: np.ndarray, targets: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (H,), components (2, H), each axis's share (2,)) of ``method`` fitted on ``states`` (N, H).

    ``"pca"``: the share is the explained variance ratio. ``"lda"``: its transform ``(h - xbar) @ scalings[:, :2]``
    is linear, so it fits the same (mean, components) format; the share is LDA's ``explained_variance_ratio_``,
    each axis's share of the between-language separation.
    """
    # here, not at the top: loading a map (app start-up) needs no sklearn
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    if method == "pca":
        pca = PCA(n_components=2, svd_solver="full").fit(states)
        mean, components, share = pca.mean_, pca.components_, pca.explained_variance_ratio_
    elif method == "lda":
        lda = LinearDiscriminantAnalysis(n_components=2, solver="svd").fit(states, targets)
        mean, components, share = lda.xbar_, lda.scalings_[:, :2].T, lda.explained_variance_ratio_[:2]
    else:
        raise ValueError(f"unknown projection method {method!r}: expected one of {sorted(METHODS)}")
    components = np.array(components, dtype=np.float32)
    # Orient each axis so that its largest loading is positive (both methods' signs are arbitrary; this fixes them).
    flip = np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])
    components *= np.where(flip == 0, 1, flip)[:, None].astype(np.float32)
    return np.asarray(mean, dtype=np.float32), components, np.asarray(share, dtype=np.float64)


def separation(points: np.ndarray, targets: np.ndarray) -> float:
    """Between- over within-language variance of 2-D ``points``: sum_c n_c |m_c - m|^2 / sum_i |x_i - m_(c_i)|^2."""
    points, targets = np.asarray(points, dtype=np.float64), np.asarray(targets)
    classes, index = np.unique(targets, return_inverse=True)
    means = np.stack([points[index == k].mean(axis=0) for k in range(len(classes))])  # (C', 2)
    between = (np.bincount(index) * ((means - points.mean(axis=0)) ** 2).sum(axis=1)).sum()
    within = ((points - means[index]) ** 2).sum()
    return float(between / within) if within > 0 else float("inf")


def _evidence(sample_states, sample_targets, val_states, val_targets, k: int = NEIGHBOURS) -> dict:
    """Each method fitted on the sample's states, scored on the validation states: k-NN language accuracy of each
    validation point against the sample's points (plain and balanced over languages), and :func:`separation`."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.neighbors import KNeighborsClassifier

    rows = {}
    for method in METHODS:
        mean, components, _ = _axes(sample_states, sample_targets, method)
        proj = Projection(mean, components, {})
        knn = KNeighborsClassifier(n_neighbors=k).fit(proj.transform(sample_states), sample_targets)
        val_points = proj.transform(val_states)
        guess = knn.predict(val_points)
        rows[method] = {f"knn{k}_accuracy": round(float((guess == val_targets).mean()), 4),
                        f"knn{k}_balanced_accuracy": round(float(balanced_accuracy_score(val_targets, guess)), 4),
                        "separation": round(separation(val_points, val_targets), 4)}
    return rows


def compare_methods(model: Model, train: tuple[list[str], np.ndarray], val: tuple[list[str], np.ndarray],
                    labels: list[str], per_language: int = PER_LANGUAGE, seed: int = SAMPLE_SEED) -> dict:
    """{method: scores} for every map method, fitted on the balanced training sample (as :func:`fit` does) and
    scored on the validation names (never test): what :func:`fit` records as the evidence for its choice."""
    sampled = np.concatenate(_sample_rows(np.asarray(train[1]), len(labels), per_language, seed))
    states = top_states(model, [train[0][i] for i in sampled]).astype(np.float64)
    return _evidence(states, np.asarray(train[1])[sampled], top_states(model, val[0]).astype(np.float64),
                     np.asarray(val[1]))


def fit(model: Model, names: list[str], targets, labels: list[str], per_language: int = PER_LANGUAGE,
        seed: int = SAMPLE_SEED, balanced: bool = True, method: str = DEFAULT_METHOD,
        validation: tuple[list[str], np.ndarray] | None = None) -> Projection:
    """Fit the map on the training ``names`` (normalised) and their ``targets``; deterministic for fixed inputs.

    ``balanced``: fit on the fixed-seed sample of at most ``per_language`` names per language (the points the app
    scatters), so that every language weighs alike; otherwise Russian, half the training names, decides the axes
    and the small languages end up in one crowd. Centroids are always over all training names. ``validation``
    (names, targets): also score every method on them (:func:`compare_methods`) and record it as ``"evidence"``.
    """
    targets = np.asarray(targets)
    states = top_states(model, names).astype(np.float64)  # (N, H)
    sample_rows = _sample_rows(targets, len(labels), per_language, seed)
    sampled = np.concatenate(sample_rows)
    fit_rows = sampled if balanced else np.arange(len(names))
    mean, components, share = _axes(states[fit_rows], targets[fit_rows], method)
    proj = Projection(mean, components, {})
    points = proj.transform(states)  # (N, 2)
    languages = {}
    for c, lang in enumerate(labels):
        members = targets == c
        languages[lang] = {
            "count": int(members.sum()),
            "centroid": _round(points[members].mean(axis=0)) if members.any() else None,
            "sample": _round(points[sample_rows[c]]),
            "names": [names[i] for i in sample_rows[c]],  # the sample's names, in the same order
        }
    # The map's extent: every sampled final state, and the 1st-99th percentile of the sampled names' prefix states
    # (a prefix's state may lie off the crowd of finished names; the app clips the rare outlier to the border).
    prefix = proj.transform(np.concatenate(top_states(model, [names[i] for i in sampled], every_step=True)))
    finals = points[sampled]
    lo = np.minimum(finals.min(axis=0), np.percentile(prefix, 1, axis=0))
    hi = np.maximum(finals.max(axis=0), np.percentile(prefix, 99, axis=0))
    pad = 0.06 * np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad, hi + pad
    proj.summary = {
        "format_version": 1,
        "method": METHODS[method] + (f", fitted on a fixed-seed sample of at most {per_language} names per language "
                                     f"(every language weighs alike)" if balanced else ", fitted on all of them"),
        "method_name": method,
        "fitted_on": "train",
        "n_names": int(len(names)),
        "hidden_size": int(states.shape[1]),
        "axis_share": [round(float(v), 6) for v in share],
        "axis_share_meaning": AXIS_SHARE_MEANING[method],
        **({"explained_variance_ratio": [round(float(v), 6) for v in share]} if method == "pca" else {}),
        "extent": [round(float(v), 4) for v in (lo[0], hi[0], lo[1], hi[1])],
        "sample_seed": int(seed),
        "per_language": int(per_language),
        "labels": list(labels),
        "languages": languages,
    }
    if validation is not None:
        proj.summary["evidence"] = {
            "measured_on": "validation names, against the fitted sample's points (each method fitted on the same "
                           "balanced sample)",
            "scores": _evidence(states[sampled], targets[sampled], top_states(model, validation[0]).astype(np.float64),
                                np.asarray(validation[1])),
            "meaning": EVIDENCE_MEANING,
        }
    return proj


def check_summary(summary: dict, hidden_size: int, labels: list[str]) -> None:
    """Raise ``ValueError`` if a loaded ``projection.json`` does not fit the checkpoint."""
    if not isinstance(summary, dict):
        raise ValueError("not a JSON object")
    if summary.get("labels") != list(labels):
        raise ValueError("its labels differ from config.json's")
    if summary.get("hidden_size") != hidden_size:
        raise ValueError(f"hidden_size {summary.get('hidden_size')} differs from the model's {hidden_size}")
    extent = summary.get("extent")
    if not (isinstance(extent, list) and len(extent) == 4 and extent[0] < extent[1] and extent[2] < extent[3]):
        raise ValueError(f"bad extent {extent!r}")
    languages = summary.get("languages")
    if not isinstance(languages, dict) or set(languages) != set(labels):
        raise ValueError("the per-language summary does not list every label")
    for lang, entry in languages.items():
        sample = np.asarray(entry.get("sample", []), dtype=np.float64)
        if sample.size and (sample.ndim != 2 or sample.shape[1] != 2):
            raise ValueError(f"{lang}: sample points must be [x, y] pairs")
