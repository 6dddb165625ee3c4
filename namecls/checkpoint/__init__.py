"""Checkpoints: a folder with ``config.json``, ``model.safetensors`` and ``metrics.json``. No pickle.

``config.json`` carries everything needed to rebuild and trust the model: architecture and hyperparameters,
alphabet, labels in output order, normalisation, data fingerprint, protocol and split seed, package versions,
and (when fitted) the softmax ``temperature`` and the ``low_confidence`` rule (see :mod:`namecls.posthoc.calibration`).
The other post-training fits (:class:`namecls.posthoc.parts.Posthoc`) ride along, each optional:

- ``conformal.safetensors`` + ``conformal.json``: prediction sets (:mod:`namecls.posthoc.conformal`);
- ``training_names.json``: the training split's names and languages (:mod:`namecls.posthoc.seen`);
- ``projection.safetensors`` + ``projection.json``: the hidden-state map (:mod:`namecls.explain.projection`);
- ``explain.safetensors`` + ``explain.json``: reference names, unit order and contexts (:mod:`namecls.explain.units`);
- ``novelty.safetensors`` + ``novelty.json``: the "from elsewhere" score (``namecls.posthoc.novelty``).

A checkpoint is replaced as a set (:func:`save`): the new folder is written beside the old one, each file fsynced,
then swapped in with one atomic exchange of the two directories (Linux ``renameat2(RENAME_EXCHANGE)``), or, where
that is not available, two renames (old folder aside to ``<name>.old-<random>``, new folder into place), so a crash
at any point leaves either the complete old set or the complete new set, never new weights beside an old config.
After a crash in the instant between those two renames the folder itself is missing and its old set waits beside it
as ``<name>.old-<random>``: :func:`load` then reads that set (and logs a warning), and the next :func:`save` puts a
new set in place and removes it. One writer per checkpoint folder at a time (train.py and ``namecls.training.refit``
are).

:func:`load` refuses, with a :class:`CheckpointError` that names the file and the fix, anything it cannot trust:
missing or truncated files, non-finite tensors (model and post-training parts), a config.json value of the wrong
type or out of range (every field of ``model`` against :data:`MODEL_LIMITS`, dropout in [0, 1), a temperature outside
:data:`TEMPERATURE_RANGE`, a low-confidence rule whose numbers are not finite and in range, labels that are not
distinct non-empty strings, ...; a JSON ``true`` is not an int), JSON files larger than their cap in
:data:`JSON_MAX_BYTES` or nested deeper than :data:`JSON_MAX_DEPTH`. Every load ends with a probe: the names of
:data:`PROBE_NAMES` run through the rebuilt model must give finite probabilities that sum to 1 after every
character, which refuses finite but absurd weights (a 1e38 that overflows float32 and makes every answer NaN).

The code is split by job: ``files`` (names, caps, durable writes, checked reads), ``checks`` (what config.json may
hold, the probe), ``parts`` (the post-training parts: one protocol, one loop), ``swap`` (replacing a folder as a
set), ``store`` (:func:`save`, :func:`load`) and ``archive`` (a checkpoint as one zip).
"""

from .archive import ZIP_MAX_BYTES, ZIP_MAX_ENTRIES, extract_zip, save_zip
from .checks import MAX_PARAMETERS, MODEL_LIMITS, PROBE_NAMES, TEMPERATURE_RANGE, parameter_count
from .files import (
    CONFIG_FILE,
    CONFORMAL_JSON,
    CONFORMAL_TENSORS,
    EXPLAIN_JSON,
    EXPLAIN_TENSORS,
    FORMAT_VERSION,
    JSON_MAX_BYTES,
    JSON_MAX_DEPTH,
    METRICS_FILE,
    NOVELTY_JSON,
    NOVELTY_TENSORS,
    PROJECTION_JSON,
    PROJECTION_TENSORS,
    TRAINING_NAMES_JSON,
    WEIGHTS_FILE,
    CheckpointError,
)
from .parts import PART_TYPES, Part, load_posthoc
from .store import GENERATED_CONFIG_KEYS, load, make_config, recipe, save
from .swap import replace_folder

__all__ = ["CONFIG_FILE", "CONFORMAL_JSON", "CONFORMAL_TENSORS", "EXPLAIN_JSON", "EXPLAIN_TENSORS", "FORMAT_VERSION",
           "GENERATED_CONFIG_KEYS", "JSON_MAX_BYTES", "JSON_MAX_DEPTH", "MAX_PARAMETERS", "METRICS_FILE",
           "MODEL_LIMITS", "NOVELTY_JSON", "NOVELTY_TENSORS", "PART_TYPES", "PROBE_NAMES", "PROJECTION_JSON",
           "PROJECTION_TENSORS", "TEMPERATURE_RANGE", "TRAINING_NAMES_JSON", "WEIGHTS_FILE", "ZIP_MAX_BYTES",
           "ZIP_MAX_ENTRIES", "CheckpointError", "Part", "extract_zip", "load", "load_posthoc", "make_config",
           "parameter_count", "recipe", "replace_folder", "save", "save_zip"]
