"""One-letter variants (namecls.explain.edits), each checked against an independent computation: probabilities against
``Classifier.predict`` of the variant, the choice of edits against a brute force over every variant with
``predict``, descriptions by re-applying them to the name, the variant set against a generator written here, and
the shared-prefix pass against the plain batched pass."""

import re
import string

import numpy as np
import pytest

import namecls
from namecls.explain import edits
from namecls.data.names import MAX_NAME_LENGTH, normalize

# Compares the committed checkpoints' numbers across two computations: .ci/run reruns it under emulated CPUs.
pytestmark = pytest.mark.recorded

TOLERANCE = 1e-5  # float32 rounding of different batch shapes; the two passes agree with predict far closer
LONG_NAME = ("Vanderberghe" * 6)[:MAX_NAME_LENGTH]  # 64 letters: no insertion fits


@pytest.fixture(scope="module")
def committed():
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


def all_probs(clf, name: str) -> dict[str, float]:
    return dict(clf.predict(name, k=len(clf.labels)))


def variants_by_hand(text: str) -> set[str]:
    """Every one-letter variant of ``text`` by the module docstring's rules, written independently."""
    capital = text[0].isupper()
    out = set()
    for i, old in enumerate(text):
        for c in string.ascii_lowercase:
            out.add(text[:i] + (c.upper() if old.isupper() else c) + text[i + 1 :])
        rest = text[:i] + text[i + 1 :]
        if i == 0 and capital and rest[:1].islower():
            rest = rest[0].upper() + rest[1:]
        out.add(rest)
    if len(text) < MAX_NAME_LENGTH:
        for i in range(len(text) + 1):
            for c in string.ascii_lowercase:
                if i == 0 and capital:
                    out.add(c.upper() + text[0].lower() + text[1:])
                else:
                    out.add(text[:i] + c + text[i:])
    return {v for v in out if v != text and v and normalize(v).text == v and any(ch.isalpha() for ch in v)}


def apply_description(text: str, description: str) -> str:
    """The variant a description names, read back from its words (1-based letter numbers) and the case rules."""
    if m := re.fullmatch(r"(.) → ([a-zA-Z]) at letter (\d+)", description):
        old, new, i = m[1], m[2], int(m[3]) - 1
        assert text[i] == old
        return text[:i] + new + text[i + 1 :]
    if m := re.fullmatch(r"insert '([a-zA-Z])' (?:after letter (\d+)|before letter 1)", description):
        i = int(m[2]) if m[2] else 0
        if i == 0 and text[0].isupper():
            return m[1] + text[0].lower() + text[1:]
        return text[:i] + m[1] + text[i:]
    if m := re.fullmatch(r"delete '(.)' \(letter (\d+)\)", description):
        i = int(m[2]) - 1
        assert text[i] == m[1]
        rest = text[:i] + text[i + 1 :]
        if i == 0 and text[0].isupper() and rest[:1].islower():
            rest = rest[0].upper() + rest[1:]
        return rest
    raise AssertionError(f"unreadable description {description!r}")


def check_against_predict(clf, text: str, items: list[dict], target: str | None) -> None:
    """Every item's probabilities are predict's for its variant; its flags follow from them."""
    own_top = clf.predict(text, k=1)[0][0]
    language = own_top if target is None else target
    for item in items:
        probs = all_probs(clf, item["name"])
        ranked = clf.predict(item["name"], k=2)
        if ranked[0][1] - ranked[1][1] > TOLERANCE:  # a near tie may break either way between batch shapes
            assert item["top"] == ranked[0][0], item
        assert item["probability"] == pytest.approx(probs[item["top"]], abs=TOLERANCE), item
        assert item["target_probability"] == pytest.approx(probs[language], abs=TOLERANCE), item
        assert item["delta"] == pytest.approx(probs[language] - all_probs(clf, text)[language], abs=TOLERANCE)
        assert item["changes_answer"] == (item["top"] != own_top)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", ["Nakamura", "Yilmaz", "Smith", "O'Brien", "Ter Avest"])
