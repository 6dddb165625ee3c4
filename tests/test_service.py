"""The app's endpoint logic (namecls.serving.service) without a server: checked inputs, JSON-able outputs, batch
files."""

import csv
import io
import json
import re

import pandas as pd
import pytest

from namecls.serving import service

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded


@pytest.fixture(scope="module")
def models():
    return service.load_models()


@pytest.mark.parametrize("model", ["rnn", "gru", "GRU", "Rnn"])
def test_predict_returns_k_sorted_probabilities(models, model):
    top = service.predict(models, "Nguyen", model, 18)
    assert len(top) == 18 and set(top) == set(models["gru"].labels)
    assert sum(top.values()) == pytest.approx(1.0, abs=1e-4)
    assert list(top.values()) == sorted(top.values(), reverse=True)
    assert all(type(p) is float for p in top.values())
    assert len(service.predict(models, "Nguyen", model, 3)) == 3


def test_trace_is_plain_lists_one_step_per_character(models):
    for kind, clf in models.items():
        out = service.trace(models, "Ślusàrski", kind)
        json.dumps(out)  # JSON-able
        assert out["normalized"] == "Slusarski" and out["chars"] == list("Slusarski")
        assert len(out["probs"]) == len(out["hidden"]) == 9
        assert all(abs(sum(row) - 1) < 1e-4 for row in out["probs"])
        assert len(out["hidden"][0]) == clf.config["model"]["hidden_size"]
        assert out["labels"] == clf.labels


@pytest.mark.parametrize("name, message", [
    ("", "empty"), ("   ", "empty"), ("x" * 300, "too long"), ("a" * 65, "too long"),
    ("12345", "no letters"), ("😀😀", "no letters"), ("---", "no letters"), (None, "string"), (42, "string"),
])
def test_bad_names_raise_clear_errors(models, name, message):
    with pytest.raises(ValueError, match=message):
        service.predict(models, name, "gru", 3)
    with pytest.raises(ValueError, match=message):
        service.trace(models, name, "rnn")


def test_emoji_message_does_not_show_an_empty_dropped_list():
    with pytest.raises(ValueError) as err:
        service.check_name("😀")
    assert "no letters" in str(err.value) and "''" not in str(err.value)


@pytest.mark.parametrize("k", [0, 19, -1, 2.5, 3.0, "3", True, "three", None])  # more in tests/test_inputs.py
def test_bad_k(models, k):
    with pytest.raises(ValueError, match="k must be"):
        service.predict(models, "Nguyen", "gru", k)


@pytest.mark.parametrize("model", ["lstm", " rnn ", "gru\n"])
def test_bad_model(models, model):
    with pytest.raises(ValueError, match=re.escape(f"unknown model {model!r}: choose one of 'rnn', 'gru'")):
        service.predict(models, "Nguyen", model, 3)


def test_predict_batch_reports_bad_rows_in_place(models):
    names = ["Nguyen", "", "12", "Ślusàrski", 7, "<script>alert(1)</script>"]
    rows = service.predict_batch(models, names, "gru", 2)
    json.dumps(rows)
    assert [r["error"] is None for r in rows] == [True, False, False, True, False, True]
    assert rows[3]["normalized"] == "Slusarski" and len(rows[3]["top_k"]) == 2
    assert rows[0]["top1"] == service.predict(models, "Nguyen", "gru", 1).popitem()[0]
    assert rows[0]["probability"] == pytest.approx(service.predict(models, "Nguyen", "gru", 1)[rows[0]["top1"]])
    assert rows[1]["error"] == "name is empty" and rows[1]["top_k"] == {}
    assert rows[4]["name"] == "7" and "string" in rows[4]["error"]


def test_predict_batch_limits(models):
    with pytest.raises(ValueError, match="too many"):
        service.predict_batch(models, ["Li"] * (service.MAX_BATCH_NAMES + 1), "gru", 3)
    with pytest.raises(ValueError, match="list of strings"):
        service.predict_batch(models, "Nguyen", "gru", 3)
    assert service.predict_batch(models, [], "gru", 3) == []


