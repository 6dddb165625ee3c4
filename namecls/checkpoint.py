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
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import platform
import secrets
import shutil
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .data.names import ALPHABET, NORMALIZATION, pad_batch
from .models.networks import Model, build, config_from_dict, config_to_dict

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.json", "model.safetensors", "metrics.json"
PROJECTION_TENSORS, PROJECTION_JSON = "projection.safetensors", "projection.json"
EXPLAIN_TENSORS, EXPLAIN_JSON = "explain.safetensors", "explain.json"
CONFORMAL_TENSORS, CONFORMAL_JSON = "conformal.safetensors", "conformal.json"
NOVELTY_TENSORS, NOVELTY_JSON = "novelty.safetensors", "novelty.json"
TRAINING_NAMES_JSON = "training_names.json"
FORMAT_VERSION = 1

# Largest JSON file load() reads, per file name (bytes; checked before reading). Each is at least 8x the committed
# checkpoints' file (sizes of checkpoints/gru and rnn in parentheses); training_names.json grows with the training
# split (20,074 names: 0.52 MB), explain.json with the reference bank. tests/test_checkpoint.py checks the margin.
JSON_MAX_BYTES = {
    CONFIG_FILE: 1 << 20,  # 1 MiB (1.6 kB)
    METRICS_FILE: 4 << 20,  # 4 MiB (45 kB)
    CONFORMAL_JSON: 1 << 20,  # 1 MiB (1.9 kB)
    NOVELTY_JSON: 1 << 20,  # 1 MiB (5.3 kB)
    PROJECTION_JSON: 8 << 20,  # 8 MiB (175 kB)
    EXPLAIN_JSON: 8 << 20,  # 8 MiB (279 kB)
    TRAINING_NAMES_JSON: 16 << 20,  # 16 MiB (520 kB)
}
JSON_MAX_DEPTH = 32  # nesting levels of any checkpoint JSON (the committed files have at most 5)
# The softmax temperature config.json may hold: well inside float32's normal range, so that logits / T stays finite
# (1e-300 is 0 in float32 and makes every probability NaN). Fitted temperatures lie in calibration's (0.05, 20).
TEMPERATURE_RANGE = (1e-3, 1e3)  # low <= T < high
# The integers of config.json's "model" section: (smallest, largest) allowed, both included. The caps are far above
# any model this project trains (the committed ones: hidden 512 / 256, embedding 64, 2 layers, 18 classes) and keep a
# hostile config.json from asking for gigabytes: MAX_PARAMETERS bounds the model they make, and the model is built only
# once its size equals the weights file's. vocab_size must be len(ALPHABET).
MODEL_LIMITS = {"num_classes": (2, 1000), "hidden_size": (1, 4096), "embedding_size": (1, 4096), "num_layers": (1, 16)}
MAX_PARAMETERS = 50_000_000  # 200 MB of float32; the committed models hold 0.3 M (rnn) and 0.7 M (gru)
# The probe that ends every load (:func:`_probe`): these names run through the rebuilt model must give finite
# probabilities summing to 1 (within PROBE_TOLERANCE) after every character. After four names come the characters
# of ALPHABET in pieces of 12, so every input character's weights are read at least once; the whole probe is one
# batch of at most 12 steps, about 1 ms.
PROBE_NAMES = ("Smith", "Nguyen", "Tanaka", "Q", *(ALPHABET[i : i + 12] for i in range(0, len(ALPHABET), 12)))
PROBE_TOLERANCE = 1e-4  # |sum of the probabilities - 1|: float32 softmax rounding is ~1e-6 for 18 classes

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete, corrupt, or disagrees with itself."""


def _write(path: Path, write) -> None:
    """Create ``path`` with ``write(path)`` and flush it to disk."""
    write(path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (new files, renames) durable; a no-op where directories cannot be
    opened (Windows)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """Replace the single file ``path`` atomically (temporary file beside it, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        _write(Path(tmp), write)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _dump_json(obj):
    def write(path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    return write


def versions() -> dict:
    return {"python": platform.python_version(),
            **{package: metadata.version(package) for package in ("torch", "numpy", "scikit-learn", "unidecode")}}


# config.json's fields that make_config writes itself (the rest come from ``extra``).
GENERATED_CONFIG_KEYS = ("format_version", "model", "alphabet", "labels", "normalization", "temperature",
                         "low_confidence", "versions")


def make_config(model: Model, labels: list[str], extra: dict, posthoc=None) -> dict:
    """The config.json that :func:`save` writes for ``model``: architecture, alphabet, labels, normalisation, the
    training facts of ``extra``, the post-training temperature and rule, and the package versions."""
    return {
        "format_version": FORMAT_VERSION,
        "model": config_to_dict(model.config),
        "alphabet": ALPHABET,
        "labels": list(labels),
        "normalization": NORMALIZATION,
        **extra,
        **(posthoc.config_fields() if posthoc is not None else {}),
        "versions": versions(),
    }


def save(folder: str | os.PathLike, model: Model, labels: list[str], extra: dict, metrics: dict,
         posthoc=None) -> Path:
    """Write ``model``, its metadata and its post-training fits as the checkpoint folder ``folder``.

    ``extra`` holds training facts (protocol, split seed, data fingerprint, training config) merged into config.json;
    ``posthoc`` (a :class:`namecls.posthoc.parts.Posthoc`, or None) adds its temperature and low-confidence rule to
    config.json and its parts as files. The folder is replaced as a whole (:func:`replace_folder`): afterwards it
    holds exactly the new set, a part the new set lacks is gone, and a crash at any step leaves the old set or the
    new one, never a mix.
    """
    folder = Path(folder)
    config = make_config(model, labels, extra, posthoc)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    files: dict[str, Callable[..., None]] = {WEIGHTS_FILE: lambda path: save_file(tensors, path)}
    for attribute, names in PARTS.items():
        part = getattr(posthoc, attribute, None)
        if part is None:
            continue
        if len(names) == 2:
            part_tensors = {k: v.contiguous() for k, v in part.tensors().items()}
            files[names[0]] = lambda path, t=part_tensors: save_file(t, path)
        files[names[-1]] = _dump_json(part.summary)
    files[METRICS_FILE] = _dump_json(metrics)
    files[CONFIG_FILE] = _dump_json(config)
    replace_folder(folder.resolve() if folder.is_symlink() else folder, files)
    return folder


# Posthoc attribute -> its files: (tensors, json) written from .tensors() and .summary, or (json,) from .summary.
PARTS = {"conformal": (CONFORMAL_TENSORS, CONFORMAL_JSON), "training_names": (TRAINING_NAMES_JSON,),
         "projection": (PROJECTION_TENSORS, PROJECTION_JSON), "explain": (EXPLAIN_TENSORS, EXPLAIN_JSON),
         "novelty": (NOVELTY_TENSORS, NOVELTY_JSON)}


# A checkpoint zip (:func:`save_zip`, read by :func:`extract_zip`): at most this many entries and this many bytes
# once extracted (the committed checkpoints are about 6 MB each; refused before anything is extracted).
ZIP_MAX_BYTES = 50 << 20  # 50 MiB
ZIP_MAX_ENTRIES = 64
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, *(name for names in PARTS.values() for name in names))


def save_zip(source, path: str | os.PathLike) -> Path:
    """Write a checkpoint as the zip file ``path``: the same files :func:`save` writes, at the zip's top level.

    ``source`` is a :class:`namecls.inference.Classifier`, a checkpoint folder, or :func:`save`'s arguments as a
    dict {model, labels, extra, metrics, posthoc}. The zip is written beside ``path`` and renamed into place, so
    ``path`` is the old zip or the complete new one. :func:`namecls.load` reads it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="namecls-zip-") as tmp:
        if isinstance(source, (str, os.PathLike)):
            folder = _resolve(Path(source))
            load(folder)  # refuse to pack a checkpoint that would not load
        else:
            folder = Path(tmp) / "checkpoint"
            if isinstance(source, dict):
                save(folder, **source)
            else:  # a Classifier
                source.save(folder)
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name in CHECKPOINT_FILES)

        def write(target):
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for file in files:
                    zf.write(file, arcname=file.name)

        _atomic_write(path, write)
    return path


def extract_zip(path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract the checkpoint zip ``path`` into the folder ``dest``; return the folder that holds its config.json.

    The checkpoint's files may sit at the zip's top level or in one folder (``zip -r gru.zip gru/``). Refused with a
    :class:`CheckpointError`, before anything is written: a file that is not a zip, an entry with an absolute path,
    a drive or a '..' part, more than :data:`ZIP_MAX_ENTRIES` entries, more than :data:`ZIP_MAX_BYTES` in all once
    extracted, no config.json or more than one. Entries that are not checkpoint files are skipped.
    """
    path, dest = Path(path), Path(dest)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint zip ({err})") from err
    with zf:
        entries = zf.infolist()
        if len(entries) > ZIP_MAX_ENTRIES:
            raise CheckpointError(f"{path}: {len(entries)} zip entries, more than the {ZIP_MAX_ENTRIES} a checkpoint "
                                  "has")
        for info in entries:
            name = info.filename.replace("\\", "/")
            parts = name.split("/")
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise CheckpointError(f"{path}: zip entry {info.filename!r} has an absolute path or a '..' part: "
                                      "refusing to extract it")
        total = sum(info.file_size for info in entries)
        if total > ZIP_MAX_BYTES:
            raise CheckpointError(f"{path}: {total:,} bytes once extracted, more than the {ZIP_MAX_BYTES:,} a "
                                  "checkpoint zip may hold (namecls.checkpoint.ZIP_MAX_BYTES)")
        configs = [info for info in entries if not info.is_dir() and info.filename.split("/")[-1] == CONFIG_FILE]
        if len(configs) != 1:
            raise CheckpointError(f"{path}: a checkpoint zip holds one {CONFIG_FILE}, this one has {len(configs)}")
        prefix = configs[0].filename[: -len(CONFIG_FILE)]
        if prefix.count("/") > 1:
            raise CheckpointError(f"{path}: {CONFIG_FILE} must be at the top level or in one folder, not at "
                                  f"{configs[0].filename!r}")
        dest.mkdir(parents=True, exist_ok=True)
        written, budget = set(), ZIP_MAX_BYTES
        for info in entries:
            member = info.filename[len(prefix):] if info.filename.startswith(prefix) else None
            if info.is_dir() or member not in CHECKPOINT_FILES:
                continue
            if member in written:
                raise CheckpointError(f"{path}: zip entry {info.filename!r} appears twice")
            written.add(member)
            try:
                with zf.open(info) as src, open(dest / member, "wb") as out:
                    while chunk := src.read(1 << 20):
                        budget -= len(chunk)
                        if budget < 0:  # the headers understated the sizes
                            raise CheckpointError(f"{path}: more than {ZIP_MAX_BYTES:,} bytes once extracted")
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as err:
                raise CheckpointError(f"{path}: corrupt zip entry {info.filename!r} ({err})") from err
    return dest


def _sibling(target: Path, role: str) -> Path:
    """An unused name beside ``target``: ``<name>.new-<random>`` (being written) or ``<name>.old-<random>`` (put
    aside). Same directory, hence same file system: renames between them are atomic."""
    while True:
        path = target.with_name(f"{target.name}.{role}-{secrets.token_hex(4)}")
        if not os.path.lexists(path):
            return path


def _siblings(target: Path, role: str) -> list[Path]:
    return sorted(p for p in target.parent.glob(glob.escape(target.name) + f".{role}-*") if p.is_dir())


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100
_renameat2 = None
if sys.platform.startswith("linux"):
    try:
        import ctypes

        _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    except (OSError, AttributeError):  # no glibc 2.28+: two renames instead
        _renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap the directories ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False when
    that is not possible here (another OS, an old C library, a file system without it, or ``b`` missing)."""
    if _renameat2 is None:
        return False
    import ctypes
    import errno

    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def replace_folder(target: Path, files: dict) -> None:
    """Make ``target`` a folder holding exactly ``files`` ({file name: write(path)}), replacing any old one as a set.

    1. Write every file into a new sibling folder ``<name>.new-<random>`` and fsync the files and the folder.
    2. Swap it in: one atomic exchange with the old folder where the system has one (nothing is ever missing), else
       rename the old folder aside to ``<name>.old-<random>`` and the new one into place (between those two renames
       the folder is missing; :func:`load` then reads the set put aside), then fsync the parent.
    3. Remove the old set, and any ``.new-*``/``.old-*`` sibling an earlier crash left behind.

    On an exception before the swap the old folder is untouched and the new one is removed; one between the two
    renames puts the old folder back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target) and not target.is_dir():
        raise NotADirectoryError(f"{target} is not a folder: not replacing it with a checkpoint")
    staging, aside = _sibling(target, "new"), None
    os.mkdir(staging)
    try:
        for name, write in files.items():
            _write(staging / name, write)
        _fsync_dir(staging)
        if _exchange(staging, target):  # staging now holds the old set
            aside = staging
        else:
            if os.path.lexists(target):
                aside = _sibling(target, "old")
                os.rename(target, aside)
            os.rename(staging, target)
        _fsync_dir(target.parent)
    except BaseException:
        if aside is not None and aside != staging and not os.path.lexists(target):
            os.rename(aside, target)  # the swap did not happen: the old set goes back
        if os.path.lexists(staging) and staging != aside:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    for leftover in ([aside] if aside is not None else []) + _siblings(target, "old") + _siblings(target, "new"):
        shutil.rmtree(leftover, ignore_errors=True)


