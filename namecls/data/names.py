"""Reading the names data: normalisation, the alphabet, loading a folder, downloading the archive, and encoding.

The data set is one UTF-8 file per language (``Arabic.txt`` … ``Vietnamese.txt``), one surname a line; the label
of a line is its file's stem. Labels are always sorted so that the output order of every model is fixed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import string
import tempfile
import threading
import time
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from unidecode import unidecode

from ..errors import InputError

try:
    import fcntl
except ImportError:  # not POSIX: only the in-process lock
    fcntl = None  # type: ignore[assignment]  # (a module or None: checked before each use)

log = logging.getLogger(__name__)

ALPHABET = string.ascii_letters + " .,:;-'"  # the 59 characters every model reads
CHAR_TO_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_PLAIN = re.compile("[" + re.escape(ALPHABET) + "\t\n\r\f\v]*")  # text that normalize() only re-spaces
_CODES = np.full(128, -1, dtype=np.int64)  # ASCII code → index in ALPHABET (-1: not in it)
_CODES[[ord(c) for c in ALPHABET]] = np.arange(len(ALPHABET))
MAX_NAME_LENGTH = 64  # longest normalised name the classifier accepts
NORMALIZATION = "unidecode, then keep only ALPHABET"  # recorded in every checkpoint

DATA_URL = "https://download.pytorch.org/tutorial/data.zip"
# SHA-256 of each file of data.zip's data/names/ folder, as published upstream (same as shared/data/names.sha256).
DATA_SHA256 = {
    "Arabic.txt": "6f424a8dbe51cbbbabab7a57d38b617210125e4e3991f3c657cb79b8f104bafc",
    "Chinese.txt": "49263ef55a8cb1740e841d65cad8214b2f9b5b869bc534c811746422496fa91e",
    "Czech.txt": "145bbbd6d0816578f03388e92c264d39ef1c60df920b081d371fa5c5cc055a8e",
    "Dutch.txt": "924f32b635170eae561f84538632138fc07d4c8bbd70ba3fb980de1ecc4d2af3",
    "English.txt": "9cca037066d3d5989e24bc01801416162de506b5e28e15b7c092a47905d29bf2",
    "French.txt": "81e65b36c60ed5b89a17422f6edcadbb89546f38ad69e960e64e7ba682012a95",
    "German.txt": "7449cd590b97a733e18d613a4155decd77ec35dc5f8aadd7a82204dce4f051db",
    "Greek.txt": "3555b5186de7f401e6d991b088e9e644ca3099116477818c25ab5793801389e6",
    "Irish.txt": "cf8c7013256252a88d2503127b87282a11f21b2ff6db1bded68834c19a1ec058",
    "Italian.txt": "f88414c27d0606a11a678b4859277828c2565d6cc4d9ee932deef6e94f3b35e4",
    "Japanese.txt": "e0e717e114fec3e7eade4d9dabe0067c475f43147e36a22b47902ee76ad9e67f",
    "Korean.txt": "cd54221ccb362a6cba4c78828838cf3268a0e59744767a37cf6ec4b74036b136",
    "Polish.txt": "45bab898af2f60ed3a728bbf6980e28821011a7caa53227553b5785903a40826",
    "Portuguese.txt": "50a8735f41f4f73757c8ce5b16cb0275cd86b2b214bcbc8c9805f508cb131c53",
    "Russian.txt": "43b3e64ce351f77f1ac9e0cdf7566012d127f4371875fd25208845b5c9d6f7c3",
    "Scottish.txt": "78d0252711d87d948ea86fe34826c51d2d794a8e52d15b5d6f7b6244d45d62dd",
    "Spanish.txt": "1bcb462ed3316756a85781d68232bddae04498fdddd5d9219c53fd1fbdeba7a7",
    "Vietnamese.txt": "f3f9e4164ab47601178a6e45b216464a64122f49d05541f24bf18a757253281d",
}


@dataclass(frozen=True)
class Normalized:
    """What normalisation made of a raw name: the text the models read, and what it had to drop."""

    original: str
    text: str  # unidecode'd, restricted to ALPHABET, surrounding whitespace stripped
    dropped: tuple[str, ...]  # characters of the transliteration that are not in ALPHABET, in order

    @property
    def changed(self) -> bool:
        return self.text != self.original


_SURROGATE = re.compile("[\ud800-\udfff]")


def normalize(name: str) -> Normalized:
    """Transliterate ``name`` with unidecode and keep only ALPHABET; report the characters dropped.

    Any whitespace separates words (runs collapse to one space). A character is reported as dropped, as written
    in the input, when its transliteration holds nothing of ALPHABET's or something outside it (``1``, ``/``,
    an emoji that unidecode erases). Never raises: validation (empty, too long) is :func:`validate`'s job.
    """
    if type(name) is str and _PLAIN.fullmatch(name):  # fast path, same result: nothing to transliterate or drop
        return Normalized(original=name, text=" ".join(name.split()), dropped=())
    kept, dropped = [], []
    for char in str(name):
        if char.isspace():
            kept.append(" ")
            continue
        # A lone surrogate (possible in a str, e.g. from JSON "\ud800") is dropped: unidecode would warn about it.
        transliterated = "" if "\ud800" <= char <= "\udfff" else unidecode(char)
        letters = [c for c in transliterated if c in CHAR_TO_INDEX]
        kept.extend(letters)
        if not letters or len(letters) < len(transliterated.replace(" ", "")):
            dropped.append(char)
    return Normalized(original=name, text=" ".join("".join(kept).split()), dropped=tuple(dropped))


def check_raw(name) -> str:
    """``name`` itself, if it is a string short enough to transliterate; else ``ValueError`` saying why.

    The cheap checks of :func:`validate`, made before any normalisation."""
    if not isinstance(name, str):
        raise InputError(f"a name must be a string, not {type(name).__name__}")
    if len(name) > 4 * MAX_NAME_LENGTH:  # refuse absurd input before transliterating it
        raise InputError(f"name is too long: {len(name)} characters (at most {MAX_NAME_LENGTH})")
    if (surrogate := _SURROGATE.search(name)) is not None:  # half a UTF-16 pair (JSON "\ud800"): not text
        raise InputError(f"name is not valid text: it holds U+{ord(surrogate.group()):04X}, half of a UTF-16 "
                         "character pair")
    return name


def printable(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so that it can be sent back as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def check_normalized(norm: Normalized) -> Normalized:
    """``norm`` itself if a model can read it (some letter, at most MAX_NAME_LENGTH characters); else ``ValueError``.

    Takes the result of :func:`normalize`, so a caller that also needs the normalised text (e.g. for a batch
    row's error) transliterates the name once."""
    if not norm.text.strip(" .,:;-'"):
        if not str(norm.original).strip():
            raise InputError("name is empty")
        raise InputError(f"name has no letters after normalisation (dropped: {''.join(norm.dropped)!r})")
    if len(norm.text) > MAX_NAME_LENGTH:
        raise InputError(f"name is too long: {len(norm.text)} characters after normalisation "
                         f"(at most {MAX_NAME_LENGTH})")
    return norm


def validate(name: str) -> Normalized:
    """Normalise ``name`` and raise ``ValueError`` saying why if no model can read it."""
    return check_normalized(normalize(check_raw(name)))


@dataclass
class NamesData:
    """All usable rows of a data folder: ``names[i]`` (normalised) has label index ``targets[i]`` in ``labels``."""

    names: list[str]
    targets: list[int]
    labels: list[str]  # sorted file stems
    skipped: list[tuple[str, str]]  # (language, raw line) that normalisation could not keep whole
    fingerprint: str  # SHA-256 over the files' hashes: which data a checkpoint was trained on


def read_names(data_dir: str | os.PathLike) -> NamesData:
    """Read every ``*.txt`` of ``data_dir``; skip (and count) lines holding characters outside ALPHABET."""
    folder = Path(data_dir)
    files = sorted(folder.glob("*.txt"), key=lambda f: f.stem)
    if not files:
        raise FileNotFoundError(
            f"no *.txt files in {folder}: pass --data-dir pointing at the names folder "
            f"(e.g. ../shared/data/names), or --download to fetch {DATA_URL}"
        )
    names, targets, skipped, digests = [], [], [], []
    labels = [f.stem for f in files]
    for index, path in enumerate(files):
        raw = path.read_bytes()
        digests.append(f"{path.name}:{hashlib.sha256(raw).hexdigest()}")
        for line in raw.decode("utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            norm = normalize(line)
            if norm.dropped or not norm.text:
                skipped.append((path.stem, line))
                continue
            names.append(norm.text)
            targets.append(index)
    fingerprint = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    log.info("read %d names in %d languages from %s; skipped %d lines outside the alphabet: %s",
             len(names), len(labels), folder, len(skipped), ", ".join(repr(s[1]) for s in skipped[:10]))
    return NamesData(names, targets, labels, skipped, fingerprint)


# What a download may hold (the tutorial's data.zip is about 2.9 MB; its names files under 1 MB together): an
# archive from the network is untrusted input, refused beyond these before anything is decompressed or written.
MAX_ARCHIVE_BYTES = 32 * 2**20
MAX_NAMES_FILE_BYTES = 4 * 2**20  # each data/names/*.txt as the zip declares it (the largest is ~100 KB)
_FETCH_LOCK = threading.Lock()  # one download into a folder at a time in this process (a lock file across them)


def fetch_archive(url: str = DATA_URL, timeout: float = 60.0, max_bytes: int = MAX_ARCHIVE_BYTES) -> bytes:
    """The bytes at ``url``: at most ``max_bytes`` (RuntimeError beyond), within ``timeout`` seconds in all
    (TimeoutError, an OSError, when a slow answer takes longer). Network failures raise OSError."""
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(url, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        if declared and declared.strip().isdigit() and int(declared) > max_bytes:
            raise RuntimeError(f"{url} is {int(declared):,} bytes, more than the {max_bytes:,} expected at most")
        chunks, size = [], 0
        while chunk := response.read(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise RuntimeError(f"{url} sent more than the {max_bytes:,} bytes expected at most")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the download took longer than {timeout:g} s")
    return b"".join(chunks)


class DownloadFailed(RuntimeError):
    """The archive could not be fetched (the network, not the files): what an offline person can work around."""


def download(dest: str | os.PathLike, url: str = DATA_URL, timeout: float = 60.0) -> Path:
    """``train.py --download``: :func:`fetch_names` (the one download: the tutorial archive's ``data/names/*.txt``,
    every SHA-256 checked, locked, all or nothing; nothing fetched when ``dest`` already holds them), with a hint for
    a person offline."""
    try:
        return fetch_names(dest, url, timeout)
    except DownloadFailed as err:
        raise RuntimeError(f"{err}; offline, pass --data-dir pointing at an existing names folder") from err


def holds_names(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds exactly the archive's names files, each with its published SHA-256."""
    folder = Path(folder)
    try:
        return (folder.is_dir() and {f.name for f in folder.glob("*.txt")} == set(DATA_SHA256)
                and all(hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
                        for name, digest in DATA_SHA256.items()))
    except OSError:
        return False


@contextmanager
def _lock_file(path: Path):
    """An exclusive lock on the file ``path`` (POSIX flock; elsewhere only the in-process lock applies)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")
    except OSError as err:
        raise RuntimeError(f"cannot write the names data under {path.parent} ({err})") from err
    with handle:  # closing the file releases the lock
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def fetch_names(dest: str | os.PathLike, url: str = DATA_URL, timeout: float = 60.0) -> Path:
    """``dest`` holding the names data, downloaded only if it does not already (:func:`holds_names`): a cache.

    One download at a time (a lock in the process, a lock file ``.<dest name>.lock`` beside ``dest`` across
    processes): a caller that waited finds the folder filled and downloads nothing. The archive is fetched with
    :func:`fetch_archive` (size cap, timeout), every file checked (:func:`extract_names`) in a temporary folder
    beside ``dest`` and moved into place whole, so ``dest`` either holds every checked file or does not exist.
    Any failure raises RuntimeError saying what failed."""
    dest = Path(dest)
    with _FETCH_LOCK, _lock_file(dest.parent / f".{dest.name}.lock"):
        if holds_names(dest):
            return dest
        others = sorted(p.name for p in dest.iterdir() if p.name not in DATA_SHA256) if dest.is_dir() else []
        if others:  # refused before anything is fetched or removed: the folder is someone else's
            raise RuntimeError(f"{dest} holds other files ({', '.join(others[:3])}): give an empty or new folder "
                               "for the names data")
        try:
            archive = fetch_archive(url, timeout)
        except OSError as err:
            raise DownloadFailed(f"could not download {url} ({err})") from err
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        except OSError as err:
            raise RuntimeError(f"cannot write the names data under {dest.parent} ({err})") from err
        try:
            extract_names(archive, staging)
            if dest.exists():  # left incomplete by something else: only the names files go, then the folder
                for name in DATA_SHA256:
                    (dest / name).unlink(missing_ok=True)
                dest.rmdir()
            staging.rename(dest)
        except OSError as err:
            raise RuntimeError(f"cannot write the names data to {dest} ({err})") from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("downloaded the names data from %s into %s", url, dest)
    return dest


def extract_names(archive: bytes, dest: Path) -> Path:
    """Extract ``data/names/*.txt`` from the zip bytes ``archive`` into ``dest``; refuse any hash mismatch, and a
    file the zip declares larger than :data:`MAX_NAMES_FILE_BYTES` before decompressing it."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as err:
        raise RuntimeError(f"the archive is not a zip file ({err})") from err
    with zf:
        members = {Path(m.filename).name: m for m in zf.infolist()
                   if m.filename.startswith("data/names/") and m.filename.endswith(".txt")}
        if set(members) != set(DATA_SHA256):
            raise RuntimeError(f"archive holds {sorted(members)}, expected {sorted(DATA_SHA256)}")
        for fname, member in members.items():
            if member.file_size > MAX_NAMES_FILE_BYTES:
                raise RuntimeError(f"{fname} in the archive is {member.file_size:,} bytes, more than the "
                                   f"{MAX_NAMES_FILE_BYTES:,} expected at most")
        try:
            contents = {fname: zf.read(member) for fname, member in sorted(members.items())}
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as err:
            raise RuntimeError(f"the archive is damaged ({err})") from err
    for fname, content in contents.items():  # check every file before writing any
        digest = hashlib.sha256(content).hexdigest()
        if digest != DATA_SHA256[fname]:
            raise RuntimeError(f"{fname}: SHA-256 {digest} does not match the expected {DATA_SHA256[fname]}")
    dest.mkdir(parents=True, exist_ok=True)
    for fname, content in contents.items():
        tmp = dest / (fname + ".tmp")
        tmp.write_bytes(content)
        tmp.replace(dest / fname)
    return dest


# --- where the names folder is -----------------------------------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: ../shared/data/names is looked for beside it
LOCAL_DATA_DIR = Path("data/names")  # in the working directory: train.py's --download puts the data there


def cache_data_dir() -> Path:
    """Where :func:`find_or_download_data` keeps the names data it had to download: ``$XDG_CACHE_HOME/namecls/names``
    (``~/.cache/namecls/names`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "namecls" / "names"


def _holds_txt(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.txt"))


def data_dirs() -> list[tuple[Path, str]]:
    """Where a names folder is looked for when none is given, in order, each with where it comes from:
    ``$NAMECLS_DATA_DIR`` alone when it is set (used as it is, never replaced by a download); else ``data/names`` in
    the working directory, ``../shared/data/names`` beside the project, and :func:`cache_data_dir`."""
    env = os.environ.get("NAMECLS_DATA_DIR")
    if env:
        return [(Path(env), "$NAMECLS_DATA_DIR")]
    return [(LOCAL_DATA_DIR, "data/names in the working directory"),
            (PROJECT_ROOT.parent / "shared" / "data" / "names", "the default beside the project"),
            (cache_data_dir(), "the copy downloaded into the cache")]


def default_data_dir() -> tuple[Path, str]:
    """The names folder read when none is given, and where that choice came from: the first of :func:`data_dirs`
    that holds ``*.txt`` files (the cache only once it holds every checked file, :func:`holds_names`); the first of
    them when none does."""
    candidates = data_dirs()
    for folder, origin in candidates:
        if holds_names(folder) if folder == cache_data_dir() else _holds_txt(folder):
            return folder, origin
    return candidates[0]


def find_data(data_dir: str | os.PathLike | None = None) -> Path:
    """The names folder to read: ``data_dir`` (or :func:`default_data_dir`) if it holds ``*.txt`` files; else
    FileNotFoundError saying where it looked and how to get the data. ``train.py``, ``python -m namecls.training.refit``
    and :func:`namecls.fit` all resolve their folder here."""
    if data_dir is not None:
        folder, where = Path(data_dir), f"{data_dir} (the folder given)"
    else:
        folder, origin = default_data_dir()
        where = " or ".join(f"{path} ({origin})" for path, origin in data_dirs())
    if _holds_txt(folder):
        return folder
    raise FileNotFoundError(
        f"no names data in {where}: give a folder with one <Language>.txt per language (--data-dir, or data_dir=), "
        f"set NAMECLS_DATA_DIR, or download it (SHA-256 checked) with `python train.py --download --data-dir "
        f"{folder}` or namecls.data.names.download({str(folder)!r}) (fetches {DATA_URL})")


def data_on_disk() -> bool:
    """Whether :func:`find_data` finds a names folder without any download."""
    try:
        find_data(None)
    except FileNotFoundError:
        return False
    return True


def find_or_download_data(timeout: float = 60.0) -> Path:
    """The names folder to train on: :func:`find_data`'s default if it holds the data; else, unless
    ``$NAMECLS_DATA_DIR`` names a folder (then its FileNotFoundError), the tutorial's archive downloaded once into
    :func:`cache_data_dir` and checked by SHA-256 (:func:`fetch_names`: a lock, a size cap, a timeout). A failed
    download raises RuntimeError saying what failed and how to do without it."""
    try:
        return find_data(None)
    except FileNotFoundError:
        if os.environ.get("NAMECLS_DATA_DIR"):
            raise
    try:
        return fetch_names(cache_data_dir(), timeout=timeout)
    except RuntimeError as err:
        raise RuntimeError(
            f"the names data is not on this server and fetching it failed: {err}. To fix it, set NAMECLS_DATA_DIR "
            f"to a folder with one <Language>.txt per language (data/names/ of {DATA_URL}) and restart, or let "
            f"the server reach download.pytorch.org.") from err


def encode(name: str) -> list[int]:
    """Character indices of an already-normalised name."""
    return [CHAR_TO_INDEX[c] for c in name]


def pad_batch(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode normalised names into a right-padded index batch ``(B, T)`` and their lengths ``(B,)``.

    Padding uses index 0; the models never let a padded step reach a real step's output (they are unidirectional
    and read each name's result at its own last character).
    """
    if len(names) == 1:  # one name, as in an app request: plain lists are cheaper than the vectorised path
        indices = encode(names[0])
        return torch.tensor([indices], dtype=torch.int64), torch.tensor([len(indices)], dtype=torch.int64)
    lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    codes: np.ndarray | None
    try:  # vectorised: one lookup over all the names' characters (per-name tensors cost more than the model)
        codes = _CODES[np.frombuffer("".join(names).encode("ascii"), dtype=np.uint8)]
    except UnicodeEncodeError:
        codes = None
    if codes is None or (codes < 0).any():
        for name in names:
            encode(name)  # raises KeyError naming the first character outside ALPHABET
    assert codes is not None  # (None: a character outside ASCII, so encode raised above)
    batch = np.zeros((len(names), int(lengths.max())), dtype=np.int64)  # (B, T)
    batch[np.arange(batch.shape[1]) < lengths[:, None]] = codes  # row by row: each name's first len(name) steps
    return torch.from_numpy(batch), torch.from_numpy(lengths)


def length_batches(names: list[str], batch_size: int = 512) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Already-normalised ``names`` in batches of similar length, shortest first (little padding): yields
    (rows: the names' indices in ``names``, their :func:`pad_batch` (B, T) and lengths (B,)). Every batched pass of
    the package reads names this way, so a name gets the same numbers whichever pass reads it."""
    order = sorted(range(len(names)), key=lambda i: len(names[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield (rows, *pad_batch([names[i] for i in rows]))