# ---------------------------------------------------------------------------------------------------------------
# Batch files


def test_txt_one_name_a_line(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("Nguyen\n\n  O'Neill  \nŚlusàrski\n", encoding="utf-8")
    assert service.read_names_file(path) == ["Nguyen", "O'Neill", "Ślusàrski"]


def test_csv_with_a_name_column(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("id,Surname,city\n1,Nguyen,Hanoi\n2,\"O'Neill, Jr\",Cork\n\n3,,Rome\n", encoding="utf-8-sig")
    assert service.read_names_file(path) == ["Nguyen", "O'Neill, Jr", ""]  # the empty cell becomes an error row


@pytest.mark.parametrize("text, is_csv", [
    ("Nguyen\n\n  O'Neill  \n \t\nŚlusàrski\n\n\n", False), ("\n\nQin", False), ("Qin", False), ("", False),
    ("id,Surname\n1,Nguyen\n,\n\n3,\n ,  \n4,Qin\n,\n\n", True), ("Nguyen\n\n", True)])
def test_blank_rows_counts_what_the_readers_skip_before_the_last_name(text, is_csv):
    names = service.parse_csv(text) if is_csv else service.parse_lines(text)
    rows = list(csv.reader(io.StringIO(text))) if is_csv else text.splitlines()
    def blank(row):
        return not (any(c.strip() for c in row) if is_csv else row.strip())
    last = max((i for i, row in enumerate(rows) if not blank(row)), default=-1)
    header = 1 if is_csv and rows and "surname" in [c.strip().lower() for c in rows[0]] else 0
    assert service.blank_rows(text, is_csv) == sum(blank(row) for row in rows[: last + 1])
    assert len(names) + service.blank_rows(text, is_csv) + header == last + 1  # every row up to the last: one or other


def test_csv_without_header_uses_the_first_column(tmp_path):
    path = tmp_path / "names.CSV"
    path.write_text("Nguyen,x\nQin\n", encoding="utf-8")
    assert service.read_names_file(path) == ["Nguyen", "Qin"]


@pytest.mark.parametrize("filename, content, message", [
    ("names.pdf", b"Nguyen", "not a .csv or .txt"),
    ("names.txt", b"Ng\x00uyen", "not a text file"),
    ("names.txt", "Müller".encode("latin-1"), "not UTF-8"),
    ("names.txt", b"x\n" * (service.MAX_BATCH_NAMES + 1), "too many"),
    ("names.csv", b"a" * (service.MAX_UPLOAD_BYTES + 1), "the limit is 1 MB"),
])
def test_bad_files(tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        service.read_names_file(path)


def test_csv_export_defuses_formulas(tmp_path):
    table = pd.DataFrame({"name": ["=HYPERLINK(1)", "Nguyen", "-Li"], "probability": [0.5, 0.25, 0.125]})
    path = service.write_csv(table)
    back = pd.read_csv(path)
    assert back["name"].tolist() == ["'=HYPERLINK(1)", "Nguyen", "'-Li"]
    assert back["probability"].tolist() == [0.5, 0.25, 0.125]


@pytest.mark.parametrize("call", [
    lambda m: service.check_k(0, 18), lambda m: service.check_coverage(2), lambda m: service.pick_model(m, "lstm"),
    lambda m: service.check_prior(m["gru"], "flat"), lambda m: service.check_name(""),
    lambda m: service.predict_batch(m, "Qin"), lambda m: m["gru"].predict("", 3),
    lambda m: m["gru"].edits("Qin", target="Klingon"),
], ids=["k", "coverage", "model", "prior", "name", "batch", "library name", "edits target"])
def test_what_a_caller_can_fix_is_an_input_error(models, call):
    from namecls import InputError

    with pytest.raises(InputError):
        call(models)