def _read_pair(folder: Path, tensors_file: str, json_file: str, what: str):
    """(tensors, summary) of an optional pair of files, or None when neither is there; both must be readable."""
    tensors_path, json_path = folder / tensors_file, folder / json_file
    if not tensors_path.is_file() and not json_path.is_file():
        return None
    for path in (tensors_path, json_path):
        if not path.is_file():
            raise _fail(path, f"file is missing ({what} needs both {tensors_file} and {json_file})")
    try:
        tensors = load_file(tensors_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(tensors_path, f"corrupt or truncated {what} ({err})") from err
    _check_finite(tensors_path, tensors, what)
    return tensors, _read_json(json_path, what)


def _check_finite(path: Path, tensors: dict, what: str) -> None:
    """Refuse a NaN or an infinity in any floating tensor of ``path``."""
    for key in sorted(tensors):
        value = tensors[key]
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise _fail(path, f"{what}: tensor {key!r} has {bad} non-finite value(s) (NaN or infinity)")


def _depth(value) -> int:
    """Nesting depth of a parsed JSON value (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _read_json(path: Path, what: str):
    """Parse the JSON file ``path``, refusing one over its size cap (:data:`JSON_MAX_BYTES`, checked before reading)
    or nested deeper than :data:`JSON_MAX_DEPTH` (a very deep file stops the parser with RecursionError)."""
    cap = JSON_MAX_BYTES.get(path.name, min(JSON_MAX_BYTES.values()))
    try:
        size = path.stat().st_size
        if size > cap:
            raise _fail(path, f"{what} file is {size:,} bytes, more than the {cap:,} this version reads "
                              f"(namecls.checkpoint.JSON_MAX_BYTES)")
        with open(path, "rb") as f:
            raw = f.read(cap + 1)
        if len(raw) > cap:  # grew since stat()
            raise _fail(path, f"{what} file is more than the {cap:,} bytes this version reads")
        value = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _fail(path, f"{what} is nested too deeply (more than {JSON_MAX_DEPTH} levels)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise _fail(path, f"unreadable {what} ({err})") from err
    if _depth(value) > JSON_MAX_DEPTH:
        raise _fail(path, f"{what} is nested too deeply ({_depth(value)} levels, at most {JSON_MAX_DEPTH})")
    return value


def _load_saved(folder: str | os.PathLike, tensors_file: str, json_file: str, what: str, from_saved):
    """``from_saved(tensors, json)`` of a checkpoint part saved as a pair of files, or None if it has neither;
    a :class:`CheckpointError` naming the JSON file if the two do not fit together."""
    folder = Path(folder)
    pair = _read_pair(folder, tensors_file, json_file, what)
    if pair is None:
        return None
    try:
        return from_saved(*pair)
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise _fail(folder / json_file, f"{what} do not fit together ({err})") from err


def load_conformal(folder: str | os.PathLike, config: dict):
    """The checkpoint's prediction sets (:class:`namecls.posthoc.conformal.Conformal`), or None if it has none."""
    from .posthoc.conformal import Conformal

    return _load_saved(folder, CONFORMAL_TENSORS, CONFORMAL_JSON, "prediction-set data", Conformal.from_saved)


def load_training_names(folder: str | os.PathLike, config: dict):
    """The checkpoint's training-name table (:class:`namecls.posthoc.seen.TrainingNames`), or None if it has none."""
    from .posthoc.seen import TrainingNames

    path = Path(folder) / TRAINING_NAMES_JSON
    if not path.is_file():
        return None
    try:
        return TrainingNames.from_saved(_read_json(path, "training names"), config["labels"])
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise _fail(path, f"malformed training names ({err})") from err


def load_novelty(folder: str | os.PathLike, config: dict):
    """The checkpoint's novelty score (``namecls.posthoc.novelty.Novelty``), or None if it has none."""
    def from_saved(tensors, summary):
        from .posthoc.novelty import Novelty  # only a checkpoint with novelty files needs the module

        return Novelty.from_saved(tensors, summary)

    return _load_saved(folder, NOVELTY_TENSORS, NOVELTY_JSON, "novelty data", from_saved)


def load_posthoc(folder: str | os.PathLike, config: dict, metrics: dict):
    """The checkpoint's :class:`namecls.posthoc.parts.Posthoc`: config.json's temperature and rule (defaults when
    absent:
    an uncalibrated checkpoint), each part's files (None when absent), and the metrics fields it reported."""
    from .posthoc.calibration import DEFAULT_RULE
    from .posthoc.parts import Posthoc

    folder = _resolve(Path(folder))
    return Posthoc(
        temperature=float(config.get("temperature", 1.0)),
        low_confidence=dict(config.get("low_confidence") or DEFAULT_RULE),
        conformal=load_conformal(folder, config),
        training_names=load_training_names(folder, config),
        projection=load_projection(folder, config),
        explain=load_explain(folder, config),
        novelty=load_novelty(folder, config),
        metrics={k: metrics[k] for k in METRICS_KEYS if k in metrics},
    )


METRICS_KEYS = ("calibration", "low_confidence", "conformal", "projection", "explain", "novelty")


def load_projection(folder: str | os.PathLike, config: dict):
    """The checkpoint's hidden-state map (:class:`namecls.explain.projection.Projection`), or None if it has none.

    Raises :class:`CheckpointError` when only one of the two files is there, or either is corrupt or does not fit
    the model of ``config``.
    """
    from .explain.projection import Projection, check_summary

    folder = Path(folder)
    tensors_path, json_path = folder / PROJECTION_TENSORS, folder / PROJECTION_JSON
    if not tensors_path.is_file() and not json_path.is_file():
        return None
    for path in (tensors_path, json_path):
        if not path.is_file():
            raise _fail(path, "file is missing (the hidden-state map needs both projection files)")
    try:
        tensors = load_file(tensors_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(tensors_path, f"corrupt or incomplete projection ({err})") from err
    _check_finite(tensors_path, tensors, "projection")
    try:
        projection = Projection(tensors["mean"].numpy(), tensors["components"].numpy(), {})
    except (KeyError, ValueError, TypeError) as err:
        raise _fail(tensors_path, f"corrupt or incomplete projection ({err})") from err
    summary = _read_json(json_path, "projection summary")
    try:
        check_summary(summary, projection.hidden_size, config["labels"])
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise _fail(json_path, f"unreadable projection summary ({err})") from err
    if projection.hidden_size != config["model"]["hidden_size"]:
        raise _fail(tensors_path, f"projection is for hidden size {projection.hidden_size}, the model has "
                                  f"{config['model']['hidden_size']}")
    projection.summary = summary
    return projection


def load_explain(folder: str | os.PathLike, config: dict):
    """The checkpoint's explanation data (:class:`namecls.explain.units.Explain`), or None if it has none.

    Raises :class:`CheckpointError` when only one of the two files is there, or either is corrupt or does not fit
    the model of ``config`` or the other file.
    """
    from .explain.units import Explain, check_summary

    folder = Path(folder)
    tensors_path, json_path = folder / EXPLAIN_TENSORS, folder / EXPLAIN_JSON
    if not tensors_path.is_file() and not json_path.is_file():
        return None
    for path in (tensors_path, json_path):
        if not path.is_file():
            raise _fail(path, "file is missing (the explanation data needs both explain files)")
    try:
        tensors = load_file(tensors_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(tensors_path, f"corrupt or incomplete explanation data ({err})") from err
    _check_finite(tensors_path, tensors, "explanation data")
    try:
        arrays = {k: v.numpy() for k, v in tensors.items()}
        shape = Explain(arrays, {}).unit_order.shape  # checks the arrays against each other
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as err:
        raise _fail(tensors_path, f"corrupt or incomplete explanation data ({err})") from err
    expected = (config["model"].get("num_layers", 1), config["model"]["hidden_size"])
    if shape != expected:
        raise _fail(tensors_path, f"explanation data is for (layers, units) {shape}, the model has {expected}")
    summary = _read_json(json_path, "explanation summary")
    try:
        check_summary(summary, config)
        explain = Explain(arrays, summary)  # checks the name lists against the arrays
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise _fail(json_path, f"unreadable explanation summary ({err})") from err
    return explain


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: {problem}. Restore the checkpoint (git checkout -- {path.parent}) or retrain it with train.py."
    )


def _resolve(folder: Path) -> Path:
    """``folder``, or when it is missing the set a crash mid-swap left beside it (``<name>.old-*``, see
    :func:`replace_folder`): the newest of those that has a config.json."""
    if folder.is_dir() or not folder.parent.is_dir():
        return folder
    aside = [p for p in _siblings(folder, "old") if (p / CONFIG_FILE).is_file()]
    if not aside:
        return folder
    found = max(aside, key=lambda p: p.stat().st_mtime)
    log.warning("%s is missing: a save was interrupted while swapping it; reading the previous set from %s. "
                "Re-run the save (train.py / python -m namecls.training.refit), or rename %s back to %s.",
                folder, found, found.name, folder.name)
    return found


def _is_int(value) -> bool:
    """An integer, and not a bool (JSON ``true`` parses as a bool, which Python counts as the int 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    """An int (not a bool) or a finite float (JSON ``NaN`` / ``Infinity`` parse as floats)."""
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _check_model_config(config_path: Path, model_config) -> None:
    """Refuse a field of config.json's ``model`` section of the wrong type or out of range (:data:`MODEL_LIMITS`,
    vocab_size = len(ALPHABET), dropout a finite number in [0, 1), learn_initial_state a bool)."""
    def refuse(field, expected):
        raise _fail(config_path, f"model.{field} must be {expected}, not {_short(getattr(model_config, field))}")

    if not _is_int(model_config.vocab_size) or model_config.vocab_size != len(ALPHABET):
        refuse("vocab_size", f"{len(ALPHABET)} (the characters of ALPHABET)")
    for field, (low, high) in MODEL_LIMITS.items():
        if hasattr(model_config, field):
            value = getattr(model_config, field)
            if not _is_int(value) or not low <= value <= high:
                refuse(field, f"an integer from {low} to {high}")
    if hasattr(model_config, "dropout"):
        dropout = model_config.dropout
        if not _is_finite_number(dropout) or not 0 <= dropout < 1:
            refuse("dropout", "a finite number from 0 to below 1")
    if hasattr(model_config, "learn_initial_state") and not isinstance(model_config.learn_initial_state, bool):
        refuse("learn_initial_state", "true or false")
    if parameter_count(model_config) > MAX_PARAMETERS:
        raise _fail(config_path, f"the model of config.json would hold {parameter_count(model_config):,} numbers, "
                                 f"more than the {MAX_PARAMETERS:,} this version loads "
                                 "(namecls.checkpoint.MAX_PARAMETERS)")


def parameter_count(model_config) -> int:
    """How many numbers the model of ``model_config`` holds (its state dict), computed without building it."""
    c = model_config
    V, H, C = c.vocab_size, c.hidden_size, c.num_classes
    if c.kind == "rnn":  # i2h (H, V+H) + bias, i2o (C, V+H) + bias, h0
        return (V + H) * H + H + (V + H) * C + C + H
    E = c.embedding_size  # embedding (V, E); per layer w_ih (3H, in), w_hh (3H, H), two biases (3H); head (C, H) + bias
    return V * E + sum(3 * H * ((E if i == 0 else H) + H) + 6 * H for i in range(c.num_layers)) + C * H + C


def _check_rule(config_path: Path, rule, num_classes: int) -> None:
    """Refuse a low-confidence rule that is not {score, threshold[, target_accuracy, rule]} with a finite threshold
    in the score's range ([0, 1] for the top probability, [0, ln num_classes] for the entropy)."""
    if not isinstance(rule, dict) or "threshold" not in rule:
        raise _fail(config_path, f"low_confidence must be {{'score', 'threshold'}}, not {_short(rule)}")
    score = rule.get("score", "top_probability")
    if score not in ("top_probability", "entropy"):
        raise _fail(config_path, f"low_confidence.score must be 'top_probability' or 'entropy', not {_short(score)}")
    high = 1.0 if score == "top_probability" else math.log(num_classes)
    threshold = rule["threshold"]
    if not _is_finite_number(threshold) or not 0 <= threshold <= high:
        raise _fail(config_path, f"low_confidence.threshold must be a finite number from 0 to {high:g} (the range of "
                                 f"the {score.replace('_', ' ')}), not {_short(threshold)}")
    target = rule.get("target_accuracy", 0.5)
    if not _is_finite_number(target) or not 0 <= target <= 1:
        raise _fail(config_path, f"low_confidence.target_accuracy must be a finite number from 0 to 1, not "
                                 f"{_short(target)}")
    if not isinstance(rule.get("rule", ""), str):
        raise _fail(config_path, f"low_confidence.rule must be a sentence (a string), not {_short(rule['rule'])}")


def _check_facts(config_path: Path, config: dict) -> None:
    """Refuse a recorded training fact of the wrong type: format_version (this version's), normalization (this
    version's), protocol, split_seed, data_fingerprint, train_config and versions. Each may be absent."""
    def refuse(field, expected):
        raise _fail(config_path, f"{field} must be {expected}, not {_short(config[field])}")

    if "format_version" in config and (not _is_int(config["format_version"])
                                       or config["format_version"] != FORMAT_VERSION):
        refuse("format_version", f"{FORMAT_VERSION} (the checkpoint format this version of namecls reads)")
    if "normalization" in config and config["normalization"] != NORMALIZATION:
        refuse("normalization", f"{NORMALIZATION!r} (this version of namecls's)")
    if "protocol" in config and not (isinstance(config["protocol"], str) and config["protocol"].strip()):
        refuse("protocol", "a non-empty string")
    if "split_seed" in config and not (_is_int(config["split_seed"]) and 0 <= config["split_seed"] < 1 << 32):
        refuse("split_seed", "an integer from 0 to 2**32 - 1")
    if "data_fingerprint" in config and not isinstance(config["data_fingerprint"], str):
        refuse("data_fingerprint", "a string")
    if "train_config" in config:
        settings = config["train_config"]
        if not isinstance(settings, dict) or not all(math.isfinite(v) for v in settings.values()
                                                     if isinstance(v, float)):
            refuse("train_config", "an object whose numbers are finite")
    if "versions" in config and not (isinstance(config["versions"], dict)
                                     and all(isinstance(v, str) for v in config["versions"].values())):
        refuse("versions", "an object of version strings")


def _check_config(config_path: Path, config, model_config) -> None:
    """Refuse a config.json value of the wrong type or out of range: the ``model`` section, labels that are not
    num_classes distinct non-empty strings, a temperature outside TEMPERATURE_RANGE (or not a normal float32), a
    malformed low-confidence rule, and a training fact of the wrong type."""
    _check_model_config(config_path, model_config)
    num_classes = model_config.num_classes
    labels = config["labels"]
    if not isinstance(labels, list) or not all(isinstance(label, str) and label.strip() for label in labels):
        raise _fail(config_path, f"labels must be a list of non-empty strings, not {_short(labels)}")
    if len(labels) != num_classes or len(set(labels)) != len(labels):
        raise _fail(config_path, f"labels list {_short(labels)} does not match num_classes={num_classes} "
                                 "(or repeats a language)")
    temperature = config.get("temperature", 1.0)
    low, high = TEMPERATURE_RANGE
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not low <= temperature < high or not _normal_float32(temperature)):
        raise _fail(config_path, f"temperature must be a number from {low:g} to below {high:g} (a normal float32), "
                                 f"not {_short(temperature)}")
    if config.get("low_confidence") is not None:
        _check_rule(config_path, config["low_confidence"], num_classes)
    _check_facts(config_path, config)


