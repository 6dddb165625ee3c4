"""The app's views (namecls.ui), checked by content: colours, escaped HTML fragments read back with an HTML parser,
figure data, the marked column over a rendered figure, the batch table and its CSV, the model card's tables, and
what the page says about each example against the data and the committed checkpoints.

No server. Edge cases use hand-built traces (any number of layers, units and characters); the rest uses the
committed checkpoints (``namecls.load``).
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_hex, to_rgb

import namecls
from conftest import require_module
from namecls.serving import service
from namecls.explain.units import Neighbour, UnitContext
from namecls.inference import Trace
from namecls.data.splits import make_split
from namecls.ui.tabs import batch, compare, model_card, step_through
from namecls.ui import common, yours
from namecls.ui.render import figures, html, overlay, palette

# Compares with numbers recorded on another machine (the committed checkpoints, metrics.json): .ci/run reruns it
# under emulated CPUs (pytest -m recorded).
pytestmark = pytest.mark.recorded

LABELS = ["Arabic", "Chinese", "Czech", "Dutch", "English", "French", "German", "Greek", "Irish", "Italian",
          "Japanese", "Korean", "Polish", "Portuguese", "Russian", "Scottish", "Spanish", "Vietnamese"]
EVIL = "<img src=x onerror=alert(1)>{{7*7}}$"
MINUS = "\u2212"


def make_trace(chars="Nguyen", layers=2, hidden=7, kind="gru", seed=0, initial=True, deletion=True,
               name=None) -> Trace:
    """A random but valid trace over ``chars`` (any characters: the fragments must cope with hostile ones)."""
    rng = np.random.default_rng(seed)
    chars = list(chars)
    T = len(chars)
    lo = 0.0 if kind == "rnn" else -1.0
    states = rng.uniform(lo, 1.0, size=(layers, T, hidden)).astype(np.float32)
    logits = 2 * rng.normal(size=(T, len(LABELS)))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    text = "".join(chars)
    return Trace(text if name is None else name, namecls.normalize(text), chars, states, probs, LABELS,
                 initial=rng.uniform(lo, 1.0, size=(layers, hidden)).astype(np.float32) if initial else None,
                 deletion=rng.normal(size=T) if deletion else None)


@pytest.fixture(scope="module")
def models():
    return {kind: namecls.load(kind) for kind in ("rnn", "gru")}


def data_axes(fig):
    return [ax for ax in fig.axes if ax.get_gid() == overlay.STEP_AXES]


def signed(text: str) -> float:
    """A number as the page prints it ('−0.25', '+1.20') back to a float; the minus must be a real minus sign."""
    assert "-" not in text, f"{text!r}: an ASCII hyphen instead of a minus sign"
    return float(text.replace(MINUS, "-"))


# ---------------------------------------------------------------------------------------------------------------
# A small DOM, so that fragments are read the way a browser reads them (text unescaped, tags as tags)


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None" = None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def elements(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.elements()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list["Node"]:
        return [e for e in self.elements() if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)]

    def find(self, tag: str | None = None, cls: str | None = None) -> "Node":
        found = self.find_all(tag, cls)
        assert found, f"no <{tag} class={cls}>"
        return found[0]

    def kids(self, tag: str) -> list["Node"]:
        return [c for c in self.children if isinstance(c, Node) and c.tag == tag]


VOID = {"img", "br", "hr", "input", "meta", "link", "source", "wbr"}


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#root", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"</{tag}> closes nothing"
        self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def dom(fragment: str) -> Node:
    builder = _Builder()
    builder.feed(fragment)
    builder.close()
    assert builder.current is builder.root, f"unclosed <{builder.current.tag}>"
    return builder.root


def assert_shown_as_text(fragment: str, text: str = EVIL) -> Node:
    """``text`` reads as text in ``fragment``; no tag of it became markup; nothing for gr.HTML's templates."""
    tree = dom(fragment)
    assert "img" not in {e.tag for e in tree.elements()} and "<img" not in fragment
    assert "{" not in fragment and "}" not in fragment and "$" not in fragment
    assert text in tree.text
    return tree


# ---------------------------------------------------------------------------------------------------------------
# Palette


def test_language_colours_are_18_distinct_and_far_apart_in_cam02_ucs():
    colorspacious = require_module("colorspacious")  # a dev dependency: skipped on a bare machine, fails in CI
    colours = palette.LANGUAGE_COLORS
    assert len(colours) == 18 and len({c.lower() for c in colours}) == 18
    rgb = [np.array(to_rgb(c)) * 255 for c in colours]
    smallest = min(colorspacious.deltaE(a, b, input_space="sRGB255") for a, b in itertools.combinations(rgb, 2))
    assert smallest >= 21.9, f"two language colours are only {smallest:.2f} CAM02-UCS units apart"  # ~22
    for i, lang in enumerate(LABELS):  # the 18 languages keep the colours they had by label position
        assert palette.language_color(lang) == colours[i]


def test_the_palette_names_the_datas_languages_and_the_checkpoints_label_order(models, data_dir):
    assert list(palette.LANGUAGES) == sorted(p.stem for p in Path(data_dir).glob("*.txt"))
    for clf in models.values():
        assert clf.labels == list(palette.LANGUAGES)


@pytest.mark.slow
def test_a_language_outside_the_18_gets_a_stable_palette_colour():
    others = ["Klingon", "Basque", EVIL, ""]
    colours = [palette.language_color(other) for other in others]
    assert all(c in palette.LANGUAGE_COLORS for c in colours)
    for seed in ("1", "2"):  # the same in another process, whatever its string hashing (PYTHONHASHSEED)
        code = f"from namecls.ui.render.palette import language_color as c; print(' '.join(c(x) for x in {others!r}))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout.split()
        assert out == colours
    picks = {palette.language_color(f"Language {i}") for i in range(200)}
    assert len(picks) > 9  # spread over the palette, not one colour for all


@pytest.mark.parametrize("scale", [*palette.STATE_SCALES.values(), palette.ATTRIBUTION_SCALE])
def test_scale_color_maps_the_range_onto_the_colour_map_and_clips(scale):
    cmap = colormaps[scale["cmap"]]
    lo, hi = scale["vmin"], scale["vmax"]
    assert palette.scale_color(lo, scale) == to_hex(cmap(0.0))
    assert palette.scale_color(hi, scale) == to_hex(cmap(1.0))
    assert palette.scale_color((lo + hi) / 2, scale) == to_hex(cmap(0.5))
    assert palette.scale_color(lo - 5, scale) == to_hex(cmap(0.0))  # clipped, not wrapped or extrapolated
    assert palette.scale_color(hi + 5, scale) == to_hex(cmap(1.0))
    assert to_hex(cmap(0.0)) != to_hex(cmap(1.0))
    stops = re.findall(r"#[0-9a-f]{6}", palette.gradient_css(scale, stops=5))
    assert stops == [to_hex(cmap(i / 4)) for i in range(5)]


def test_state_scales_fit_the_models_state_ranges(models):
    assert (palette.STATE_SCALES["rnn"]["vmin"], palette.STATE_SCALES["rnn"]["vmax"]) == (0, 1)  # sigmoid
    assert (palette.STATE_SCALES["gru"]["vmin"], palette.STATE_SCALES["gru"]["vmax"]) == (-1, 1)  # tanh-bounded
    for kind, clf in models.items():  # real states fill their scale without leaving it
        scale = palette.STATE_SCALES[kind]
        states = np.concatenate([clf.trace(n).layers.ravel() for n in ("Nguyen", "O'Connell", "Zielinski")])
        assert scale["vmin"] <= states.min() and states.max() <= scale["vmax"]
        assert states.max() - states.min() > 0.5 * (scale["vmax"] - scale["vmin"])


# ---------------------------------------------------------------------------------------------------------------
# HTML: escaping