@pytest.mark.parametrize("target", [None, "Korean"])
def test_every_returned_probability_is_predicts(committed, kind, name, target):
    clf = committed[kind]
    items = edits.one_letter_edits(clf, name, target=target, n=8)
    assert len(items) == 8
    check_against_predict(clf, name, items, target)
    assert {i["kind"] for i in items} <= set(edits.KINDS)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name,target", [("Kim", "Korean"), ("Lee", "Korean"), ("Ito", "Italian")])
def test_target_edits_are_the_best_by_brute_force(committed, kind, name, target):
    clf = committed[kind]
    n = 5
    items = edits.one_letter_edits(clf, name, target=target, n=n)
    everything = {v: all_probs(clf, v)[target] for v in variants_by_hand(name)}  # one predict per variant
    returned = [i["name"] for i in items]
    assert len(items) == n and len(set(returned)) == n and set(returned) <= set(everything)
    scores = [i["target_probability"] for i in items]
    assert all(a >= b - TOLERANCE for a, b in zip(scores, scores[1:]))  # most raised first
    last = scores[-1]
    for variant, p in everything.items():
        if variant not in returned:
            assert p <= last + TOLERANCE, (variant, p, last)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", ["Kim", "Smith", "Yilmaz"])
def test_answer_changing_edits_then_largest_moves_by_brute_force(committed, kind, name):
    clf = committed[kind]
    n = 6
    items = edits.one_letter_edits(clf, name, n=n)
    own_top, own_p = clf.predict(name, k=1)[0]
    changing, moving = {}, {}
    for v in variants_by_hand(name):
        probs = all_probs(clf, v)
        top = max(probs, key=probs.get)
        if top != own_top:
            changing[v] = probs[top]
        else:
            moving[v] = abs(probs[own_top] - own_p)
    flags = [i["changes_answer"] for i in items]
    assert flags == sorted(flags, reverse=True)  # the answer-changing ones come first
    assert len(items) == min(n, len(changing) + len(moving))
    shown_changing = [i for i in items if i["changes_answer"]]
    assert len(shown_changing) == min(n, len(changing))
    if shown_changing:
        tops = [i["probability"] for i in shown_changing]
        assert all(a >= b - TOLERANCE for a, b in zip(tops, tops[1:]))
        for v, p in changing.items():
            if v not in {i["name"] for i in shown_changing}:
                assert p <= tops[-1] + TOLERANCE, (v, p)
    shown_moving = [i for i in items if not i["changes_answer"]]
    if shown_moving:
        shifts = [abs(i["delta"]) for i in shown_moving]
        assert all(a >= b - TOLERANCE for a, b in zip(shifts, shifts[1:]))
        for v, shift in moving.items():
            if v not in {i["name"] for i in shown_moving}:
                assert shift <= shifts[-1] + TOLERANCE, (v, shift)


@pytest.mark.parametrize("name", ["Nakamura", "Smith", "McDonald", "O'Brien", "Ter Avest", "an", LONG_NAME])
def test_variant_set_and_descriptions(name):
    found = edits.one_letter_variants(name)
    strings = [e.variant for e in found]
    assert len(strings) == len(set(strings))  # repeats dropped
    assert set(strings) == variants_by_hand(name)
    for e in found:
        assert apply_description(name, e.description) == e.variant, e
        assert edits.apply_edit(name, e.kind, e.position, e.letter) == e.variant
    keys = [(edits.KINDS.index(e.kind), e.position, e.letter.lower()) for e in found]
    assert keys == sorted(keys)  # (kind, position, letter) order


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_descriptions_of_returned_edits(committed, kind):
    clf = committed[kind]
    for name in ("Nakamura", "Yilmaz"):
        for target in (None, "Korean", "Japanese"):
            for item in edits.one_letter_edits(clf, name, target=target, n=10):
                assert apply_description(name, item["edit"]) == item["name"], item


