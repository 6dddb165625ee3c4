"""Every HTML fragment the app shows, and the page's CSS (``namecls/ui/style.css``).

Functions take plain data (a :class:`~namecls.inference.Trace`, numbers, lists) and return a string in which every
piece of user text is escaped (:func:`esc`); none of them runs a model. Steps are 0-based indices into the name's
characters: step ``t`` is the state after reading ``chars[t]``.
"""

from __future__ import annotations

import html
import math
from importlib import resources

import numpy as np

from ...data.names import Normalized
from .palette import (
    AGAINST_COLOR,
    ATTRIBUTION_SCALE,
    FOR_COLOR,
    GATE_SCALE,
    STATE_SCALES,
    Scale,
    gradient_css,
    language_color,
    scale_color,
)

MODEL_LABELS = {"rnn": "RNN", "gru": "GRU", "yours": "model you trained"}
ALL_LANGUAGES = 18  # the names data's languages: a model trained on fewer says which it can answer

# The whole app's CSS (launch(css=...)), kept as a stylesheet of its own.
CSS = (resources.files("namecls.ui") / "style.css").read_text(encoding="utf-8")

# CSS in the page's head: outside the app's content, which launch(css=...) cannot reach (gradio scopes that to
# `.contain`), and there from the first paint. On a phone the side margins go from gradio's 32 px to 6 px, so a
# name's letter tiles fit the screen.
HEAD = """<style>
/* the page's width from the first paint: set by the app's css (loaded later) it moved the whole page twice while
   loading, a layout shift of 0.64 */
.gradio-container { width: 100% !important; max-width: 1200px !important; margin: 0 auto !important; }
@media (max-width: 640px) { .gradio-container .main.fillable { padding-left: 6px !important;
                                                               padding-right: 6px !important; } }
</style>"""

# ---------------------------------------------------------------------------------------------------------------
# Text helpers


def esc(text) -> str:
    """HTML-escape user text; also ``{ } $``, so gr.HTML's template syntax never sees it."""
    return (html.escape(str(text), quote=True).replace("{", "&#123;").replace("}", "&#125;")
            .replace("$", "&#36;"))


def percent(p: float) -> str:
    return f"{100 * p:.1f}%"


def display_char(c: str) -> str:
    """A character as a label: a space becomes a visible '␣'."""
    return "␣" if c == " " else c


def clamp_step(step, length: int) -> int:
    """A valid 0-based step for a name of ``length`` characters (non-numbers → the last step)."""
    try:
        step = int(step)
    except (TypeError, ValueError):
        step = length - 1
    return max(0, min(step, length - 1))


def chip(language: str, labels: list[str], text: str | None = None) -> str:
    """A language's colour dot (by its name; grey if ``labels``, the model's languages, lack it) and its name (or
    ``text``)."""
    color = language_color(language) if language in labels else "#888"
    return (f'<span class="chip" data-language="{esc(language)}"><span class="dot" style="background:{color}">'
            f'</span>{esc(text if text is not None else language)}</span>')


def notice_html(text: str) -> str:
    """A plain-text message about the page's state (not an answer), e.g. why a model is no longer offered."""
    return f'<div class="notice" role="status">{esc(text)}</div>'


def rejected_html(reason: str) -> str:
    """Why a name was not read, under its box ("Cannot read this name: name is empty."); no answer beside it."""
    return f'<div class="notice rejected" role="alert">Cannot read this name: {esc(reason.rstrip("."))}.</div>'


def legend_html(languages: list[str], labels: list[str], lead: str = "") -> str:
    """The colour key of a figure: one chip per language, wrapping onto more lines on a narrow screen, after
    ``lead`` (plain text: what the lines are)."""
    first = f'<span class="legend-lead">{esc(lead)}</span>' if lead else ""
    return f'<div class="chips legend">{first}{"".join(chip(lang, labels) for lang in languages)}</div>'


# ---------------------------------------------------------------------------------------------------------------
# The answer: normalisation, how sure, when it was decided