@pytest.mark.parametrize("text", ["<>&\"'{}$", EVIL, "${x}{{y}}", "O'Neill & <b>Sons</b>", "plain"])
def test_esc_escapes_markup_and_template_characters_and_round_trips(text):
    import html as stdlib_html

    out = html.esc(text)
    for raw in "<>\"'{}$":
        assert raw not in out
    assert re.sub(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", "", out).count("&") == 0  # every & starts an entity
    assert stdlib_html.unescape(out) == text
    assert dom(f"<span>{out}</span>").text == text


def test_every_fragment_shows_a_hostile_name_as_text():
    trace = make_trace(EVIL, layers=2, hidden=6, name=EVIL)
    labels = [*LABELS[:-1], EVIL]  # a hostile language name, too (a checkpoint's labels are text)
    probs = np.full((6, 18), 0.01, dtype=np.float32)
    probs[:, -1] = 0.83  # the hostile language wins
    trace_bad_label = replace(make_trace("Nguyen", layers=1, hidden=4), labels=labels, probs=probs)
    shown_chars = "".join(html.display_char(c) for c in EVIL)

    assert_shown_as_text(html.normalisation_html(namecls.normalize(EVIL)))
    assert_shown_as_text(html.letters_html(trace, 3), shown_chars)
    assert_shown_as_text(html.letters_key_html(trace_bad_label))
    assert_shown_as_text(html.name_caption_html(trace, len(EVIL) - 1), EVIL)  # the prefix: the whole name
    assert_shown_as_text(html.decision_html(trace_bad_label, model=EVIL))
    tree = assert_shown_as_text(html.heatmap_html(trace, "gru", [(0, 1), (1, 2)], 4), shown_chars)
    assert "".join(th.text for th in tree.find("thead").find_all("th")[1:-1]) == shown_chars
    contexts = [UnitContext(EVIL, EVIL, 0, 0.9), UnitContext("x" + EVIL, "Irish", 5, 0.8)]
    assert_shown_as_text(html.unit_html(trace, "gru", 1, 2, contexts), shown_chars)
    neighbours = [Neighbour(EVIL, EVIL, 0.5, 3)]
    assert_shown_as_text(html.neighbours_html(neighbours, labels, EVIL, 2266))
    assert_shown_as_text(html.legend_html([EVIL, "Irish"], labels))
    assert_shown_as_text(html.chip(EVIL, labels, EVIL))


# ---------------------------------------------------------------------------------------------------------------
# HTML: the answer (prediction set, training lists), and when it was decided


FACTS = {"coverage": 0.9, "test_coverage": 0.89584, "worst": ("Scottish", 0.1, 10), "n_labels": 18}


def _answer_parts(fragment: str) -> dict:
    """What :func:`html.answer_html` shows, read back from its DOM: the box, the set's languages (the bold words of
    its first line) and the text of each line."""
    tree = dom(fragment)
    box = tree.find("div", "answer")
    first = box.find("div", "answer-set")
    return {"box": box, "set": [b.text for b in first.find_all("b")], "set_line": first.text,
            "seen": box.find("div", "seen").text, "text": tree.text}


@pytest.mark.parametrize("languages", [["Vietnamese"], ["Vietnamese", "Chinese"], ["Polish", "English", "Czech"]])
@pytest.mark.parametrize("seen", [["Chinese", "Korean"], [], None], ids=["seen", "unseen", "no-table"])
def test_answer_html_shows_the_set_the_measured_coverage_and_the_training_lists(languages, seen):
    details = {"set": languages, "seen_as": seen, "top_probability": 0.6666, "entropy": 1.234}
    parts = _answer_parts(html.answer_html(details, FACTS))
    assert parts["set"] == languages  # exactly the set's languages, in order
    joined = languages[0] if len(languages) == 1 else ", ".join(languages[:-1]) + " or " + languages[-1]
    alone = " alone" if len(languages) == 1 else ""
    assert parts["set_line"] == f"{joined}{alone} (90% prediction set)"
    assert parts["box"].attrs["data-set-size"] == str(len(languages))
    # The promise as measured on the test split, and the worst-covered small language as a count of names.
    assert "a 90% set held the right language 89.6% of the time" in parts["text"]
    assert "(Scottish: right for 1 of 10 test names)" in parts["text"]
    if seen:
        assert parts["seen"] == f"In the training lists as: {', '.join(seen)}."
        assert parts["box"].attrs["data-seen"] == "true"
    elif seen == []:
        assert parts["seen"] == "Not in the training lists: the answer is the network's generalisation."
        assert parts["box"].attrs["data-seen"] == "false"
    else:  # no training-names table: no claim either way
        assert parts["seen"] == "" and "training lists" not in parts["text"]
        assert parts["box"].attrs["data-seen"] == "unknown"
    assert "Top probability 66.7%" in parts["text"]
    assert f"entropy 1.23 nats of at most {math.log(18):.2f}" in parts["text"]


@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", ["Yilmaz", "Nguyen"])
def test_novelty_line_says_no_more_than_the_measured_auroc(models, kind, name):
    clf = models[kind]
    facts = common.set_facts(clf)
    score = float(clf.novelty.score_model(clf.model, [name])[0])  # the checkpoint's own scorer, run here
    details = {"novelty": score, "unfamiliar": score > clf.novelty.threshold}
    box = dom(html.novelty_html(details, facts)).find("div", "novelty")
    assert box.attrs["data-unfamiliar"] == str(details["unfamiliar"]).lower()
    shown = f"{score:.2f}".replace("-", "−")
    assert f"novelty {shown}" in box.text
    if details["unfamiliar"]:
        auroc = _metrics_file(kind)["novelty"]["measured"]["heldout"]["auroc_vs_in_language"]
        assert "Unusual spelling for these lists" in box.text and "not proof" in box.text
        assert f"only {100 * auroc:.1f}% of the time" in box.text
    else:
        line = f"{clf.novelty.threshold:.2f}".replace("-", "−")
        assert f"flagged above {line}, a level 5% of validation names exceed" in box.text
    assert "foreign name" not in box.text.replace("ranked a foreign name above", "")  # no detection claim
    assert html.novelty_html({"novelty": None, "unfamiliar": None}, facts) == ""


def test_answer_html_without_prediction_sets_names_the_top_language_and_promises_nothing():
    details = {"set": None, "seen_as": None, "top": {"Irish": 0.9, "English": 0.05}, "top_probability": 0.9,
               "entropy": 0.3}
    box = dom(html.answer_html(details, FACTS))
    assert [b.text for b in box.find_all("b")] == ["Irish"]
    assert "no prediction sets" in box.text and "held the right language" not in box.text
    row = {"name": "O'Neill", "normalized": "O'Neill", "top1": "Irish", "probability": 0.9,
           "top_k": {"Irish": 0.9}, "set": None, "seen_as": None, "error": None}
    table = batch.batch_table([row])
    assert table.loc[0, "prediction set"] == "" and table.loc[0, "in training as"] == ""


def test_answer_html_without_a_measured_coverage_or_a_worst_language_claims_neither():
    details = {"set": ["Irish"], "seen_as": [], "top_probability": 0.93, "entropy": 0.3}
    no_worst = dom(html.answer_html(details, {**FACTS, "worst": None})).text
    assert "89.6% of the time." in no_worst and "far less often" not in no_worst
    nothing = dom(html.answer_html(details, {**FACTS, "test_coverage": None, "worst": None})).text
    assert "held the right language" not in nothing and "Irish alone (90% prediction set)" in nothing
    other = dom(html.answer_html(details, {**FACTS, "coverage": 0.8, "n_labels": 5})).text
    assert "(80% prediction set)" in other and "a 80% set held" in other and f"at most {math.log(5):.2f}" in other


def test_answer_html_shows_hostile_languages_as_text():
    details = {"set": [EVIL, "Irish"], "seen_as": [EVIL], "top_probability": 0.5, "entropy": 1.0}
    tree = assert_shown_as_text(html.answer_html(details, {**FACTS, "worst": (EVIL, 0.5, 8)}))
    box = tree.find("div", "answer")
    assert [b.text for b in box.find("div", "answer-set").find_all("b")] == [EVIL, "Irish"]
    assert box.find("div", "seen").text == f"In the training lists as: {EVIL}."
    assert f"({EVIL}: right for 4 of 8 test names)" in tree.text


def _metrics_file(kind: str) -> dict:
    """A committed checkpoint's metrics.json, read here (not through namecls.load)."""
    import json

    from namecls.inference import CHECKPOINTS

    return json.loads((CHECKPOINTS / kind / "metrics.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_set_facts_are_the_checkpoints_measured_coverage_and_worst_small_language(models, kind):
    conformal, novelty = _metrics_file(kind)["conformal"], _metrics_file(kind)["novelty"]
    per = conformal["test"]["per_language"]
    small = {lang: s for lang, s in per.items() if s["support"] >= 5}
    worst = min(small, key=lambda lang: small[lang]["coverage"])
    facts = common.set_facts(models[kind])
    assert facts == {"coverage": conformal["coverage_asked"], "test_coverage": conformal["test"]["coverage"],
                     "worst": (worst, small[worst]["coverage"], small[worst]["support"]), "n_labels": 18,
                     "labels": list(models[kind].labels),
                     "unusual_share": pytest.approx(1 - novelty["threshold"]["quantile"]),
                     "novelty_threshold": novelty["threshold"]["value"],
                     "novelty_auroc_in_language": novelty["measured"]["heldout"]["auroc_vs_in_language"],
                     "novelty_auroc_test": novelty["measured"]["heldout"]["auroc_vs_test_split"],
                     "prior": "lists", **_real_surname_facts(kind, "lists")}
    assert facts["coverage"] == 0.9 and facts["unusual_share"] == pytest.approx(0.05)
    assert common.set_facts(_NoMetrics(models[kind])) == \
        {"coverage": 0.9, "test_coverage": None, "worst": None, "n_labels": 18, "labels": list(models[kind].labels),
         "unusual_share": pytest.approx(0.05), "prior": "lists", "real_coverage": None, "real_size": None,
         "real_n": None, "novelty_threshold": None, "novelty_auroc_in_language": None, "novelty_auroc_test": None}
    # Under the equal prior: the test split's coverage with every language counted equally, no worst language
    equal = common.set_facts(models[kind], "equal")
    report = _outside_lists()["results"][kind]["equal"]
    assert equal["test_coverage"] == report["test"]["coverage"] and equal["worst"] is None
    assert {key: equal[key] for key in ("real_coverage", "real_size", "real_n")} == _real_surname_facts(kind, "equal")


def _outside_lists() -> dict:
    """checkpoints/outside_lists.json (bench/surnames.py --write), read here."""
    import json

    from namecls.inference import CHECKPOINTS

    return json.loads((CHECKPOINTS / "outside_lists.json").read_text(encoding="utf-8"))


def _real_surname_facts(kind: str, prior: str) -> dict:
    """The real-surname row the page quotes: the final set's when measured, else the development set's."""
    rows = _outside_lists()["results"][kind][prior]
    row = rows["final"] if "final" in rows else rows["dev"]
    return {"real_coverage": row["coverage"], "real_size": row["mean_size"], "real_n": row["n"]}


class _NoMetrics:
    """A classifier whose checkpoint has no metrics (set_facts must not need them)."""

    def __init__(self, clf):
        self.labels, self.metrics = clf.labels, {}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", ["Nguyen", "Yilmaz", "Brady", "Fujita", "Demirkan"])
def test_answer_html_of_real_names_says_what_predict_details_and_the_trace_say(models, kind, name):
    clf = models[kind]
    facts = common.set_facts(clf)
    details = service.predict_details(models, name, kind, 3)
    direct = clf.predict_details(name, 3)
    assert details["set"] == direct.set and details["seen_as"] == direct.seen_as
    parts = _answer_parts(html.answer_html(details, facts))
    assert parts["set"] == direct.set and parts["box"].attrs["data-set-size"] == str(len(direct.set))
    measured = _metrics_file(kind)["conformal"]["test"]["coverage"]
    assert f"a 90% set held the right language {100 * measured:.1f}% of the time" in parts["text"]
    assert parts["seen"] == (f"In the training lists as: {', '.join(direct.seen_as)}." if direct.seen_as else
                             "Not in the training lists: the answer is the network's generalisation.")
    # Step through and Compare word the answer from the trace: the same set, lists and numbers.
    trace = clf.trace(name)
    whole = common.whole_name(trace)
    assert whole["set"] == direct.set == trace.sets[-1] and whole["seen_as"] == direct.seen_as
    assert whole["top_probability"] == pytest.approx(direct.top_probability, abs=1e-5)
    assert whole["entropy"] == pytest.approx(direct.entropy, abs=1e-4)
    assert dom(html.answer_html(whole, facts)).text == parts["text"]


def test_whole_name_without_sets_falls_back_to_the_top_language():
    trace = make_trace("Nguyen")  # no sets, no training-names table
    whole = common.whole_name(trace)
    assert whole["set"] == [trace.labels[int(np.argmax(trace.probs[-1]))]] and whole["seen_as"] is None
    assert whole["top_probability"] == pytest.approx(float(trace.probs[-1].max()))
    with_sets = replace(trace, sets=[["Irish"]] * 5 + [["Chinese", "Korean"]], seen_as=["Korean"])
    assert common.whole_name(with_sets)["set"] == ["Chinese", "Korean"]
    assert common.whole_name(with_sets)["seen_as"] == ["Korean"]


def _decision_trace(winners: list[int], chars="Nguyen") -> Trace:
    trace = make_trace(chars)
    probs = np.full((len(chars), 18), 0.01, dtype=np.float32)
    for t, w in enumerate(winners):
        probs[t, w] = 0.8
    return Trace(trace.name, trace.normalized, trace.chars, trace.layers, probs, LABELS)


@pytest.mark.parametrize("winners, decided", [
    ([1, 1, 1, 17, 17, 17], 3),  # Chinese leads for three letters, then Vietnamese
    ([17, 17, 17, 17, 17, 17], 0),  # from the first letter
    ([17, 1, 17, 1, 1, 17], 5),  # taken over only at the last letter
    ([1, 17, 1, 17, 17, 17], 3),  # an early lead that was lost does not count
])
def test_decision_step_is_where_the_final_winner_takes_over(winners, decided):
    trace = _decision_trace(winners)
    text = dom(html.decision_html(trace, "GRU")).text
    assert text.startswith("GRU: Vietnamese (80.")
    assert f"leads from character {decided + 1} of 6 ({'Nguyen'[: decided + 1]}) to the end" in text


# ---------------------------------------------------------------------------------------------------------------
# HTML: the letters


def _letter_rows(fragment: str) -> list[list[Node]]:
    table = dom(fragment).find("table", "letters")
    return [row.kids("td") for row in table.find_all("tr")]


def _expected_attribution(trace) -> np.ndarray:
    """log p_t(c) − log p_{t−1}(c) for the final answer c, with p_{−1}(c) = 1/C: computed here, not by Trace."""
    c = int(np.argmax(trace.probs[-1]))
    logp = np.log(trace.probs[:, c].astype(np.float64))
    return logp - np.concatenate([[np.log(1 / len(trace.labels))], logp[:-1]])


@pytest.mark.parametrize("step", [None, 0, 2, 5])
def test_letters_html_has_one_tile_per_character_with_its_numbers(step):
    trace = make_trace("De Lao", seed=3)
    rows = _letter_rows(html.letters_html(trace, step))
    assert len(rows) == 3  # the letters, "when read", "if deleted"
    tiles, read, deleted = rows
    assert [td.text for td in tiles] == ["D", "e", "␣", "L", "a", "o"]
    expected = _expected_attribution(trace)
    assert [signed(td.text) for td in read] == pytest.approx(expected, abs=0.005 + 1e-9)
    assert [signed(td.text) for td in deleted] == pytest.approx(trace.deletion, abs=0.005 + 1e-9)
    assert all(re.fullmatch(r"[+\u2212]\d+\.\d\d", td.text) for td in read + deleted)
    assert any(v < 0 for v in expected) and any(td.text.startswith(MINUS) for td in read)
    for row in rows:
        assert [int(td.attrs["data-step"]) for td in row] == list(range(6))
        for i, td in enumerate(row):
            if step is None:
                assert not {"current", "todo"} & td.classes
            else:
                assert ("current" in td.classes) is (i == step)
                assert ("todo" in td.classes) is (i > step)
    # The colour of a tile is its number on the attribution scale.
    for td, value in zip(tiles, expected):
        assert palette.scale_color(value, palette.ATTRIBUTION_SCALE) in td.attrs["style"]


def test_letters_html_without_deletion_has_two_rows():
    trace = make_trace("Qin", deletion=False)
    assert len(_letter_rows(html.letters_html(trace))) == 2


def test_letters_html_of_a_real_trace_shows_its_attribution_and_deletion(models):
    for clf in models.values():
        trace = clf.trace("O'Neill")
        tiles, read, deleted = _letter_rows(html.letters_html(trace, 3))
        assert [td.text for td in tiles] == list("O'Neill")
        assert [signed(td.text) for td in read] == pytest.approx(_expected_attribution(trace), abs=0.0051)
        assert [signed(td.text) for td in read] == pytest.approx(trace.attribution, abs=0.0051)
        assert [signed(td.text) for td in deleted] == pytest.approx(trace.deletion, abs=0.0051)
        key = dom(html.letters_key_html(trace)).text
        assert trace.labels[int(np.argmax(trace.probs[-1]))] in key and "1/18" in key


def test_name_caption_and_step_clamping():
    trace = make_trace("O'Neill")
    text = dom(html.name_caption_html(trace, 1)).text
    assert text == "Character 2 of 7: ' · prefix O'"
    assert html.name_caption_html(trace, 99) == html.name_caption_html(trace, 6)
    assert html.name_caption_html(trace, -3) == html.name_caption_html(trace, 0)
    assert html.clamp_step("not a number", 7) == 6 and html.clamp_step(None, 7) == 6 and html.clamp_step("2", 7) == 2
    assert "prediction set" not in text  # a trace without sets claims none


def _caption_set(fragment: str) -> list[str]:
    """The languages the caption gives as the prefix's prediction set (the bold words after "prediction set:")."""
    caption = dom(fragment).find("div", "step-caption")
    assert " · prediction set: " in caption.text
    tail = fragment.split("prediction set:", 1)[1]
    return [b.text for b in dom(tail.rsplit("</div>", 1)[0]).find_all("b")]


@pytest.mark.parametrize("kind", ["rnn", "gru"])
@pytest.mark.parametrize("name", ["Nguyen", "Yilmaz", "Ślusàrski"])
def test_name_caption_gives_each_prefixs_prediction_set(models, kind, name):
    trace = models[kind].trace(name)
    assert trace.sets is not None and len(trace.sets) == len(trace.chars)
    # Independent: the set of each prefix, asked of the classifier for that prefix alone.
    for step in range(len(trace.chars)):
        shown = _caption_set(html.name_caption_html(trace, step))
        assert shown == trace.sets[step], step
        assert shown == models[kind].predict_set("".join(trace.chars[: step + 1])), step
    text = dom(html.name_caption_html(trace, 0)).text
    first = trace.sets[0]
    joined = first[0] if len(first) == 1 else ", ".join(first[:-1]) + " or " + first[-1]
    assert text == f"Character 1 of {len(trace.chars)}: {trace.chars[0]} · prefix {trace.chars[0]} · " \
                   f"prediction set: {joined}"


def test_normalisation_line_shows_what_changed():
    assert "Ślusàrski → Slusarski" in dom(html.normalisation_html(namecls.normalize("Ślusàrski"))).text
    assert "dropped" not in html.normalisation_html(namecls.normalize("Ślusàrski"))
    assert "read as typed" in html.normalisation_html(namecls.normalize("Nguyen"))
    text = dom(html.normalisation_html(namecls.normalize("Smith 3rd"))).text
    assert text.endswith("dropped: 3")


# ---------------------------------------------------------------------------------------------------------------
# HTML: hidden units


def _heat_rows(fragment: str):
    tree = dom(fragment)
    rows = tree.find("tbody").kids("tr")
    out = []
    for tr in rows:
        cells = tr.find_all("td", "cell")
        out.append({"label": tr.kids("th")[0].text, "data": tr.attrs["data-unit"], "top": "top" in tr.classes,
                    "cells": cells, "delta": signed(tr.find("td", "delta").text)})
    return tree, out


@pytest.mark.parametrize("step", [0, 3, 5])
def test_heatmap_html_rows_deltas_and_bold_rows(step):
    trace = make_trace("Nguyen", layers=2, hidden=9, seed=step)
    units = [(1, 3), (0, 8), (0, 0), (1, 7), (0, 4), (1, 1), (0, 2), (1, 8)]  # any order: kept as given
    tree, rows = _heat_rows(html.heatmap_html(trace, "gru", units, step))
    assert [r["label"] for r in rows] == [f"L{l + 1} #{u}" for l, u in units]
    assert [r["data"] for r in rows] == [r["label"] for r in rows]
    before = trace.initial if step == 0 else trace.layers[:, step - 1]
    delta = np.array([trace.layers[l, step, u] - before[l, u] for l, u in units])
    assert [r["delta"] for r in rows] == pytest.approx(delta, abs=0.005 + 1e-6)
    biggest = set(np.argsort(-np.abs(delta))[:5].tolist())
    assert {i for i, r in enumerate(rows) if r["top"]} == biggest
    scale = palette.STATE_SCALES["gru"]
    for (l, u), r in zip(units, rows):
        assert len(r["cells"]) == 6
        for t, td in enumerate(r["cells"]):
            assert float(td.attrs["title"].rsplit(": ", 1)[1]) == pytest.approx(trace.layers[l, t, u], abs=5e-4)
            assert ("current" in td.classes) is (t == step)
            assert scale_color_of(td) == palette.scale_color(trace.layers[l, t, u], scale)
    head = tree.find("thead").find_all("th")
    assert [th.text for th in head] == ["unit", *"Nguyen", "Δ here"]
    assert [("current" in th.classes) for th in head[1:-1]] == [t == step for t in range(6)]


def scale_color_of(td: Node) -> str:
    return re.search(r"background:(#[0-9a-f]{6})", td.attrs["style"]).group(1)


def test_heatmap_html_of_a_one_layer_rnn_labels_units_without_a_layer():
    trace = make_trace("Qin", layers=1, hidden=5, kind="rnn")
    _, rows = _heat_rows(html.heatmap_html(trace, "rnn", [(0, 4), (0, 0)], 2, n_bold=1))
    assert [r["label"] for r in rows] == ["#4", "#0"]
    delta = trace.layers[0, 2, [4, 0]] - trace.layers[0, 1, [4, 0]]
    assert [r["top"] for r in rows] == [bool(abs(delta[0]) > abs(delta[1])), bool(abs(delta[1]) > abs(delta[0]))]
    no_initial = make_trace("Qin", layers=1, hidden=5, kind="rnn", initial=False)
    _, rows = _heat_rows(html.heatmap_html(no_initial, "rnn", [(0, 4)], 0))
    assert rows[0]["delta"] == pytest.approx(no_initial.layers[0, 0, 4], abs=0.005 + 1e-6)  # from zeros


def test_heatmap_html_of_a_real_trace(models):
    clf = models["gru"]
    trace = clf.trace("Nguyen")
    units = trace.key_units(24)
    _, rows = _heat_rows(html.heatmap_html(trace, "gru", units, 0))
    assert len(rows) == 24
    delta = np.array([trace.layers[l, 0, u] - trace.initial[l, u] for l, u in units])
    assert [r["delta"] for r in rows] == pytest.approx(delta, abs=0.0051)


def test_unit_html_shows_the_values_and_bolds_the_letter_each_context_fired_on():
    trace = make_trace("Nguyen", layers=2, hidden=4, seed=5)
    contexts = [UnitContext("Nakamura", "Japanese", 2, 0.97), UnitContext("Abe", "Japanese", 0, 0.9),
                UnitContext("Ito", "Japanese", 2, 0.8), UnitContext("Van Der", "Dutch", 3, 0.7)]
    tree = dom(html.unit_html(trace, "gru", 1, 3, contexts))
    assert "Unit L2 #3" in tree.text
    tiles, numbers = (row.kids("td") for row in tree.find("table", "letters").find_all("tr"))
    assert [td.text for td in tiles] == list("Nguyen")
    assert [float(td.text) for td in numbers] == pytest.approx(trace.layers[1, :, 3], abs=0.005 + 1e-6)
    items = tree.find("div", "contexts").kids("div")
    assert len(items) == len(contexts)
    for item, c in zip(items, contexts):
        code = item.find("code")
        (bold,) = code.find_all("b")
        letter = "␣" if c.name[c.position] == " " else c.name[c.position]
        assert bold.text == letter
        assert code.text == c.name[: c.position] + letter + c.name[c.position + 1:]
        before = "".join(x for x in code.children[: code.children.index(bold)] if isinstance(x, str))
        assert before == c.name[: c.position]
        assert f"{c.language}, {c.value:.2f}" in item.text
    assert html.unit_html(trace, "gru", 1, 3, []).count("contexts") == 0


def test_unit_html_with_a_checkpoints_own_contexts(models):
    for kind, clf in models.items():
        trace = clf.trace("Fujita")
        layer, unit = trace.key_units(1)[0]
        contexts = clf.explain.unit_contexts(layer, unit)
        assert contexts
        tree = dom(html.unit_html(trace, kind, layer, unit, contexts))
        label = f"L{layer + 1} #{unit}" if trace.layers.shape[0] > 1 else f"#{unit}"
        assert f"Unit {label}" in tree.text
        values = [c.value for c in contexts]
        if max(values) - min(values) < 0.01:  # tied at the unit's ceiling: said, not listed as if they ranked
            assert tree.find_all("div", "contexts") == [] and "reaches its ceiling" in tree.text
            assert f"({contexts[0].value:.2f})" in tree.text and contexts[0].name in tree.text
            continue
        for item, c in zip(tree.find("div", "contexts").kids("div"), contexts):
            assert item.find("b").text == html.display_char(c.name[c.position])


# ---------------------------------------------------------------------------------------------------------------
# HTML: neighbours and legends


def test_neighbours_html_lists_each_neighbour_in_its_colour():
    neighbours = [Neighbour("Nguyen", "Vietnamese", 0.123, 7), Neighbour("Ngo", "Vietnamese", 0.5, 2),
                  Neighbour("Nam", "Korean", 1.0, 0)]
    tree = dom(html.neighbours_html(neighbours, LABELS, "Ngu", 2266))
    chips = tree.find_all("span", "chip")
    assert [c.text for c in chips] == ["Nguyen (Vietnamese, 0.12)", "Ngo (Vietnamese, 0.50)", "Nam (Korean, 1.00)"]
    for c, n in zip(chips, neighbours):
        assert c.attrs["data-language"] == n.language
        assert c.find("span", "dot").attrs["style"] == f"background:{palette.LANGUAGE_COLORS[LABELS.index(n.language)]}"
    assert "after Ngu" in tree.text and "2,266 training names" in tree.text
    assert html.neighbours_html([], LABELS, "Ngu", 2266) == ""


def test_legend_html_keys_each_language_in_order_with_its_colour():
    tree = dom(html.legend_html(["Vietnamese", "Arabic", "Klingon"], LABELS))
    chips = tree.find_all("span", "chip")
    assert [c.text for c in chips] == ["Vietnamese", "Arabic", "Klingon"]
    colours = [re.search(r"background:(#[0-9a-f]{3,6})", c.find("span", "dot").attrs["style"]).group(1)
               for c in chips]
    assert colours == [palette.LANGUAGE_COLORS[17], palette.LANGUAGE_COLORS[0], "#888"]  # unknown: grey


# ---------------------------------------------------------------------------------------------------------------
# Figures: trajectory and every unit


def test_trajectory_languages_are_the_highest_peaks_with_the_final_answer_first():
    trace = make_trace("Nguyen")
    probs = np.full((6, 18), 0.02, dtype=np.float32)
    probs[0, 3] = 0.9  # Dutch peaks highest, early
    probs[1, 5] = 0.8  # French
    probs[2, 7] = 0.7  # Greek
    probs[3, 9] = 0.6  # Italian
    probs[5, 17] = 0.5  # Vietnamese wins only at the end, with the lowest peak of these
    trace = Trace(trace.name, trace.normalized, trace.chars, trace.layers, probs, LABELS)
    assert figures.trajectory_languages(trace, 1) == ["Vietnamese"]
    assert figures.trajectory_languages(trace, 3) == ["Vietnamese", "Dutch", "French"]
    assert figures.trajectory_languages(trace, 5) == ["Vietnamese", "Dutch", "French", "Greek", "Italian"]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_trajectory_figure_draws_k_lines_of_the_languages_probabilities(k):
    trace = make_trace("De Lao", seed=k)
    fig = figures.trajectory_figure(trace, k)
    (ax,) = data_axes(fig)
    lines = ax.get_lines()
    chosen = figures.trajectory_languages(trace, k)
    assert len(lines) == len(chosen) == k
    assert chosen[0] == LABELS[int(np.argmax(trace.probs[-1]))]  # the final answer first
    peaks = trace.probs.max(axis=0)
    others = [LABELS[i] for i in np.argsort(-peaks) if LABELS[i] != chosen[0]][: k - 1]
    assert chosen[1:] == others
    for line, lang in zip(lines, chosen):
        assert line.get_label() == lang
        np.testing.assert_array_equal(line.get_xdata(), np.arange(6))
        np.testing.assert_allclose(line.get_ydata(), trace.probs[:, LABELS.index(lang)])
        assert to_hex(line.get_color()) == palette.LANGUAGE_COLORS[LABELS.index(lang)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["D", "e", "␣", "L", "a", "o"]
    assert ax.get_ylim() == (0, 1.02)


@pytest.mark.slow
@pytest.mark.parametrize("kind, n_layers", [("rnn", 1), ("gru", 2), ("gru", 3)])
def test_units_figure_rows_follow_the_given_order(kind, n_layers):
    trace = make_trace("Nguyen", layers=n_layers, hidden=6, kind=kind)
    rng = np.random.default_rng(1)
    order = np.stack([rng.permutation(6) for _ in range(n_layers)])
    labelled = [(0, 5), (0, 1), (n_layers - 1, 2)]
    fig = figures.units_figure(trace, kind, order, labelled)
    axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(axes) == n_layers
    scale = palette.STATE_SCALES[kind]
    for i, ax in enumerate(axes):
        (image,) = ax.get_images()
        np.testing.assert_array_equal(np.asarray(image.get_array()), trace.layers[i][:, order[i]].T)
        assert image.get_clim() == (scale["vmin"], scale["vmax"]) and image.get_cmap().name == scale["cmap"]
        want = sorted((int(np.flatnonzero(order[i] == u)[0]), f"#{u}") for l, u in labelled if l == i)
        assert list(ax.get_yticks()) == [r for r, _ in want]
        assert [t.get_text() for t in ax.get_yticklabels()] == [s for _, s in want]
        assert [t.get_text() for t in ax.get_xticklabels()] == list("Nguyen")
    plain = figures.units_figure(trace, kind)
    np.testing.assert_array_equal(np.asarray(plain.axes[0].get_images()[0].get_array()), trace.layers[0].T)


def test_units_figure_of_a_real_trace_in_the_checkpoints_order(models):
    clf = models["gru"]
    trace = clf.trace("O'Neill")
    fig = figures.units_figure(trace, "gru", clf.explain.unit_order, trace.key_units(4))
    for i, ax in enumerate([ax for ax in fig.axes if ax.get_images()]):
        np.testing.assert_array_equal(np.asarray(ax.get_images()[0].get_array()),
                                      trace.layers[i][:, clf.explain.unit_order[i]].T)


# ---------------------------------------------------------------------------------------------------------------
# Figures: the map (SVG)


def _svg_dots(svg: str) -> list[Node]:
    return dom(svg).find_all("circle", "ref")


def _plot_box(svg: str) -> tuple[float, float, float, float]:
    rect = dom(svg).find("rect")
    return tuple(float(rect.attrs[k]) for k in ("x", "y", "width", "height"))


def _expected_pixels(points, extent, box) -> np.ndarray:
    """Data points → pixels of the drawn plot box (y up), points off the map pinned to its border."""
    x0, x1, y0, y1 = extent
    bx, by, bw, bh = box
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    fx = np.clip((p[:, 0] - x0) / (x1 - x0), 0, 1)
    fy = np.clip((p[:, 1] - y0) / (y1 - y0), 0, 1)
    return np.stack([bx + fx * bw, by + bh - fy * bh], axis=1)


@pytest.mark.slow
def test_map_svg_draws_each_sample_name_as_a_titled_dot(models):
    for clf in models.values():
        proj = clf.projection
        svg = figures.map_svg(proj, clf.kind)
        points, label_index = proj.sample()
        names = proj.sample_names()
        dots = _svg_dots(svg)
        assert len(dots) == len(points) == len(names) and all(names)
        by_index = {int(d.attrs["data-i"]): d for d in dots}
        assert sorted(by_index) == list(range(len(points)))
        box = _plot_box(svg)
        expected = _expected_pixels(points, proj.extent, box)
        for i, dot in by_index.items():
            lang = proj.labels[label_index[i]]
            assert dot.find("title").text == f"{names[i]} ({lang})"
            assert dot.attrs["fill"] == palette.LANGUAGE_COLORS[clf.labels.index(lang)]
            assert float(dot.attrs["cx"]) == pytest.approx(expected[i, 0], abs=0.06)
            assert float(dot.attrs["cy"]) == pytest.approx(expected[i, 1], abs=0.06)
        assert [int(d.attrs["data-i"]) for d in dots] != sorted(by_index)  # mixed: no language drawn over all
        assert svg == figures.map_svg(proj, clf.kind)  # the same mix every time


def test_map_path_svg_labels_every_language_and_rings_the_neighbours(models):
    clf = models["gru"]
    proj = clf.projection
    trace = clf.trace("Nguyen")
    background = {int(d.attrs["data-i"]): d for d in _svg_dots(figures.map_svg(proj, "gru"))}
    for step in (0, 3, 5):
        near = trace.neighbours[step]
        svg = figures.map_path_svg(proj, trace.map_points, trace.chars, step, [n.index for n in near])
        tree = dom(svg)
        langs = tree.find_all("text", "lang")
        assert len(langs) == 18 and sorted(t.text for t in langs) == sorted(clf.labels)
        for g in tree.find_all("g", "lang-label"):  # dark text (readable on any dot), keyed by a coloured swatch
            t = g.find("text", "lang")
            assert t.attrs["fill"] == "#111"
            assert g.find("rect", "swatch").attrs["fill"] == palette.LANGUAGE_COLORS[clf.labels.index(t.text)]
        boxes = [(float(t.attrs["x"]), float(t.attrs["y"]), 0.55 * 12 * len(t.text)) for t in langs]
        for a, (xa, ya, wa) in enumerate(boxes):  # no two labels overlap
            for xb, yb, wb in boxes[a + 1:]:
                assert xb + wb <= xa or xa + wa <= xb or abs(ya - yb) >= 12, (xa, ya, xb, yb)
        assert tree.find("rect", "map-start") is not None
        frame = figures.map_frame(proj)
        for x, y, w in boxes:  # inside the map (the marks' SVG overflows visibly: a label past it widens the page)
            assert frame.margin[3] <= x - 12 and x + w <= frame.width - frame.margin[1] + 1e-6, (x, w)
        rings = tree.find_all("circle", "map-neighbour")
        assert len(rings) == len(near) == 8
        for ring, n in zip(rings, near):  # each ring sits on the dot of that training name
            dot = background[n.index]
            assert (ring.attrs["cx"], ring.attrs["cy"]) == (dot.attrs["cx"], dot.attrs["cy"])
            assert dot.find("title").text == f"{n.name} ({n.language})"
        points = tree.find_all("circle", "map-point")
        assert [int(p.attrs["data-step"]) for p in points] == list(range(step + 1))
        assert tree.find("circle", "map-current").attrs["data-step"] == str(step)
    none = dom(figures.map_path_svg(proj, trace.map_points, trace.chars, 2))
    assert none.find_all("circle", "map-neighbour") == []


# ---------------------------------------------------------------------------------------------------------------
# Overlay: the current character marked over a rendered figure


def _mark_boxes(fragment: str):
    marks = dom(fragment).find_all("div", "step-mark")
    out = []
    for m in marks:
        style = dict(kv.split(":", 1) for kv in m.attrs["style"].split(";") if kv)
        out.append((int(m.attrs["data-step"]), int(m.attrs["data-axes"]),
                    *(float(style[k].rstrip("%")) for k in ("left", "top", "width", "height"))))
    return out


def test_figure_image_is_a_png_of_the_stated_size():
    from PIL import Image

    fig = figures.trajectory_figure(make_trace("Qin"))
    image = overlay.FigureImage.from_figure(fig)
    assert image.src.startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(image.src.split(",", 1)[1])))
    assert png.format == "PNG" and png.size == (image.width, image.height)
    assert (image.width, image.height) == tuple(int(round(v * 100)) for v in fig.get_size_inches())
    img = dom(image.image_html("alt " + EVIL)).find("img")
    assert img.attrs["src"] == image.src and img.attrs["alt"] == "alt " + EVIL
    assert (int(img.attrs["width"]), int(img.attrs["height"])) == (image.width, image.height)


@pytest.mark.parametrize("step", [0, 3, 5])
def test_marked_column_is_the_step_on_the_trajectory_axes(step):
    fig = figures.trajectory_figure(make_trace("Nguyen"))
    image = overlay.FigureImage.from_figure(fig)
    marks = image.overlay_html(step)
    assert "<img" not in marks  # a step sends the band only, never the image again
    boxes = _mark_boxes(marks)
    assert [(s, a) for s, a, *_ in boxes] == [(step, 0)]
    (ax,) = data_axes(fig)
    width_px, height_px = fig.get_size_inches() * fig.dpi
    (_, _, left, top, width, height) = boxes[0]
    # Independent check: where matplotlib itself puts the edges of column `step`.
    (x0, _), (x1, _) = ax.transData.transform([(step - 0.5, 0), (step + 0.5, 0)])
    assert left == pytest.approx(100 * x0 / width_px, abs=0.01)
    assert width == pytest.approx(100 * (x1 - x0) / width_px, abs=0.01)
    bbox = ax.get_window_extent()
    assert top == pytest.approx(100 * (1 - bbox.y1 / height_px), abs=0.01)
    assert height == pytest.approx(100 * bbox.height / height_px, abs=0.01)
    size = re.compile(r"max-width:(\d+)px;aspect-ratio:(\d+)/(\d+)")
    assert size.search(marks).groups() == size.search(image.image_html()).groups()  # the band's box = the image's


def test_a_figure_without_step_axes_has_no_marks():
    image = overlay.FigureImage.from_figure(figures.units_figure(make_trace("Qin", layers=1), "rnn"))
    assert image.axes == () and _mark_boxes(image.overlay_html(1)) == []


# ---------------------------------------------------------------------------------------------------------------
# Batch: the table and its CSV


def test_batch_table_rows_and_values():
    rows = [
        {"name": "Nguyen", "normalized": "Nguyen", "top1": "Vietnamese", "probability": 0.91234,
         "top_k": {"Vietnamese": 0.91234, "Chinese": 0.05, "Korean": 0.02}, "low_confidence": False,
         "set": ["Vietnamese"], "seen_as": ["Vietnamese"], "error": None},
        {"name": "Hong", "normalized": "Hong", "top1": "Chinese", "probability": 0.4667,
         "top_k": {"Chinese": 0.4667, "Korean": 0.3222, "Vietnamese": 0.1}, "low_confidence": True,
         "set": ["Chinese", "Korean", "Vietnamese"], "seen_as": ["Chinese", "Korean"], "error": None},
        {"name": "Qinx", "normalized": "Qinx", "top1": "Chinese", "probability": 0.5,
         "top_k": {"Chinese": 0.5, "Korean": 0.3, "Vietnamese": 0.1}, "low_confidence": True,
         "set": ["Chinese", "Korean"], "seen_as": [], "error": None},
        {"name": "123", "normalized": "", "top1": None, "probability": None, "top_k": {}, "low_confidence": None,
         "set": None, "seen_as": None, "error": "name has no letters"},
    ]
    table = batch.batch_table(rows)
    assert list(table.columns) == ["name", "error", "normalised", "top-1", "probability", "prediction set",
                                   "in training as", "top-3"]
    assert table.iloc[0].tolist()[:7] == ["Nguyen", "", "Nguyen", "Vietnamese", 0.9123, "Vietnamese", "Vietnamese"]
    assert table.iloc[0]["top-3"] == "Vietnamese 91.2% · Chinese 5.0% · Korean 2.0%"
    assert table.iloc[0]["error"] == ""
    assert table.iloc[1]["prediction set"] == "Chinese or Korean or Vietnamese"
    assert table.iloc[1]["in training as"] == "Chinese, Korean"
    assert table.iloc[2]["prediction set"] == "Chinese or Korean" and table.iloc[2]["in training as"] == ""
    assert table.iloc[3]["error"] == "name has no letters" and table.iloc[3]["top-1"] == ""
    assert table.iloc[3]["prediction set"] == "" and table.iloc[3]["in training as"] == ""
    assert table.iloc[3]["top-3"] == ""
    assert np.isnan(table.iloc[3]["probability"])
    assert "how sure" not in table.columns and not hasattr(batch, "SURE_WORDS")


NAMES_FOR_CSV = ["Nguyen", "Ślusàrski", "Иванов", "=1+1", "+Ivanov", "-Nguyen", "@Brady", "Hong", "Yilmaz"]


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_batch_table_of_real_predictions_gives_the_same_sets_and_lists_as_the_other_tabs(models, kind):
    rows = service.predict_batch(models, NAMES_FOR_CSV, kind, 3)
    table = batch.batch_table(rows)
    assert len(table) == len(NAMES_FOR_CSV) and table["name"].tolist() == NAMES_FOR_CSV
    answered = 0
    for name, row, (_, cells) in zip(NAMES_FOR_CSV, rows, table.iterrows()):
        if row["error"]:
            assert cells["error"] == row["error"]
            assert cells["prediction set"] == "" and cells["in training as"] == "" and cells["top-1"] == ""
            with pytest.raises(ValueError):
                models[kind].predict_details(name)
            continue
        answered += 1
        details = models[kind].predict_details(name, 3)  # one name at a time: an independent path
        assert cells["prediction set"] == " or ".join(details.set) == " or ".join(row["set"])
        assert cells["in training as"] == ", ".join(details.seen_as) == ", ".join(row["seen_as"])
        assert cells["top-1"] == details.top[0][0] == details.set[0]  # the set starts with the top language
        assert cells["probability"] == pytest.approx(details.top_probability, abs=5e-5 + 1e-6)
        assert cells["top-3"] == " · ".join(f"{lang} {100 * p:.1f}%" for lang, p in details.top)
    assert answered >= 6
    # The real rows include both kinds of answer, so the columns are not trivially constant.
    assert table["prediction set"].str.contains(" or ").any() and (table["in training as"] != "").any()
    assert ((table["in training as"] == "") & (table["error"] == "")).any()


def test_batch_csv_has_a_bom_reads_back_as_the_table_and_defuses_formulas(models):
    table = batch.batch_table(service.predict_batch(models, NAMES_FOR_CSV, "gru", 3))
    path = Path(service.write_csv(table, "test"))
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert "Ślusàrski".encode() in raw and "Иванов".encode() in raw
    back = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(back.columns) == list(table.columns)
    assert len(back) == len(table)
    for col in table.columns:
        if col == "probability":
            got = [float(v) if v else math.nan for v in back[col]]
            np.testing.assert_allclose(got, table[col].to_numpy(float), equal_nan=True)
            continue
        expected = ["'" + v if v[:1] in ("=", "+", "-", "@") else v for v in table[col]]
        assert back[col].tolist() == expected, col
    assert back["name"].tolist()[3:7] == ["'=1+1", "'+Ivanov", "'-Nguyen", "'@Brady"]
    assert not any(str(v)[:1] in "=+-@" for col in back.columns for v in back[col] if v)
    path.unlink()


# ---------------------------------------------------------------------------------------------------------------
# Model card


def fake_metrics(n=18, seed=0):
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 20, size=(n, n))
    cm[3] = 0  # a language absent from the test set
    per = {lang: {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": int(cm[i].sum())}
           for i, lang in enumerate(LABELS[:n])}
    return {
        "test": {"accuracy": 0.81234, "macro_f1": 0.6, "balanced_accuracy": 0.55, "top3_accuracy": 0.95,
                 "per_language": per, "confusion_matrix": cm.tolist()},
        "history": [{"epoch": e, "train_loss": 2.0 / e, "val_accuracy": 0.5 + e / 100, "val_macro_f1": 0.3 + e / 100,
                     "seconds": 1.0} for e in range(1, 6)],
        "best_epoch": 4,
        "baselines": {"majority": {"accuracy": 0.47, "macro_f1": 0.04, "balanced_accuracy": 0.06,
                                   "top3_accuracy": 0.6},
                      "tfidf_logreg": {"accuracy": 0.8, "macro_f1": 0.5, "balanced_accuracy": 0.45,
                                       "top3_accuracy": 0.9}},
        "split_sizes": {"train": 100, "val": 10, "test": 10},
        "training_seconds": 123.4,
        "conformal": {"coverage_asked": 0.9, "test": {
            "n": 120, "coverage": 0.9012, "mean_size": 1.4567, "singletons": 0.7321,
            "per_language": {lang: {"coverage": round(1 - i / 40, 4) if i != 5 else 0.1234,
                                    "mean_size": 1 + i / 7, "support": 10 + i}
                             for i, lang in enumerate(LABELS[:n]) if i != 3}}},  # one language without sets
    }


def test_headline_table_lists_models_then_shared_baselines_once():
    m = fake_metrics()
    table = model_card.headline_table({"rnn": m, "gru": fake_metrics(seed=1)})
    assert table["model"].tolist()[:2] == ["RNN", "GRU"]
    assert len(table) == 4  # identical baselines are listed once
    assert table.loc[0, "accuracy"] == 0.812
    assert table.loc[2, "accuracy"] == 0.47 and "most frequent" in table.loc[2, "model"]
    assert table.loc[3, "top-3 accuracy"] == 0.9 and "TF-IDF" in table.loc[3, "model"]
    other = fake_metrics()
    other["baselines"] = {"majority": {"accuracy": 0.5}}
    split = model_card.headline_table({"rnn": m, "gru": other})
    assert len(split) == 5  # different splits: each model's own
    assert split["model"].tolist()[2:] == ["baseline: always the most frequent language (RNN split)",
                                           "baseline: character n-gram TF-IDF + logistic regression (RNN split)",
                                           "baseline: always the most frequent language (GRU split)"]


def test_per_language_table_matches_the_metrics():
    m = fake_metrics()
    table = model_card.per_language_table(m)
    assert list(table.columns) == ["language", "precision", "recall", "F1", "set coverage", "mean set size",
                                   "support"]
    assert table["language"].tolist() == LABELS
    assert table["support"].tolist() == [m["test"]["per_language"][lang]["support"] for lang in LABELS]
    assert set(table["F1"]) == {0.333} and set(table["recall"]) == {0.25}
    sets = m["conformal"]["test"]["per_language"]
    for _, row in table.iterrows():
        if row["language"] in sets:
            assert row["set coverage"] == round(sets[row["language"]]["coverage"], 3)
            assert row["mean set size"] == round(sets[row["language"]]["mean_size"], 2)
        else:  # a language the sets' metrics do not cover: no number rather than a wrong one
            assert pd.isna(row["set coverage"]) and pd.isna(row["mean set size"])
    assert table.loc[table["language"] == LABELS[5], "set coverage"].item() == 0.123
    without = model_card.per_language_table({k: v for k, v in m.items() if k != "conformal"})
    assert without["set coverage"].isna().all() and without["mean set size"].isna().all()
    assert without["F1"].tolist() == table["F1"].tolist()


def test_sets_md_gives_the_measured_coverage_size_and_least_covered_languages():
    m = fake_metrics()
    test = m["conformal"]["test"]
    text = model_card.sets_md(m)
    assert "90% of such names" in text
    assert "held the right language **90.1%** of the time" in text
    assert "with 1.46 languages on average and one language 73.2% of the time" in text
    # The three least covered, computed here: LABELS[5] (0.1234), then the two last labels.
    low = sorted(test["per_language"], key=lambda lang: test["per_language"][lang]["coverage"])[:3]
    assert low == [LABELS[5], LABELS[17], LABELS[16]]
    listed = ", ".join(f"{lang} {100 * test['per_language'][lang]['coverage']:.1f}% "
                       f"({test['per_language'][lang]['support']} names)" for lang in low)
    assert listed + " are the least covered" in text
    assert model_card.sets_md({}) == "" and model_card.sets_md({"conformal": {"coverage_asked": 0.9}}) == ""


def test_a_checkpoint_label_is_text_not_markup_in_the_model_card():
    """A label is the checkpoint's to choose: in the Model card it must read as text (a label "<img src=…>" once
    made the visitor's browser fetch a URL)."""
    m = fake_metrics()
    per = m["conformal"]["test"]["per_language"]
    evil = '<img src="http://example.invalid/x.png">'
    per[evil] = {**per[LABELS[5]], "coverage": 0.0}  # the least covered: listed first
    m["test"]["per_language"][evil] = m["test"]["per_language"][LABELS[5]]
    for text in (model_card.sets_md(m), model_card.test_share_md(m, evil)):
        assert "<img" not in text and "&lt;img src=&quot;http://example.invalid/x.png&quot;&gt;" in text


def test_confusion_figure_colours_rows_by_share_and_prints_counts():
    m = fake_metrics()
    fig = figures.confusion_figure(m, LABELS)
    ax = fig.axes[0]
    cm = np.asarray(m["test"]["confusion_matrix"], float)
    expected = np.zeros_like(cm)
    for i, row in enumerate(cm):
        if row.sum():
            expected[i] = row / row.sum()
    np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), expected)
    assert len(ax.texts) == int((cm > 0).sum())
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(cm[cm > 0].astype(int).tolist())
    assert [t.get_text() for t in ax.get_yticklabels()] == LABELS
    assert [t.get_text() for t in ax.get_xticklabels()] == LABELS