def _probe(folder: Path, model: Model, temperature: float) -> None:
    """Refuse a model (in eval mode) whose calibrated probabilities for :data:`PROBE_NAMES`, after any of their
    characters, are not finite or do not sum to 1: weights that pass the finiteness check but overflow float32 (a
    1e38 in the head makes a logit infinite and every probability NaN)."""
    x, lengths = pad_batch(list(PROBE_NAMES))
    with torch.no_grad():
        probs = torch.softmax(model.steps(x, lengths).logits / temperature, dim=-1).double()  # (B, T, C)
    real = torch.arange(probs.shape[1]) < lengths[:, None]  # (B, T): the steps of each name, not its padding
    ok = torch.isfinite(probs).all(dim=-1) & ((probs.sum(dim=-1) - 1).abs() <= PROBE_TOLERANCE)  # (B, T)
    bad = [name for name, row in zip(PROBE_NAMES, (ok | ~real).all(dim=1).tolist()) if not row]
    if bad:
        shown = (f"all {len(bad)} probe names ({bad[0]!r}, {bad[1]!r}, ...)" if len(bad) == len(PROBE_NAMES)
                 else "the probe name(s) " + ", ".join(map(repr, bad)))
        raise CheckpointError(
            f"{folder}: its weights give non-finite probabilities (NaN or infinity, or not summing to 1) for "
            f"{shown}: {WEIGHTS_FILE} holds values too large for float32 arithmetic (temperature "
            f"{temperature:g}). Restore the checkpoint (git checkout -- {folder}) or retrain it with train.py."
        )