def test_case_rules_examples():
    assert edits.apply_edit("Nakamura", "substitute", 0, "t") == "Takamura"
    assert edits.apply_edit("Nakamura", "insert", 0, "a") == "Anakamura"
    assert edits.apply_edit("Nakamura", "insert", 3, "i") == "Nakiamura"
    assert edits.apply_edit("Smith", "delete", 0) == "Mith"
    assert edits.apply_edit("McDonald", "substitute", 2, "b") == "McBonald"
    e = next(e for e in edits.one_letter_variants("Nakamura") if e.variant == "Nakamora")
    assert e.description == "u → o at letter 6"  # 1-based: N a k a m u
    e = next(e for e in edits.one_letter_variants("Nakamura") if e.variant == "Nakiamura")
    assert e.description == "insert 'i' after letter 3"
    e = next(e for e in edits.one_letter_variants("Nakamura") if e.variant == "Naamura")
    assert e.description == "delete 'k' (letter 3)"


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_one_letter_name_has_no_deletion(committed, kind):
    clf = committed[kind]
    found = edits.one_letter_variants("A")
    assert {e.kind for e in found} == {"substitute", "insert"}  # deleting the only letter leaves nothing
    # B…Z; Aa…Za (a capital before, the old initial lowercased); Ab…Az ("Aa" after the letter repeats "Aa" before)
    assert len(found) == 25 + 26 + 25
    for target in (None, "Korean"):
        items = edits.one_letter_edits(clf, "A", target=target, n=6)
        assert len(items) == 6
        check_against_predict(clf, "A", items, target)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_64_letter_name_skips_insertions(committed, kind):
    clf = committed[kind]
    assert len(LONG_NAME) == MAX_NAME_LENGTH
    found = edits.one_letter_variants(LONG_NAME)
    assert {e.kind for e in found} == {"substitute", "delete"}  # an insertion would be 65 characters
    assert all(len(e.variant) <= MAX_NAME_LENGTH for e in found)
    for target in (None, "Korean"):
        items = edits.one_letter_edits(clf, LONG_NAME, target=target, n=6)
        assert len(items) == 6
        check_against_predict(clf, LONG_NAME, items, target)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", ["A", "Li", "Nakamura", "O'Brien", "Ter Avest", "McDonald",
                                  "Wolfeschlegelsteinhausen", LONG_NAME])
def test_shared_prefix_pass_matches_plain_pass(committed, kind, name):
    clf = committed[kind]
    found = edits.one_letter_variants(name)
    shared = edits.shared_prefix_probabilities(clf, name, found)
    plain = edits.plain_probabilities(clf, [e.variant for e in found])
    assert shared.shape == plain.shape == (len(found), len(clf.labels))
    np.testing.assert_allclose(shared, plain, rtol=0, atol=TOLERANCE)
    if len(name) > 24:  # the choice follows from these arrays; long names are slow to classify four more times
        return
    for target in (None, "Korean"):
        fast = edits.one_letter_edits(clf, name, target=target, n=6)
        slow = edits.one_letter_edits(clf, name, target=target, n=6, shared_prefix=False)
        assert [i["name"] for i in fast] == [i["name"] for i in slow]


def test_deterministic_and_n(committed):
    clf = committed["gru"]
    first = edits.one_letter_edits(clf, "Nakamura", n=6)
    assert first == edits.one_letter_edits(clf, "Nakamura", n=6)
    assert edits.one_letter_edits(clf, "Nakamura", n=3) == first[:3]
    assert edits.one_letter_edits(clf, "Nakamura", n=0) == []


def test_bad_input(committed):
    clf = committed["rnn"]
    for text in ("", "  Smith", "Smith  Jones", "Müller", "x" * (MAX_NAME_LENGTH + 1), "--"):
        with pytest.raises(ValueError):
            edits.one_letter_edits(clf, text)
    with pytest.raises(ValueError, match="unknown target"):
        edits.one_letter_edits(clf, "Smith", target="Klingon")
