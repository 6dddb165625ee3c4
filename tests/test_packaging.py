"""The package installs from a wheel and works anywhere: the wheel carries the committed checkpoints, answers like
the checkout from a folder outside the repository (the library and the ``namecls`` command), and the app and the
library need neither Dask nor pyarrow (the ``bulk`` extra)."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import namecls
from namecls.inference import CHECKPOINTS

ROOT = Path(__file__).resolve().parent.parent
BULK = ("dask", "distributed", "pyarrow")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from this checkout, offline (no build isolation: setuptools comes from requirements-test.txt)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, cwd=out, timeout=300)
    (built,) = out.glob("namecls-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into a folder of its own (its dependencies are this interpreter's)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, timeout=300)
    return site


def _outside(site: Path, *args: str, cwd: Path) -> str:
    """Run ``args`` with ``site`` first on the path, from ``cwd`` (outside the repository); its stdout."""
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    return subprocess.run(list(args), check=True, capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300).stdout


@pytest.mark.slow
def test_the_wheel_carries_every_checkpoint_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        packed = {name for name in archive.namelist() if name.startswith("namecls/checkpoints/")}
    committed = {f"namecls/checkpoints/{path.relative_to(CHECKPOINTS).as_posix()}"
                 for path in CHECKPOINTS.rglob("*") if path.is_file() and path.suffix in (".json", ".safetensors")}
    assert committed and packed == committed


@pytest.mark.slow
def test_the_installed_wheel_answers_like_the_checkout(installed, tmp_path):
    script = ("import json, namecls; from namecls.inference import CHECKPOINTS; clf = namecls.load('gru'); "
              "print(json.dumps({'file': namecls.__file__, 'checkpoints': str(CHECKPOINTS), "
              "'top': clf.predict('Nakamura', 3), 'set': clf.predict_set('Kowalczyk', prior='equal')}))")
    got = json.loads(_outside(installed, sys.executable, "-c", script, cwd=tmp_path))
    assert Path(got["file"]).is_relative_to(installed) and Path(got["checkpoints"]).is_relative_to(installed)
    clf = namecls.load("gru")
    assert [tuple(pair) for pair in got["top"]] == clf.predict("Nakamura", 3)
    assert got["set"] == clf.predict_set("Kowalczyk", prior="equal")


@pytest.mark.slow
def test_the_installed_command_answers(installed, tmp_path):
    command = installed / "bin" / "namecls"
    assert command.is_file()
    out = json.loads(_outside(installed, sys.executable, str(command), "predict", "Nakamura", "--json",
                              cwd=tmp_path))
    assert out["set"] == namecls.load("gru").predict_set("Nakamura")


def test_requirements_leave_the_bulk_extra_out():
    runtime = (ROOT / "requirements.txt").read_text(encoding="utf-8").lower()
    bulk = (ROOT / "requirements-bulk.txt").read_text(encoding="utf-8").lower()
    for package in BULK:
        assert package not in runtime and package in bulk


@pytest.mark.slow
def test_the_app_and_the_library_run_without_the_bulk_extra(tmp_path):
    """With dask, distributed and pyarrow made unimportable, the app builds and answers, and the CLI says what a
    Parquet file needs."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BULK!r}:\n"
        "            raise ImportError(f'{name} is blocked (the bulk extra is not installed)')\n"
        "sys.meta_path.insert(0, Block())\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    script = ("import app, namecls; from namecls.serving import service; "
              "print(service.predict_details(app.MODELS, 'Qin', prior='equal')['set'])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')) == \
        namecls.load("gru").predict_set("Qin", prior="equal")
    import pandas as pd

    pd.DataFrame({"name": ["Qin"]}).to_parquet(tmp_path / "names.parquet")  # written here, where pyarrow is
    parquet = subprocess.run([sys.executable, "-m", "namecls", "batch", str(tmp_path / "names.parquet")],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert parquet.returncode == 2 and "pip install 'namecls[bulk]'" in parquet.stderr


LAYERS = ["errors", "data", "models", "recipes", "posthoc", "explain", "checkpoint", "inference", "training",
          "serving", "ui"]  # the order README.md gives: each imports only the ones before it


def _imports_between_layers() -> list[tuple[str, str, str]]:
    """(file, its layer, the layer it imports) for every import of namecls's own code that runs (type-only imports
    under ``if TYPE_CHECKING:`` do not)."""
    import ast

    package = ROOT / "namecls"
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        home = parts[:-1] if path.name != "__init__.py" else parts
        tree = ast.parse(path.read_text(encoding="utf-8"))
        type_only = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If)
                     and getattr(branch.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(branch)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.level or id(node) in type_only:
                continue
            target = home[: len(home) - node.level + 1] + (node.module.split(".") if node.module else [])
            for alias in node.names:
                full = target + [alias.name]
                module = full if (ROOT.joinpath(*full).with_suffix(".py").exists()
                                  or ROOT.joinpath(*full).is_dir()) else target
                if len(parts) > 1 and len(module) > 1 and parts[1] != module[1]:
                    found.append((str(path.relative_to(ROOT)), parts[1], module[1]))
    return found


def test_each_part_imports_only_the_parts_before_it():
    edges = _imports_between_layers()
    assert len(edges) > 50  # the walk sees the package's imports (a broken walk finds none and would pass)
    upward = [(file, layer, imported) for file, layer, imported in edges
              if layer != "__main__" and LAYERS.index(imported) >= LAYERS.index(layer)]
    assert not upward, upward
