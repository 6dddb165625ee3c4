"""Shared fixtures and the skipping policy of the test suite.

Skipping policy: a test that needs something the machine may lack (the real names folder, the committed
checkpoints, a browser, ...) calls :func:`require`. On a developer machine a missing requirement skips the test;
in CI (``NAMECLS_CI=1``) it fails it, so that CI can never go green by skipping.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

# Before anything imports gradio or huggingface_hub: no analytics, no telemetry, no network look-ups.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRAIN_PY = PROJECT_ROOT / "train.py"
IN_CI = os.environ.get("NAMECLS_CI") == "1"


def require(condition: object, reason: str) -> None:
    """Skip the calling test (developer machine) or fail it (``NAMECLS_CI=1``) unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI (NAMECLS_CI=1): {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str):
    """Import and return module ``name``, or skip (developer machine) / fail (CI) when it is not installed."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        require(False, f"module {name!r} is not installed ({err})")


def require_executable(name: str) -> str:
    """Path of the program ``name`` on PATH, or skip (developer machine) / fail (CI) when it is missing."""
    import shutil

    path = shutil.which(name)
    require(path is not None, f"program {name!r} not found on PATH")
    return path


def find_data_dir() -> Path | None:
    """The real names folder: ``$NAMECLS_DATA_DIR``, else ``../shared/data/names`` beside the project; None if
    absent."""
    env = os.environ.get("NAMECLS_DATA_DIR")
    candidate = Path(env) if env else PROJECT_ROOT.parent / "shared" / "data" / "names"
    if not candidate.is_absolute():
        candidate = (PROJECT_ROOT / candidate) if not candidate.exists() else candidate.resolve()
    return candidate if candidate.is_dir() and any(candidate.glob("*.txt")) else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real names folder (18 files, 20,074 lines); skips (or fails in CI) when it is missing."""
    folder = find_data_dir()
    require(folder is not None,
            "names data folder not found: set NAMECLS_DATA_DIR or put it at ../shared/data/names")
    return folder


@pytest.fixture(scope="session")
def names_data(data_dir):
    """``namecls.data.names.read_names`` of the real folder, read once per session."""
    from namecls.data.names import read_names

    return read_names(data_dir)


# Made-up surnames, 4 "languages" x 40 distinct names each, no name in two languages, all inside the alphabet.
_TINY_SYLLABLES = {
    "Dwarvish": (["Bal", "Dur", "Gim", "Kaz", "Thr", "Dwal", "Bof", "Nor"], ["in", "ak", "grim", "dun", "li"]),
    "Elvish": (["Ael", "Cel", "Gal", "Ith", "Lor", "Mir", "Nim", "Thal"], ["and", "ion", "ith", "wen", "dil"]),
    "Hobbitish": (["Bag", "Took", "Brand", "Gam", "Prouf", "Sack", "Bols", "Chubb"],
                  ["gins", "foot", "wise", "bottle", "ridge"]),
    "Orcish": (["Gor", "Uk", "Shag", "Azog", "Grish", "Bolg", "Lug", "Mauh"], ["bag", "nak", "rat", "uz", "ash"]),
}


def tiny_names() -> dict[str, list[str]]:
    """The made-up names of :func:`tiny_data_dir`, per language (sorted language order)."""
    return {lang: [a + b for a, b in itertools.product(first, second)][:40]
            for lang, (first, second) in sorted(_TINY_SYLLABLES.items())}


def write_tiny_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, names in tiny_names().items():
        (folder / f"{lang}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def tiny_data_dir(tmp_path) -> Path:
    """A fresh folder of made-up names: 4 languages (Dwarvish, Elvish, Hobbitish, Orcish) x 40 distinct names."""
    return write_tiny_data(tmp_path / "names")


def run_train(*args: str, cwd: Path | None = None, env: dict | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``train.py`` in a fresh interpreter (one torch thread: the machine is shared)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), full_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, str(TRAIN_PY), *args], cwd=cwd or PROJECT_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def dry_run_dir(tmp_path_factory) -> Path:
    """Output folder of one ``train.py --dry-run`` on a tiny data folder: holds ``rnn/`` and ``gru/`` checkpoints.

    Session-scoped and read-only for its users: copy a checkpoint before damaging it.
    """
    root = tmp_path_factory.mktemp("dry_run")
    data = write_tiny_data(root / "names")
    out = root / "checkpoints"
    result = run_train("--data-dir", str(data), "--out", str(out), "--dry-run", "--seed", "0",
                       "--threads", "1", "--no-progress")
    assert result.returncode == 0, f"train.py --dry-run failed:\n{result.stdout}\n{result.stderr}"
    return out


TIMING_KEYS = {"training_seconds", "seconds"}


def without_timings(obj):
    """metrics minus wall-clock times, which legitimately differ between two identical runs."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj
