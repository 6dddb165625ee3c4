"""Replacing a checkpoint folder as a whole set: written beside the old one, then swapped in atomically.

A crash at any point leaves either the complete old set or the complete new set, never new weights beside an old
config (:func:`replace_folder`); a reader finds the old set again if a crash left the folder missing
(:func:`resolve`).
"""

from __future__ import annotations

import glob
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path

from .files import CONFIG_FILE, fsync_dir, write_synced

log = logging.getLogger(__name__)


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


def exchange(a: Path, b: Path) -> bool:
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
            write_synced(staging / name, write)
        fsync_dir(staging)
        if exchange(staging, target):  # staging now holds the old set
            aside = staging
        else:
            if os.path.lexists(target):
                aside = _sibling(target, "old")
                os.rename(target, aside)
            os.rename(staging, target)
        fsync_dir(target.parent)
    except BaseException:
        if aside is not None and aside != staging and not os.path.lexists(target):
            os.rename(aside, target)  # the swap did not happen: the old set goes back
        if os.path.lexists(staging) and staging != aside:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    for leftover in ([aside] if aside is not None else []) + _siblings(target, "old") + _siblings(target, "new"):
        shutil.rmtree(leftover, ignore_errors=True)


def resolve(folder: Path) -> Path:
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
