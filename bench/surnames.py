"""The world outside the lists: both models under each prior, on the clean test split and on real surnames.

    python bench/surnames.py --build   # write bench/data/surnames-dev.csv and surnames-final.csv
                                       # (pip install names-dataset)
    python bench/surnames.py           # the table on the test split and the development set (bench/results/surnames.md)
    python bench/surnames.py --designs # the prior and set designs compared on the development set
    python bench/surnames.py --final   # add the untouched final set (looked at once, at the end)

The real-surname sets (bench/data/README.md) hold in-language surnames from the ``names-dataset`` package's
per-country top last names that are **absent from the project's data files** and from the novelty sets, 100 a
language in each file, for 14 languages (no Vietnamese list; GB's list mixes English and Scottish names, so it is
read as English; the Latin-script Chinese and Korean lists are mostly not surnames, see LEFT_OUT). No name of them
enters training or calibration: every fitted number (temperature, the prior the network learned, the set thresholds)
comes from the lists' validation split.

Every row is a model and a prior: top-1 accuracy, macro-F1 and the 90% sets' coverage and mean size, with
TF-IDF + logistic regression trained on the same training split beside them.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import zip_longest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, machine  # noqa: E402
from bench.novelty import DEV as NOVELTY_DEV, HELDOUT as NOVELTY_HELDOUT, IN_LANGUAGE, TopLists  # noqa: E402
from bench.novelty import data_dir, read_rows, read_set, write_set  # noqa: E402

DATA = ROOT / "bench" / "data"
SURNAMES_DEV = DATA / "surnames-dev.csv"
SURNAMES_FINAL = DATA / "surnames-final.csv"
RESULTS = ROOT / "bench" / "results"
PER_LANGUAGE = 100  # in each file
TOP_N = 3000  # names-dataset's top last names per country
# Left out, and why (decided from the lists' first names, before any model read them): people in China and Korea
# write their surnames in their own script, so the Latin-script CN and KR lists hold given names, words and places
# ("Plywood", "Generator", "Ningbo", "Zany", "Hyungjun") rather than surnames.
LEFT_OUT = {"Chinese": "CN list in Latin script: mostly not surnames", "Korean": "KR list: the same"}


def build() -> None:
    """Write SURNAMES_DEV and SURNAMES_FINAL (see bench/data/README.md); deterministic for one package version."""
    from namecls.data.names import read_names

    known = {n.lower() for n in read_names(data_dir()).names}
    for path in (NOVELTY_DEV, NOVELTY_HELDOUT):  # already looked at by the novelty work: not "untouched"
        known |= {n.lower() for n in read_set(path)[0]}
    lists = TopLists(TOP_N)

    rows: dict[str, list] = {"dev": [], "final": []}
    seen: set[str] = set()
    for language, (sources, group) in IN_LANGUAGE.items():
        if language in LEFT_OUT:
            continue
        # Alternate a language's accepted names between the files, most common first, round-robin over its countries.
        streams = [[(text, country) for text in lists.candidates(country, set(group)) if text.lower() not in known]
                   for country in sources]
        merged = [row for rank in zip_longest(*streams) for row in rank if row is not None]
        taken = {"dev": 0, "final": 0}
        for text, country in merged:
            if text.lower() in seen:
                continue
            part = ("dev", "final")[sum(taken.values()) % 2]
            if taken[part] >= PER_LANGUAGE:
                part = "final" if part == "dev" else "dev"
                if taken[part] >= PER_LANGUAGE:
                    break
            seen.add(text.lower())
            rows[part].append((text, language, country))
            taken[part] += 1
    for part, path in (("dev", SURNAMES_DEV), ("final", SURNAMES_FINAL)):
        write_set(path, "real surnames absent from the project's data, from the names-dataset package 3.3.1 "
                  "(Apache-2.0, github.com/philipperemy/name-dataset); built by: python bench/surnames.py --build; "
                  "see bench/data/README.md", ["name", "language", "country"], rows[part])
        counts: dict[str, int] = {}
        for _, language, _ in rows[part]:
            counts[language] = counts.get(language, 0) + 1
        print(f"{path.relative_to(ROOT)}: {len(rows[part])} names, {path.stat().st_size / 1024:.1f} KB; "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))


def read_surnames(path: Path) -> tuple[list[str], list[str]]:
    """(names, languages) of a real-surname CSV file."""
    rows = read_rows(path)
    return [r["name"] for r in rows], [r["language"] for r in rows]


def _measure(probs: np.ndarray, targets: np.ndarray, sets: list[list[int]] | None, weights: np.ndarray) -> dict:
    """Top-1, macro-F1 and (with ``sets``) the sets' coverage and mean size, each name counted ``weights``."""
    from sklearn.metrics import f1_score

    predicted = probs.argmax(axis=1)
    present = np.unique(targets)
    row = {"n": int(len(targets)), "top1": float(np.average(predicted == targets, weights=weights)),
           "macro_f1": float(f1_score(targets, predicted, labels=present, average="macro", sample_weight=weights,
                                      zero_division=0))}
    if sets is not None:
        row["coverage"] = float(np.average([t in s for t, s in zip(targets.tolist(), sets)], weights=weights))
        row["mean_size"] = float(np.average([len(s) for s in sets], weights=weights))
    return row