def normalisation_html(norm: Normalized) -> str:
    """One line saying what normalisation did, e.g. ``Ślusàrski → Slusarski``, and which characters it dropped."""
    original, text = esc(norm.original), esc(norm.text)
    body = f"<code>{text}</code> is read as typed." if not norm.changed and not norm.dropped else \
        f"<code>{original}</code> → <code>{text}</code>"
    if norm.dropped:
        body += " · dropped: " + " ".join(f"<code>{esc(c)}</code>" for c in norm.dropped)
    return f'<div class="norm-line">Normalisation: {body}</div>'


def languages_text(languages: list[str]) -> str:
    """'Vietnamese', 'Vietnamese or Chinese', 'Polish, English or Czech' (escaped, in bold)."""
    bold = [f"<b>{esc(lang)}</b>" for lang in languages]
    return bold[0] if len(bold) == 1 else ", ".join(bold[:-1]) + " or " + bold[-1]


def answer_html(details: dict, facts: dict) -> str:
    """The whole name's answer, worded the same in every tab: its prediction set with what the set's coverage
    means as measured, whether the name is in the training lists, and the top probability and entropy.
    ``details``: set, seen_as, top_probability, entropy (:func:`namecls.ui.common.whole_name` or
    :func:`namecls.serving.service.predict_details`); ``facts``: :func:`namecls.ui.common.set_facts`."""
    languages, seen = details.get("set"), details.get("seen_as")
    if not languages:  # a checkpoint without prediction sets: its top language, no promise
        return _answer_without_set(details, facts)
    coverage = f"{100 * facts['coverage']:g}%"
    alone = " alone" if len(languages) == 1 else ""
    record = set_record(facts)
    if seen is None:
        seen_line = ""
    elif seen:
        seen_line = f"In the training lists as: {', '.join(esc(lang) for lang in seen)}."
    else:
        seen_line = "Not in the training lists: the answer is the network's generalisation."
    n = facts["n_labels"]
    return (f'<div class="answer" data-set-size="{len(languages)}" data-seen="{_seen_flag(seen)}">'
            f'<div class="answer-set">{languages_text(languages)}{alone} <span class="small-note nowrap">'
            f'({coverage} prediction set{", every language equally likely" if facts.get("prior") == "equal" else ""})'
            f'</span></div>{only_these_html(facts.get("labels"))}'
            f'<div class="small-note">{record}</div><div class="seen">{seen_line}</div>'
            f'{novelty_html(details, facts)}'
            f'<div class="small-note">Top probability {percent(details["top_probability"])}; entropy '
            f'{details["entropy"]:.2f} nats of at most {math.log(n):.2f}.</div></div>')


def set_record(facts: dict) -> str:
    """What a set's coverage has been, measured, under the page's prior: on held-out test names (under the equal
    prior every language counted equally) and on real surnames from outside the lists, in plain words."""
    measured, worst, real = facts.get("test_coverage"), facts.get("worst"), facts.get("real_coverage")
    coverage, equal = f"{100 * facts['coverage']:g}%", facts.get("prior") == "equal"
    if measured is None:
        return ""
    record = (f"Over held-out test names{', every language counted equally' if equal else ''}, a {coverage} set "
              f"held the right language {percent(measured)} of the time")
    if worst is not None:
        lang, cov, n = worst
        record += (f"; far less often for some small languages ({esc(lang)}: right for {round(cov * n)} of {n} test "
                   f"names), so the promise is about names overall, not every language")
    elif equal:  # per language it is not measured under this prior: too few test names of the small ones
        record += "; the promise is about names overall, not every language"
    record += "."
    if real is not None:
        record += (f" On {facts['real_n']:,} real surnames from outside the lists, it held the right one "
                   f"{percent(real)} of the time ({facts['real_size']:.1f} languages on average)")
        record += "." if equal else (": for names whose mix favours no language, expect every language equally likely "
                                     "(above).")
    return record


