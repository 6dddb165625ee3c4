"""What a trained network carries after training, in one value: :class:`Posthoc`, each fitted part as an explicit
attribute (None when absent: an older checkpoint, or a fit without the maps):

- ``temperature`` and ``low_confidence`` rule (:mod:`namecls.posthoc.calibration`), fitted on validation;
- ``conformal``: prediction sets with a coverage guarantee (:mod:`namecls.posthoc.conformal`), fitted on validation;
- ``training_names``: the training split's names and languages, for "seen in training" (:mod:`namecls.posthoc.seen`);
- ``projection``: the hidden-state map (:mod:`namecls.explain.projection`), fitted on training names;
- ``explain``: reference bank, unit order and unit contexts (:mod:`namecls.explain.units`), fitted on training names;
- ``novelty``: how unusual a name is for the training names (:mod:`namecls.posthoc.novelty`), fitted on training names;

plus ``metrics``, the fields it adds to metrics.json. :mod:`namecls.training.posthoc` fits it;
:mod:`namecls.checkpoint` saves and loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import calibration, conformal, novelty, seen

if TYPE_CHECKING:  # for the annotations only
    from ..explain.units import Explain
    from ..explain.projection import Projection


@dataclass
class Posthoc:
    """One model's post-training fits. Absent parts are None (an older checkpoint, or ``with_maps=False``)."""

    temperature: float = 1.0
    low_confidence: dict = field(default_factory=lambda: dict(calibration.DEFAULT_RULE))
    conformal: conformal.Conformal | None = None
    training_names: seen.TrainingNames | None = None
    projection: Projection | None = None
    explain: Explain | None = None
    novelty: novelty.Novelty | None = None
    metrics: dict = field(default_factory=dict)  # what metrics.json gets: calibration, low_confidence, conformal, ...

    def config_fields(self) -> dict:
        """What config.json records: the temperature and the low-confidence rule."""
        return {"temperature": self.temperature, "low_confidence": self.low_confidence}
