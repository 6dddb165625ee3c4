"""A checkpoint as one zip file: packed from a checkpoint, and unpacked with caps checked before anything is
written (the app's "download your model" and ``namecls.load("model.zip")``)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from .files import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, CheckpointError, atomic_write
from .parts import PART_TYPES
from .store import load, save
from .swap import resolve

# A checkpoint zip (:func:`save_zip`, read by :func:`extract_zip`): at most this many entries and this many bytes
# once extracted (the committed checkpoints are about 6 MB each; refused before anything is extracted).
ZIP_MAX_BYTES = 50 << 20  # 50 MiB
ZIP_MAX_ENTRIES = 64
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, *(name for kind in PART_TYPES.values()
                                                               for name in kind.FILES))


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
            folder = resolve(Path(source))
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

        atomic_write(path, write)
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