def only_these_html(labels) -> str:
    """For a model trained on fewer than all the languages (a "Yours"): which it knows, since its answer is always
    one of them, whatever the name. Empty for a model of every language."""
    if not labels or len(labels) >= ALL_LANGUAGES:
        return ""
    return (f'<div class="only-these" data-languages="{len(labels)}">This model knows only {len(labels)} '
            f'languages ({listed_and(labels)}): its answer is always one of them.</div>')


def listed_and(labels: list[str]) -> str:
    """'Chinese, Japanese and Russian' (escaped)."""
    return ", ".join(esc(lang) for lang in labels[:-1]) + f" and {esc(labels[-1])}" if len(labels) > 1 else \
        esc(labels[0])


def novelty_html(details: dict, facts: dict) -> str:
    """The name's novelty in words no stronger than its measured power: "unusual spelling for these 18 lists", never
    "from another language" (on held-out surnames the score separates foreign names from unseen names of the 18
    languages only weakly). Empty when the checkpoint has no novelty score."""
    score, unfamiliar = details.get("novelty"), details.get("unfamiliar")
    if score is None:
        return ""
    share, shown = f"{100 * facts.get('unusual_share', 0.05):g}%", _number(score)
    if not unfamiliar:
        line = facts.get("novelty_threshold")
        above = "" if line is None else f"; flagged above {_number(line)}, a level {share} of validation names exceed"
        return (f'<div class="novelty small-note" data-unfamiliar="false">Spelling usual enough for these lists '
                f'(novelty {shown}{above}).</div>')
    auroc = facts.get("novelty_auroc_in_language")
    weak = (f" On held-out surnames it ranked a foreign name above an unseen name of the 18 languages only "
            f"{percent(auroc)} of the time." if auroc is not None else "")
    return (f'<div class="novelty" data-unfamiliar="true"><b>Unusual spelling for these lists</b> (novelty '
            f'{shown}, higher than all but {share} of validation names). That is not proof it comes from '
            f'another language.{weak}</div>')


def _seen_flag(seen) -> str:
    return "unknown" if seen is None else "true" if seen else "false"


def _answer_without_set(details: dict, facts: dict) -> str:
    top = details.get("top") or {}
    language = next(iter(top), "?")
    return (f'<div class="answer" data-set-size="0" data-seen="{_seen_flag(details.get("seen_as"))}">'
            f'<div class="answer-set"><b>{esc(language)}</b> <span class="small-note">(this checkpoint has no '
            f'prediction sets)</span></div>{only_these_html(facts.get("labels"))}<div class="small-note">Top '
            f'probability '
            f'{percent(details["top_probability"])}; entropy {details["entropy"]:.2f} nats of at most '
            f'{math.log(facts["n_labels"]):.2f}.</div></div>')


def decision_html(trace, model: str = "") -> str:
    """When the network made up its mind, e.g. 'Vietnamese (71.0%) leads from character 3 of 6 (Ngu) on'."""
    from ...explain.story import lead_from

    step = lead_from(np.asarray(trace.probs))
    lang, p = trace.top(-1, 1)[0]
    who = f"{esc(model)}: " if model else ""
    return (f'<div class="decision">{who}<b>{esc(lang)}</b> ({percent(p)}) leads from character {step + 1} of '
            f'{len(trace.chars)} (<code>{esc("".join(trace.chars[: step + 1]))}</code>) to the end.</div>')


# ---------------------------------------------------------------------------------------------------------------
# Letters: which ones decided it


def _signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def _number(value: float) -> str:
    """A number to two decimals with a true minus sign."""
    return f"{value:.2f}".replace("-", "−")


