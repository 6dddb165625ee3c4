"""The story of a trace (namecls.explain.story): every number in it is read off the trace, checked here by recomputing
what each sentence claims from the trace's arrays and the classifier's own calls."""

from __future__ import annotations

import re

import numpy as np
import pytest

import namecls
from namecls.explain import story as st

# Compares the committed checkpoints' numbers across two computations: .ci/run reruns it under emulated CPUs.
pytestmark = pytest.mark.recorded

NAMES = ["Nakamura", "Yilmaz", "Smith", "Q", "Nguyen", "Demirkan", "O'Connell", "Zz", "Gudmundsdottir"]


@pytest.fixture(scope="module")
def committed():
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


def test_lead_from_is_the_start_of_the_final_answers_last_run():
    rng = np.random.default_rng(0)
    for _ in range(200):
        T = int(rng.integers(1, 9))
        probs = rng.dirichlet(np.ones(3), size=T)
        top = probs.argmax(1)
        expected = next(t for t in range(T) if all(top[u] == top[-1] for u in range(t, T)))
        assert st.lead_from(probs) == expected


def test_percentages_are_honest_near_zero_and_one():
    assert st._pct(0.0004) == "<0.1%" and st._pct(0.9996) == ">99.9%"
    assert st._pct(0.042) == "4.2%" and st._pct(0.5) == "50%" and st._pct(0.996) == "99.6%"


def _percentages(trace, clf) -> set[str]:
    """Every percentage the story may print: each prefix's probabilities, the uniform start, and the final
    answer's probability without each letter."""
    values = [1 / len(clf.labels), *trace.probs.ravel().tolist()]
    final = trace.probs[-1, trace.target]
    if trace.deletion is not None:
        values += (final / np.exp(trace.deletion)).tolist()
    return {st._pct(v) for v in values}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", NAMES)
def test_every_claim_is_read_off_the_trace(committed, kind, name):
    clf = committed[kind]
    trace = clf.trace(name)
    sentences = trace.story
    text = " ".join(sentences)
    assert 3 <= len(sentences) <= 6, sentences
    assert set(re.findall(r"[<>]?\d+(?:\.\d)?%", text)) <= _percentages(trace, clf)
    answer, final = clf.labels[trace.target], float(trace.probs[-1, trace.target])
    assert answer == clf.predict(name, 1)[0][0]
    # How sure it ends, and the set (the classifier's own predict_set).
    assert f"It ends at {answer}" in text and st._pct(final) in text
    the_set = clf.predict_set(name)
    if len(the_set) == 1:
        assert f"its prediction set holds {answer} alone" in text
    else:
        assert f"holds {len(the_set)} languages — " + st._languages(the_set) in text
    # The training lists (the classifier's own seen_as).
    seen = clf.seen_as(name)
    assert ("itself is in the training lists, as " + st._languages(seen, "and") in text) if seen else \
        ("is not in the training lists" in text)
    assert ("Its spelling is unusual" in text) == bool(clf.novelty_of(name)[1])
    if len(trace.chars) > 1:
        # The early lean: the top language after the first two letters.
        early = trace.probs[1]
        assert f"leaned to {clf.labels[int(early.argmax())]} ({st._pct(early.max())})" in sentences[0]
        # Where the answer took the lead: recomputed by brute force from predict on every prefix.
        text_ = trace.normalized.text
        tops = [clf.predict(text_[: t + 1], 1)[0][0] for t in range(len(text_))]
        lead = next(t for t in range(len(tops)) if all(x == answer for x in tops[t:]))
        if lead == 0:
            assert "led from the first letter to the last" in text
        elif lead == len(tops) - 1:
            assert f"took the lead from {tops[lead - 1]} only at the last letter" in text
        else:
            assert f"took the lead from {tops[lead - 1]} at the {st._ordinal(lead + 1)} letter" in text


def test_reading_and_deleting_disagree_only_when_they_name_different_letters(committed):
    clf = committed["gru"]
    for name in NAMES[:6]:
        trace = clf.trace(name)
        says = any(s.startswith("Deleting a letter tells a different story") for s in trace.story)
        differs = len(trace.chars) > 1 and int(np.argmax(trace.deletion)) != int(np.argmax(trace.attribution))
        assert says == differs, name


def test_a_one_letter_name_starts_from_every_language_alike(committed):
    trace = committed["rnn"].trace("Q")
    assert trace.story[0].startswith("Reading its one letter, the network moved")
    assert st._pct(1 / 18) in trace.story[0] and "every language alike" in trace.story[0]
