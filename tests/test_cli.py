"""The ``namecls`` command line: predict, batch (every format, stdin/stdout, streaming in chunks) and trace, checked
against the library; every bad input (a ragged CSV row too) ends in one line on stderr and exit code 2; formula-like
cells of a text output are defused unless --raw-cells; SIGTERM, like Ctrl-C, leaves no partial file. The installed
console script (``pip install -e .``, as requirements-dev.txt does) is what runs wherever a process boundary
matters."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import namecls
from namecls.serving import bulk, cli

from conftest import PROJECT_ROOT, require

CONSOLE_SCRIPT = Path(sys.executable).parent / "namecls"
NAMES = ["Qin", "Nakamura", "O'Connell", "Müller", "Ślusàrski", "de la Cruz", "Smith, Jr.", 'Jo "Jo"', "", "😀",
         "NA", "null", "12345", "Brady"]


@pytest.fixture(scope="session")
def namecls_script() -> Path:
    """The console script of this venv; missing (no ``pip install -e .``): skip, or fail in CI."""
    require(CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT} is missing: run pip install -e . (requirements-dev.txt)")
    return CONSOLE_SCRIPT


def run(*args: str, stdin: str | None = None, script: Path = CONSOLE_SCRIPT,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh process, as a shell would run it."""
    return subprocess.run([str(script), *args], input=stdin, capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """:func:`namecls.serving.cli.main` in this process (fast: the checkpoints stay loaded): exit code, stdout,
    stderr."""
    try:
        code = cli.main(list(args))
    except SystemExit as stop:  # argparse's own exits
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------------------------
# predict and trace


@pytest.mark.slow
def test_predict_json_is_the_classifier_answer(namecls_script):
    names = ["Qin", "Nakamura", "Ślusàrski", "de la Cruz"]
    result = run("predict", *names, "--model", "rnn", "-k", "4", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    clf = namecls.load("rnn")
    assert [row["name"] for row in rows] == names
    for row, name in zip(rows, names):
        want = clf.predict(name, 4)
        assert list(row["top"]) == [lang for lang, _ in want]
        assert list(row["top"].values()) == pytest.approx([p for _, p in want], rel=1e-5)
        assert row["set"] == clf.predict_set(name) and row["seen_as"] == clf.seen_as(name)
        assert row["model"] == "rnn" and row["normalized"] == namecls.normalize(name).text


def test_predict_table(capsys):
    code, out, err = run_main(capsys, "predict", "Qin", "O'Connell", "-k", "2")
    assert code == 0 and err == ""
    header, *lines = out.splitlines()
    assert header.split() == ["name", "#1", "#2", "prediction", "set", "in", "training", "as"]
    clf = namecls.load("gru")
    for line, name in zip(lines, ["Qin", "O'Connell"], strict=True):
        assert line.startswith(name)
        for lang, p in clf.predict(name, 2):
            assert f"{lang} {p:.1%}" in line
        assert " or ".join(clf.predict_set(name)) in line


@pytest.mark.slow
def test_trace_table_follows_the_classifier(namecls_script):
    result = run("trace", "Ślusàrski", "--model", "rnn")
    assert result.returncode == 0, result.stderr
    title, header, *lines = result.stdout.splitlines()
    assert "Ślusàrski" in title and "'Slusarski'" in title and "rnn" in title
    assert header.split() == ["step", "character", "top", "language", "probability"]
    t = namecls.load("rnn").trace("Ślusàrski")
    assert len(lines) == len(t.chars)
    for step, (line, char, probs) in enumerate(zip(lines, t.chars, t.probs), 1):
        best = int(np.argmax(probs))
        assert line.split() == [str(step), char, t.labels[best], f"{probs[best]:.1%}"]


PRIOR_NAMES = ["Abel", "Adam", "Hong", "Ślusàrski"]  # the first three change their top language under "equal"


def table_lines(out: str, names: list[str]) -> list[str]:
    """The rows of predict's table for ``names``, in order (after its header)."""
    _, *lines = out.splitlines()
    assert len(lines) == len(names) and all(line.startswith(name) for line, name in zip(lines, names))
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["equal", None])
def test_predict_prior_is_the_classifiers(capsys, prior):
    """``--prior equal`` prints the Classifier's equal-prior top-k and set; without ``--prior``, the same as
    ``--prior lists`` and as the Classifier's default."""
    option = [] if prior is None else ["--prior", prior]
    code, out, err = run_main(capsys, "predict", *PRIOR_NAMES, "-k", "2", *option)
    assert code == 0 and err == ""
    clf = namecls.load("gru")
    for line, name in zip(table_lines(out, PRIOR_NAMES), PRIOR_NAMES):
        want = clf.predict_details(name, 2) if prior is None else clf.predict_details(name, 2, prior=prior)
        cells = [f"{lang} {p:.1%}" for lang, p in want.top] + [" or ".join(want.set)]
        assert line.split("  ")[0] == name and all(cell in line for cell in cells), (line, cells)
    firsts = [line.split()[1] for line in table_lines(out, PRIOR_NAMES)]
    assert firsts == (["German", "Arabic", "Korean", "Polish"] if prior else ["Russian", "English", "Chinese",
                                                                             "Polish"])
    if prior is None:
        assert run_main(capsys, "predict", *PRIOR_NAMES, "-k", "2", "--prior", "lists")[1] == out


def test_predict_json_carries_the_prior(capsys):
    code, out, err = run_main(capsys, "predict", "Abel", "Hong", "--model", "rnn", "--prior", "equal", "--json")
    assert code == 0, err
    clf = namecls.load("rnn")
    for line, name in zip(out.splitlines(), ["Abel", "Hong"], strict=True):
        row, want = json.loads(line), clf.predict_details(name, 3, prior="equal")
        assert row["prior"] == "equal" and row["set"] == want.set
        assert list(row["top"]) == [lang for lang, _ in want.top]
        assert list(row["top"].values()) == pytest.approx([p for _, p in want.top], rel=1e-5)
    assert json.loads(run_main(capsys, "predict", "Abel", "--json")[1])["prior"] == "lists"


def test_trace_prior_is_the_classifiers(capsys):
    code, out, err = run_main(capsys, "trace", "Bach", "--model", "rnn", "--prior", "equal")
    assert code == 0, err
    title, _, *lines = out.splitlines()
    assert title.startswith("Bach (rnn, equal prior)")
    t = namecls.load("rnn").trace("Bach", prior="equal")
    for step, (line, char, probs) in enumerate(zip(lines, t.chars, t.probs, strict=True), 1):
        best = int(np.argmax(probs))
        assert line.split() == [str(step), char, t.labels[best], f"{probs[best]:.1%}"]
    assert lines[-1].split()[2] == "Vietnamese"
    code, out, _ = run_main(capsys, "trace", "Bach", "--model", "rnn")
    assert code == 0 and out.splitlines()[0] == "Bach (rnn): the top language after each character"
    assert out.splitlines()[-1].split()[2] == "German"  # the lists' answer


@pytest.mark.slow
def test_batch_prior_is_the_classifiers(capsys, tmp_path):
    """``batch --prior equal`` in chunks: every row the Classifier's equal-prior answer; without it, the library's
    default (:func:`namecls.annotate`)."""
    table = source_table()
    src = tmp_path / "in.csv"
    write_input(table, src)
    code, _, err = run_main(capsys, "batch", str(src), "-o", str(tmp_path / "equal.csv"), "--chunk-size", "4", "-k",
                            "2", "--prior", "equal", "--no-progress")
    assert code == 0, err
    got = read_output(tmp_path / "equal.csv")
    assert list(got.columns) == [*table.columns, *bulk.answer_dtypes(2)]
    assert_same_table(got[list(table.columns)], defused_notes(table))  # the input's columns as they were
    clf = namecls.load("gru")
    for _, row in got.iterrows():
        try:
            want = clf.predict_details(row["surname"], 2, prior="equal")
        except ValueError:
            assert row["error"] and row["top1"] == "" and row["set"] == ""
            continue
        assert row["error"] == "" and row["normalized"] == want.normalized
        assert [row["top1"], row["top2"]] == [lang for lang, _ in want.top]
        assert [float(row["probability"]), float(row["probability2"])] == pytest.approx(
            [p for _, p in want.top], rel=1e-5)
        assert row["set"] == ";".join(want.set) and row["low_confidence"] == str(want.low_confidence)
    assert not got["error"].eq("").all() and got["error"].eq("").sum() > 5

    code, _, err = run_main(capsys, "batch", str(src), "-o", str(tmp_path / "lists.csv"), "--chunk-size", "4", "-k",
                            "2", "--no-progress")
    assert code == 0, err
    assert_same_table(read_output(tmp_path / "lists.csv"), defused_notes(namecls.annotate(table, "surname", k=2)))
    assert (read_output(tmp_path / "lists.csv")["top1"] != got["top1"]).any()


def test_every_predicting_command_takes_the_prior():
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        (prior,) = [action for action in sub._actions if action.dest == "prior"]
        assert prior.option_strings == ["--prior"] and tuple(prior.choices) == ("lists", "equal"), name
        assert prior.default == "lists" and "(default: lists)" in prior.help, name
        assert "Russian" in prior.help and "equally likely" in prior.help, name


@pytest.mark.slow
def test_python_m_namecls_is_the_same_command(namecls_script):
    args = ["predict", "Qin", "Nguyen", "--json", "-k", "2"]
    by_module = subprocess.run([sys.executable, "-m", "namecls", *args], capture_output=True, text=True, timeout=120,
                               cwd=PROJECT_ROOT)
    assert by_module.returncode == 0, by_module.stderr
    assert [json.loads(line)["top"] for line in by_module.stdout.splitlines()] == \
        [json.loads(line)["top"] for line in run(*args).stdout.splitlines()]
    assert subprocess.run([sys.executable, "-m", "namecls", "batch", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=PROJECT_ROOT).stdout == run("batch", "--help").stdout


def test_every_option_has_help():
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    assert sorted(commands.choices) == ["batch", "predict", "trace"]
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"namecls {name} {action.option_strings or action.dest} has no help"


# ---------------------------------------------------------------------------------------------------------------
# batch: formats, stdin/stdout, streaming


def source_table() -> pd.DataFrame:
    """An input table: an id, the names (odd ones included), and a column whose text must come back unchanged."""
    return pd.DataFrame({"id": [str(i) for i in range(len(NAMES))], "surname": NAMES,
                         "note": ["NA", "", "=1+1", "a,b", 'say "hi"', "0012", "None", "n/a", "x", "y", "z", "nan",
                                  "-", "é"]}, dtype="str")


def write_input(table: pd.DataFrame, path: Path) -> None:
    """The test's input file, written by pandas/pyarrow (not by the command under test)."""
    suffix = path.suffix
    if suffix == ".parquet":
        table.to_parquet(path, index=False)
    elif suffix == ".txt":
        path.write_text("\n".join(["", *table["surname"], "  "]) + "\n", encoding="utf-8")
    else:
        table.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)


# what a text output (CSV, TSV, TXT) writes for source_table's note cells that a spreadsheet would run as formulas
DEFUSED_NOTES = {"=1+1": "'=1+1", "-": "'-"}


def defused_notes(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as a text output holds it: its formula-like note cells defused (the names have none)."""
    return table.assign(note=table["note"].replace(DEFUSED_NOTES))


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as the text a CSV holds: missing values (and empty ones) as ""."""
    return frame.astype(object).where(frame.notna(), "").map(str)


def read_output(path: Path) -> pd.DataFrame:
    """An output file read back, every cell as text."""
    if path.suffix == ".parquet":
        return as_text(pd.read_parquet(path))
    return pd.read_csv(path, sep="," if path.suffix == ".csv" else "\t", dtype=str, keep_default_na=False)


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """``got`` (text cells) holds ``expected``'s values: text exactly, probabilities to float32 precision."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for column in expected.columns:
        if expected[column].dtype == "float64":
            np.testing.assert_allclose(pd.to_numeric(got[column].replace("", np.nan)), expected[column], rtol=1e-5,
                                       atol=1e-7, err_msg=column)
        else:
            assert got[column].tolist() == as_text(expected[[column]])[column].tolist(), column


@pytest.mark.slow
@pytest.mark.parametrize("source, target", [
    ("csv", "csv"), ("tsv", "tsv"), ("txt", "txt"), ("parquet", "parquet"), ("csv", "parquet"), ("parquet", "csv"),
    ("txt", "tsv"),
])
def test_batch_formats(capsys, tmp_path, source, target):
    table = source_table()
    src, dst = tmp_path / f"in.{source}", tmp_path / f"out.{target}"
    write_input(table, src)
    code, out, err = run_main(capsys, "batch", str(src), "-o", str(dst), "--chunk-size", "4", "-k", "2")
    assert code == 0, err
    if source == "txt":  # one name a line, stripped, blank lines skipped, in a column called "name"
        table = pd.DataFrame({"name": [n.strip() for n in NAMES if n.strip()]}, dtype="str")
    expected = namecls.annotate(table, column="name" if source == "txt" else "surname", k=2)
    if target != "parquet" and source != "txt":
        expected = defused_notes(expected)
    bar = err.split("\r")[-1]  # the progress bar's last state: every name, and the rate
    assert out == "" and f"{len(expected)} names" in bar.replace(f"/{len(expected)}", " names") and "names/s" in bar
    assert_same_table(read_output(dst), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name])  # no part file left


def test_parquet_output_keeps_types(capsys, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"n": pa.array([1, None, 3], pa.int32()), "name": ["Qin", None, "Smith"],
                             "when": pa.array([1, 2, 3], pa.timestamp("s"))}), src)
    code, _, err = run_main(capsys, "batch", str(src), "-o", str(tmp_path / "out.parquet"), "--chunk-size", "2")
    assert code == 0, err
    schema, source = pq.read_schema(tmp_path / "out.parquet"), pq.read_schema(src)
    assert [schema.field(name).type for name in source.names] == source.types  # int32 stays int32, …
    assert schema.field("probability").type == pa.float64() and schema.field("low_confidence").type == pa.bool_()
    out = pq.read_table(tmp_path / "out.parquet").to_pydict()
    assert out["n"] == [1, None, 3] and out["top1"][1] is None
    assert out["error"] == [None, "name is empty", None]  # a missing name is an empty one


@pytest.mark.slow
def test_stdin_to_stdout(namecls_script, tmp_path):
    table = source_table()
    result = run("batch", "-", "--column", "surname", "--chunk-size", "5", "--model", "rnn", "--no-progress",
                 stdin=table.to_csv(index=False))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    (tmp_path / "out.csv").write_text(result.stdout, encoding="utf-8")
    assert_same_table(read_output(tmp_path / "out.csv"), defused_notes(namecls.annotate(table, "surname", "rnn")))

    names = "Qin\n\n  Nakamura \nBrady\n"
    result = run("batch", "-", "--format", "txt", "-k", "1", "--no-progress", stdin=names)
    assert result.returncode == 0, result.stderr
    (tmp_path / "out.tsv").write_text(result.stdout, encoding="utf-8")
    expected = namecls.annotate(pd.DataFrame({"name": ["Qin", "Nakamura", "Brady"]}, dtype="str"), k=1)
    assert_same_table(read_output(tmp_path / "out.tsv"), expected)


def test_an_empty_table_gives_the_header(capsys, tmp_path):
    (tmp_path / "in.csv").write_text("id,name\n", encoding="utf-8")
    code, out, err = run_main(capsys, "batch", str(tmp_path / "in.csv"), "--no-progress")
    assert code == 0, err
    assert out.strip() == ",".join(["id", "name", *bulk.answer_dtypes(3)])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_batch_streams_in_chunks(capsys, tmp_path, monkeypatch):
    """200,000 names with --chunk-size 2,000: 100 chunks go through annotate one after another, and none outlives
    the next one (each is written, then dropped, before the next is read)."""
    n, chunk = 200_000, 2_000
    pool = ["Li", "Wu", "Ng", "Ito", "Kim", "", "Roe", "😀"]  # short names: the model's time is not the point here
    src = tmp_path / "big.csv"
    pd.DataFrame({"id": range(n), "name": [pool[i % len(pool)] for i in range(n)]}).to_csv(src, index=False)
    sizes, alive, most_alive = [], set(), []
    real_annotate = bulk.annotate

    def counting_annotate(frame, *args, **kwargs):
        if len(frame):
            alive.add(id(frame))
            weakref.finalize(frame, alive.discard, id(frame))
            sizes.append(len(frame))
            most_alive.append(len(alive))
        return real_annotate(frame, *args, **kwargs)

    monkeypatch.setattr(bulk, "annotate", counting_annotate)
    code, _, err = run_main(capsys, "batch", str(src), "-o", str(tmp_path / "out.csv"), "--chunk-size", str(chunk),
                            "--model", "rnn", "-k", "1")
    assert code == 0, err
    assert sizes == [chunk] * (n // chunk)
    assert max(most_alive) <= 2, most_alive  # the chunk being annotated, and the one before it until it is freed
    out = pd.read_csv(tmp_path / "out.csv", usecols=["id", "name", "top1"], dtype=str, keep_default_na=False)
    assert out["id"].tolist() == [str(i) for i in range(n)]
    assert out["top1"].iloc[:len(pool)].tolist() == [top1(name) for name in pool]


def top1(name: str) -> str:
    """The rnn's top language for ``name`` from the Classifier, "" for a name it cannot read."""
    try:
        return namecls.load("rnn").predict(name, 1)[0][0]
    except ValueError:
        return ""


# ---------------------------------------------------------------------------------------------------------------
# bad input: one line, exit code 2, no traceback, no file left behind


def write_bad_files(folder: Path) -> None:
    """The files the bad-input cases read, each wrong in one way."""
    for name in ("people.csv", "people.xlsx"):
        (folder / name).write_text("id,surname\n1,Qin\n", encoding="utf-8")
    (folder / "codes.csv").write_text("id,code\n1,X\n", encoding="utf-8")
    (folder / "latin1.csv").write_bytes("name\nMüller\n".encode("latin-1"))
    (folder / "broken.parquet").write_bytes(b"PAR1 not really")
    (folder / "ragged.csv").write_text('name\n"Qin\n', encoding="utf-8")
    (folder / "answered.csv").write_text("name,top1\nQin,x\n", encoding="utf-8")


# (arguments, what the one line must say); paths are relative to the folder of write_bad_files
BAD_INPUTS = [
    (["batch", "people.csv", "--column", "family"], "no column 'family' (the columns are: id, surname)"),
    (["batch", "codes.csv"], "has no column headed name, surname"),
    (["batch", "latin1.csv"], "latin1.csv: it is not UTF-8 text"),
    (["batch", "broken.parquet"], "cannot read broken.parquet"),
    (["batch", "ragged.csv"], "cannot read ragged.csv"),
    (["batch", "answered.csv"], "already has answer columns (top1)"),
    (["batch", "people.csv", "--model", "lstm"], "invalid choice: 'lstm'"),
    (["predict", "Qin", "--model", "lstm"], "invalid choice: 'lstm'"),
    (["trace", "Qin", "--model", "lstm"], "invalid choice: 'lstm'"),
    (["predict", "Qin", "--prior", "flat"], "argument --prior: invalid choice: 'flat' (choose from 'lists', 'equal')"),
    (["batch", "people.csv", "--prior", "uniform"], "invalid choice: 'uniform'"),
    (["batch", "people.xlsx"], "unknown extension '.xlsx'"),
    (["batch", "people.csv", "-o", "out.json"], "unknown extension '.json'"),
    (["batch", "absent.csv"], "no such file: absent.csv"),
    (["batch", "."], ". is not a file"),
    (["batch", "people.csv", "-o", "nowhere/out.csv"], "there is no folder 'nowhere'"),
    (["batch", "people.csv", "-o", "./people.csv"], "would overwrite the input"),
    (["batch", "people.csv", "-k", "19"], "k must be a whole number from 1 to 18"),
    (["batch", "people.csv", "--chunk-size", "0"], "must be at least 1"),
    (["predict", "Qin", "😀"], "name '😀': "),
    (["trace", ""], "name '': name is empty"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(args) for args, _ in BAD_INPUTS])
def test_bad_input_one_line_exit_2(namecls_script, tmp_path, args, message):
    write_bad_files(tmp_path)
    before = sorted(tmp_path.iterdir())
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("namecls") and message in lines[0], result.stderr
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_a_failure_half_way_leaves_the_old_output(capsys, tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_bytes(("name\n" + "Qin\n" * 50).encode() + b"M\xfcller\n")  # not UTF-8 after 50 good rows
    dst.write_text("the previous output\n", encoding="utf-8")
    code, out, err = run_main(capsys, "batch", str(src), "-o", str(dst), "--chunk-size", "10", "--no-progress")
    assert code == 2 and out == "" and err.strip() == "namecls: error: cannot read " + str(src) + \
        ": it is not UTF-8 text (save it as UTF-8)"
    assert dst.read_text(encoding="utf-8") == "the previous output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


# ---------------------------------------------------------------------------------------------------------------
# batch: a ragged CSV row is refused (pandas shifted a long first row into an index and padded short rows with ""),
# naming its line; nothing is written


RAGGED = [  # (suffix, the input's text, what the one line must say after "cannot read <input>: ")
    (".csv", "id,name\n1,Nguyen,extra\n2,Smith\n3,Tanaka\n", "line 2 has 3 fields, the header has 2 (quote a field "
     "that holds a comma)"),  # the attack: id became the index, Smith and Tanaka "name is empty"
    # a short row after a quoted comma, a blank line, a field over two lines and a row whose last field is empty
    (".csv", 'id,name\n1,"Smith, Jr."\n\n2,"multi\nline"\n4,\n5\n6,Tanaka\n', "line 7 has 1 field, the header has 2"),
    (".tsv", "id\tname\n1\tQin\n2\tLi\tx\n", "line 3 has 3 fields, the header has 2 (quote a field that holds a tab)"),
    (".csv", "id,name\n" + "".join(f"{i},Qin\n" for i in range(1, 6)) + "6,Li,x\n",  # after two chunks went out
     "line 7 has 3 fields, the header has 2 (quote a field that holds a comma)"),
]


def test_a_ragged_row_is_refused_with_its_line(capsys, tmp_path, monkeypatch):
    for i, (suffix, text, message) in enumerate(RAGGED):
        src, dst = tmp_path / f"in{i}{suffix}", tmp_path / f"out{i}.csv"
        src.write_text(text, encoding="utf-8")
        dst.write_text("the previous output\n", encoding="utf-8")
        code, out, err = run_main(capsys, "batch", str(src), "-o", str(dst), "--chunk-size", "2", "--no-progress")
        assert (code, out, err) == (2, "", f"namecls: error: cannot read {src}: {message}\n")
        assert dst.read_text(encoding="utf-8") == "the previous output\n"  # not replaced, not touched
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"in{i}{suffix}" for i, (suffix, _, _) in enumerate(RAGGED)] + [f"out{i}.csv" for i in range(len(RAGGED))])

    with open(tmp_path / "in0.csv", encoding="utf-8") as stdin:  # the attack as `printf … | namecls batch -`
        monkeypatch.setattr(sys, "stdin", stdin)
        code, out, err = run_main(capsys, "batch", "-", "--no-progress")
    assert (code, out, err) == (2, "", f"namecls: error: cannot read stdin: {RAGGED[0][2]}\n")


def test_well_formed_rows_are_read_right(capsys, tmp_path):
    """Quoted commas, a field over two lines, blank lines and an empty last field keep every row in its columns;
    repeated or empty header cells are named as pandas names them."""
    src = tmp_path / "in.csv"
    src.write_text('id,name\r\n1,"Smith, Jr."\r\n\r\n2,"multi\nline"\n4,\n5,Tanaka\n\n', encoding="utf-8")
    code, out, err = run_main(capsys, "batch", str(src), "-o", str(tmp_path / "out.csv"), "--chunk-size", "3", "-k",
                              "1", "--no-progress")
    assert code == 0 and out == "", err
    table = pd.DataFrame({"id": ["1", "2", "4", "5"], "name": ["Smith, Jr.", "multi\nline", "", "Tanaka"]}, dtype="str")
    assert_same_table(read_output(tmp_path / "out.csv"), namecls.annotate(table, k=1))

    (tmp_path / "dup.csv").write_text("name,name,\nQin,Li,x\n", encoding="utf-8")
    code, out, err = run_main(capsys, "batch", str(tmp_path / "dup.csv"), "-k", "1", "--no-progress")
    assert code == 0, err
    assert out.splitlines()[0].split(",")[:3] == ["name", "name.1", "Unnamed: 2"]


# ---------------------------------------------------------------------------------------------------------------
# batch: formula-like cells of a text output are defused (as the Batch tab's download), unless --raw-cells


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+Smith", "-x", "@x", "\tTab", "\rCR", "  =1+1", "\u200b@x",
            "＝1+1", "Smith", "O'Neil", "a=b", "Smith\r=1+1", ""]