def letters_html(trace, step: int | None = None) -> str:
    """The name as letter tiles coloured by :attr:`Trace.attribution` (blue: reading the letter raised the final
    answer's probability; red: lowered it), with the numbers beneath and, when the trace has it, the effect of
    deleting each letter. ``step``: outline that letter and dim the ones not yet read (Step through)."""
    chars, read = trace.chars, np.asarray(trace.attribution, dtype=float)
    deleted = getattr(trace, "deletion", None)
    step = None if step is None else clamp_step(step, len(chars))

    def cls(i):
        return "current" if i == step else "todo" if step is not None and i > step else ""

    def cell(i, value, body):
        return (f'<td class="{cls(i)}{" ch" if body is None else ""}" data-step="{i}" '
                f'style="background:{scale_color(value, ATTRIBUTION_SCALE)};color:{_ink(value)}" '
                f'title="{esc(display_char(chars[i]))}: {_signed(value)} nats">'
                f'{esc(display_char(chars[i])) if body is None else body}</td>')

    rows = ["<tr><th></th>" + "".join(cell(i, v, None) for i, v in enumerate(read)) + "</tr>",
            "<tr><th>when read</th>" + "".join(cell(i, v, _signed(v)) for i, v in enumerate(read)) + "</tr>"]
    if deleted is not None:
        rows.append("<tr><th>if deleted</th>" + "".join(cell(i, v, _signed(v)) for i, v in enumerate(deleted))
                    + "</tr>")
    return f'<div class="scroll-x"><table class="letters">{"".join(rows)}</table></div>'


def _ink(value: float) -> str:
    """Text colour readable on the attribution colour of ``value``."""
    return "#fff" if abs(value) > 0.6 * ATTRIBUTION_SCALE["vmax"] else "#111"


def letters_key_html(trace) -> str:
    """What the colours and numbers of :func:`letters_html` mean, naming the final answer."""
    language = trace.labels[trace.target]
    lo, hi = ATTRIBUTION_SCALE["vmin"], ATTRIBUTION_SCALE["vmax"]
    bar = f'<span class="bar" style="background:{gradient_css(ATTRIBUTION_SCALE)}"></span>'
    deleted = (" <i>if deleted</i>: how much lower (positive) or higher (negative) its log-probability would be "
               "without that letter (the network run again on the shortened name)."
               if getattr(trace, "deletion", None) is not None else "")
    return (f'<div class="colorbar"><span>{_signed(lo)}</span>{bar}<span>{_signed(hi)} nats</span></div>'
            f'<div class="small-note">Colours and numbers are about <b>{esc(language)}</b>, the final answer. '
            f'<i>When read</i>: the change in its log-probability as the network read that letter (blue raised '
            f'it, red lowered it; +0.69 doubles the probability; before the first letter every language counts as '
            f'1/{len(trace.labels)}).{deleted}</div>')


def name_caption_html(trace, step: int) -> str:
    """'Character 3 of 6: y · prefix Nguy · prediction set: Vietnamese or Chinese'."""
    step = clamp_step(step, len(trace.chars))
    shown = (f" · prediction set: {languages_text(trace.sets[step])}" if getattr(trace, "sets", None) else "")
    return (f'<div class="step-caption">Character <b>{step + 1}</b> of {len(trace.chars)}: '
            f'<code>{esc(display_char(trace.chars[step]))}</code> · prefix '
            f'<code>{esc("".join(trace.chars[: step + 1]))}</code>{shown}</div>')


# ---------------------------------------------------------------------------------------------------------------
# Hidden units


def unit_label(layer: int, unit: int, n_layers: int) -> str:
    """'L2 #119' (0-based layer and unit in, 1-based layer out), or '#119' for a one-layer model."""
    return f"L{layer + 1} #{unit}" if n_layers > 1 else f"#{unit}"


def colorbar_html(kind: str) -> str:
    """The key of a hidden-state colour scale: its range and what the state is."""
    scale = STATE_SCALES[kind]
    return (f'<div class="colorbar"><span>{scale["vmin"]:g}</span><span class="bar" '
            f'style="background:{gradient_css(scale)}"></span><span>{scale["vmax"]:g}</span>'
            f'<span class="small-note">{esc(scale["what"])}</span></div>')


