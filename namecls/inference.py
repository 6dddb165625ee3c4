"""The public inference API: load a checkpoint, predict languages, and trace a name character by character.

Every probability is calibrated: logits are divided by the checkpoint's ``temperature`` (fitted on validation data,
:mod:`namecls.posthoc.calibration`; 1 when the checkpoint has none) before the softmax. Prediction sets
(:mod:`namecls.posthoc.conformal`) and "seen in training" (:mod:`namecls.posthoc.seen`) come from the checkpoint's
post-training
fits (:class:`namecls.posthoc.parts.Posthoc`).

Every method that answers takes ``prior`` (:mod:`namecls.posthoc.prior`): ``"lists"`` (the default, the network's answer
as trained on the lists' proportions) or ``"equal"`` (every language equally likely before the name is read;
Bayes' rule, with prediction sets recalibrated for it).

A name is validated and normalised once: every method takes a raw ``str`` or an already validated
:class:`namecls.data.names.Normalized` (what :func:`namecls.serving.service.check_name` returns), which it uses as it
is.
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from numpy.typing import ArrayLike

from .posthoc import calibration
from .explain import cell, gradient
from . import checkpoint
from .posthoc import prior as prior_rule
from .posthoc.conformal import CONFIG as CONFORMAL
from .data.names import Normalized, length_batches, pad_batch, validate
from .explain.units import Neighbour, UnitContext  # noqa: F401  (part of the inference API: Trace.neighbours' items)
from .models.networks import Model
from .posthoc.parts import Posthoc
from .errors import InputError

def _checkpoints_folder() -> Path:
    """The committed checkpoints: package data in an installed wheel (namecls/checkpoints/), else, in a checkout
    of the repository, checkpoints/ beside the package."""
    packaged = Path(str(resources.files("namecls") / "checkpoints"))
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "checkpoints"


CHECKPOINTS = _checkpoints_folder()
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
    map_points: np.ndarray | None = None  # (T, 2): the top state after each character on the model's 2-D map
    initial: np.ndarray | None = None  # (L, H): the state before the first character
    deletion: np.ndarray | None = None  # (T,): leave-one-out effect of each character on the final answer
    neighbours: list[list[Neighbour]] | None = None  # [T][n]: reference names nearest the top state after each prefix
    sets: list[list[str]] | None = None  # [T]: the prediction set (default coverage) after each prefix
    seen_as: list[str] | None = None  # the whole name's languages in the training split ([] unseen; None: no table)
    novelty: float | None = None  # the whole name's novelty score (None: no novelty model), as predict_details
    unfamiliar: bool | None = None
    contributions: dict | None = None  # the final logit split over bias, input and units (namecls.explain.cell)
    gates: dict | None = None  # the cell after each character (namecls.explain.cell.gates: GRU gates, RNN drives)
    gradient: gradient.StateGradients | None = None  # |d log p(answer) / d h_t| (T,), top layer
    prior: str = prior_rule.DEFAULT  # the prior every probability and set is under (namecls.posthoc.prior)

    @property
    def hidden(self) -> np.ndarray:
        """(T, H): the top layer's hidden state after each character."""
        return self.layers[-1]

    @property
    def target(self) -> int:
        """Index of the final answer's language (top-1 after the whole name)."""
        return int(np.argmax(self.probs[-1]))

    @property
    def attribution(self) -> np.ndarray:
        """(T,): how much reading character t changed the log-probability of the final answer's language c,
        log p_t(c) - log p_{t-1}(c). Before any letter, each of the C languages counts as 1/C, so the entries sum to
        log p_T(c) - log(1/C): exactly what the whole name did to c."""
        logp = _log(self.probs[:, self.target])  # (T,)
        return np.diff(logp, prepend=-np.log(len(self.labels)))

    def key_units(self, n: int = 24) -> list[tuple[int, int]]:
        """The ``n`` (layer, unit) pairs that moved most over the name, sum_t |h_t - h_{t-1}| from the initial
        state (zeros if unknown), largest first, ties by (layer, unit)."""
        L, _, H = self.layers.shape
        start = np.zeros((L, H), dtype=self.layers.dtype) if self.initial is None else self.initial
        change = np.abs(np.diff(self.layers, axis=1, prepend=start[:, None])).sum(axis=1)  # (L, H)
        order = np.argsort(-change.ravel(), kind="stable")[: max(0, int(n))]  # stable: ties by (layer, unit)
        return [divmod(int(i), H) for i in order]

    @property
    def story(self) -> list[str]:
        """How the network read the name, in three to six plain sentences (:func:`namecls.explain.story.story`)."""
        from .explain.story import story

        return story(self)

    @property
    def entropy(self) -> np.ndarray:
        """(T,): the entropy (nats) of the prediction after each prefix."""
        return calibration.entropy(self.probs)

    def top(self, step: int = -1, k: int = 3) -> list[tuple[str, float]]:
        """The k most probable languages after prefix ``step`` (default: the whole name)."""
        return _top_k(self.probs[step], self.labels, k)


