"""Push on it: the one-letter variants of a name that change the classifier's answer, or move it most.

Every one-letter edit of an already normalised name is generated — substitute a letter, insert a letter, delete a
character — all variants are classified together, and the few that matter are returned:

- without a target: the edits that **change the answer** (top-1 differs from the name's own), most probable new
  answer first; when fewer than ``n`` change it, the rest are the edits that **move the original answer's
  probability most** (largest |Δp|, up or down);
- with a target language: the edits that **raise that language's probability most** ("what would make it Korean?").

The letters
-----------
Edits write the 26 letters a–z only. ``'`` and ``-`` are not written: together they are in 0.6% of the training
names (87 and 25 of 20,070), almost all in fixed shapes (``O'…``, ``D'…``, two-part names such as ``Au-Yong``), so
an apostrophe or hyphen at an arbitrary spot is not a spelling a reader would consider, and would add two
candidates per position (~8% more variants) that are mostly noise. Any character already in the name (a space, a
``'``, a ``-``) can still be deleted or replaced by a letter.

Case follows the name (the models read ``A`` and ``a`` as different characters, and almost every training name is
capitalised):

- a substituted letter takes the case of the character it replaces (a non-letter is replaced by a lowercase
  letter), so ``Nakamura`` gets ``Takamura`` and ``McDonald`` keeps its ``D`` a capital;
- an inserted letter is lowercase, except before the first character of a name that starts with a capital: then
  it is the capital and the old initial becomes lowercase (``Nakamura`` → ``Anakamura``, not ``ANakamura``);
- deleting a capital initial capitalises the next character when it is a lowercase letter (``Smith`` →
  ``Mith``).

Skipped: edits that give the name itself or an empty name; edits whose variant the models would never be given
(no letters left, or a space at an end or next to another space: normalisation would change it); insertions into a
name of ``MAX_NAME_LENGTH`` characters (the variant would be too long to classify); and repeats: an edit that gives
the same string as an earlier one in (kind, position, letter) order (inserting ``a`` before or after an ``a``) is
left out, the earlier one kept.

Speed: shared prefixes
----------------------
A variant edited at position p reads the same first p characters as the name, so it does not re-read them: the
model's recurrent steps run once over the name, and every variant continues from the state after its unchanged
prefix (the GRU: every layer's state; the RNN: its h), reading only its own suffix. The suffixes run as one packed
batch that shrinks as the shorter ones end, about half the steps of a padded batch of whole variants (see
``bench/edits_speed.py``). A model of another kind falls back to the plain batched pass. Both compute the model's
own equations with its weights (nothing in :mod:`namecls.models.networks` is changed), divided by the checkpoint's
temperature before the softmax as :meth:`namecls.Classifier.predict` does; they agree with each other and with
``predict`` to about 1e-7 (float32 rounding of different batch shapes).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import torch

from ..posthoc import prior as prior_rule
from ..data.names import MAX_NAME_LENGTH, check_normalized, normalize, pad_batch
from ..errors import InputError

LETTERS = string.ascii_lowercase  # what an edit writes (case adjusted, see the module docstring)
KINDS = ("substitute", "insert", "delete")  # also the tie-break order of kinds
PLAIN_BATCH_SIZE = 512  # rows per model call of the plain pass (bounds its memory on long names)


@dataclass(frozen=True)
class Edit:
    """One one-letter edit of a name and the variant it gives."""

    kind: str  # "substitute" | "insert" | "delete"
    position: int  # 0-based: the character replaced or deleted, or the index the inserted letter takes
    letter: str  # the character written into the variant, case applied ("" for a deletion)
    removed: str  # the character of the name replaced or deleted, as written ("" for an insertion)
    variant: str

    @property
    def description(self) -> str:
        """A short human description with 1-based letter numbers: ``a → o at letter 7``, ``insert 'i' after
        letter 3`` (``before letter 1`` at the start), ``delete 'k' (letter 3)``."""
        if self.kind == "substitute":
            return f"{self.removed} → {self.letter} at letter {self.position + 1}"
        if self.kind == "insert":
            where = "before letter 1" if self.position == 0 else f"after letter {self.position}"
            return f"insert '{self.letter}' {where}"
        return f"delete '{self.removed}' (letter {self.position + 1})"


def _capitalised(text: str) -> bool:
    """Whether ``text`` starts with a capital letter (then edits keep a capital at the start)."""
    return text[:1].isupper()


def apply_edit(text: str, kind: str, position: int, letter: str = "") -> str:
    """The variant of ``text`` that the edit (kind, position, letter) gives, with the module's case rules.

    ``letter`` is one of a–z in either case; its case is set here (substitution: that of the replaced character;
    insertion: lowercase, a capital before the initial of a capitalised name, whose initial then becomes lowercase).
    A deletion of a capital initial capitalises the next character if it is a lowercase letter."""
    if kind == "substitute":
        old = text[position]
        new = letter.upper() if old.isupper() else letter.lower()
        return text[:position] + new + text[position + 1 :]
    if kind == "insert":
        if position == 0 and _capitalised(text):
            return letter.upper() + text[0].lower() + text[1:]
        return text[:position] + letter.lower() + text[position:]
    if kind == "delete":
        rest = text[:position] + text[position + 1 :]
        if position == 0 and _capitalised(text) and rest[:1].islower():
            rest = rest[0].upper() + rest[1:]
        return rest
    raise ValueError(f"unknown edit kind {kind!r}: expected one of {KINDS}")


def _classifiable(variant: str) -> bool:
    """Whether a model would be given ``variant`` as it is: normalisation leaves it unchanged and validation passes."""
    norm = normalize(variant)
    if norm.text != variant:
        return False
    try:
        check_normalized(norm)
    except ValueError:
        return False
    return True


def check_text(text: str) -> str:
    """``text`` itself if it is an already normalised, classifiable name; else ``ValueError`` saying why."""
    if not isinstance(text, str):
        raise ValueError(f"a name must be a string, not {type(text).__name__}")
    check_normalized(normalize(text))  # empty, no letters, too long
    if normalize(text).text != text:
        raise ValueError(f"{text[:40]!r} is not normalised: pass namecls.data.names.validate(name).text")
    return text


def one_letter_variants(text: str) -> list[Edit]:
    """Every distinct one-letter edit of the normalised name ``text``, in (kind, position, letter) order, with the
    skips of the module docstring (same string, empty or unclassifiable variant, too long, repeats)."""
    check_text(text)
    seen = {text}
    edits = []

    def add(kind: str, position: int, letter: str, removed: str) -> None:
        variant = apply_edit(text, kind, position, letter)
        if variant in seen or not _classifiable(variant):
            return
        seen.add(variant)
        written = variant[position] if kind != "delete" else ""
        edits.append(Edit(kind, position, written, removed, variant))

    for position, old in enumerate(text):
        for letter in LETTERS:
            add("substitute", position, letter, old)
    if len(text) < MAX_NAME_LENGTH:
        for position in range(len(text) + 1):
            for letter in LETTERS:
                add("insert", position, letter, "")
    for position, old in enumerate(text):
        add("delete", position, "", old)
    return edits


# ---------------------------------------------------------------------------------------------------------------
# Classifying the variants


@torch.inference_mode()
def plain_probabilities(clf, variants: list[str], shift=None) -> np.ndarray:
    """(N, C): calibrated probabilities of every variant (under a prior's ``shift``: :meth:`Classifier.prior_shift`),
    read whole as a padded batch (the reference pass)."""
    torch.get_num_threads()  # initialise this thread's torch settings first (as Classifier._probs does)
    parts = []
    for start in range(0, len(variants), PLAIN_BATCH_SIZE):
        x, lengths = pad_batch(variants[start : start + PLAIN_BATCH_SIZE])  # (B, T), (B,)
        parts.append(clf._softmax(clf.model(x, lengths), shift))  # (B, C)
    return np.concatenate(parts) if parts else np.zeros((0, len(clf.labels)), dtype=np.float32)


def _packed(suffixes: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack non-empty ``suffixes`` for a shrinking batch: (order, codes, lengths, batch_sizes).

    ``order`` (B,) sorts the suffixes longest first (stable); ``codes`` (B, S) and ``lengths`` (B,) are the padded
    suffixes in that order; ``batch_sizes`` (S,) is how many of them are still running at each step."""
    lengths = torch.tensor([len(s) for s in suffixes], dtype=torch.int64)  # (B,)
    order = torch.argsort(-lengths, stable=True)  # (B,)
    codes, lengths = pad_batch([suffixes[i] for i in order.tolist()])  # (B, S), (B,)
    batch_sizes = (torch.arange(codes.shape[1])[None, :] < lengths[:, None]).sum(0)  # (S,)
    return order, codes, lengths, batch_sizes


def _gru_suffix_logits(model, codes, lengths, batch_sizes, start: torch.Tensor) -> torch.Tensor:
    """(B, C): the GRU's logits after reading ``codes`` (B, S) (sorted longest first) from the per-layer states
    ``start`` (L, B, H), with the model's weights (eval mode: no dropout)."""
    running = torch.arange(codes.shape[1])[None, :] < lengths[:, None]  # (B, S)
    data = model.embed.weight[codes.t()[running.t()]]  # (sum of lengths, E), time-major packed
    final = None
    for i, layer in enumerate(model.layers):
        # The packed form of the kernel nn.GRU calls: each step runs only the rows still reading.
        data, final = torch.gru(data, batch_sizes, start[i : i + 1].contiguous(), layer.all_weights[0], True, 1,
                                0.0, False, False)  # (sum of lengths, H), (1, B, H)
    assert final is not None  # the model has at least one layer
    return model.head(final[0])  # (B, C)


def _rnn_suffix_logits(model, codes, lengths, batch_sizes, start: torch.Tensor) -> torch.Tensor:
    """(B, C): the RNN's logits after reading ``codes`` (B, S) (sorted longest first) from the states ``start``
    (1, B, H), with the model's equations (:class:`namecls.models.networks.RNNClassifier`): the logits of a name read
    its
    last character and the state *before* it."""
    V = model.config.vocab_size
    in_to_h = model.i2h.weight[:, :V].t()  # (V, H)
    in_to_o = model.i2o.weight[:, :V].t()  # (V, C)
    W_hh = model.i2h.weight[:, V:]  # (H, H)
    W_ho = model.i2o.weight[:, V:]  # (C, H)
    logits = torch.empty(codes.shape[0], model.config.num_classes)  # (B, C)
    h = start[0]  # (B, H): rows still reading, longest first
    sizes = batch_sizes.tolist() + [0]
    for t in range(codes.shape[1]):
        running, continuing = sizes[t], sizes[t + 1]
        chars = codes[:running, t]  # (running,)
        ending = slice(continuing, running)  # rows whose last character is t
        logits[ending] = (in_to_o[chars[continuing:]] + model.i2o.bias) + h[ending] @ W_ho.t()
        if continuing:
            h = torch.sigmoid((in_to_h[chars[:continuing]] + model.i2h.bias) + h[:continuing] @ W_hh.t())
    return logits


@torch.inference_mode()
def shared_prefix_probabilities(clf, text: str, edits: list[Edit], shift=None) -> np.ndarray:
    """(N, C): calibrated probabilities of every edit's variant, each continuing from the name's state after its
    unchanged prefix ``text[:position]`` instead of re-reading it. Same numbers as :func:`plain_probabilities`
    (to float32 rounding); a model other than the RNN or the GRU gets the plain pass."""
    from ..models.networks import GRUClassifier, RNNClassifier

    model = clf.model
    if not edits:
        return np.zeros((0, len(clf.labels)), dtype=np.float32)
    if not isinstance(model, (GRUClassifier, RNNClassifier)) or model.training:
        return plain_probabilities(clf, [e.variant for e in edits], shift)
    torch.get_num_threads()  # initialise this thread's torch settings first (as Classifier._probs does)
    x, lengths = pad_batch([text])  # (1, T), (1,)
    steps = model.steps(x, lengths)
    before = torch.cat([model.initial_state()[:, None], steps.hidden[:, 0]], dim=1)  # (L, T + 1, H): after k chars
    logits = torch.empty(len(edits), len(clf.labels))  # (N, C)

    suffixes = [e.variant[e.position :] for e in edits]
    reading = [i for i, s in enumerate(suffixes) if s]
    for i, s in enumerate(suffixes):
        if not s:  # deleting the last character: the variant is the prefix text[:-1], already read
            logits[i] = steps.logits[0, edits[i].position - 1]
    if reading:
        order, codes, suffix_lengths, batch_sizes = _packed([suffixes[i] for i in reading])
        rows = torch.tensor(reading, dtype=torch.int64)[order]  # (B,): edit index of each packed row
        prefix = torch.tensor([edits[i].position for i in rows.tolist()], dtype=torch.int64)  # (B,)
        start = before[:, prefix]  # (L, B, H)
        run = _gru_suffix_logits if isinstance(model, GRUClassifier) else _rnn_suffix_logits
        logits[rows] = run(model, codes, suffix_lengths, batch_sizes, start)
    return clf._softmax(logits, shift)


# ---------------------------------------------------------------------------------------------------------------
# Choosing the edits to show


def one_letter_edits(clf, text: str, target: str | None = None, n: int = 6, *,
                     shared_prefix: bool = True, prior: str = prior_rule.DEFAULT) -> list[dict]:
    """Up to ``n`` one-letter edits of the normalised name ``text`` that matter most to ``clf``, all variants
    classified in one batched pass.

    ``target=None``: the edits whose top-1 differs from the name's own, most probable new answer first, then (to
    fill ``n``) those moving the original answer's probability most (|Δp|, either way). ``target`` (a label of
    ``clf``): the edits raising that language's probability most. Ties by (kind, position, letter), kinds in the
    order substitute, insert, delete.

    Each item: ``name`` (the variant), ``edit`` (:attr:`Edit.description`), ``kind``, ``position`` (0-based),
    ``top`` and ``probability`` (the variant's top-1 language and its calibrated probability), ``target_probability``
    (the variant's probability of the original answer, or of ``target``), ``delta`` (that minus the name's own
    probability of the same language) and ``changes_answer`` (top-1 differs from the name's). ``shared_prefix=False``
    classifies the variants whole (the reference pass; same numbers, slower). Every probability is under ``prior``
    (:mod:`namecls.posthoc.prior`). Bad input raises ``ValueError``.
    """
    check_text(text)
    if target is not None and target not in clf.labels:
        raise InputError(f"unknown target language {target!r}: expected one of {', '.join(clf.labels)}")
    n = max(0, int(n))
    C = len(clf.labels)
    shift = clf.prior_shift(prior)
    own = dict(clf.predict(text, k=C, prior=prior))
    own_probs = np.array([own[label] for label in clf.labels])  # (C,)
    answer = int(np.argmax(own_probs))  # the name's top-1 (first on a tie, as predict)
    goal = answer if target is None else clf.labels.index(target)

    edits = one_letter_variants(text)
    if shared_prefix:
        probs = shared_prefix_probabilities(clf, text, edits, shift)  # (N, C)
    else:
        probs = plain_probabilities(clf, [e.variant for e in edits], shift)  # (N, C)
    if not edits or n == 0:
        return []
    tops = probs.argmax(axis=1)  # (N,): first on a tie, as predict's stable sort
    top_probs = probs[np.arange(len(edits)), tops]  # (N,)
    goal_probs = probs[:, goal]  # (N,)
    rank = np.arange(len(edits))  # (N,): edits are generated in (kind, position, letter) order

    if target is None:
        changing = np.flatnonzero(tops != answer)
        changing = changing[np.lexsort((rank[changing], -top_probs[changing]))]
        moving = np.flatnonzero(tops == answer)
        shift = np.abs(goal_probs[moving].astype(np.float64) - own_probs[answer])
        moving = moving[np.lexsort((rank[moving], -shift))]
        chosen = np.concatenate([changing, moving])[:n]
    else:
        chosen = np.lexsort((rank, -goal_probs))[:n]

    items = []
    for i in chosen.tolist():
        edit = edits[i]
        items.append({
            "name": edit.variant,
            "edit": edit.description,
            "kind": edit.kind,
            "position": edit.position,
            "top": clf.labels[int(tops[i])],
            "probability": float(top_probs[i]),
            "target_probability": float(goal_probs[i]),
            "delta": float(goal_probs[i]) - float(own_probs[goal]),
            "changes_answer": bool(tops[i] != answer),
        })
    return items
