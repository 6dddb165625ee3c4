"""Bounded inputs (issue 12): what ``k``, ``model`` and ``names`` may be, one normalisation per name, formula
defusing in the exported CSV, and ``train.py --out`` checked before any training.

Service-level: no server here (``tests/test_hostile.py`` sends the same values over gradio_client and raw REST).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

import namecls.data.names
from namecls.serving import service

from conftest import run_train

K_MESSAGE = "k must be a whole number from 1 to 18"


@pytest.fixture(scope="module")
def models():
    return service.load_models()


# ---------------------------------------------------------------------------------------------------------------
# k: an int from 1 to 18; not a bool, a float, a string or a huge number


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 3, 18, np.int64(3)])
def test_integer_k_is_accepted(models, k):
    assert len(service.predict(models, "Nguyen", "gru", k)) == int(k)
    assert len(service.predict_batch(models, ["Nguyen"], "gru", k)[0]["top_k"]) == int(k)


@pytest.mark.parametrize("k", [10**400, -10**400, 2**63, True, False, "1_0", "1e1", "3", " 3", 3.0, 1e1, 2.5,
                               float("nan"), float("inf"), -0.0, None, [3], {"k": 3}, b"3", 3 + 0j],
                         ids=lambda k: repr(k)[:12])
def test_other_k_is_refused_with_a_clear_message(models, k):
    for call in (lambda: service.predict(models, "Nguyen", "gru", k),
                 lambda: service.predict_details(models, "Nguyen", "gru", k),
                 lambda: service.predict_batch(models, ["Nguyen"], "gru", k)):
        with pytest.raises(ValueError, match=K_MESSAGE) as info:
            call()
        assert len(str(info.value)) < 200  # a huge k is not echoed back whole


def test_check_k_returns_a_plain_int():
    assert type(service.check_k(np.int64(5), 18)) is int and service.check_k(np.int64(5), 18) == 5


# ---------------------------------------------------------------------------------------------------------------
# model: "rnn" or "gru" (any case), nothing around it


@pytest.mark.parametrize("model", ["rnn", "gru", "GRU", "Rnn"])
def test_model_names_in_any_case(models, model):
    assert len(service.predict(models, "Nguyen", model, 3)) == 3


@pytest.mark.parametrize("model", ["gru\n", " gru ", "\tRnn", "gru\x00", "gr u", "", None, 3, ["gru"], "GRU" * 1000,
                                   "ｇｒｕ", "lstm"])
def test_other_models_are_refused_naming_the_choices(models, model):
    with pytest.raises(ValueError, match="choose one of 'rnn', 'gru'") as info:
        service.predict(models, "Nguyen", model, 3)
    assert len(str(info.value)) < 200
    with pytest.raises(ValueError, match="choose one of"):
        service.predict_batch(models, ["Nguyen"], model, 3)
    with pytest.raises(ValueError, match="choose one of"):
        service.trace(models, "Nguyen", model)


# ---------------------------------------------------------------------------------------------------------------
# names of /predict_batch: a list (or tuple) of strings


@pytest.mark.parametrize("names, shown", [({"names": ["Qin"]}, "dict"), ("Nguyen", "str"), (None, "NoneType"),
                                          (b"Qin", "bytes"), ({"Qin"}, "set"), (3, "int")])
def test_names_must_be_a_list(models, names, shown):
    with pytest.raises(ValueError, match=f"names must be a list of strings, not {shown}"):
        service.predict_batch(models, names, "gru", 3)


def test_a_non_string_name_gets_its_own_row(models):
    rows = service.predict_batch(models, ("Qin", None, 7, ["Li"], 10**5000, "x" * 10_000), "gru", 3)
    assert rows[0]["error"] is None
    for row in rows[1:]:
        assert row["error"] and row["top1"] is None and row["top_k"] == {} and len(row["name"]) <= 100
    assert [r["name"] for r in rows[1:4]] == ["None", "7", "['Li']"]
    assert all("must be a string" in r["error"] for r in rows[1:5]) and "too long" in rows[5]["error"]


# ---------------------------------------------------------------------------------------------------------------
# One normalisation per name: a bad name costs no more than a good one


def _count_unidecode(monkeypatch) -> list[str]:
    calls = []
    real = namecls.data.names.unidecode

    def counting(text):
        calls.append(text)
        return real(text)

    monkeypatch.setattr(namecls.data.names, "unidecode", counting)
    return calls


def test_a_bad_batch_normalises_each_name_once(models, monkeypatch):
    calls = _count_unidecode(monkeypatch)
    bad = ["😀" * 5, "🇫🇷🇩🇪", "١٢٣٤", "½½%", "𝟘𝟙"]
    rows = service.predict_batch(models, bad, "gru", 3)
    assert all(row["error"] for row in rows)
    assert len(calls) == sum(len(name) for name in bad)  # unidecode once per character of each name, no more


def test_bad_names_cost_no_more_unidecode_than_good_ones(models, monkeypatch):
    calls = _count_unidecode(monkeypatch)
    good = ["Ślusàrski", "Müller", "Иванов", "Đặng", "Ñúñez"]
    bad = ["😀" * len(name) for name in good]  # as many characters to transliterate
    service.predict_batch(models, good, "gru", 3)
    n_good, calls[:] = len(calls), []
    service.predict_batch(models, bad, "gru", 3)
    assert len(calls) == n_good


@pytest.mark.parametrize("name", ["😀😀", "---", "Ślusàrski", "1234", " ", "a" * 65])
def test_check_name_normalises_once(monkeypatch, name):
    calls = _count_unidecode(monkeypatch)
    try:
        service.check_name(name)
    except ValueError:
        pass
    assert len(calls) <= len(name)


def test_check_normalized_takes_a_normalisation(models):
    norm = namecls.data.names.normalize("Ślusàrski")
    assert namecls.data.names.check_normalized(norm) is norm
    with pytest.raises(ValueError, match="no letters"):
        namecls.data.names.check_normalized(namecls.data.names.normalize("😀"))
    with pytest.raises(ValueError, match="too long"):
        namecls.data.names.check_normalized(namecls.data.names.normalize("a" * 65))
    with pytest.raises(ValueError, match="name is empty"):
        namecls.data.names.check_normalized(namecls.data.names.normalize(" \t"))


@pytest.mark.parametrize("name, message", [
    ("", "name is empty"), ("   ", "name is empty"), ("x" * 300, "too long"), ("a" * 65, "too long"),
    ("12345", "no letters"), ("😀", "no letters"), ("---", "no letters the models can read"),
    (None, "must be a string"),
])
def test_batch_rows_carry_the_same_messages_as_single_calls(models, name, message):
    with pytest.raises(ValueError, match=message) as info:
        service.predict(models, name, "gru", 3)
    (row,) = service.predict_batch(models, [name], "gru", 3)
    assert row["error"] == str(info.value)


@pytest.mark.parametrize("name", ["\ud800Smith", "Smith\udfff", "Li\ud83d"], ids=repr)
def test_a_lone_surrogate_is_refused_everywhere_with_an_answer_that_can_be_sent(models, name):
    """Half a UTF-16 pair (valid in JSON as "\\ud800") is not text: every call refuses it with the same message, and
    what comes back (the message, a batch row) can be encoded as UTF-8 — the server sends it as JSON."""
    message = "name is not valid text"
    calls = [lambda: service.predict(models, name, "gru", 3),
             lambda: service.predict_details(models, name, "gru", 3),
             lambda: service.trace(models, name, "rnn"),
             lambda: service.check_name(name)]
    for call in calls:
        with pytest.raises(ValueError, match=message) as info:
            call()
        str(info.value).encode("utf-8")  # no surrogate in the message
    rows = service.predict_batch(models, [name, "Smith"], "gru", 3)
    assert rows[0]["error"].startswith(message) and rows[0]["top_k"] == {}
    assert rows[1]["error"] is None and rows[1]["top1"]
    assert "\ufffd" in rows[0]["name"]
    json.dumps(rows, ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Formula defusing in the exported CSV

FORMULAS = ["=SUM(1)", "+1", "-1", "@SUM(1)", "\t=1", "\r=1", "＝SUM(1)", "＋1", "－1", "＠SUM(1)", " =SUM(1)",
            "\t＝SUM(1)", "\u3000=1", "\u00a0+1", "\n-1", "﹦1", "﹫1"]


@pytest.mark.parametrize("value", FORMULAS, ids=repr)
def test_formula_like_cells_are_defused(value):
    assert service._defuse(value) == "'" + value


@pytest.mark.parametrize("value", ["Nguyen", "O'Neill", "Li-Qin", "1=1", "", "'=1", "😀=1"], ids=repr)
def test_ordinary_cells_are_left_alone(value):
    assert service._defuse(value) == value


def test_csv_export_defuses_full_width_signs():
    table = pd.DataFrame({"name": ["＝SUM(1)", " =SUM(1)", "Nguyen"], "top-1": ["－1", "＠A1", "Vietnamese"]})
    back = pd.read_csv(service.write_csv(table), keep_default_na=False)
    assert back["name"].tolist() == ["'＝SUM(1)", "' =SUM(1)", "Nguyen"]
    assert back["top-1"].tolist() == ["'－1", "'＠A1", "Vietnamese"]


# ---------------------------------------------------------------------------------------------------------------
# train.py --out: an unusable folder fails at once, before any training


@pytest.mark.slow
@pytest.mark.parametrize("where", ["file", "under-a-file", "proc"])
def test_unusable_out_fails_in_seconds_before_training(data_dir, tmp_path, where):
    """A full training run on the real data (minutes) is asked for: the answer must come before it starts."""
    (tmp_path / "a-file").write_text("not a folder\n")
    out = {"file": tmp_path / "a-file", "under-a-file": tmp_path / "a-file" / "checkpoints",
           "proc": "/proc/namecls-checkpoints"}[where]
    start = time.monotonic()
    result = run_train("--data-dir", str(data_dir), "--out", str(out), "--model", "rnn", "--threads", "1",
                       "--no-progress", timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert elapsed < 15
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and str(out) in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "epoch" not in result.stdout + result.stderr
    assert "parameters" not in result.stdout + result.stderr  # experiment.run's first log line: no model was built
    assert (tmp_path / "a-file").read_text() == "not a folder\n"


@pytest.mark.slow
def test_out_check_leaves_no_folder_behind(tmp_path):
    """The check creates nothing: a missing data folder still fails with no --out folder made."""
    out = tmp_path / "new" / "checkpoints"
    result = run_train("--data-dir", str(tmp_path / "no-such-folder"), "--dry-run", "--out", str(out), timeout=60)
    assert result.returncode != 0 and "--data-dir" in result.stderr
    assert not (tmp_path / "new").exists()