@dataclass(frozen=True)
class Prediction:
    """A name's top-k languages with how sure the network is (:meth:`Classifier.predict_details`)."""

    name: str  # as given
    normalized: str
    top: list[tuple[str, float]]  # the k most probable languages, most probable first
    top_probability: float
    entropy: float  # nats, 0 … ln 18
    low_confidence: bool  # the checkpoint's rule fired (Classifier.low_confidence_rule)
    set: list[str] | None = None  # the prediction set at ``coverage``, most probable first (None: no conformal data)
    coverage: float = CONFORMAL.coverage
    seen_as: list[str] | None = None  # languages of this exact name in the training split ([] unseen; None: no table)
    novelty: float | None = None  # how unusual the name is for the training lists (None: no novelty model)
    unfamiliar: bool | None = None  # novelty above the checkpoint's threshold (None: no novelty model)
    prior: str = prior_rule.DEFAULT  # the prior the answer is under (namecls.posthoc.prior)


def _log(p: ArrayLike) -> np.ndarray:
    """Natural log in float64, a probability that underflowed to 0 read as the smallest float32 (no -inf)."""
    return np.log(np.maximum(np.asarray(p, dtype=np.float64), np.finfo(np.float32).tiny))


def _top_k(probs: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    k = max(1, min(int(k), len(labels)))
    order = np.argsort(-probs, kind="stable")[:k]
    return [(labels[i], float(probs[i])) for i in order]


def _top_k_rows(probs: np.ndarray, labels: list[str], k: int) -> list[list[tuple[str, float]]]:
    """:func:`_top_k` of every row of ``probs`` (B, C) at once: the same lists, without a NumPy call per row."""
    k = max(1, min(int(k), len(labels)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(probs, order, axis=1)
    return [[(labels[i], p) for i, p in zip(o, q)] for o, q in zip(order.tolist(), picked.tolist())]


def _same_threads() -> None:
    """Make this thread use the process's ``torch.set_num_threads`` before computing anything.

    A thread started after ``torch.set_num_threads(n)`` runs its first matmuls with MKL's default thread count until
    torch initialises its thread settings, and MKL's result then differs in the last bit: the same name would get
    a different answer on a fresh server worker thread. ``torch.get_num_threads()`` does that initialisation.
    """
    torch.get_num_threads()


class Classifier:
    """A loaded checkpoint (or a model trained in memory by :func:`namecls.fit`, whose ``source`` is None).
    Thread-safe for concurrent calls: inference never changes the model."""

    def __init__(self, model: Model, config: dict, metrics: dict, source: Path | None,
                 posthoc: Posthoc | None = None):
        self.model = model
        self.config = config
        self.metrics = metrics
        self.source = source
        self.labels: list[str] = list(config["labels"])
        self.kind: str = config["model"]["kind"]
        self.posthoc = posthoc or Posthoc()  # none given: uncalibrated (T = 1, default rule), no optional parts
        self.temperature: float = float(self.posthoc.temperature)
        self.low_confidence_rule: dict = self.posthoc.low_confidence
        self.projection = self.posthoc.projection  # namecls.explain.projection.Projection, or None (no map)
        self.explain = self.posthoc.explain  # namecls.explain.units.Explain, or None (no reference bank / unit data)
        self.conformal = self.posthoc.conformal  # namecls.posthoc.conformal.Conformal, or None (no prediction sets)
        self.training_names = self.posthoc.training_names  # namecls.posthoc.seen.TrainingNames, or None
        self.novelty = self.posthoc.novelty  # namecls.posthoc.novelty.Novelty, or None (no novelty score)

    def __repr__(self) -> str:
        return f"Classifier({self.kind!r}, source={None if self.source is None else str(self.source)!r})"

    @property
    def _where(self) -> str:
        """What error messages call this classifier: its checkpoint, or 'this classifier' (trained in memory)."""
        return "this classifier" if self.source is None else str(self.source)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write this classifier as the checkpoint folder ``folder`` (:func:`namecls.checkpoint.save`: the same
        files, replaced as a set); :func:`load` reads it back."""
        extra = {k: v for k, v in self.config.items() if k not in checkpoint.GENERATED_CONFIG_KEYS}
        return checkpoint.save(folder, self.model, self.labels, extra, self.metrics, self.posthoc)

    def save_zip(self, path: str | os.PathLike) -> Path:
        """Write this classifier as the checkpoint zip ``path`` (:func:`namecls.checkpoint.save_zip`); :func:`load`
        reads it back."""
        return checkpoint.save_zip(self, path)

    def _softmax(self, logits: torch.Tensor, shift: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities over the last dimension of ``logits``, moved to another prior by ``shift``
        (:meth:`prior_shift`; None: the lists')."""
        probs = torch.softmax(logits / self.temperature, dim=-1).numpy()
        return probs if shift is None else prior_rule.reweight(probs, shift).astype(np.float32)

    def prior_shift(self, prior: str = prior_rule.DEFAULT) -> np.ndarray | None:
        """(C,): what ``prior`` adds to the calibrated log-probabilities (:func:`namecls.posthoc.prior.log_shift`);
        None for
        ``"lists"``. ``ValueError`` for an unknown prior or one this checkpoint has no validation data for."""
        if prior_rule.check(prior) == "lists":
            return None
        if self.conformal is None:
            raise InputError(f"{self._where} has no validation data (conformal.safetensors) to move to the "
                             f"{prior!r} prior")
        return self.conformal.shift(prior)

    @property
    def priors(self) -> tuple[str, ...]:
        """The priors this classifier answers under."""
        return ("lists",) if self.conformal is None else self.conformal.priors

    @staticmethod
    def _normalized(name: str | Normalized) -> Normalized:
        """``name`` as validated and normalised text (a :class:`Normalized` is taken as already validated)."""
        return name if isinstance(name, Normalized) else validate(name)

    @torch.inference_mode()
    def _probs(self, names: list[str], prior: str = prior_rule.DEFAULT) -> np.ndarray:
        shift = self.prior_shift(prior)
        _same_threads()
        x, lengths = pad_batch(names)
        return self._softmax(self.model(x, lengths), shift)  # (B, C)

    def is_low_confidence(self, probs) -> bool | np.ndarray:
        """The checkpoint's low-confidence rule on (calibrated) probabilities: one vector → bool, rows → array."""
        flags = calibration.low_confidence(probs, self.low_confidence_rule)
        return bool(flags) if np.ndim(flags) == 0 else flags

    def sets(self, probs, coverage: float = CONFORMAL.coverage,
             prior: str = prior_rule.DEFAULT) -> list[list[str]] | None:
        """The prediction set of each row of (calibrated, already under ``prior``) ``probs`` (N, C) at
        ``coverage``, most probable first; None when the checkpoint has no conformal data."""
        if self.conformal is None:
            return None
        return [[self.labels[i] for i in row] for row in self.conformal.sets(probs, coverage, prior)]

    def predict_set(self, name: str | Normalized, coverage: float = CONFORMAL.coverage,
                    prior: str = prior_rule.DEFAULT) -> list[str]:
        """The languages that hold the right one with probability ``coverage`` (on average over names like the test
        names, their languages in the mix ``prior`` says), most probable first, never empty. ``ValueError`` for bad
        input or a checkpoint without sets."""
        if self.conformal is None:
            raise InputError(f"{self._where} has no prediction-set data (conformal.safetensors / conformal.json)")
        sets = self.sets(self._probs([self._normalized(name).text], prior), coverage, prior)
        assert sets is not None  # self.conformal is not None
        return sets[0]

    def seen_as(self, name: str | Normalized) -> list[str] | None:
        """The languages this exact (normalised) name has in the training split, in label order; [] when it is not
        a training name; None when the checkpoint has no training-name table."""
        if self.training_names is None:
            return None
        return self.training_names.seen_as(self._normalized(name).text)

    @torch.inference_mode()
    def novelty_of(self, name: str | Normalized) -> tuple[float, bool] | tuple[None, None]:
        """(novelty score, unfamiliar flag) of ``name``: how unusual it is for the training lists (:mod:`namecls.
        novelty`); (None, None) when the checkpoint has no novelty model."""
        if self.novelty is None:
            return None, None
        text = self._normalized(name).text
        _same_threads()
        return self._novelty_at(text, self.model.final(*pad_batch([text]))[1])

    def _novelty_at(self, text: str, state) -> tuple[float, bool] | tuple[None, None]:
        """(novelty score, unfamiliar flag) of the normalised ``text`` from its final top-layer state (1, H), which
        the caller's pass already has (:meth:`namecls.models.networks.RNNClassifier.final`, or a trace's last
        step: the state :func:`namecls.posthoc.novelty.final_states` gives, bit for bit)."""
        if self.novelty is None:
            return None, None
        score = float(self.novelty.score([text], np.asarray(state))[0])
        return score, self.novelty.unfamiliar(score)

    @torch.inference_mode()
    def predict_details(self, name: str | Normalized, k: int = 3, coverage: float = CONFORMAL.coverage,
                        prior: str = prior_rule.DEFAULT) -> Prediction:
        """:meth:`predict` plus the top probability, the entropy, the low-confidence flag, the prediction set at
        ``coverage``, the languages the name had in training and its novelty, all under ``prior``: one pass of the
        model (``final``: ``forward``'s logits and the final state the novelty score reads)."""
        norm = self._normalized(name)
        prior = prior_rule.check(prior)
        shift = self.prior_shift(prior)
        _same_threads()
        x, lengths = pad_batch([norm.text])
        logits, state = self.model.final(x, lengths)  # (1, C), (1, H)
        probs = self._softmax(logits, shift)[0]
        sets = self.sets(probs, coverage, prior)
        novelty, unfamiliar = self._novelty_at(norm.text, state)
        return Prediction(norm.original, norm.text, _top_k(probs, self.labels, k), float(probs.max()),
                          float(calibration.entropy(probs)), cast(bool, self.is_low_confidence(probs)),  # 1 row: a bool
                          None if sets is None else sets[0], coverage, self.seen_as(norm), novelty, unfamiliar,
                          prior=prior)

    def predict(self, name: str | Normalized, k: int = 3, prior: str = prior_rule.DEFAULT) -> list[tuple[str, float]]:
        """Top-k (language, probability) for one name, most probable first. Bad input raises ``ValueError``."""
        return _top_k(self._probs([self._normalized(name).text], prior)[0], self.labels, k)

    def predict_batch(self, names: list[str | Normalized], k: int = 3, batch_size: int = 512,
                      prior: str = prior_rule.DEFAULT) -> list[list[tuple[str, float]]]:
        """:meth:`predict` for many names, computed in length-sorted batches; results in input order.

        Raises ``ValueError`` naming the first bad name's position.
        """
        return _top_k_rows(self.probabilities(names, batch_size, prior), self.labels, k)

    def probabilities(self, names: list[str | Normalized], batch_size: int = 512,
                      prior: str = prior_rule.DEFAULT) -> np.ndarray:
        """(N, C): every language's probability for each name under ``prior``, in label order, computed in
        length-sorted batches (:meth:`predict_batch`'s numbers). Raises ``ValueError`` naming the first bad name."""
        shift = self.prior_shift(prior)  # a bad prior fails before any name is read
        texts = []
        for i, name in enumerate(names):
            try:
                texts.append(self._normalized(name).text)
            except ValueError as err:
                raise InputError(f"name #{i} ({str(name)[:40]!r}): {err}") from None
        probs = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        _same_threads()
        with torch.inference_mode():
            for rows, x, lengths in length_batches(texts, batch_size):
                probs[rows] = self._softmax(self.model(x, lengths), shift)  # (B, C)
        return probs

    def edits(self, name: str | Normalized, target: str | None = None, n: int = 6,
              prior: str = prior_rule.DEFAULT) -> list[dict]:
        """The one-letter variants of ``name`` (a letter replaced, added or removed) that change the answer or move
        it most, or with ``target`` (a language) those that raise it most:
        :func:`namecls.explain.edits.one_letter_edits`,
        all variants read in one batched pass that shares each variant's unchanged prefix; under ``prior``."""
        from .explain.edits import one_letter_edits

        _same_threads()
        return one_letter_edits(self, self._normalized(name).text, target, n, prior=prior)

    @torch.inference_mode()
    def state_gradients(self, name: str | Normalized, prior: str = prior_rule.DEFAULT):
        """How far back learning reaches for ``name``'s answer under ``prior`` (:func:`namecls.explain.gradient.
        state_gradients`), without the rest of a trace."""
        shift = self.prior_shift(prior)
        _same_threads()
        return gradient.state_gradients(self.model, self._normalized(name).text, None, self.temperature, shift)

    def neighbours(self, state, n: int = 8) -> list[Neighbour]:
        """The ``n`` reference training names whose final top-layer state is nearest ``state`` (H,), nearest first.

        Raises ``ValueError`` when the checkpoint has no reference bank (``self.explain is None``).
        """
        if self.explain is None:
            raise InputError(f"{self._where} has no reference bank (explain.safetensors / explain.json)")
        return self.explain.nearest(np.reshape(state, (1, -1)), n)[0]

    @torch.inference_mode()
    def _deletion(self, text: str, target: int, final: float, shift: np.ndarray | None = None) -> np.ndarray:
        """(T,): log p(target | text) - log p(target | text without character t), one batched pass over the T
        variants. ``final`` is p(target | text); an empty variant (a one-letter name) counts as uniform, 1/C."""
        variants = [text[:t] + text[t + 1 :] for t in range(len(text))]
        logp = np.full(len(text), -np.log(len(self.labels)))  # (T,)
        rows = [t for t, v in enumerate(variants) if v]
        if rows:
            x, lengths = pad_batch([variants[t] for t in rows])
            logp[rows] = _log(self._softmax(self.model(x, lengths), shift)[:, target])
        return _log(final) - logp

    @torch.inference_mode()
    def trace(self, name: str | Normalized, prior: str = prior_rule.DEFAULT) -> Trace:
        """Hidden states and predictions after every prefix of ``name``, with the state before the first character,
        each character's leave-one-out effect, (with a reference bank) each step's nearest training names, (with
        conformal data) the prediction set after each prefix at the default coverage, and the languages the whole
        name had in training; every probability and set under ``prior``. Bad input raises ``ValueError``."""
        norm = self._normalized(name)
        prior = prior_rule.check(prior)
        shift = self.prior_shift(prior)
        _same_threads()
        x, lengths = pad_batch([norm.text])
        steps = self.model.steps(x, lengths)
        probs = self._softmax(steps.logits[0], shift)  # (T, C)
        layers = steps.hidden[:, 0].numpy()  # (L, T, H)
        points = None if self.projection is None else self.projection.transform(layers[-1])  # (T, 2)
        target = int(np.argmax(probs[-1]))
        novelty, unfamiliar = self._novelty_at(norm.text, layers[-1][-1:])  # the final state this pass has
        hidden = steps.hidden[:, 0]  # (L, T, H)
        contributions = cell.contributions(self.model, x[0], target, self.temperature, hidden=hidden, shift=shift)
        gates = cell.gates(self.model, x[0], hidden=hidden)
        reach = gradient.state_gradients(self.model, x[0], target, self.temperature, shift=shift)
        return Trace(norm.original, norm, list(norm.text), layers, probs, self.labels, points,
                     initial=self.model.initial_state().numpy(),
                     deletion=self._deletion(norm.text, target, probs[-1, target], shift),
                     neighbours=None if self.explain is None else self.explain.nearest(layers[-1]),
                     sets=self.sets(probs, prior=prior), seen_as=self.seen_as(norm), novelty=novelty,
                     unfamiliar=unfamiliar, contributions=contributions, gates=gates, gradient=reach, prior=prior)


def load(name_or_path: str | os.PathLike = "gru") -> Classifier:
    """Load ``"rnn"`` / ``"gru"`` (the committed checkpoints), any checkpoint folder, or a checkpoint zip
    (:func:`namecls.checkpoint.save_zip`; extracted into a temporary folder with the checks of
    :func:`namecls.checkpoint.extract_zip`, read, and the folder removed)."""
    key = str(name_or_path).lower()
    folder = CHECKPOINTS / key if key in MODEL_NAMES else Path(name_or_path)
    if folder.is_file():
        with tempfile.TemporaryDirectory(prefix="namecls-load-", ignore_cleanup_errors=True) as tmp:
            extracted = checkpoint.extract_zip(folder, tmp)
            try:
                model, config, metrics = checkpoint.load(extracted)
                return Classifier(model, config, metrics, folder, checkpoint.load_posthoc(extracted, config, metrics))
            except checkpoint.CheckpointError as err:  # name the zip, not the temporary folder about to vanish
                raise checkpoint.CheckpointError(str(err).replace(str(extracted), f"{folder}:")) from None
    model, config, metrics = checkpoint.load(folder)
    return Classifier(model, config, metrics, folder, checkpoint.load_posthoc(folder, config, metrics))
