"""Accuracy with error bars: RNN, GRU (project defaults) and the TF-IDF + logistic-regression baseline, each trained
and scored on identical splits, either over several split seeds or in k-fold cross-validation.

    python bench/accuracy.py --data-dir ../shared/data/names                   # seed protocol, split seeds 0 1 2
    python bench/accuracy.py --protocol clean --folds 5 --jobs 2 --threads 1   # 5-fold CV, about an hour on 2 cores
    python bench/accuracy.py --protocol clean --folds 5 --dry-run              # the same pipeline in ~2 minutes
    python bench/accuracy.py --summarize bench/results/cv-clean-5fold          # tables again from the saved CSVs

``--folds K`` (clean protocol only) uses :func:`namecls.data.splits.make_folds`: K test parts grouped by name string,
each name in exactly one; fold i trains with init seed i (torch and the batch order; the baseline's
``random_state``), so the spread over folds carries both the split and the initialisation. Per (fold, model) it
scores accuracy, macro-F1 and *set accuracy*: the top-1 language counts as right if it is any of the languages the
data files list for that name string anywhere (a name filed under English and Scottish is right on either), over
the same test rows as accuracy. Then mean ± sd over folds and the paired differences model − baseline per fold
with a 95% t interval over the K folds, and a paired bootstrap over test names pooled across folds.

**The seed protocol's leak, measured.** The article's split draws its 10% test rows from all rows, duplicates
included, so many test names also occur in the training part. Every row therefore also carries the share of test
rows whose normalised name string occurs in that split's *training* part (under any language; and, separately,
under the same language) and accuracy and macro-F1 on those *seen* rows and on the *unseen* rest
(:func:`seen_breakdown`); the per-name predictions carry a ``seen`` column. For the seed protocol the script then
prints these per (split seed, model), their mean ± sd over seeds, and how many points of each model's accuracy
the leak explains: accuracy − accuracy on unseen rows (= seen share × (seen − unseen accuracy)). Under the clean
protocol the seen share is 0 by construction.

    python bench/accuracy.py --protocol seed --seeds 0 1 2 --jobs 2 --threads 1   # ~30 min on 2 cores
    python bench/accuracy.py --protocol seed --dry-run                             # the same pipeline in ~2 minutes
    python bench/accuracy.py --summarize bench/results/seed-protocol-seen

Rows stream to ``PREFIX.csv`` and per-name predictions to ``PREFIX-predictions.csv.gz`` as each job finishes,
so an interrupted run keeps its finished folds (``--summarize PREFIX`` prints the tables from them).

Each (split, model) training is one job; ``--jobs`` runs that many side by side, each on ``--threads`` torch
threads (default: the cores shared out), which keeps 2 cores busier than one job on 2 threads does. Training
seconds are therefore per job at that thread count.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine  # noqa: E402
from namecls.data.names import read_names  # noqa: E402
from namecls.training.evaluation import score, tfidf_baseline  # noqa: E402
from namecls.data.splits import make_folds, make_split  # noqa: E402

MODELS = ("gru", "rnn", "tfidf_logreg")  # longest first
BASELINE = "tfidf_logreg"
METRICS = ("accuracy", "macro_f1", "set_accuracy")
SEEN_COLUMNS = ["n_seen", "seen_share", "seen_same_language_share", "accuracy_seen", "accuracy_unseen",
                "macro_f1_seen", "macro_f1_unseen"]
COLUMNS = ["split", "init_seed", "model", "n_test", "accuracy", "macro_f1", "set_accuracy", "train_seconds",
           "epochs_run", *SEEN_COLUMNS]
MODEL_NAMES = {"gru": "GRU", "rnn": "RNN", "tfidf_logreg": "TF-IDF + LR"}


# --- set accuracy ------------------------------------------------------------------------------------------------

def languages_by_name(names: list[str], targets) -> dict[str, frozenset[int]]:
    """Every language index each name string has anywhere in ``names``/``targets`` (pass the full data)."""
    found: dict[str, set[int]] = {}
    for name, target in zip(names, targets):
        found.setdefault(name, set()).add(int(target))
    return {name: frozenset(langs) for name, langs in found.items()}


def set_correct(names: list[str], predictions, languages: dict[str, frozenset[int]]) -> np.ndarray:
    """Per row: is the predicted language one of those the data lists for that name string?"""
    return np.array([int(p) in languages[n] for n, p in zip(names, predictions)], dtype=bool)


def set_accuracy(names: list[str], predictions, languages: dict[str, frozenset[int]]) -> float:
    """Share of rows whose top-1 is any of the name string's languages (see :func:`languages_by_name`)."""
    return float(set_correct(names, predictions, languages).mean()) if len(names) else float("nan")


# --- seen in training vs unseen (the seed protocol's leak) -------------------------------------------------------

def subset_macro_f1(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Macro-F1 over the languages that occur among ``targets`` (a subset of the test rows need not hold all 18;
    a language absent from it would only add a 0). Predictions of other languages still count against recall."""
    from sklearn.metrics import f1_score

    if len(targets) == 0:
        return float("nan")
    return float(f1_score(targets, predictions, labels=np.unique(targets), average="macro", zero_division=0))


def seen_breakdown(test_names: list[str], test_targets, predictions, train_names: list[str],
                   train_targets=None) -> dict:
    """Accuracy on the test rows whose name string occurs in ``train_names`` (under any language) and on the rest.

    Names are compared exactly, as given (pass normalised names, as :func:`namecls.data.names.read_names` returns them).
    Returns ``n_test``, ``n_seen``, ``seen_share``, ``seen_same_language_share`` (the (name, language) pair itself
    is in training; NaN without ``train_targets``), ``accuracy_seen``, ``accuracy_unseen``, ``macro_f1_seen``,
    ``macro_f1_unseen`` (see :func:`subset_macro_f1`) and ``seen`` (a boolean array per test row). A part with no
    rows scores NaN. Accuracy = seen_share × accuracy_seen + (1 − seen_share) × accuracy_unseen.
    """
    targets, predictions = np.asarray(test_targets).astype(int), np.asarray(predictions).astype(int)
    if not len(test_names) == len(targets) == len(predictions):
        raise ValueError(f"{len(test_names)} names, {len(targets)} targets, {len(predictions)} predictions")
    training = set(train_names)
    seen = np.array([name in training for name in test_names], dtype=bool)
    same_language = float("nan")
    if train_targets is not None:
        pairs = set(zip(train_names, np.asarray(train_targets).astype(int).tolist()))
        same_language = float(np.mean([(n, t) in pairs for n, t in zip(test_names, targets.tolist())])) \
            if len(test_names) else float("nan")
    right = predictions == targets

    def mean(mask):
        return float(right[mask].mean()) if mask.any() else float("nan")

    return {"n_test": int(len(targets)), "n_seen": int(seen.sum()),
            "seen_share": float(seen.mean()) if len(seen) else float("nan"),
            "seen_same_language_share": same_language,
            "accuracy_seen": mean(seen), "accuracy_unseen": mean(~seen),
            "macro_f1_seen": subset_macro_f1(targets[seen], predictions[seen]),
            "macro_f1_unseen": subset_macro_f1(targets[~seen], predictions[~seen]),
            "seen": seen}


def leak_points(row) -> float:
    """Points of accuracy the seen rows add: accuracy − accuracy on unseen rows."""
    return float(row["accuracy"] - row["accuracy_unseen"])


def _mean_sd(values, digits: int = 3, scale: float = 1.0) -> str:
    values = np.asarray(values, dtype=float) * scale
    if len(values) > 1:
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"
    return f"{values.mean():.{digits}f}"


SEEN_KINDS = ("seen, same language", "seen, other languages only", "unseen")


def seen_kinds(test_names: list[str], test_targets, train_names: list[str], train_targets) -> np.ndarray:
    """Per test row, one of :data:`SEEN_KINDS`: its (name, language) pair is in training; its name is in training
    but only under other languages (a memorised answer is then wrong); or its name is not in training."""
    pairs = set(zip(train_names, np.asarray(train_targets).astype(int).tolist()))
    training = set(train_names)
    return np.array([SEEN_KINDS[0] if (n, t) in pairs else SEEN_KINDS[1] if n in training else SEEN_KINDS[2]
                     for n, t in zip(test_names, np.asarray(test_targets).astype(int).tolist())], dtype=object)


def seen_kind_table(per_name: pd.DataFrame, data, protocol: str = "seed", label: str = "split seed") -> str:
    """Share, accuracy and set accuracy of each :data:`SEEN_KINDS` part per model, mean ± sd over the splits of
    ``per_name`` (each split rebuilt with :func:`namecls.data.splits.make_split` and checked against its rows), and
    each seen part's points of accuracy: share × (its accuracy − the unseen rows' accuracy); the two seen parts'
    points add up to the leak of :func:`seen_tables`."""
    frames = []
    for (split_id, model), rows in per_name.groupby(["split", "model"], sort=True):
        split = make_split(data, protocol, int(split_id))
        test_names, test_targets = split.part("test")
        if list(rows["name"]) != test_names or not np.array_equal(rows["target"].to_numpy(), test_targets):
            raise ValueError(f"{label} {split_id} {model}: the predictions are not this split's test rows")
        train_names, train_targets = split.part("train")
        kinds = seen_kinds(test_names, test_targets, train_names, train_targets)
        right = rows["predicted"].to_numpy() == rows["target"].to_numpy()
        right_set = rows["set_correct"].astype(str).str.lower().eq("true").to_numpy() \
            if rows["set_correct"].dtype == object else rows["set_correct"].to_numpy(bool)
        for kind in SEEN_KINDS:
            mask = kinds == kind
            frames.append({"split": split_id, "model": model, "kind": kind, "rows": int(mask.sum()),
                           "share": mask.mean(), "accuracy": right[mask].mean() if mask.any() else np.nan,
                           "set accuracy": right_set[mask].mean() if mask.any() else np.nan})
        unseen = frames[-1]["accuracy"]
        for frame in frames[-len(SEEN_KINDS):]:
            frame["points"] = frame["share"] * (frame["accuracy"] - unseen) if frame["rows"] else 0.0
            frame["overall"] = right.mean()
        if frames[-1]["rows"]:  # the seen parts' points add up to accuracy − unseen accuracy
            assert abs(sum(f["points"] for f in frames[-len(SEEN_KINDS):]) - (right.mean() - unseen)) < 1e-9
    t = pd.DataFrame(frames)
    out_rows, sentences = [], []
    for model in MODELS:
        same, other = (t[(t.model == model) & (t.kind == kind)] for kind in SEEN_KINDS[:2])
        if not same.empty:
            without = (same["overall"] - same["points"]).to_numpy()
            sentences.append(
                f"{MODEL_NAMES[model]}: exact repeats (the (name, language) pair is in training, "
                f"{same['share'].mean():.1%} of test rows, right {same['accuracy'].mean():.1%} of the time) add "
                f"{100 * same['points'].mean():+.2f} points to its {same['overall'].mean():.3f} accuracy; names "
                f"trained only under other languages ({other['share'].mean():.1%}, right "
                f"{other['accuracy'].mean():.1%}) take {100 * other['points'].mean():+.2f}; with the repeats scored "
                f"like unseen rows it would score {_mean_sd(without)}.")
        for kind in SEEN_KINDS:
            m = t[(t.model == model) & (t.kind == kind)]
            if m.empty:
                continue
            out_rows.append({"model": model, "test rows": kind, "rows per split": _mean_sd(m["rows"], 0),
                             "share": _mean_sd(m["share"]), "accuracy": _mean_sd(m["accuracy"]),
                             "set accuracy": _mean_sd(m["set accuracy"]),
                             "points": "" if kind == SEEN_KINDS[-1] else _mean_sd(m["points"], 2, 100)})
    return (f"seen rows by kind (mean ± sd over {label}s; set accuracy: the top-1 is any language the data lists "
            "for the name; points: share × (accuracy − unseen accuracy), the part's share of the leak)\n\n"
            + pd.DataFrame(out_rows).to_string(index=False) + "\n\n" + " ".join(sentences))


def ambiguity_table(per_name: pd.DataFrame, data, label: str) -> str:
    """Accuracy per model on test rows of names the data files under one language and under two or more (such a
    row can be right at most for one of its name's languages), pooled over the splits, and their shares."""
    languages = languages_by_name(data.names, data.targets)
    multi = per_name["name"].map(lambda n: len(languages[n]) > 1).to_numpy()
    right = (per_name["predicted"] == per_name["target"]).to_numpy()
    rows = []
    for model in MODELS:
        is_model = (per_name["model"] == model).to_numpy()
        if not is_model.any():
            continue
        entry = {"model": model, "test rows": int(is_model.sum()),
                 "share of names with 2+ languages": f"{multi[is_model].mean():.3f}"}
        for name, mask in (("one language", ~multi), ("2+ languages", multi)):
            chosen = is_model & mask
            entry[f"accuracy, {name}"] = f"{right[chosen].mean():.4f}" if chosen.any() else "nan"
        entry["accuracy, all"] = f"{right[is_model].mean():.4f}"
        rows.append(entry)
    return (f"accuracy by the name's number of languages in the data (test rows pooled over the {label}s)\n\n"
            + pd.DataFrame(rows).to_string(index=False))


def seen_tables(table: pd.DataFrame, label: str = "split seed") -> str:
    """Per (split, model) and mean ± sd over splits: test rows, seen shares, accuracy and macro-F1 on seen and
    unseen rows, the leak's points; then one sentence per model of how much of its accuracy the leak explains."""
    if not set(SEEN_COLUMNS) <= set(table.columns) or table.empty:
        return "(no seen/unseen columns in this table)"
    t = table.sort_values(["split", "model"]).copy()
    t["leak"] = t["accuracy"] - t["accuracy_unseen"]
    out = [f"test rows seen in the {label}'s TRAINING part (normalised name string, any language; 'same lang': the "
           "(name, language) pair itself), and scores on seen and unseen rows; leak = accuracy − unseen accuracy\n"]
    per = pd.DataFrame({
        label: t["split"].astype(int), "model": t["model"], "test rows": t["n_test"].astype(int),
        "seen": t["n_seen"].astype(int), "seen share": t["seen_share"].map("{:.3f}".format),
        "same lang": t["seen_same_language_share"].map("{:.3f}".format),
        "accuracy": t["accuracy"].map("{:.4f}".format), "acc seen": t["accuracy_seen"].map("{:.4f}".format),
        "acc unseen": t["accuracy_unseen"].map("{:.4f}".format), "macro-F1": t["macro_f1"].map("{:.4f}".format),
        "F1 seen": t["macro_f1_seen"].map("{:.4f}".format), "F1 unseen": t["macro_f1_unseen"].map("{:.4f}".format),
        "leak (pts)": (100 * t["leak"]).map("{:+.2f}".format)})
    out.append(per.to_string(index=False))
    rows, sentences = [], []
    for model in MODELS:
        m = t[t.model == model]
        if m.empty:
            continue
        rows.append({"model": model, f"{label}s": len(m), "seen share": _mean_sd(m["seen_share"]),
                     "accuracy": _mean_sd(m["accuracy"]), "acc seen": _mean_sd(m["accuracy_seen"]),
                     "acc unseen": _mean_sd(m["accuracy_unseen"]), "macro-F1": _mean_sd(m["macro_f1"]),
                     "F1 seen": _mean_sd(m["macro_f1_seen"]), "F1 unseen": _mean_sd(m["macro_f1_unseen"]),
                     "leak (pts)": _mean_sd(m["leak"], 2, 100)})
        leak = 100 * m["leak"].mean()
        sentences.append(
            f"{MODEL_NAMES[model]}: the {m['seen_share'].mean():.0%} of test rows whose name is in training (any "
            f"language) score {m['accuracy_seen'].mean():.3f}, the unseen {1 - m['seen_share'].mean():.0%} "
            f"{m['accuracy_unseen'].mean():.3f}: seen names move its {m['accuracy'].mean():.3f} accuracy by "
            f"{leak:+.1f} points."
            if not np.isnan(leak) else f"{MODEL_NAMES[model]}: no unseen rows to compare with.")
    out.append(f"\nmean ± sd over {label}s (sd: sample, ddof 1)\n")
    out.append(pd.DataFrame(rows).to_string(index=False))
    out.append("\n" + " ".join(sentences))
    return "\n".join(out)


# --- one job -----------------------------------------------------------------------------------------------------

def get_split(data, protocol: str, split_id: int, n_folds: int | None):
    return make_folds(data, n_folds, seed=0)[split_id] if n_folds else make_split(data, protocol, split_id)


def train_one(data_dir: str, protocol: str, split_id: int, n_folds: int | None, kind: str, init_seed: int,
              threads: int, dry_run: bool) -> tuple[dict, pd.DataFrame]:
    """``kind`` ("rnn", "gru" or "tfidf_logreg") trained on split ``split_id`` (a fold index or a split seed) with
    init seed ``init_seed``; returns its table row and its per-row test predictions."""
    from namecls.training.experiment import run  # here, so that importing this module needs no training code
    from namecls.recipes import DRY_RUN

    torch.set_num_threads(threads)
    data = read_names(data_dir)
    split = get_split(data, protocol, split_id, n_folds)
    test_names, test_targets = split.part("test")
    train_names, train_targets = split.part("train")  # all of it, also in a dry run: what "seen" is measured against
    epochs_run = None
    if kind == BASELINE:
        fit_names, fit_targets = train_names, train_targets
        if dry_run:  # the same pipeline on a slice, so that the whole script runs end to end in a minute or two
            fit_names, fit_targets = fit_names[::8], fit_targets[::8]
        start = time.perf_counter()
        pipeline = tfidf_baseline(init_seed).fit(fit_names, fit_targets)
        scores = np.zeros((len(test_names), len(data.labels)))
        scores[:, pipeline.classes_] = pipeline.predict_proba(test_names)
        seconds = time.perf_counter() - start
    else:
        overrides = {"seed": init_seed, **(DRY_RUN["train"] if dry_run else {})}
        trained = run(kind, data.labels, split, model_overrides=DRY_RUN["model"] if dry_run else None,
                      train_overrides=overrides, with_baselines=False, progress=False)
        scores, seconds, epochs_run = (trained.test_logits, trained.metrics["training_seconds"],
                                       trained.metrics["epochs_run"])
    metrics = score(test_targets, scores, data.labels)
    predictions = scores.argmax(axis=1)
    right_set = set_correct(test_names, predictions, languages_by_name(data.names, data.targets))
    seen = seen_breakdown(test_names, test_targets, predictions, train_names, train_targets)
    assert abs(seen["seen_share"] * np.nan_to_num(seen["accuracy_seen"])
               + (1 - seen["seen_share"]) * np.nan_to_num(seen["accuracy_unseen"]) - metrics["accuracy"]) < 1e-9
    if kind != BASELINE:  # the model's own scoring and ours agree
        assert abs(metrics["accuracy"] - (predictions == test_targets).mean()) < 1e-12
    row = {"split": split_id, "init_seed": init_seed, "model": kind, "n_test": len(test_names),
           "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "set_accuracy": float(right_set.mean()),
           "train_seconds": seconds, "epochs_run": epochs_run, **{c: seen[c] for c in SEEN_COLUMNS}}
    per_name = pd.DataFrame({"split": split_id, "model": kind, "name": test_names, "target": test_targets,
                             "predicted": predictions, "set_correct": right_set, "seen": seen["seen"]})
    return row, per_name


# --- tables ------------------------------------------------------------------------------------------------------

def fmt_row(row: dict) -> str:
    epochs = "" if row.get("epochs_run") is None or pd.isna(row.get("epochs_run")) else int(row["epochs_run"])
    line = (f"{int(row['split']):>5}  {int(row['init_seed']):>4}  {row['model']:<13} {int(row['n_test']):>6}  "
            f"{row['accuracy']:.4f}  {row['macro_f1']:.4f}  {row['set_accuracy']:.4f}  "
            f"{row['train_seconds']:>8.1f}  {epochs!s:>6}")
    if "seen_share" in row and not pd.isna(row["seen_share"]):  # older CSVs lack the seen/unseen columns
        line += f"  {row['seen_share']:.3f}  {row['accuracy_seen']:.4f}  {row['accuracy_unseen']:.4f}"
    return line


ROW_HEADER = ("split  init  model           n_test  accuracy macro-F1 set-acc  train s  epochs  seen   acc-seen "
              "acc-unseen")


def macro_f1_weighted(targets: np.ndarray, predictions: np.ndarray, weights: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over all ``n_classes`` with row weights (bootstrap counts); a class with no weight scores 0."""
    cm = np.bincount(targets * n_classes + predictions, weights=weights, minlength=n_classes ** 2)
    cm = cm.reshape(n_classes, n_classes)
    tp = np.diag(cm)
    denominator = cm.sum(axis=0) + cm.sum(axis=1)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return float(f1.mean())


def bootstrap_differences(per_name: pd.DataFrame, model: str, n_classes: int, n_boot: int = 2000,
                          seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Paired bootstrap over test name strings pooled across folds: (point, 2.5%, 97.5%) of model − baseline for
    each metric. A name's rows (one per language it is filed under) are resampled together."""
    keys = ["split", "name", "target"]
    a = per_name[per_name.model == model].sort_values(keys, kind="stable").reset_index(drop=True)
    b = per_name[per_name.model == BASELINE].sort_values(keys, kind="stable").reset_index(drop=True)
    # Row by row, not by a merge: the seed protocol's test part repeats (name, language) rows (duplicate lines).
    if len(a) != len(b) or not (a[keys].to_numpy() == b[keys].to_numpy()).all():
        raise ValueError(f"{model} and {BASELINE} were not scored on the same test rows")
    group = pd.factorize(a["split"].astype(str) + "\t" + a["name"])[0]
    n_groups = group.max() + 1
    target = a["target"].to_numpy()
    pa, pb = a["predicted"].to_numpy(), b["predicted"].to_numpy()
    ca, cb = (pa == target).astype(float), (pb == target).astype(float)
    sa, sb = a["set_correct"].to_numpy(float), b["set_correct"].to_numpy(float)
    rng = np.random.default_rng(seed)
    draws = {m: np.empty(n_boot) for m in METRICS}
    for k in range(n_boot):
        w = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[group].astype(float)
        total = w.sum()
        draws["accuracy"][k] = w @ (ca - cb) / total
        draws["set_accuracy"][k] = w @ (sa - sb) / total
        draws["macro_f1"][k] = (macro_f1_weighted(target, pa, w, n_classes)
                                - macro_f1_weighted(target, pb, w, n_classes))
    ones = np.ones(len(target))
    point = {"accuracy": (ca - cb).mean(), "set_accuracy": (sa - sb).mean(),
             "macro_f1": (macro_f1_weighted(target, pa, ones, n_classes)
                          - macro_f1_weighted(target, pb, ones, n_classes))}
    return {m: (float(point[m]), *np.percentile(draws[m], [2.5, 97.5]).tolist()) for m in METRICS}


def summarize(table: pd.DataFrame, per_name: pd.DataFrame | None, n_classes: int, label: str = "fold") -> str:
    """Mean ± sd per model, paired differences model − baseline with 95% intervals, and a verdict sentence."""
    out = []
    by_split = table.pivot_table(index="split", columns="model", values="accuracy")
    complete = sorted(s for s in by_split.index if by_split.loc[s].notna().sum() == len(MODELS))
    out.append(f"{len(complete)} complete {label}s (all of {', '.join(MODELS)}): {complete}")
    summary_rows = []
    for model in MODELS:
        rows = table[table.model == model]
        if rows.empty:
            continue
        entry = {"model": model, f"{label}s": len(rows)}
        for m in METRICS:
            entry[m] = f"{rows[m].mean():.4f} ± {rows[m].std(ddof=1):.4f}" if len(rows) > 1 else f"{rows[m].mean():.4f}"
        entry["train s (mean)"] = f"{rows['train_seconds'].mean():.0f}"
        summary_rows.append(entry)
    out.append("\nmean ± sd over " + label + "s (sd: sample, ddof 1)\n")
    out.append(pd.DataFrame(summary_rows).to_string(index=False))
    if len(complete) < 2:
        out.append("\nfewer than 2 complete " + label + "s: no paired intervals")
        return "\n".join(out)
    paired = table[table.split.isin(complete)]
    diff_rows, verdicts, boot_verdicts = [], [], []
    for model in ("gru", "rnn"):
        boot = None
        if per_name is not None:
            boot = bootstrap_differences(per_name[per_name.split.isin(complete)], model, n_classes)
        for m in METRICS:
            wide = paired.pivot_table(index="split", columns="model", values=m)
            d = (wide[model] - wide[BASELINE]).to_numpy()
            n = len(d)
            mean, sd = d.mean(), d.std(ddof=1)
            half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
            lo, hi = mean - half, mean + half
            excludes = lo > 0 or hi < 0
            row = {"difference": f"{model.upper()} − LR", "metric": m, f"{label}s": n,
                   "per " + label: " ".join(f"{x:+.4f}" for x in d),
                   "mean ± sd": f"{mean:+.4f} ± {sd:.4f}", "95% t interval": f"[{lo:+.4f}, {hi:+.4f}]",
                   "excludes 0": "yes" if excludes else "no"}
            if boot is not None:
                p, blo, bhi = boot[m]
                row["pooled bootstrap (names)"] = f"{p:+.4f} [{blo:+.4f}, {bhi:+.4f}]"
            diff_rows.append(row)
            verdicts.append((model, m, mean, lo, hi, excludes))
            if boot is not None:
                boot_verdicts.append((model, m, boot[m][0], boot[m][1], boot[m][2], boot[m][1] > 0 or boot[m][2] < 0))
    out.append(f"\npaired differences model − TF-IDF+LR per {label} (same test names), 95% t interval over the "
               f"{len(complete)} {label} differences (t, {len(complete) - 1} df)"
               + (f"; bootstrap: 2,000 resamples of test name strings pooled across {label}s"
                  if per_name is not None else "")
               + "\n")
    out.append(pd.DataFrame(diff_rows).to_string(index=False))
    out.append("\n" + verdict(verdicts, len(complete), label))
    names = {"accuracy": "accuracy", "macro_f1": "macro-F1", "set_accuracy": "set accuracy"}
    disagree = [f"{mo.upper()} {names[m]} (bootstrap interval {'excludes' if bex else 'contains'} 0)"
                for (mo, m, *_, ex), (*_, bex) in zip(verdicts, boot_verdicts) if ex != bex]
    if disagree:
        out.append(f"The pooled bootstrap over test names (it holds each {label}'s trained models fixed, so it leaves "
                   "out the spread between init seeds and training runs that the t interval carries) disagrees on: "
                   + "; ".join(disagree) + ".")
    return "\n".join(out)


def verdict(verdicts, n: int, label: str) -> str:
    names = {"accuracy": "accuracy", "macro_f1": "macro-F1", "set_accuracy": "set accuracy"}
    above = [f"{mo.upper()} {names[m]} ({mean:+.4f})" for mo, m, mean, lo, hi, ex in verdicts if ex and mean > 0]
    below = [f"{mo.upper()} {names[m]} ({mean:+.4f})" for mo, m, mean, lo, hi, ex in verdicts if ex and mean < 0]
    level = [f"{mo.upper()} {names[m]} ({mean:+.4f}, [{lo:+.4f}, {hi:+.4f}])"
             for mo, m, mean, lo, hi, ex in verdicts if not ex]
    parts = [f"Over {n} {label}s (95% t intervals of the paired differences against TF-IDF + LR):"]
    parts.append("distinguishably above the baseline: " + ("; ".join(above) if above else "none") + ".")
    parts.append("Distinguishably below it: " + ("; ".join(below) if below else "none") + ".")
    parts.append("Not distinguishable from it (interval contains 0): " + ("; ".join(level) if level else "none") + ".")
    return " ".join(parts)


# --- main --------------------------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("NAMECLS_DATA_DIR", "../shared/data/names"),
                   help="the names folder (default: $NAMECLS_DATA_DIR or ../shared/data/names)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="split seeds, without --folds (default: 0 1 2); each also the init seed")
    p.add_argument("--folds", type=int, default=None,
                   help="K-fold cross-validation of the clean protocol instead of split seeds; fold i: init seed i")
    p.add_argument("--protocol", default="seed", choices=["seed", "clean"], help="evaluation protocol (default: seed)")
    p.add_argument("--jobs", type=int, default=2, help="trainings run side by side (default: 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per job (default: the cores divided by --jobs)")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny models, 1 epoch of 3 batches, the baseline on an eighth of the training names: checks "
                        "the pipeline end to end; writes under /tmp unless --out is given")
    p.add_argument("--out", default=None,
                   help="prefix of the CSVs (default with --folds: bench/results/cv-PROTOCOL-KfoldS)")
    p.add_argument("--summarize", metavar="PREFIX", default=None,
                   help="print the tables from PREFIX.csv and PREFIX-predictions.csv.gz of an earlier run, "
                        "train nothing")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = read_names(args.data_dir)
    n_classes = len(data.labels)
    label = "fold" if args.folds else "split seed"

    if args.summarize:
        table = pd.read_csv(f"{args.summarize}.csv")
        predictions = Path(f"{args.summarize}-predictions.csv.gz")
        per_name = pd.read_csv(predictions, keep_default_na=False) if predictions.exists() else None
        print(ROW_HEADER)
        for row in table.to_dict("records"):
            print(fmt_row(row))
        print()
        label = "fold" if "fold" in args.summarize else "split seed"
        print(summarize(table, per_name, n_classes, label))
        if set(SEEN_COLUMNS) <= set(table.columns) and (table["seen_share"] > 0).any():
            print("\n" + seen_tables(table, label))
            if per_name is not None and "seen" in per_name.columns:  # seen rows exist only under the seed protocol
                print("\n" + seen_kind_table(per_name, data, "seed", label))
        if per_name is not None:
            print("\n" + ambiguity_table(per_name, data, label))
        return

    if args.folds and args.protocol != "clean":
        p.error("--folds is cross-validation of the clean protocol: add --protocol clean")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    splits = list(range(args.folds)) if args.folds else args.seeds
    prefix = args.out or (f"/tmp/namecls-accuracy-dry-run-{os.getpid()}" if args.dry_run
                          else f"bench/results/cv-{args.protocol}-{args.folds}fold" if args.folds
                          else f"bench/results/{args.protocol}-protocol-seen")
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    rows_csv, predictions_csv = Path(f"{prefix}.csv"), Path(f"{prefix}-predictions.csv.gz")
    rows_csv.write_text(",".join(COLUMNS) + "\n")
    predictions_csv.unlink(missing_ok=True)

    started = time.perf_counter()
    what = f"{args.folds}-fold cross-validation (make_folds seed 0; fold i trains with init seed i)" if args.folds \
        else f"split seeds {args.seeds} (each also the init seed)"
    print(f"# bench/accuracy.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.protocol} protocol, "
          f"{what}{', DRY RUN' if args.dry_run else ''}", flush=True)
    print(f"# machine: {machine()}; torch {torch.__version__}", flush=True)
    print(f"# {args.jobs} jobs x {threads} torch threads; {len(data.names)} rows in {n_classes} languages; "
          f"rows -> {rows_csv}, per-name predictions -> {predictions_csv}\n", flush=True)
    print(f"{label}, init seed, model, test rows, accuracy, macro-F1, set accuracy, training seconds, epochs, "
          "share of test rows seen in training, accuracy on seen / unseen rows (in order of completion)", flush=True)
    print(ROW_HEADER, flush=True)

    # Split-major order, longest model first: an interrupted run leaves whole folds behind.
    tasks = [(s, kind) for s in splits for kind in MODELS]
    rows, frames = [], []
    # Load everything the workers import lazily now, so that they run the code as it was at launch.
    import namecls.training.experiment, namecls.explain.units, namecls.explain.projection  # noqa: E401, F401
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(train_one, args.data_dir, args.protocol, s, args.folds, kind, s, threads,
                               args.dry_run): (s, kind) for s, kind in tasks}
        for future in as_completed(futures):
            s, kind = futures[future]
            try:
                row, per_name = future.result()
            except Exception:  # keep the other jobs' results; report this one
                print(f"# {label} {s} {kind} FAILED:\n{traceback.format_exc()}", flush=True)
                continue
            rows.append(row)
            frames.append(per_name)
            pd.DataFrame([row], columns=COLUMNS).to_csv(rows_csv, mode="a", header=False, index=False)
            per_name.to_csv(predictions_csv, mode="a", header=not predictions_csv.exists(), index=False,
                            compression="gzip")
            print(fmt_row(row), f"  [{(time.perf_counter() - started) / 60:.1f} min]", flush=True)

    table = pd.DataFrame(rows, columns=COLUMNS)
    print(f"\nall jobs done in {(time.perf_counter() - started) / 60:.1f} min wall-clock\n")
    print(summarize(table, pd.concat(frames) if frames else None, n_classes, label))
    if not args.folds:
        if args.protocol == "seed":
            print("\n" + seen_tables(table, label))
            if frames:
                print("\n" + seen_kind_table(pd.concat(frames), data, "seed", label))
    if frames:
        print("\n" + ambiguity_table(pd.concat(frames), data, label))
        print("\nArticle (batch size 1, 2 epochs): RNN 0.722, GRU 0.814")


if __name__ == "__main__":
    main()