def equal_weights(targets: np.ndarray, n_labels: int) -> np.ndarray:
    """(N,): each name's weight so that every language present counts the same (the equal prior on a split
    drawn in the lists' mix)."""
    counts = np.bincount(targets, minlength=n_labels).astype(np.float64)
    return 1.0 / counts[targets]


def measure(parts: list[str], coverage: float = 0.9) -> dict:
    """{model: {prior: {part: row}}} for the RNN, the GRU and TF-IDF + LR (no sets) on ``parts`` ("test", "dev",
    "final"). On the test split, drawn in the lists' mix, the equal prior's row counts every language equally."""
    import torch

    import namecls
    from namecls.posthoc import prior as prior_rule
    from namecls.data.names import read_names, validate
    from namecls.training.evaluation import predict_logits, tfidf_baseline
    from namecls.data.splits import make_split

    data = read_names(data_dir())
    out: dict = {}
    for kind in ("rnn", "gru", "tfidf_logreg"):
        clf = namecls.load("gru" if kind == "tfidf_logreg" else kind)
        labels = clf.labels
        split = make_split(data, clf.config["protocol"], clf.config["split_seed"])
        texts, targets = {}, {}
        texts["test"], targets["test"] = split.part("test")
        for part, path in (("dev", SURNAMES_DEV), ("final", SURNAMES_FINAL)):
            if part in parts:
                names, languages = read_surnames(path)
                texts[part] = [validate(n).text for n in names]
                targets[part] = np.array([labels.index(lang) for lang in languages])
        if kind == "tfidf_logreg":
            pipeline = tfidf_baseline(0).fit(*split.part("train"))

            def lists_probs(names):
                probs = np.zeros((len(names), len(labels)))
                probs[:, pipeline.classes_] = pipeline.predict_proba(names)
                return probs
            learned = prior_rule.learned(lists_probs(split.part("val")[0]))
        else:
            def lists_probs(names):
                return clf._softmax(torch.from_numpy(predict_logits(clf.model, names)))
            learned = clf.conformal.learned_prior
        out[kind] = {}
        base = {part: lists_probs(texts[part]) for part in ["test", *[p for p in parts if p != "test"]]}  # once
        for prior in prior_rule.PRIORS:
            shift = prior_rule.log_shift(prior, learned)
            out[kind][prior] = {}
            for part, lists in base.items():
                probs = prior_rule.reweight(lists, shift)
                sets = None if kind == "tfidf_logreg" else clf.conformal.sets(probs, coverage, prior)
                weights = (equal_weights(targets[part], len(labels)) if part == "test" and prior == "equal"
                           else np.ones(len(targets[part])))
                out[kind][prior][part] = _measure(probs, targets[part], sets, weights)
    return out