def test_training_curve_plots_the_history_and_keys_the_kept_epoch():
    m = fake_metrics()
    fig = figures.training_curve_figure(m)
    loss_ax, val_ax = fig.axes[:2]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [h["train_loss"] for h in m["history"]])
    acc, f1 = val_ax.get_lines()[:2]
    np.testing.assert_allclose(acc.get_ydata(), [h["val_accuracy"] for h in m["history"]])
    np.testing.assert_allclose(f1.get_ydata(), [h["val_macro_f1"] for h in m["history"]])
    for ax in (loss_ax, val_ax):
        (best,) = [line for line in ax.get_lines() if line.get_gid() == "best-epoch"]
        assert list(best.get_xdata()) == [4, 4] and best.get_linestyle() == "--"
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "kept: epoch 4" in legend
    assert [t.get_text() for t in val_ax.get_legend().get_texts()] == ["accuracy", "macro-F1", "kept: epoch 4"]
    no_best = figures.training_curve_figure({**m, "best_epoch": None})
    assert not any(line.get_gid() == "best-epoch" for ax in no_best.axes for line in ax.get_lines())


def _calibrated_metrics():
    from namecls.posthoc import calibration

    rng = np.random.default_rng(0)
    logits = 3 * rng.normal(size=(600, 18))
    targets = np.array([rng.choice(18, p=row) for row in calibration.softmax(logits / 3)])
    _, fields = calibration.calibrate(logits[:300], targets[:300], logits[300:], targets[300:])
    return fields