def heatmap_html(trace, kind: str, units: list[tuple[int, int]], step: int, n_bold: int = 5) -> str:
    """Units × characters as a table: one labelled row per ``(layer, unit)`` in ``units`` (in the given order),
    column ``t`` = the unit's value after character ``t`` on the state's colour scale, the current column outlined,
    and the last column the unit's change at the current character (the ``n_bold`` largest in bold)."""
    layers = np.asarray(trace.layers)  # (L, T, H)
    n_layers, T, _ = layers.shape
    step = clamp_step(step, T)
    before = layers[:, step - 1] if step > 0 else np.asarray(trace.initial if trace.initial is not None
                                                             else np.zeros_like(layers[:, 0]))
    change = {(l, u): float(layers[l, step, u] - before[l, u]) for l, u in units}
    bold = set(sorted(change, key=lambda lu: -abs(change[lu]))[:n_bold])
    scale = STATE_SCALES[kind]
    head = "".join(f'<th class="{"current" if t == step else ""}">{esc(display_char(c))}</th>'
                   for t, c in enumerate(trace.chars))
    rows = []
    for l, u in units:
        label = unit_label(l, u, n_layers)
        cells = "".join(
            f'<td class="cell{" current" if t == step else ""}" style="background:{scale_color(v, scale)}" '
            f'title="{label} after {esc(display_char(trace.chars[t]))}: {v:.3f}"></td>'
            for t, v in enumerate(layers[l, :, u]))
        rows.append(f'<tr class="{"top" if (l, u) in bold else ""}" data-unit="{label}"><th>{label}</th>{cells}'
                    f'<td class="delta">{_signed(change[(l, u)])}</td></tr>')
    return (f'<div class="scroll-x"><table class="heat"><thead><tr><th>unit</th>{head}<th>Δ here</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{colorbar_html(kind)}')


def unit_html(trace, kind: str, layer: int, unit: int, contexts: list) -> str:
    """One unit: its value after each character of the current name, and the training names where it is highest
    (``contexts``: :meth:`namecls.explain.units.Explain.unit_contexts`, position = the character it fired on)."""
    layers = np.asarray(trace.layers)
    scale, label = STATE_SCALES[kind], unit_label(layer, unit, layers.shape[0])
    values = layers[layer, :, unit]
    tiles = "".join(f'<td class="ch" style="background:{scale_color(v, scale)};color:{_state_ink(v, kind)}" '
                    f'title="{v:.3f}">{esc(display_char(c))}</td>' for c, v in zip(trace.chars, values))
    numbers = "".join(f"<td>{v:.2f}</td>" for v in values)
    parts = [f'<div><b>Unit {label}</b> along <code>{esc("".join(trace.chars))}</code>:</div>',
             f'<div class="scroll-x"><table class="letters"><tr><th></th>{tiles}</tr>'
             f'<tr><th>value</th>{numbers}</tr></table></div>']
    if contexts and max(c.value for c in contexts) - min(c.value for c in contexts) < 0.01:
        parts.append(f'<div class="small-note">{label} reaches its ceiling ({contexts[0].value:.2f}) on many '
                     f'training names ({", ".join(esc(c.name) for c in contexts[:4])}, …), so the names where it '
                     f'is highest say little about what it does; its push on this answer (above) says more.</div>')
    elif contexts:
        items = []
        for c in contexts:
            name, pos = c.name, int(c.position)
            shown = f'{esc(name[:pos])}<b>{esc(display_char(name[pos]))}</b>{esc(name[pos + 1:])}'
            items.append(f'<div><code>{shown}</code> <span class="small-note">{esc(c.language)}, '
                         f'{c.value:.2f}</span></div>')
        parts.append(f'<div class="small-note">Training names where {label} is highest (the letter it reached '
                     f'that value on in bold):</div><div class="contexts">{"".join(items)}</div>')
    return "".join(parts)


def _state_ink(value: float, kind: str) -> str:
    """Text colour readable on the grey of a state ``value`` (light low, dark high)."""
    scale = STATE_SCALES[kind]
    return "#fff" if (value - scale["vmin"]) / (scale["vmax"] - scale["vmin"]) > 0.5 else "#111"


