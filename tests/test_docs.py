"""The README and docs/: their tables match the measurements, their links resolve, the README stays short.

Every table of figures between ``<!-- tables:NAME -->`` markers is written by ``scripts/tables.py`` from
``checkpoints/*/metrics.json``, ``checkpoints/outside_lists.json`` and ``bench/results/``; a table edited by hand,
or a measurement file rewritten without rerunning the script, fails here. Fast: no model, no network.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
SCRIPT = PROJECT_ROOT / "scripts" / "tables.py"


def load_tables():
    spec = importlib.util.spec_from_file_location("namecls_doc_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tables():
    return load_tables()


def markdown_files():
    return [README, *sorted(DOCS.glob("*.md"))]


def test_tables_are_current():
    """`python scripts/tables.py --check` passes: every generated table equals what its sources give today."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_table_is_used_and_every_document_has_one(tables):
    used = set()
    for path in markdown_files():
        used |= {m["name"] for line in path.read_text(encoding="utf-8").splitlines()
                 if (m := tables.MARKER.match(line))}
    assert used == set(tables.TABLES), "tables defined but not placed, or placed but not defined"
    assert "readme" in {m["name"] for line in README.read_text(encoding="utf-8").splitlines()
                        if (m := tables.MARKER.match(line))}


def test_a_hand_edited_table_is_stale(tables):
    """A figure changed by hand between the markers is put back, and --check would report the file."""
    src = tables.Sources(PROJECT_ROOT)
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- tables:readme -->")
    end = text.index("<!-- /tables:readme -->")
    figure = re.search(r"\d\.\d{3}", text[start:end])
    edited = text[:start + figure.start()] + "0.999" + text[start + figure.end():]
    assert edited != text
    assert tables.render(edited, src) == tables.render(text, src) == text


def test_the_tables_follow_their_sources(tmp_path, tables):
    """Rewrite a measurement in a copy of the sources: the README's table follows it."""
    import json
    import shutil

    for kind in ("rnn", "gru"):
        (tmp_path / "checkpoints" / kind).mkdir(parents=True)
        for name in ("metrics.json", "config.json"):
            shutil.copy(PROJECT_ROOT / "checkpoints" / kind / name, tmp_path / "checkpoints" / kind / name)
    shutil.copy(PROJECT_ROOT / "checkpoints" / "outside_lists.json", tmp_path / "checkpoints" / "outside_lists.json")
    metrics = json.loads((tmp_path / "checkpoints" / "gru" / "metrics.json").read_text())
    metrics["test"]["accuracy"] = 0.1234
    (tmp_path / "checkpoints" / "gru" / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "README.md").write_text("# x\n\n<!-- tables:readme -->\n<!-- /tables:readme -->\n")

    assert tables.main(["--check", "--root", str(tmp_path)]) == 1
    assert tables.main(["--root", str(tmp_path)]) == 0
    assert tables.main(["--check", "--root", str(tmp_path)]) == 0
    written = (tmp_path / "README.md").read_text()
    assert "| GRU (2 × 256) | 0.123 |" in written


@pytest.mark.parametrize("text, message", [
    ("<!-- tables:nonesuch -->\n<!-- /tables:nonesuch -->\n", "unknown table"),
    ("<!-- tables:readme -->\n| a |\n", "no closing"),
    ("<!-- tables:readme -->\n<!-- tables:clean -->\n<!-- /tables:clean -->\n", "not closed"),
])
def test_bad_markers_are_refused(tables, text, message):
    with pytest.raises(ValueError, match=message):
        tables.render(text, tables.Sources(PROJECT_ROOT), "doc.md")


def test_indented_tables_stay_in_their_list_item(tables):
    text = "- a point\n\n  <!-- tables:conformal -->\n  <!-- /tables:conformal -->\n"
    out = tables.render(text, tables.Sources(PROJECT_ROOT))
    body = out.split("<!-- tables:conformal -->\n")[1].split("<!-- /tables:conformal -->")[0]
    assert all(line.startswith("  |") for line in body.splitlines() if line.strip())


def test_readme_is_short_and_runs_the_ci_command():
    """Under 200 lines, and its test command is the one .ci/run runs, character for character."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = ci[ci.index("# The README's test command, verbatim:") + 1]
    assert command in lines


def test_readme_links_every_doc():
    text = README.read_text(encoding="utf-8")
    for path in DOCS.glob("*.md"):
        assert f"](docs/{path.name})" in text, f"the README does not link docs/{path.name}"
    assert "](docs/screenshot.png)" in text and (DOCS / "screenshot.png").stat().st_size <= 300_000


FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path):
    """GitHub's heading anchors of a Markdown file."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_relative_links_resolve(path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.exists(), f"{path.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{path.name}: no heading for #{anchor} in {resolved.name}"
