"""Property-based fuzzing of the input path: ``normalize``, ``validate``, ``predict``, ``trace``, ``predict_batch``.

Arbitrary Unicode (control characters, NUL, RTL and zero-width marks, emoji and ZWJ sequences, combining marks,
CJK, lone surrogates, 10,000-character strings) must give a valid result — finite probabilities summing to 1 — or
the documented ``ValueError``; nothing else (no other exception, no warning). The classifiers are the tiny
``train.py --dry-run`` checkpoints, so each example costs well under a millisecond.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unidecode import unidecode

import namecls
from namecls.serving import service
from namecls.data.names import ALPHABET, CHAR_TO_INDEX, MAX_NAME_LENGTH, Normalized, normalize, pad_batch, validate

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOSTILE = [
    "\x00", "\x01", "\x08", "\x1b", "\x1c", "\x7f", "\x85", "\u00a0", "\u2028", "\u3000", "\t", "\n", "\r", "\x0b",
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069", "\ufeff", "\ufffd",
    "\u0301", "\u0308", "\u0327", "\u20dd", "\U000e0041", "\U0010ffff", "\ud800", "\udfff",
    "😀", "👨‍👩‍👧", "🇫🇷", "🏳️‍🌈", "王", "김", "ア", "ﷺ", "ß", "İ", "ﬁ", "Ω", "Ⅻ", "①", "٣",
    "<", ">", "&", '"', "'", "{", "}", "$", "\\", "/", "%s", "{0}",
]
PIECE = st.one_of(st.sampled_from(HOSTILE), st.characters(), st.sampled_from(ALPHABET))
SHORT = st.one_of(st.text(max_size=40), st.lists(PIECE, max_size=40).map("".join),
                  st.text(alphabet=ALPHABET, min_size=55, max_size=75))  # around the 64-character limit


@st.composite
def long_text(draw):
    """A hostile pattern repeated up to exactly 1 … 10,000 characters (the lengths around the caps included)."""
    unit = "".join(draw(st.lists(PIECE, min_size=1, max_size=6)))
    n = draw(st.one_of(st.sampled_from([64, 65, 256, 257, 1000, 10_000]), st.integers(1, 10_000)))
    return (unit * (n // len(unit) + 1))[:n]


NAMES = st.one_of(SHORT, SHORT, long_text())


def reference_normalize(name: str) -> Normalized:
    """normalize() as first written (one unidecode call per character): the fast path must not change a result."""
    kept, dropped = [], []
    for char in name:
        if char.isspace():
            kept.append(" ")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unidecode warns about lone surrogates (and returns "")
            transliterated = unidecode(char)
        letters = [c for c in transliterated if c in CHAR_TO_INDEX]
        kept.extend(letters)
        if not letters or len(letters) < len(transliterated.replace(" ", "")):
            dropped.append(char)
    return Normalized(original=name, text=" ".join("".join(kept).split()), dropped=tuple(dropped))


@pytest.fixture(scope="module")
def classifiers(dry_run_dir):
    return {kind: namecls.load(dry_run_dir / kind) for kind in ("rnn", "gru")}


def outcome(fn, *args):
    """fn(*args), or the ValueError it raised; any other exception, or a warning, fails the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return fn(*args)
        except ValueError as err:
            assert str(err), "a ValueError must say what is wrong"
            return err
        finally:  # (ResourceWarnings come from other tests' objects being garbage-collected meanwhile)
            caught = [w for w in caught if not issubclass(w.category, ResourceWarning)]
            assert not caught, [str(w.message) for w in caught]


def check_distribution(pairs, labels, k):
    assert len(pairs) == min(k, len(labels))
    assert len({lang for lang, _ in pairs}) == len(pairs) and all(lang in labels for lang, _ in pairs)
    probs = [p for _, p in pairs]
    assert all(isinstance(p, float) and math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs)
    assert probs == sorted(probs, reverse=True)
    if k >= len(labels):
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# normalize / validate


@pytest.mark.slow
@FUZZ
@given(NAMES)
def test_normalize_never_raises_and_keeps_to_the_alphabet(name):
    norm = outcome(normalize, name)
    assert norm == reference_normalize(name)
    assert norm.original is name
    assert set(norm.text) <= set(ALPHABET)
    assert norm.text == norm.text.strip() and "  " not in norm.text
    assert all(c in name for c in norm.dropped)
    again = normalize(norm.text)  # idempotent: a normalised name is read as typed
    assert again.text == norm.text and again.dropped == ()