def neighbours_html(neighbours, labels: list[str], prefix: str, bank_size: int) -> str:
    """The training names whose final state lies nearest to the current prefix's state."""
    if not neighbours:
        return ""
    chips = "".join(chip(n.language, labels, f"{n.name} ({n.language}, {n.distance:.2f})") for n in neighbours)
    return (f'<div class="small-note">Nearest to the state after <code>{esc(prefix)}</code>, among the '
            f'{bank_size:,} training names of the map (distance between hidden states after their last letter):'
            f'</div><div class="chips">{chips}</div>')


# ---------------------------------------------------------------------------------------------------------------
# The explanation: the story, which units pushed the answer, the cell at work, how learning reaches back


def story_html(sentences: list[str]) -> str:
    """The trace's story (:attr:`namecls.inference.Trace.story`), one paragraph, leading the tab."""
    if not sentences:
        return ""
    return f'<div class="story">{" ".join(esc(s) for s in sentences)}</div>'


def _bar(value: float, largest: float, color: str) -> str:
    width = 0 if largest <= 0 else 100 * min(1.0, abs(value) / largest)
    return (f'<span class="bar-track"><span class="bar-fill" style="width:{width:.1f}%;background:{color}">'
            f'</span></span>')


def top_contributors(contrib: dict, n: int = 6) -> tuple[list[dict], list[dict]]:
    """(the ``n`` units that pushed the answer's logit up most, the ``n`` that pushed it down most), each most
    first; a unit is in one list only, and only if its push has that sign."""
    units = contrib["units"]  # by contribution, most for first
    pushed_for = [u for u in units[:n] if u["contribution"] > 0]
    pushed_against = [u for u in reversed(units[-n:]) if u["contribution"] < 0 and u not in pushed_for]
    return pushed_for, pushed_against


def contributions_html(contrib: dict, labels: list[str], n_layers: int, n: int = 6) -> str:
    """Why the answer: its logit split exactly into a fixed part, (RNN) the last letter's own term and one part
    per hidden unit (weight × value), the ``n`` units that pushed hardest for and against it as bars, and what all
    the others add, so that the parts shown sum to the logit (:func:`namecls.explain.cell.contributions`)."""
    language = labels[contrib["language"]]
    pushed_for, pushed_against = top_contributors(contrib, n)
    shown = pushed_for + pushed_against
    rest = sum(u["contribution"] for u in contrib["units"]) - sum(u["contribution"] for u in shown)
    largest = max([abs(u["contribution"]) for u in shown] + [1e-9])

    def rows(units, color):
        return "".join(
            f'<tr data-unit="{unit_label(u["layer"], u["unit"], n_layers)}"><th>'
            f'{unit_label(u["layer"], u["unit"], n_layers)}</th><td>{_bar(u["contribution"], largest, color)}</td>'
            f'<td class="num">{_signed(u["contribution"])}</td><td class="small-note">= {_number(u["weight"])} × '
            f'{_number(u["state"])}</td></tr>' for u in units)

    direct = (f", the last letter's own term {_signed(contrib['input'])}" if contrib.get("input") else "")
    ups = np.sort([u["contribution"] for u in contrib["units"] if u["contribution"] > 0])[::-1]
    half = int(np.searchsorted(np.cumsum(ups), ups.sum() / 2) + 1) if len(ups) else 0
    spread = (f' Half of the upward push comes from {half} units: the answer is spread over many units, not '
              f'held by a few.' if half > 2 * n else
              f' Half of the upward push comes from just {half} unit{"s" if half > 1 else ""}.' if half else "")
    total = len(contrib["units"])
    return (f'<div class="contrib-sum">The network\'s score for <b>{esc(language)}</b> is '
            f'<b>{_number(contrib["logit"])}</b> (its logit; the probability {percent(contrib["probability"])} '
            f'comes from comparing it with the other languages\' scores). It is exactly the sum of a fixed part '
            f'{_signed(contrib["bias"])}{direct} and one part for each of the {total} hidden units: the unit\'s '
            f'weight for {esc(language)} × its value after the name. The {len(shown)} largest parts are below; the '
            f'other {total - len(shown)} units add {_signed(rest)} together.{spread}</div>'
            f'<div class="contrib-cols"><div><div class="contrib-head" style="color:{FOR_COLOR}">pushed '
            f'{esc(language)} up</div><div class="scroll-x"><table class="contrib">{rows(pushed_for, FOR_COLOR)}'
            f'</table></div></div><div><div class="contrib-head" style="color:{AGAINST_COLOR}">pushed it down</div>'
            f'<div class="scroll-x"><table class="contrib">{rows(pushed_against, AGAINST_COLOR)}</table></div></div>'
            f'</div>')