DEFUSED = ["'" + cell for cell in FORMULAS[:9]] + FORMULAS[9:]  # a CR inside a cell: quoted, not a row break


def test_formula_cells_are_defused_unless_raw_cells(capsys, tmp_path):
    src = tmp_path / "in.csv"
    table = pd.DataFrame({"name": FORMULAS, "note": FORMULAS[::-1], "@head": "x"}, dtype="str")
    table.to_csv(src, index=False, lineterminator="\r\n")  # (with \n, pandas would not quote the \r)
    handler = signal.getsignal(signal.SIGTERM)
    for target, flags in [("out.csv", []), ("out.tsv", []), ("raw.csv", ["--raw-cells"]), ("out.parquet", [])]:
        code, _, err = run_main(capsys, "batch", str(src), "-o", str(tmp_path / target), "-k", "1", "--no-progress",
                                *flags)
        assert code == 0, err
        got = read_output(tmp_path / target)
        if target in ("out.csv", "out.tsv"):
            assert list(got.columns[:3]) == ["name", "note", "'@head"]
            assert got["name"].tolist() == DEFUSED and got["note"].tolist() == DEFUSED[::-1]
            assert got["normalized"].str.startswith(("=", "+", "-", "@")).sum() == 0
        else:  # raw: exactly the library's answer
            assert_same_table(got, namecls.annotate(table, k=1))
    assert signal.getsignal(signal.SIGTERM) == handler  # main put the caller's SIGTERM handler back

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"name": pa.array(FORMULAS).dictionary_encode()}), tmp_path / "dict.parquet")
    code, _, err = run_main(capsys, "batch", str(tmp_path / "dict.parquet"), "-o", str(tmp_path / "dict.csv"), "-k",
                            "1", "--no-progress")
    assert code == 0, err
    assert read_output(tmp_path / "dict.csv")["name"].tolist() == DEFUSED  # a dictionary-encoded column is text too


# ---------------------------------------------------------------------------------------------------------------
# batch: SIGTERM, like Ctrl-C, removes the partial output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_removes_the_partial_output(tmp_path):
    src, dst = tmp_path / "big.csv", tmp_path / "out.csv"
    pd.DataFrame({"name": ["Nakamura", "O'Connell", "Ślusàrski", "Li"] * 50_000}).to_csv(src, index=False)
    process = subprocess.Popen([sys.executable, "-m", "namecls", "batch", str(src), "-o", str(dst), "--no-progress",
                                "--chunk-size", "1000"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    part = tmp_path / f".out.csv.{process.pid}.part"
    try:
        deadline = time.monotonic() + 120
        while not (part.exists() and part.stat().st_size):  # the first chunk is written: annotating the next ones
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no part file after 120 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    assert out == "" and err.splitlines()[-1] == "namecls: terminated", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]  # no part file, no output