def designs(coverage: float = 0.9) -> str:
    """The few designs compared on the development set (and on validation, weighted to the equal prior, with
    2-fold cross-fitting), both models: which prior the network learned (the training split's counts, or the mean
    of its calibrated validation probabilities) × how the sets are calibrated (the lists' threshold unchanged;
    label-shift-weighted; one threshold per language, Mondrian)."""
    import namecls
    from namecls.posthoc import calibration, conformal as cf, prior as prior_rule
    from namecls.data.names import read_names, validate
    from namecls.training.evaluation import predict_logits
    from namecls.data.splits import make_split

    data = read_names(data_dir())
    names, languages = read_surnames(SURNAMES_DEV)
    lines = ["| model | learned prior from | sets | dev top-1 | dev coverage | dev mean size |",
             "|---|---|---|---|---|---|"]
    for kind in ("gru", "rnn"):
        clf = namecls.load(kind)
        labels, C = clf.labels, len(clf.labels)
        split = make_split(data, clf.config["protocol"], clf.config["split_seed"])
        (val_names, val_targets), (_, train_targets) = split.part("val"), split.part("train")
        val_probs = calibration.softmax(predict_logits(clf.model, val_names), clf.temperature)
        dev_probs = calibration.softmax(predict_logits(clf.model, [validate(n).text for n in names]), clf.temperature)
        dev_targets = np.array([labels.index(lang) for lang in languages])
        for source, learned in (("training counts", np.bincount(train_targets, minlength=C) / len(train_targets)),
                                ("mean validation probability", prior_rule.learned(val_probs))):
            shift = prior_rule.log_shift("equal", learned)
            val_moved, dev_moved = prior_rule.reweight(val_probs, shift), prior_rule.reweight(dev_probs, shift)
            scores = cf.conformity(val_moved, val_targets)
            weights = cf.shift_weights(val_targets, C)
            thresholds = {
                "lists' threshold": np.full(C, cf.qhat(np.sort(scores), coverage)),
                "label-shift weighted": cf.weighted_thresholds(scores, val_targets, weights, coverage),
                "per language (Mondrian)": np.array([cf.qhat(np.sort(scores[val_targets == c]), coverage)
                                                     for c in range(C)]),
            }
            order, ranked = cf.sorted_scores(dev_moved)
            for method, q in thresholds.items():
                inside = ranked <= q[order] + cf.TIE_TOLERANCE
                inside[:, 0] = True
                rank = np.argmax(order == dev_targets[:, None], axis=1)
                lines.append(f"| {kind} | {source} | {method} | {(dev_moved.argmax(1) == dev_targets).mean():.3f} | "
                             f"{inside[np.arange(len(rank)), rank].mean():.3f} | {inside.sum(1).mean():.2f} |")
        lines.append(f"| {kind} | *ceiling: any prior (18 biases fitted on the development names themselves)* | — | "
                     f"{_prior_ceiling(dev_probs, dev_targets):.3f} | — | — |")
    return "\n".join(lines)


def _prior_ceiling(probs: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 on ``targets`` after the log-prior shift (C,) that minimises their own negative log-likelihood: the
    most any prior could give these names (an upper bound for reference, not a design: it looks at the answers)."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    logp = np.log(np.maximum(probs, 1e-30))

    def nll(shift):
        return -log_softmax(logp + shift, axis=1)[np.arange(len(targets)), targets].mean()

    best = minimize(nll, np.zeros(probs.shape[1]), method="L-BFGS-B").x
    return float(((logp + best).argmax(axis=1) == targets).mean())


PART_NAMES = {"test": "test split (names like the lists')", "dev": "real surnames, development set",
              "final": "real surnames, final set (untouched until the end)"}


def table(results: dict) -> str:
    """The results as a Markdown table."""
    lines = ["| model | prior | names | n | top-1 | macro-F1 | 90% sets cover | mean set size |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, by_prior in results.items():
        for prior, by_part in by_prior.items():
            for part, row in by_part.items():
                sets = (f"{row['coverage']:.3f} | {row['mean_size']:.2f}" if "coverage" in row else "— | —")
                lines.append(f"| {kind} | {prior} | {PART_NAMES[part]} | {row['n']:,} | {row['top1']:.3f} | "
                             f"{row['macro_f1']:.3f} | {sets} |")
    return "\n".join(lines)


REPORT = ROOT / "checkpoints" / "outside_lists.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="rebuild the two CSV files from names-dataset")
    parser.add_argument("--designs", action="store_true",
                        help="compare the prior estimates and set calibrations on the development set")
    parser.add_argument("--final", action="store_true",
                        help="also measure the untouched final set (once, at the end of a design's development)")
    parser.add_argument("--write", action="store_true",
                        help=f"write the figures the app, the API docs and the model card quote to {REPORT.name}")
    args = parser.parse_args()
    if args.build:
        build()
        return
    if args.designs:
        text = (f"# Designs for the equal prior, on the real-surname development set\n\n{machine()}\n\n"
                "`python bench/surnames.py --designs`\n\n" + designs() + "\n")
        print(text)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "surnames-designs.md").write_text(text, encoding="utf-8")
        return
    began = time.monotonic()
    parts = ["test", "dev", *(["final"] if args.final else [])]
    results = measure(parts)
    text = (f"# Both models under each prior, on names like the lists' and on real surnames\n\n{machine()}\n\n"
            f"`python bench/surnames.py{' --final' if args.final else ''}`; the test split under the equal prior "
            "counts every language equally (importance weights).\n\n" + table(results) + "\n")
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "surnames.md").write_text(text, encoding="utf-8")
    if args.write:
        import json

        report = {"generated_by": f"python bench/surnames.py{' --final' if args.final else ''} --write",
                  "coverage_asked": 0.9, "parts": {p: PART_NAMES[p] for p in parts},
                  "real_surnames": {"source": "the names-dataset package's per-country lists of common surnames "
                                                      "(bench/data/README.md), none of them in the training lists",
                                    "languages": len(set(read_surnames(SURNAMES_DEV)[1])),
                                    "per_language": PER_LANGUAGE},
                  "results": results}
        REPORT.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {REPORT.relative_to(ROOT)}")
    print(f"{time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
