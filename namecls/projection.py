"""A 2-D map of the hidden state: PCA of the top layer's state after the last character of the training names.

The PCA is fitted on a fixed-seed sample of at most ``PER_LANGUAGE`` training names per language, so that every
language weighs alike (fitted on all names, Russian — half of them — decides the axes and the small languages
collapse into one crowd; language separation in 2-D, between- over within-language variance, GRU: 1.9 → 2.5).

Fitted once at training time (:func:`fit`, called by :func:`namecls.experiment.run`, or added to an existing
checkpoint by ``python -m namecls.calibration``) and stored beside the weights as plain data, never pickle:

- ``projection.safetensors``: ``mean`` (H,) and ``components`` (2, H), float32 — ``xy = (h - mean) @ components.T``;
- ``projection.json``: what was fitted on what, the explained variance, the plotting extent, and per language the
  number of training names, the centroid of their points and a fixed-seed sample of at most ``PER_LANGUAGE``
  points (what the app scatters).

Any hidden state of the top layer can then be placed on the map, in particular the state after each prefix of a
new name (:attr:`namecls.Trace.map_points`): "Ngu…" leaves the crowd and arrives among the Vietnamese names.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import pad_batch

PER_LANGUAGE = 150  # sampled training names per language in projection.json (all of them if fewer)
SAMPLE_SEED = 0
METHOD = ("PCA (scikit-learn, 2 components, full SVD) of the top layer's hidden state after the last character "
          "of the training names")


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
        return tuple(float(v) for v in self.summary["extent"])

    def tensors(self) -> dict[str, torch.Tensor]:
        """What ``projection.safetensors`` holds."""
        return {"mean": torch.from_numpy(self.mean.copy()), "components": torch.from_numpy(self.components.copy())}


@torch.inference_mode()
def top_states(model: torch.nn.Module, names: list[str], batch_size: int = 512, every_step: bool = False):
    """Top-layer hidden states of already-normalised names, batched by length; input order kept.

    ``every_step=False``: (N, H), the state after each name's last character. ``every_step=True``: a list of
    (T_i, H) arrays, the state after every character.
    """
    model.eval()
    order = sorted(range(len(names)), key=lambda i: len(names[i]))
    out: list = [None] * len(names)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        x, lengths = pad_batch([names[i] for i in rows])
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


def fit(model: torch.nn.Module, names: list[str], targets, labels: list[str], per_language: int = PER_LANGUAGE,
        seed: int = SAMPLE_SEED, balanced: bool = True) -> Projection:
    """Fit the map on the training ``names`` (normalised) and their ``targets``; deterministic for fixed inputs.

    ``balanced``: fit the PCA on the fixed-seed sample of at most ``per_language`` names per language (the points
    the app scatters), so that every language weighs alike; otherwise Russian, half the training names, decides
    the axes and the small languages end up in one crowd. Centroids are always over all training names.
    """
    from sklearn.decomposition import PCA  # here, not at the top: loading a map (app start-up) needs no sklearn

    targets = np.asarray(targets)
    states = top_states(model, names).astype(np.float64)  # (N, H)
    sample_rows = _sample_rows(targets, len(labels), per_language, seed)
    sampled = np.concatenate(sample_rows)
    pca = PCA(n_components=2, svd_solver="full").fit(states[sampled] if balanced else states)
    mean, components = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
    # Orient each axis so that its largest loading is positive (PCA's signs are arbitrary; this fixes them).
    flip = np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])
    components *= np.where(flip == 0, 1, flip)[:, None].astype(np.float32)
    proj = Projection(mean, components, {})
    points = proj.transform(states)  # (N, 2)
    languages = {}
    for c, lang in enumerate(labels):
        members = targets == c
        languages[lang] = {
            "count": int(members.sum()),
            "centroid": _round(points[members].mean(axis=0)) if members.any() else None,
            "sample": _round(points[sample_rows[c]]),
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
        "method": METHOD + (f", fitted on a fixed-seed sample of at most {per_language} names per language (every "
                            f"language weighs alike)" if balanced else ", fitted on all of them"),
        "fitted_on": "train",
        "n_names": int(len(names)),
        "hidden_size": int(states.shape[1]),
        "explained_variance_ratio": [round(float(v), 6) for v in pca.explained_variance_ratio_],
        "extent": [round(float(v), 4) for v in (lo[0], hi[0], lo[1], hi[1])],
        "sample_seed": int(seed),
        "per_language": int(per_language),
        "labels": list(labels),
        "languages": languages,
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
