"""The story of one trace in plain words: how the network read the name, in three to six sentences.

Every number in a sentence is read off the :class:`namecls.inference.Trace` it tells (the prediction after each
prefix, each letter's effect, the prediction sets, the training lists, the novelty flag); nothing is estimated
here. The sentences say, in order:

1. what the network leaned to after the first letters;
2. where the final answer took the lead for good, or that it led from the first letter, and which letter moved it
   most (with the probability before and after);
3. how sure it ends: the top probability, and the prediction set — the answer to report — when it holds more than
   one language;
4. whether the exact name is in the training lists, and as what;
5. (only for an unusual spelling) that the spelling is unlike the lists';
6. (only when they disagree) that reading a letter and deleting it measure different things.
"""

from __future__ import annotations

import numpy as np

EARLY_LETTERS = 2  # "after the first letters": the prefix of this many letters (or the whole name if shorter)


def _pct(p: float) -> str:
    """'97%', '4.2%', '<0.1%', '>99.9%': whole percents, one decimal near 0 and 1 (where a whole number would lie)."""
    p = float(p)
    if p < 0.001:
        return "<0.1%"
    if p > 0.999:
        return ">99.9%"
    return f"{100 * p:.1f}%" if p < 0.1 or p > 0.99 else f"{100 * p:.0f}%"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _letter(chars: list[str], t: int) -> str:
    """'the 4th letter, “a”' for step t (0-based)."""
    return f"the {_ordinal(t + 1)} letter, “{chars[t]}”"


def _languages(names: list[str], joiner: str = "or") -> str:
    """'A', 'A or B', 'A, B or C' (or with ``joiner`` "and")."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" {joiner} " + names[-1]


def lead_from(probs: np.ndarray) -> int:
    """The first step (0-based) from which the final answer is the top language at every later step."""
    top = probs.argmax(axis=1)  # (T,)
    final = top[-1]
    t = len(top) - 1
    while t > 0 and top[t - 1] == final:
        t -= 1
    return t


def story(trace) -> list[str]:
    """The sentences that tell ``trace`` (a :class:`namecls.inference.Trace`), in the module docstring's order."""
    probs, labels, chars = trace.probs, trace.labels, trace.chars
    T, c = len(chars), trace.target
    answer = labels[c]
    sentences = []

    early = min(EARLY_LETTERS, T) - 1
    early_top = int(probs[early].argmax())
    prefix = "".join(chars[: early + 1])
    if T > 1:
        sentences.append(f"After “{prefix}” the network leaned to {labels[early_top]} "
                         f"({_pct(probs[early, early_top])}).")

    attribution = trace.attribution  # (T,) change in log p(answer) as each letter is read
    strongest = int(np.argmax(attribution))
    before = 1 / len(labels) if strongest == 0 else float(probs[strongest - 1, c])
    after = float(probs[strongest, c])
    moved = (f"the letter that raised it most was {_letter(chars, strongest)}, "
             f"from {_pct(before)} to {_pct(after)}")
    lead = lead_from(probs)
    if T == 1:
        sentences.append(f"Reading its one letter, the network moved {answer} from {_pct(before)} (every language "
                         f"alike before any letter) to {_pct(after)}.")
    elif lead == 0:
        sentences.append(f"{answer} led from the first letter to the last; {moved}.")
    else:
        was = labels[int(probs[lead - 1].argmax())]
        if lead == T - 1:
            took = f"{answer} took the lead from {was} only at the last letter, “{chars[lead]}”"
        else:
            took = f"{answer} took the lead from {was} at {_letter(chars, lead)} (“{''.join(chars[:lead + 1])}”)"
        if lead == T - 1:
            sentences.append(f"{took}, which raised it from {_pct(float(probs[lead - 1, c]))} to "
                             f"{_pct(float(probs[lead, c]))}" + ("." if strongest == lead else f"; {moved}."))
        elif strongest == lead:
            sentences.append(f"{took}, which raised it from {_pct(before)} to {_pct(after)}, and kept it.")
        else:
            sentences.append(f"{took} and kept it; {moved}.")

    final = float(probs[-1, c])
    sets = trace.sets
    final_set = sets[-1] if sets else None
    if final_set is None:
        sentences.append(f"It ends at {answer}, {_pct(final)}.")
    elif len(final_set) == 1:
        sentences.append(f"It ends at {answer}, {_pct(final)}, and its prediction set holds {answer} alone.")
    else:
        sentences.append(f"It ends at {answer} with only {_pct(final)}: its prediction set, the answer to report, "
                         f"holds {len(final_set)} languages — {_languages(final_set)}.")

    if trace.seen_as is not None:
        if trace.seen_as:
            sentences.append(f"“{''.join(chars)}” itself is in the training lists, as "
                             f"{_languages(trace.seen_as, 'and')}: the network has seen this exact name.")
        else:
            sentences.append(f"“{''.join(chars)}” is not in the training lists: the answer is the network's guess "
                             "from the spelling.")

    if trace.unfamiliar:
        sentences.append("Its spelling is unusual for the training lists (the novelty flag), and the percentage "
                         "above does not take that into account.")

    deletion = trace.deletion
    if deletion is not None and T > 1:
        by_deletion = int(np.argmax(deletion))
        if by_deletion != strongest:
            without = final / float(np.exp(deletion[by_deletion]))  # deletion = log p(name) - log p(without)
            sentences.append(f"Deleting a letter tells a different story from reading it: without "
                             f"{_letter(chars, by_deletion)}, {answer} would fall furthest, to {_pct(without)}, "
                             "because what a letter does depends on the letters around it.")
    return sentences