def contribution_along_html(contrib: dict, chars: list[str], units: list[tuple[int, int]], step: int,
                            n_layers: int, kind: str) -> str:
    """Each of ``units``' push on the answer after every prefix (``contrib["along"]``), blue up, red down, on a
    scale set by the largest push shown (so it is not saturated); the current letter's column outlined."""
    along = np.asarray(contrib["along"])  # (T, H)
    T = along.shape[0]
    step = clamp_step(step, T)
    cols = [j for _, j in units]
    largest = float(np.abs(along[:, cols]).max()) if cols else 1.0
    scale: Scale = {**ATTRIBUTION_SCALE, "vmin": -max(largest, 1e-9), "vmax": max(largest, 1e-9)}
    head = "".join(f'<th class="{"current" if t == step else ""}">{esc(display_char(c))}</th>'
                   for t, c in enumerate(chars))
    rows = []
    for l, j in units:
        label = unit_label(l, j, n_layers)
        cells = "".join(f'<td class="cell{" current" if t == step else ""}" '
                        f'style="background:{scale_color(v, scale)}" title="{label} after '
                        f'{esc("".join(chars[: t + 1]))}: {_signed(v)}"></td>' for t, v in enumerate(along[:, j]))
        rows.append(f'<tr data-unit="{label}"><th>{label}</th>{cells}<td class="delta">{_signed(along[step, j])}'
                    f'</td></tr>')
    reads = ("the state before each letter (the RNN's prediction at a letter reads that letter and the state "
             "before it)" if kind == "rnn" else "the state after each letter")
    key = (f'<div class="colorbar"><span>{_signed(-largest)}</span><span class="bar" '
           f'style="background:{gradient_css(scale)}"></span><span>{_signed(largest)}</span>'
           f'<span class="small-note">push on the answer\'s score: blue up, red down</span></div>')
    return (f'<div class="scroll-x"><table class="heat"><thead><tr><th>unit</th>{head}<th>here</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{key}<div class="small-note">Each cell: what the unit '
            f'would add to the answer\'s score if the name stopped there, weight × its value in {reads}.</div>')