def test_reliability_figure_shows_the_bins_before_and_after():
    metrics = _calibrated_metrics()
    test = metrics["calibration"]["test"]
    fig = figures.reliability_figure(metrics, "GRU")
    left, right = fig.axes[:2]
    for ax, when in ((left, "before"), (right, "after")):
        filled = [b for b in test[f"reliability_{when}"] if b["count"]]
        bars = [p for p in ax.patches if p.get_gid() == f"bars-{when}"] or list(ax.containers[0])
        assert [round(b.get_height(), 6) for b in bars] == [round(b["accuracy"], 6) for b in filled]
        (dots,) = [line for line in ax.get_lines() if line.get_gid() == f"dots-{when}"]
        np.testing.assert_allclose(dots.get_xdata(), [b["confidence"] for b in filled])
        assert f"ECE {test[f'ece_{when}']:.3f}" in ax.get_title()
    assert f"T = {metrics['calibration']['temperature']:.2f}" in right.get_title()
    empty = figures.reliability_figure({}, "")
    assert any("not calibrated" in t.get_text() for t in empty.axes[0].texts)


def test_calibration_md_reports_ece_and_the_flag():
    metrics = _calibrated_metrics()
    text = model_card.calibration_md(metrics)
    cal, flag = metrics["calibration"], metrics["low_confidence"]
    assert f"{cal['test']['ece_before']:.3f}" in text and f"**{cal['test']['ece_after']:.3f}**" in text
    assert f"T = {cal['temperature']:.3f}" in text and f"**{100 * flag['threshold']:.1f}%**" in text
    assert f"It flags {100 * flag['test']['flag_rate']:.1f}% of test names" in text
    assert model_card.calibration_md({}) == ""