def _normal_float32(value: float) -> bool:
    import numpy as np

    as32 = np.float32(value)
    return bool(np.isfinite(as32)) and math.isfinite(float(value)) and bool(abs(as32) >= np.finfo(np.float32).tiny)


def _short(value, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def recipe(folder: str | os.PathLike) -> tuple[dict, dict]:
    """(architecture fields, training settings) that trained the checkpoint in ``folder``, read from its
    config.json: what ``train.py --like`` retrains with. Raises :class:`CheckpointError` if they are missing."""
    config_path = _resolve(Path(folder)) / CONFIG_FILE
    if not config_path.is_file():
        raise _fail(config_path, "file is missing")
    config = _read_json(config_path, "config")
    try:
        architecture, settings = dict(config["model"]), dict(config["train_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise _fail(config_path, f"no architecture or training settings recorded ({err})") from err
    return architecture, settings


def load(folder: str | os.PathLike) -> tuple[Model, dict, dict]:
    """Rebuild a model from ``folder``; return (model in eval mode, config dict, metrics dict).

    Raises :class:`CheckpointError` naming the file and what is wrong with it. When ``folder`` is missing because a
    save was interrupted mid-swap, reads the previous set put aside beside it (see :func:`replace_folder`).
    """
    folder = _resolve(Path(folder))
    if not folder.is_dir():
        raise _fail(folder / CONFIG_FILE, "checkpoint folder not found")
    config_path, weights_path, metrics_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE, folder / METRICS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise _fail(path, "file is missing")
    config = _read_json(config_path, "config")
    try:
        model_config = config_from_dict(config["model"])
        config["labels"]
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise _fail(config_path, f"unreadable or incomplete config ({err})") from err
    if config.get("alphabet") != ALPHABET:
        raise _fail(config_path, "alphabet differs from this version of namecls")
    _check_config(config_path, config, model_config)
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(weights_path, f"corrupt or truncated weights ({err})") from err
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    wanted, held = parameter_count(model_config), sum(math.prod(shape) for shape in found.values())
    if wanted > held:  # refused before building: a config.json must not allocate more than its weights file holds
        raise _fail(weights_path, f"weights do not match config.json (its model has {wanted:,} numbers, the weights "
                                  f"{held:,})")
    try:
        model = build(model_config)
    except (TypeError, ValueError, RuntimeError) as err:
        raise _fail(config_path, f"invalid model hyperparameters ({err})") from err
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected != found:
        diff = sorted(f"{k}: expected {expected.get(k)}, found {found.get(k)}"
                      for k in set(expected) | set(found) if expected.get(k) != found.get(k))
        raise _fail(weights_path, "weights do not match config.json (" + "; ".join(diff[:4]) + ")")
    _check_finite(weights_path, tensors, "weights")
    model.load_state_dict(tensors)
    model.eval()
    _probe(folder, model, float(config.get("temperature", 1.0)))
    metrics = {}
    if metrics_path.is_file():
        metrics = _read_json(metrics_path, "metrics")
        if not isinstance(metrics, dict):
            raise _fail(metrics_path, f"metrics must be a JSON object, not {type(metrics).__name__}")
    return model, config, metrics