def gates_html(gates: dict | None, chars: list[str], step: int, kind: str, n_layers: int,
               units: list[tuple[int, int]]) -> str:
    """The cell at work after every letter, for ``units`` (the ones that pushed the answer) and each layer on
    average. GRU: the update gate z — the share of its past state a unit kept at that letter; RNN: the share of a
    unit's push that came from the letter itself rather than from the state before it. Grey tiles (light low,
    dark high), percentages in them."""
    if gates is None:
        return ""
    step = clamp_step(step, len(chars))

    def row(name, values, title):
        tiles = "".join(f'<td class="{"current" if t == step else ""}" style="background:'
                        f'{scale_color(v, GATE_SCALE)};color:{"#fff" if v > 0.5 else "#111"}" '
                        f'title="{title} after {esc(display_char(chars[t]))}: {percent(v)}">{100 * v:.0f}</td>'
                        for t, v in enumerate(values))
        return f"<tr><th>{name}</th>{tiles}</tr>"

    if kind == "gru":
        share = np.asarray(gates["update"])  # (L, T, H): z, the share of the past kept
        what = "kept"
        words = ("Each number: the share of its past value the unit kept at that letter — its update gate z, in "
                 "h = (1 − z)·new + z·past. 100: it ignored the letter and held on; 0: it rewrote itself. The "
                 "layers' averages hide that units differ: some hold on for the whole name, others renew at every "
                 "letter.")
    else:
        letter, past = (np.abs(np.asarray(gates[k])) for k in ("input_drive", "recurrent_drive"))  # (1, T, H)
        share = letter / np.maximum(letter + past, 1e-12)
        what = "from the letter"
        words = ("The RNN has no gates: a unit's new value is σ(the letter's push + the past's push). Each number: "
                 "the share of that push that came from the letter itself (the rest came from the state before "
                 "it).")
    head = "<tr><th></th>" + "".join(f'<td class="ch{" current" if t == step else ""}">'
                                     f'{esc(display_char(c))}</td>' for t, c in enumerate(chars)) + "</tr>"
    rows = [row(unit_label(l, u, n_layers), share[l, :, u], f"{unit_label(l, u, n_layers)}: {what}")
            for l, u in units]
    for l in range(share.shape[0]):
        layer = f"layer {l + 1} average" if n_layers > 1 else "average of all units"
        rows.append(row(layer, share[l].mean(axis=1), f"{layer}: {what}"))
    title = "% kept" if kind == "gru" else "% from the letter"
    return (f'<div class="scroll-x"><table class="letters gates"><caption>{title}</caption>{head}{"".join(rows)}'
            f'</table></div><div class="small-note">{words}</div>')


def gradient_html(reaches: dict, chars: list[str], step: int) -> str:
    """How learning reaches back: for each model ({key: (:class:`namecls.explain.gradient.StateGradients`, that model's
    labels)}), the size of the gradient of its final answer's log-probability with respect to the state after each
    letter, as bars (each model's own largest = full), the current letter outlined, and one sentence each on how
    fast it fades going back (:func:`namecls.explain.gradient.fade_summary`)."""
    from ...explain.gradient import fade_summary

    step = clamp_step(step, len(chars))
    head = "<tr><th></th>" + "".join(f'<td class="ch{" current" if t == step else ""}">'
                                     f'{esc(display_char(c))}</td>' for t, c in enumerate(chars)) + "</tr>"
    rows, lines = [], []
    for model, (reach, labels) in reaches.items():
        values = np.asarray(reach.norms, dtype=float)
        top = float(values.max()) if values.size and values.max() > 0 else 1.0

        def height(v):  # linear, this model's largest = full: a fading signal looks as small as it is
            return 100 * v / top

        who = esc(MODEL_LABELS.get(model, model))
        cells = "".join(f'<td class="grad{" current" if t == step else ""}" title="{who}, state after '
                        f'{esc(display_char(chars[t]))}: {v:.2e}"><span class="gbar" style="height:{height(v):.0f}%">'
                        f'</span></td>' for t, v in enumerate(values))
        rows.append(f"<tr><th>{who}</th>{cells}</tr>")
        lines.append(f"<li><b>{who}</b>: {esc(fade_summary(reach, chars, labels[reach.target]))}</li>")
    return (f'<div class="scroll-x"><table class="letters gradient">{head}{"".join(rows)}</table></div>'
            f'<div class="small-note">Bar height: the size of the gradient at the state after each letter, each '
            f'model\'s largest filling its bar (hover a bar for the number). The RNN\'s answer reads the state '
            f'before the last letter, so the state after it gets none.</div><ul class="fade">'
            f'{"".join(lines)}</ul>')


def _share(fraction: float) -> str:
    """'100%', '3.1%', '1 / 2,500': a fraction of the largest in plain words."""
    if fraction >= 0.01:
        return percent(fraction)
    return "none" if fraction <= 0 else f"1 / {1 / fraction:,.0f}"


def edit_choice(edit: dict) -> str:
    """'Nakamora · a → o at letter 7 · Japanese 97%': one one-letter variant, as a choice to trace."""
    return f'{edit["name"]} · {edit["edit"]} · {edit["top"]} {percent(edit["probability"])}'