def test_facts_and_limitations(models):
    for clf in models.values():
        facts = dict(model_card.facts_table(clf.config, clf.metrics).values.tolist())
        assert facts["protocol"].startswith(clf.config["protocol"] + ": ")
        assert f"hidden_size={clf.config['model']['hidden_size']}" in facts["architecture"]
        assert "kind=" not in facts["architecture"]
        assert facts["languages"] == "18"
        assert facts["split seed"] == str(clf.config["split_seed"])
        assert facts["data fingerprint"] == clf.config["data_fingerprint"][:16] + "…"
    text = model_card.LIMITATIONS_MD
    for must in ("not a nationality", "18 languages", "Demirkan", "47%"):
        assert must in text


def test_test_share_is_the_languages_share_of_the_support():
    m = fake_metrics()
    per = m["test"]["per_language"]
    total = sum(s["support"] for s in per.values())
    n = per["Russian"]["support"]
    assert model_card.test_share_md(m) == \
        f"Russian is {100 * n / total:.1f}% of this test set ({n:,} of {total:,} names)."
    assert model_card.test_share_md(m, "Klingon") == ""


def test_real_metrics_render(models):
    table = model_card.headline_table({k: c.metrics for k, c in models.items()})
    assert table["model"].tolist()[:2] == ["RNN", "GRU"]
    for i, clf in enumerate(models.values()):
        assert table.loc[i, "accuracy"] == pytest.approx(clf.metrics["test"]["accuracy"], abs=5e-4)
    for kind, clf in models.items():
        per = model_card.per_language_table(clf.metrics)
        assert per["language"].tolist() == clf.labels
        sets = _metrics_file(kind)["conformal"]["test"]  # read from the file, not through namecls.load
        assert per["set coverage"].tolist() == [round(sets["per_language"][lang]["coverage"], 3)
                                                for lang in clf.labels]
        assert per["mean set size"].tolist() == [round(sets["per_language"][lang]["mean_size"], 2)
                                                 for lang in clf.labels]
        text = model_card.sets_md(clf.metrics)
        assert f"**{100 * sets['coverage']:.1f}%**" in text and f"{sets['mean_size']:.2f} languages" in text
        assert f"one language {100 * sets['singletons']:.1f}% of the time" in text
        worst = min((lang for lang, s in sets["per_language"].items() if s["support"] >= 5),
                    key=lambda lang: sets["per_language"][lang]["coverage"])
        w = sets["per_language"][worst]
        assert "least covered" in text and f"{worst} {100 * w['coverage']:.1f}% ({w['support']} names)" in text
        # and the per-language supports of the sets are the test split's
        assert {lang: s["support"] for lang, s in sets["per_language"].items()} == \
            {lang: s["support"] for lang, s in clf.metrics["test"]["per_language"].items()}
        figs = figures.card_figures(clf.metrics, clf.labels, html.MODEL_LABELS[kind])
        assert list(figs) == list(figures.CARD_FIGURES)
        for fig in figs.values():  # each titled with the model (as a suptitle, or the single axes' title)
            titles = [fig.get_suptitle(), *(ax.get_title() for ax in fig.axes)]
            assert any(t.startswith(f"{html.MODEL_LABELS[kind]}: ") for t in titles), titles
        support = sum(s["support"] for s in clf.metrics["test"]["per_language"].values())
        assert int(model_card.test_share_md(clf.metrics).split(" of ")[-1].split()[0].replace(",", "")) == support