@FUZZ
@given(NAMES)
def test_validate_returns_a_readable_name_or_raises_value_error(name):
    result = outcome(validate, name)
    if isinstance(result, ValueError):
        assert any(word in str(result) for word in ("empty", "too long", "no letters", "not valid text"))
        return
    assert 1 <= len(result.text) <= MAX_NAME_LENGTH
    assert result.text.strip(" .,:;-'")
    x, lengths = pad_batch([result.text])
    assert x.shape == (1, len(result.text)) and lengths.tolist() == [len(result.text)]


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=10),
                 st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=2), st.integers())))
def test_validate_refuses_what_is_not_a_string(value):
    with pytest.raises(ValueError, match="string"):
        validate(value)


# ---------------------------------------------------------------------------------------------------------------
# predict / trace / predict_batch on both models


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@FUZZ
@given(name=NAMES, k=st.sampled_from([1, 3, 18, 0, -2, 40]))
def test_predict_gives_a_distribution_or_value_error(classifiers, kind, name, k):
    clf = classifiers[kind]
    valid = outcome(validate, name)
    result = outcome(clf.predict, name, k)
    if isinstance(valid, ValueError):
        assert isinstance(result, ValueError) and str(result) == str(valid)
        return
    check_distribution(result, clf.labels, max(1, min(k, len(clf.labels))))
    check_distribution(clf.predict(name, len(clf.labels)), clf.labels, len(clf.labels))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@FUZZ
@given(name=NAMES)
def test_trace_gives_one_distribution_per_character_or_value_error(classifiers, kind, name):
    clf = classifiers[kind]
    valid = outcome(validate, name)
    trace = outcome(clf.trace, name)
    if isinstance(valid, ValueError):
        assert isinstance(trace, ValueError) and str(trace) == str(valid)
        return
    T, C = len(valid.text), len(clf.labels)
    assert trace.chars == list(valid.text) and trace.name is name
    assert trace.probs.shape == (T, C) and trace.layers.shape[1] == T
    assert np.isfinite(trace.probs).all() and np.isfinite(trace.layers).all()
    assert (trace.probs >= 0).all()
    np.testing.assert_allclose(trace.probs.sum(axis=1), 1.0, atol=1e-5)
    final = dict(clf.predict(name, C))
    assert dict(zip(clf.labels, trace.probs[-1].tolist())) == pytest.approx(final, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@FUZZ
@given(names=st.lists(st.one_of(SHORT, st.sampled_from(["Nguyen", "Qin", "O'Neill", "Ślusàrski"])), max_size=12),
       batch_size=st.sampled_from([1, 3, 512]))
def test_predict_batch_equals_predict_or_names_the_bad_row(classifiers, kind, names, batch_size):
    clf = classifiers[kind]
    bad = [i for i, name in enumerate(names) if isinstance(outcome(validate, name), ValueError)]
    result = outcome(clf.predict_batch, names, 18, batch_size)
    if bad:
        assert isinstance(result, ValueError) and str(result).startswith(f"name #{bad[0]} ")
        return
    assert len(result) == len(names)
    for name, row in zip(names, result):
        check_distribution(row, clf.labels, 18)
        assert dict(row) == pytest.approx(dict(clf.predict(name, 18)), abs=1e-5)


@FUZZ
@given(names=st.lists(NAMES, max_size=8), model=st.sampled_from(["rnn", "gru"]))
def test_service_batch_reports_every_bad_row_in_place(classifiers, names, model):
    """The app's batch path never fails on a name: bad rows carry an error, good rows a full top-k."""
    rows = service.predict_batch(classifiers, names, model, 3)
    assert len(rows) == len(names)
    for name, row in zip(names, rows):
        valid = outcome(service.check_name, name)
        if isinstance(valid, ValueError):
            assert row["error"] and row["top1"] is None and row["top_k"] == {}
        else:
            assert row["error"] is None and row["normalized"] == valid.text
            check_distribution(list(row["top_k"].items()), classifiers[model].labels, 3)
            assert row["top1"] == next(iter(row["top_k"]))


@pytest.mark.slow
@FUZZ
@given(name=NAMES, model=st.sampled_from(["rnn", "gru"]))
def test_service_trace_is_plain_json_or_value_error(classifiers, name, model):
    import json

    result = outcome(service.trace, classifiers, name, model)
    if isinstance(result, ValueError):
        return
    text = json.dumps(result, allow_nan=False)  # finite, JSON-able
    assert json.loads(text)["chars"] == list(result["normalized"])
