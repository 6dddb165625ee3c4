"""Every default of the project in one place: a dataclass per part and the named recipes built from them.

- :class:`TrainConfig`: the training loop's settings (:func:`namecls.training.loop.train`); the model parts' dataclasses
  are :class:`namecls.models.networks.RNNConfig` and :class:`namecls.models.networks.GRUConfig`.
- ``MODEL_DEFAULTS`` / ``TRAIN_DEFAULTS``: the ``default`` recipe, what ``train.py`` trains (``train.py --help``
  prints it from here); ``train.py --like checkpoints`` retrains the committed checkpoints' own recipe, which their
  ``config.json`` records.
- ``FIT_DEFAULTS`` (:class:`FitConfig`): the ``quick`` recipe, what :func:`namecls.fit` and the app's "Train your
  own" tab train within seconds.
- ``DRY_RUN``: the smallest run that exercises the whole pipeline (``train.py --dry-run``, the tests).

Measured numbers behind each choice are in docs/training.md, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models.networks import GRUConfig, RNNConfig


@dataclass
class TrainConfig:
    """The training loop's settings (:func:`namecls.training.loop.train`)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    clip: float = 1.0  # max gradient norm
    label_smoothing: float = 0.05
    class_weight_power: float = 0.5  # loss weight of a class ∝ count^-power (0: plain cross-entropy)
    patience: int = 8  # epochs without a better validation score before stopping
    ema: float = 0.0  # if > 0: validate and keep an exponential moving average of the weights (decay per step)
    adjust_logits: bool = True  # after training, fold a validation-chosen prior correction into the readout bias
    select_on: str = "accuracy"  # validation metric that picks the best epoch: accuracy or macro_f1
    seed: int = 0
    max_batches: int | None = None  # cap batches per epoch (dry runs)
    backprop: str = "autograd"  # "manual": the RNN's gradients by hand-written BPTT (namecls.models.bptt), same loss


# The project's defaults per model, chosen on the clean protocol's validation split (seed 0) for time to accuracy:
# shorter one-cycle schedules that validate at least as well as the committed checkpoints' recipe (recorded in their
# config.json; ``train.py --like checkpoints`` retrains it). The candidates and their validation accuracy are in
# docs/training.md ("How the defaults were chosen").
MODEL_DEFAULTS: dict[str, RNNConfig | GRUConfig] = {"rnn": RNNConfig(), "gru": GRUConfig()}  # their own defaults
TRAIN_DEFAULTS = {
    "rnn": TrainConfig(epochs=20, lr=1e-2, class_weight_power=0.25),
    "gru": TrainConfig(epochs=20, batch_size=128, lr=5e-3, class_weight_power=0.0, ema=0.996),
}
DRY_RUN = {"model": {"hidden_size": 16, "num_layers": 1, "embedding_size": 8}, "train": {"epochs": 1, "max_batches": 3}}


@dataclass(frozen=True)
class FitConfig:
    """:func:`fit`'s defaults for one model kind: the architecture and the training settings."""

    hidden_size: int
    num_layers: int = 1  # GRU layers (the RNN has one)
    embedding_size: int = 64  # GRU only
    dropout: float = 0.1  # GRU only
    epochs: int = 12
    batch_size: int = 128
    lr: float = 1e-2  # peak of the one-cycle schedule
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    class_weight_power: float = 0.0
    ema: float = 0.0  # no weight averaging: its warm-up costs more than it gives in a few hundred steps
    patience: int = 8
    progress_every: int = 200  # batches between two on_progress calls (one more after each epoch)
    # torch CPU threads while fit() runs (restored afterwards; None: leave them). One: these small recurrent
    # layers gain little from a second thread, and in the app the other core keeps answering visitors. (Two threads
    # once ran ~10x slower than one on a loaded machine, spinning at every parallel op; namecls now makes idle
    # threads wait passively.) It also makes a seeded fit the same on machines with other core counts.
    threads: int | None = 1

    def model_fields(self) -> dict:
        return {"hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "embedding_size": self.embedding_size, "dropout": self.dropout}

    def train_fields(self) -> dict:
        return {k: getattr(self, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "label_smoothing",
                                               "class_weight_power", "ema", "patience")}


# Chosen for validation accuracy after fit(time_budget=30) on 2 shared cores; the candidates and their measured
# accuracy are in docs/training.md ("Training in memory"). The smallest GRU is the cheapest per epoch, so
# it degrades least on a slower or busier machine.
FIT_DEFAULTS = {
    "gru": FitConfig(hidden_size=128, num_layers=1, batch_size=128, lr=1e-2, epochs=15),
    "rnn": FitConfig(hidden_size=256, batch_size=64, lr=1e-2, epochs=15, class_weight_power=0.25),
}