def test_model_card_survives_a_checkpoint_without_metrics():
    empty = {}
    table = model_card.headline_table({"rnn": empty, "gru": fake_metrics()})
    assert table["model"].tolist()[:2] == ["RNN", "GRU"] and np.isnan(table.loc[0, "accuracy"])
    assert model_card.per_language_table(empty).empty
    assert model_card.sets_md(empty) == ""
    assert not np.asarray(figures.confusion_figure(empty, LABELS).axes[0].get_images()[0].get_array()).any()
    assert all(not ax.get_lines()[0].get_xdata().size for ax in figures.training_curve_figure(empty).axes[:2])
    assert model_card.test_share_md(empty) == ""
    assert dict(model_card.facts_table({}, {}).values.tolist())["training time"] == "?"


# ---------------------------------------------------------------------------------------------------------------
# The examples: what the page says about each is true


@pytest.fixture(scope="module")
def listed(data_dir) -> dict[str, set[str]]:
    """Each data file's names, normalised, read here from the files (not through namecls.data.names.read_names)."""
    return {path.stem: {namecls.normalize(line.strip()).text
                        for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
            for path in sorted(Path(data_dir).glob("*.txt"))}


@pytest.fixture(scope="module")
def splits(names_data, models):
    out = {}
    for kind, clf in models.items():
        split = make_split(names_data, clf.config["protocol"], int(clf.config["split_seed"]))
        out[kind] = {part: set(split.part(part)[0]) for part in ("train", "val", "test")}
    return out


@pytest.fixture(scope="module")
def trained_as(names_data, models) -> dict[str, dict[str, set[str]]]:
    """Each model's training split as {normalised name: its languages}, scanned here from the split."""
    out = {}
    for kind, clf in models.items():
        split = make_split(names_data, clf.config["protocol"], int(clf.config["split_seed"]))
        names, targets = split.part("train")
        table: dict[str, set[str]] = {}
        for name, target in zip(names, targets):
            table.setdefault(name, set()).add(names_data.labels[int(target)])
        out[kind] = table
    return out


@pytest.mark.slow
@pytest.mark.parametrize("example", common.EXAMPLES, ids=[e.name for e in common.EXAMPLES])
def test_what_the_page_says_about_each_example_is_true(example, listed, splits, trained_as, models):
    text = namecls.normalize(example.name).text
    assert example.says.startswith(example.name + " ")
    read_as = re.search(r"read as (\w+)", example.says)
    if read_as:
        assert read_as.group(1) == text
    assert {lang for lang, names in listed.items() if text in names} == set(example.languages)
    alone = re.search(r"both say (\w+) alone", example.says)  # "both say Irish alone": both sets are exactly that
    assert (alone is not None) <= (example.single is True)
    for kind, clf in models.items():
        in_training = trained_as[kind].get(text, set())
        if example.held_out:
            assert text not in splits[kind]["train"], f"{example.name} is a {kind} training name"
            assert text in splits[kind]["test"], f"{example.name} is not a {kind} test name"
        elif example.languages:  # a name of the data: in the training lists under exactly its languages
            assert in_training == set(example.languages), f"{kind}: {example.name} trained as {in_training}"
        details = clf.predict_details(example.name, 3)
        assert set(details.seen_as) == in_training and details.seen_as == sorted(details.seen_as, key=LABELS.index)
        if "in the training lists" in example.says:
            assert details.seen_as, f"{kind}: {example.name} is not in the training lists"
        if "unseen" in example.says:
            assert details.seen_as == [], f"{kind}: {example.name} is in the training lists"
        top = [lang for lang, _ in details.top]
        if len(example.languages) == 1:
            assert top[0] == example.languages[0], f"{kind}: {details.top}"
        elif len(example.languages) == 2:
            assert set(top[:2]) == set(example.languages), f"{kind}: {details.top}"
            assert set(example.languages) <= set(details.set), f"{kind}: set {details.set}"  # both sets hold both
        if example.single is True:
            assert len(details.set) == 1, f"{kind}: set {details.set}"
        elif example.single is False:
            assert len(details.set) > 1, f"{kind}: set {details.set}"
        if alone:
            assert details.set == [alone.group(1)], f"{kind}: set {details.set}"
        assert details.set == clf.predict_set(example.name) and details.set[0] == top[0]


def test_examples_make_every_kind_of_claim():
    kinds = {(bool(e.languages), len(e.languages), e.held_out, e.single) for e in common.EXAMPLES}
    assert any(held for _, _, held, _ in kinds) and any(n == 2 for _, n, _, _ in kinds)
    assert any(listed and not held for listed, _, held, _ in kinds)  # "in the training lists" is claimed
    assert {s for *_, s in kinds} >= {True, False}  # one-language and several-language sets are both claimed
    assert any(not listed and single for listed, _, _, single in kinds)  # "one language, and wrong"
    assert all(e.single is False for e in common.EXAMPLES if len(e.languages) == 2)  # "both sets hold both"
    assert not hasattr(common.EXAMPLES[0], "confident")


# ---------------------------------------------------------------------------------------------------------------
# Common helpers


def test_top_k_dict_keeps_order_and_plain_floats():
    out = common.top_k_dict([("Vietnamese", np.float32(0.5)), ("Chinese", np.float64(0.25))])
    assert list(out.items()) == [("Vietnamese", 0.5), ("Chinese", 0.25)]
    assert all(type(v) is float for v in out.values())


def test_checked_gives_the_name_or_the_reason():
    assert common.checked("Nguyen")[1] is None and common.checked("Nguyen")[0].text == "Nguyen"
    assert common.checked("   ") == (None, "name is empty")
    assert "no letters" in common.checked("123")[1]
    assert common.checked(None)[1]


# ---------------------------------------------------------------------------------------------------------------
# Step through: the view built once per name


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_step_view_units_are_those_that_pushed_the_answer_most(models, kind):
    """The view's units: the N_PUSHERS units whose weight × value pushed the final answer's logit up most, then
    the N_PUSHERS that pushed it down most, recomputed here from the readout's weights and the read state."""
    clf = models[kind]
    view = step_through.StepView.build(clf, "O'Connell", 3)
    trace = view.trace
    assert view.kind == kind and view.k == 3 and view.length == len("O'Connell")
    c = trace.target
    V = clf.model.config.vocab_size
    if kind == "gru":
        weight, state = clf.model.readout.weight[c].detach().numpy(), trace.layers[-1, -1]
    else:  # the RNN's answer reads the state before the last letter
        weight, state = clf.model.readout.weight[c, V:].detach().numpy(), trace.layers[-1, -2]
    push = weight.astype(np.float64) * state
    n = step_through.N_PUSHERS
    top = [int(j) for j in np.argsort(-push, kind="stable")[:n] if push[j] > 0]
    bottom = [int(j) for j in np.argsort(push, kind="stable")[:n] if push[j] < 0]
    assert [u for _, u in view.units] == top + bottom
    layer = trace.layers.shape[0] - 1
    assert all(l == layer for l, _ in view.units)
    language = clf.labels[c]
    for (label, value), (l, u) in zip(view.unit_choices(), view.units):
        assert value == f"{l}:{u}"
        assert label.startswith(f"L{l + 1} #{u}: " if trace.layers.shape[0] > 1 else f"#{u}: ")
        assert float(label.split(": ")[1].split()[0].replace("−", "-")) == pytest.approx(push[u], abs=0.006)
        assert label.endswith(f"for {language}")


def test_step_view_redraws_the_trajectory_only_when_k_changes(models):
    view = step_through.StepView.build(models["gru"], "Nguyen", 3)
    assert view.with_k(3) is view
    five = view.with_k(5)
    assert five.k == 5 and five.trace is view.trace and five.units == view.units
    assert five.trajectory.src != view.trajectory.src
    assert five.with_k(3).trajectory.src == view.trajectory.src  # the same figure for the same k
    with pytest.raises(ValueError):
        step_through.StepView.build(models["gru"], "123", 3)


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_explain_bank_is_the_maps_sample_in_the_same_order(models, kind):
    """The map's neighbour rings take a neighbour's bank index as an index into the projection's sample."""
    clf = models[kind]
    points, label_index = clf.projection.sample()
    assert clf.explain.bank_names == clf.projection.sample_names()
    assert clf.explain.bank_languages == [clf.labels[i] for i in label_index]
    assert len(clf.explain.bank_states) == len(points)
    # The bank's states are the sample names' final states: the projection puts them on the sample's points.
    np.testing.assert_allclose(clf.projection.transform(clf.explain.bank_states.astype(np.float64)), points,
                               atol=2e-2)


# ---------------------------------------------------------------------------------------------------------------
# Compare: one column per model, and "Yours" (a model trained in the session on some of the languages)


@dataclass
class _Labelled:
    """A stand-in classifier: only what :func:`compare.about_yours_html` reads."""

    kind: str
    labels: list


@pytest.fixture(scope="module")
def three_language_model(data_dir):
    """A tiny GRU trained on three languages, as the Train tab makes one (a few seconds)."""
    return namecls.fit(data_dir, languages=["Chinese", "Japanese", "Russian"], hidden_size=16, epochs=1)


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_compare_column_is_the_traces_answer_letters_trajectory_and_decision(models, kind):
    clf = models[kind]
    trace = clf.trace("Brady")
    column = compare.column(trace, 4, html.MODEL_LABELS[kind], common.set_facts(clf))
    assert list(column) == list(compare.PARTS)
    assert column["label"] == {lang: pytest.approx(p) for lang, p in clf.predict("Brady", k=4)}
    parts = _answer_parts(column["answer"])
    assert parts["set"] == clf.predict_details("Brady", 3).set  # the same set as Classify's
    assert [b.text for b in dom(column["letters"]).find("table", "letters").find_all("td", "ch")] == list("Brady")
    tree = dom(column["trajectory"])
    assert tree.find("img").attrs["alt"] == f"{html.MODEL_LABELS[kind]}: probability of the top languages after " \
                                           f"each prefix"
    chips = [c.attrs["data-language"] for c in tree.find_all("span", "chip")]
    assert chips == figures.trajectory_languages(trace, 4) and len(chips) == 4
    assert dom(column["decision"]).text.startswith(f"{html.MODEL_LABELS[kind]}: {trace.top(-1, 1)[0][0]} (")


@pytest.mark.slow
def test_compare_column_of_a_three_language_model_shows_only_its_languages(three_language_model):
    clf = three_language_model
    trace = clf.trace("Fujita")
    column = compare.column(trace, 18, "Yours", common.set_facts(clf))  # the tab's top-k goes up to 18
    assert list(column["label"]) == [lang for lang, _ in clf.predict("Fujita", k=3)]  # three, none made up
    assert sum(column["label"].values()) == pytest.approx(1.0, abs=1e-4)
    chips = [c.attrs["data-language"] for c in dom(column["trajectory"]).find_all("span", "chip")]
    assert sorted(chips) == ["Chinese", "Japanese", "Russian"]
    assert "counts as 1/3" in dom(column["letters"]).text  # the key speaks of this model's three languages
    assert dom(column["decision"]).text.startswith("Yours: ")
    about = dom(compare.about_yours_html(clf)).text
    assert about == ("Yours: the GRU you trained in “Train your own”, on 3 languages (Chinese, Japanese and "
                     "Russian): its answer is always one of them.")


def _line_colours(fig) -> dict[str, str]:
    (ax,) = data_axes(fig)
    return {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()}


def _chip_colours(fragment: str) -> dict[str, str]:
    return {c.attrs["data-language"]: re.search(r"background:(#[0-9a-f]{6})", c.find("span", "dot").attrs["style"])
            .group(1) for c in dom(fragment).find_all("span", "chip")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Fujita", "Hong", "Nguyen"])
def test_a_three_language_model_colours_each_language_as_the_18_language_models_do(models, three_language_model,
                                                                                   name):
    """Side by side (Compare) or one after the other (Step through), Chinese is one colour in every model's figure
    and key: the colour follows the language's name, not its place in the model's label list."""
    mine, theirs = three_language_model, models["gru"]
    assert mine.labels == ["Chinese", "Japanese", "Russian"]  # positions 0, 1, 2 here; 1, 10, 14 in the GRU
    ours_trace, gru_trace = mine.trace(name), theirs.trace(name)
    ours_lines = _line_colours(figures.trajectory_figure(ours_trace, 3))
    gru_lines = _line_colours(figures.trajectory_figure(gru_trace, 18))
    ours_key = _chip_colours(html.legend_html(figures.trajectory_languages(ours_trace, 3), mine.labels))
    gru_key = _chip_colours(html.legend_html(theirs.labels, theirs.labels))
    ours_column = _chip_colours(compare.column(ours_trace, 3, "Yours", common.set_facts(mine))["trajectory"])
    gru_column = _chip_colours(compare.column(gru_trace, 18, "GRU", common.set_facts(theirs))["trajectory"])
    assert set(ours_lines) == set(ours_key) == set(ours_column) == set(mine.labels)
    for lang in mine.labels:
        today = palette.LANGUAGE_COLORS[theirs.labels.index(lang)]  # the 18-language models' colour, unchanged
        assert ours_lines[lang] == gru_lines[lang] == today
        assert ours_key[lang] == gru_key[lang] == ours_column[lang] == gru_column[lang] == today
    assert len(set(ours_lines.values())) == 3


def test_about_yours_and_the_gone_notice_show_hostile_text_as_text(three_language_model):
    hostile = _Labelled(three_language_model.kind, ["Irish", EVIL])
    assert "Irish and " + EVIL in assert_shown_as_text(compare.about_yours_html(hostile)).text
    tree = assert_shown_as_text(html.notice_html(EVIL))
    assert tree.find("div", "notice").attrs["role"] == "status"


def test_gone_message_says_why_and_what_to_do():
    store = yours.TrainedModels(capacity=7, seconds=600)
    by_cap, by_age = yours.gone_message("cap", store), yours.gone_message("age", store)
    assert "keeps the 7 most recently trained models" in by_cap
    assert "keeps a trained model for 10 minutes" in by_age
    for text in (by_cap, by_age):
        assert text.startswith("The model you trained is no longer on the server") and "Train it again" in text


def test_a_gone_yours_is_a_notice_and_leaves_the_radios():
    import gradio as gr

    me, never = gr.Request(session_hash="test-ui-gone"), gr.Request(session_hash="test-ui-never")
    others = [f"test-ui-other-{i}" for i in range(yours.TRAINED.capacity)]
    try:
        yours.TRAINED.put("test-ui-gone", object())
        assert common.gone_notice("yours", me) is None and common.offered("yours", me) is None  # it is there
        for other in others:  # newer models push it out
            yours.TRAINED.put(other, object())
        notice = dom(common.gone_notice("yours", me))
        assert notice.find("div", "notice").attrs["role"] == "status"
        assert notice.text.startswith(yours.gone_message("cap")) and "the GRU is chosen in its place" in notice.text
        assert common.gone_notice("gru", me) is None  # another model answers as ever
        radio = common.offered("yours", me)
        assert radio.choices == common.MODEL_CHOICES and radio.value == common.DEFAULT_MODEL
        assert common.offered("rnn", me).value == "rnn"
        assert common.gone_notice("yours", never) is None and common.offered("yours", never) is None  # never had one
    finally:
        for session in ("test-ui-gone", *others):
            yours.TRAINED.drop(session)


# ---------------------------------------------------------------------------------------------------------------
# API endpoints


def test_api_endpoints_are_the_services_functions(models):
    import gradio as gr

    from namecls.ui import api

    endpoints = {f.__name__: f for f in api.endpoints(models)}
    assert list(endpoints) == ["predict", "predict_details", "trace", "predict_batch"]
    assert endpoints["predict"]("Nguyen", "rnn", 2) == {lang: p for lang, p in models["rnn"].predict("Nguyen", 2)}
    hong = endpoints["predict_details"]("Hong")
    direct = models["gru"].predict_details("Hong")
    assert hong["low_confidence"] == direct.low_confidence
    assert hong["set"] == direct.set and hong["seen_as"] == direct.seen_as
    with pytest.raises(gr.Error) as err:
        endpoints["predict"]("<123>")
    assert "<123>" in err.value.message  # the reason, as plain text for API clients: not HTML-escaped


def test_model_card_states_the_real_surname_figures_of_the_report():
    """The model card's "Outside the lists" words and table carry the report's numbers (read here), the final set's
    once measured, and say the RNN's equal-prior sets are large."""
    from namecls.ui.tabs import model_card

    report = _outside_lists()
    gru = report["results"]["gru"]
    part = "final" if "final" in gru["lists"] else "dev"
    words = model_card.outside_lists_md(report)
    for value in (gru["lists"][part]["top1"], gru["lists"][part]["coverage"], gru["equal"][part]["top1"],
                  gru["equal"][part]["coverage"], gru["lists"]["test"]["top1"]):
        assert f"{100 * value:.1f}%" in words
    assert f"{report['results']['rnn']['equal'][part]['mean_size']:.1f} languages on average" in words
    table = model_card.outside_lists_table(report)
    assert len(table) == 2 * 2 * 2  # two models, two priors, the test split and one real-surname set
    equal_real = table[(table["model"] == "GRU") & (table["expecting"] == "all equally")
                       & (table["names"] == "real surnames")]
    assert equal_real["90% set held it"].item() == round(gru["equal"][part]["coverage"], 3)
    assert equal_real["top-1"].item() == round(gru["equal"][part]["top1"], 3)
    assert model_card.outside_lists_md({}) == "" and model_card.outside_lists_table({}).empty


def test_user_errors_shows_what_the_caller_can_fix_and_logs_the_rest(caplog):
    """Input the caller can put right reaches the page as it is; a fault of namecls (a bug, a broken checkpoint)
    is logged with its traceback and the page gets a generic message, not its details."""
    import logging

    import gradio as gr

    from namecls import CheckpointError, InputError
    from namecls.serving import service

    with pytest.raises(gr.Error) as info, common.user_errors(html=False):
        service.check_k(0, 18)
    assert info.value.message == "k must be a whole number from 1 to 18, not 0"
    for fault in (KeyError("internal detail"), CheckpointError("/srv/checkpoints/gru/config.json: internal detail"),
                  ValueError("internal detail: a library bug, not the visitor's input")):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="namecls"):
            with pytest.raises(gr.Error) as info, common.user_errors():
                raise fault
        assert info.value.message == common.FAULT_MESSAGE and "internal detail" not in info.value.message
        assert "internal detail" in caplog.text and "Traceback" in caplog.text
    assert issubclass(InputError, ValueError)  # code that catches ValueError still catches it
