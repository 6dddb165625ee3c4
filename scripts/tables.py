"""Write the results tables of README.md and docs/*.md from the files that hold the measurements.

Every table of figures in the documentation sits between two marker comments and is generated here:

    <!-- tables:NAME -->
    (generated: do not edit by hand)
    <!-- /tables:NAME -->

from these sources, and nothing else:

- ``checkpoints/{rnn,gru}/metrics.json`` and ``config.json``: the committed checkpoints' test scores, the baselines
  on the same split, prediction-set coverage, the novelty score's AUROCs (written by ``train.py`` /
  ``python -m namecls.training.refit``; ``novelty.measured`` by ``python bench/novelty.py --heldout --write``);
- ``checkpoints/outside_lists.json``: both priors on real surnames from outside the lists
  (``python bench/surnames.py --final --write``);
- ``bench/results/cv-clean-5fold.csv``: 5-fold cross-validation, clean protocol (``python bench/accuracy.py
  --protocol clean --folds 5``);
- ``bench/results/seed-protocol-seen.csv``: the article's seed protocol, split seeds 0-2 (``python
  bench/accuracy.py --protocol seed --seeds 0 1 2``).

    python scripts/tables.py            # rewrite every stale table in place
    python scripts/tables.py --check    # exit 1 (and name them) if any table differs from its sources

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "docs/*.md")
MARKER = re.compile(r"^(?P<indent>[ \t]*)<!-- tables:(?P<name>[a-z0-9-]+) -->[ \t]*$")
END = "<!-- /tables:{name} -->"

MODELS = ("gru", "rnn")  # the order of every table's rows
BASELINE = "tfidf_logreg"
BASELINE_NAME = "TF-IDF + LR"
# The two-sided 95% quantile of Student's t, by degrees of freedom (for the paired differences' intervals).
T975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105, 5: 2.570581836, 6: 2.446911851,
        7: 2.364624252, 8: 2.306004135, 9: 2.262157163, 10: 2.228138852}


class Sources:
    """The measurement files under ``root``, each read once."""

    def __init__(self, root: Path = ROOT):
        self.root = Path(root)
        self._cache: dict[str, object] = {}

    def _json(self, relative: str):
        if relative not in self._cache:
            self._cache[relative] = json.loads((self.root / relative).read_text(encoding="utf-8"))
        return self._cache[relative]

    def metrics(self, kind: str) -> dict:
        return self._json(f"checkpoints/{kind}/metrics.json")

    def config(self, kind: str) -> dict:
        return self._json(f"checkpoints/{kind}/config.json")

    def outside(self) -> dict:
        return self._json("checkpoints/outside_lists.json")

    def rows(self, relative: str) -> list[dict]:
        if relative not in self._cache:
            with open(self.root / relative, newline="", encoding="utf-8") as f:
                self._cache[relative] = list(csv.DictReader(f))
        return self._cache[relative]


# ----------------------------------------------------------------------------------------------------- formatting

def f3(x: float) -> str:
    return f"{x:.3f}"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def size(x: float) -> str:
    return f"{x:.2f}"


def seconds(x: float) -> str:
    return f"{x:,.0f} s"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def bold_best(cells: list[str]) -> list[str]:
    """Bold every cell whose value, as printed, equals the best (largest) printed value."""
    shown = [float(c.replace("%", "")) for c in cells]
    return [f"**{c}**" if v == max(shown) else c for c, v in zip(cells, shown)]


def model_name(src: Sources, kind: str) -> str:
    """'GRU (2 × 256)' / 'RNN (512)', from the checkpoint's config.json."""
    m = src.config(kind)["model"]
    layers = m.get("num_layers", 1)
    shape = f"{layers} × {m['hidden_size']}" if layers > 1 else f"{m['hidden_size']}"
    return f"{kind.upper()} ({shape})"


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values)


# ----------------------------------------------------------------------------------------------------- the tables

def t_readme(src: Sources) -> list[str]:
    """The README's one table: clean test split, and real surnames from outside the lists under each prior."""
    out = src.outside()["results"]
    header = ["model", "test accuracy", "test macro-F1", "90% sets on test: hold / size",
              "real surnames, prior `lists`: top-1 / sets hold / size",
              "real surnames, prior `equal`: top-1 / sets hold / size"]
    rows = []
    for kind in MODELS:
        test = src.metrics(kind)["test"]
        sets = src.metrics(kind)["conformal"]["test"]
        lists, equal = out[kind]["lists"]["final"], out[kind]["equal"]["final"]
        rows.append([model_name(src, kind), f3(test["accuracy"]), f3(test["macro_f1"]),
                     f"{pct(sets['coverage'])} / {size(sets['mean_size'])}",
                     f"{f3(lists['top1'])} / {pct(lists['coverage'])} / {size(lists['mean_size'])}",
                     f"{f3(equal['top1'])} / {pct(equal['coverage'])} / {size(equal['mean_size'])}"])
    base = src.metrics(MODELS[0])["baselines"][BASELINE]
    rows.append([BASELINE_NAME + " (character n-grams)", f3(base["accuracy"]), f3(base["macro_f1"]), "–",
                 f"{f3(out[BASELINE]['lists']['final']['top1'])} / – / –",
                 f"{f3(out[BASELINE]['equal']['final']['top1'])} / – / –"])
    return table(header, rows)


def t_clean(src: Sources) -> list[str]:
    """The committed checkpoints and the baselines on the clean test split (metrics.json)."""
    keys = ["accuracy", "macro_f1", "balanced_accuracy", "top3_accuracy"]
    entries = []
    for kind in ("rnn", "gru"):
        m = src.metrics(kind)
        entries.append((model_name(src, kind), m["test"], seconds(m["training_seconds"])))
    bases = src.metrics("gru")["baselines"]
    entries.append((f"{BASELINE_NAME} (character 1–5-grams)", bases[BASELINE], "–"))
    entries.append(("majority class", bases["majority"], "–"))
    columns = [bold_best([f3(e[1][k]) for e in entries]) for k in keys]
    rows = [[e[0], *(col[i] for col in columns), e[2]] for i, e in enumerate(entries)]
    return table(["model", "accuracy", "macro-F1", "balanced accuracy", "top-3 accuracy", "training (recorded)"],
                 rows)


def _by_model(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """model → split → row, keeping only the splits every model completed."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        out[r["model"]][r["split"]] = r
    common = set.intersection(*(set(v) for v in out.values()))
    return {m: {s: v[s] for s in sorted(common, key=int)} for m, v in out.items()}


def _spread_table(rows: list[dict], what: str) -> list[str]:
    by = _by_model(rows)
    order = ["rnn", "gru", BASELINE]
    keys = ["accuracy", "macro_f1", "set_accuracy"]
    cells = {k: [] for k in keys}
    values = {k: [] for k in keys}
    for model in order:
        for k in keys:
            m, sd = mean_sd([float(r[k]) for r in by[model].values()])
            cells[k].append(f"{m:.3f} ± {sd:.3f}")
            values[k].append(m)
    bolded = {k: [f"**{c}**" if v == max(values[k]) else c for c, v in zip(cells[k], values[k])] for k in keys}
    names = {"rnn": "RNN", "gru": "GRU", BASELINE: BASELINE_NAME}
    out = []
    for i, model in enumerate(order):
        secs = statistics.mean(float(r["train_seconds"]) for r in by[model].values())
        out.append([names[model], *(bolded[k][i] for k in keys), seconds(secs)])
    return table([f"model (mean ± sd over {len(next(iter(by.values())))} {what})", "accuracy", "macro-F1",
                  "set accuracy", "training (1 thread, mean)"], out)


def _differences(rows: list[dict], what: str) -> list[str]:
    """Paired differences from the baseline, in points: mean and 95% t interval over the splits."""
    by = _by_model(rows)
    keys = ["accuracy", "macro_f1", "set_accuracy"]
    out = []
    for model in ("gru", "rnn"):
        cells = []
        for k in keys:
            d = [100 * (float(by[model][s][k]) - float(by[BASELINE][s][k])) for s in by[model]]
            m, sd = mean_sd(d)
            half = T975[len(d) - 1] * sd / math.sqrt(len(d))
            cells.append(f"{m:+.2f} [{m - half:+.2f}, {m + half:+.2f}]".replace("-", "−"))
        out.append([f"{model.upper()} − LR", *cells])
    return table([f"difference (points; 95% t interval over {what})", "accuracy", "macro-F1", "set accuracy"],
                 out)


def t_cv(src: Sources) -> list[str]:
    return _spread_table(src.rows("bench/results/cv-clean-5fold.csv"), "folds")


def t_cv_diff(src: Sources) -> list[str]:
    return _differences(src.rows("bench/results/cv-clean-5fold.csv"), "the folds")


def t_seed(src: Sources) -> list[str]:
    """The seed protocol, one column per model, one row per split seed, then mean ± sd."""
    by = _by_model(src.rows("bench/results/seed-protocol-seen.csv"))
    order = ["rnn", "gru", BASELINE]
    rows = []
    for s in by["gru"]:
        accs = [float(by[m][s]["accuracy"]) for m in order]
        rows.append([s, *bold_best([f3(a) for a in accs])])
    for label, key in (("mean ± sd accuracy", "accuracy"), ("mean ± sd macro-F1", "macro_f1")):
        stats = [mean_sd([float(r[key]) for r in by[m].values()]) for m in order]
        best = max(round(m, 3) for m, _ in stats)
        rows.append([label, *(f"**{m:.3f} ± {sd:.3f}**" if round(m, 3) == best else f"{m:.3f} ± {sd:.3f}"
                              for m, sd in stats)])
    rows.append(["mean training (1 thread)",
                 *(seconds(statistics.mean(float(r["train_seconds"]) for r in by[m].values())) for m in order)])
    return table(["split seed", "RNN", "GRU", BASELINE_NAME], rows)


def t_conformal(src: Sources) -> list[str]:
    """90% prediction sets on the test split (metrics.json, "conformal")."""
    rows = []
    for kind in ("rnn", "gru"):
        c = src.metrics(kind)["conformal"]
        test = c["test"]
        worst = sorted(test["per_language"].items(), key=lambda kv: (kv[1]["coverage"], kv[0]))[:3]
        least = ", ".join(f"{lang} {100 * v['coverage']:.0f}% ({v['support']})" for lang, v in worst)
        rows.append([kind.upper(), pct(test["coverage"]), size(test["mean_size"]), pct(test["singletons"]), least])
    asked = f"{100 * src.metrics('gru')['conformal']['coverage_asked']:.0f}%"
    return table(["model", f"test coverage (asked {asked})", "mean set size", "one language",
                  "least covered (test names)"], rows)


def t_outside(src: Sources) -> list[str]:
    """Both priors on the test split and on the final set of real surnames (outside_lists.json)."""
    res = src.outside()["results"]
    expecting = {"lists": "the lists' mix", "equal": "every language equally"}
    rows = []
    for kind in MODELS:
        for prior in ("lists", "equal"):
            t, f = res[kind][prior]["test"], res[kind][prior]["final"]
            rows.append([kind.upper(), expecting[prior],
                         f"{f3(t['top1'])} / {pct(t['coverage'])} / {size(t['mean_size'])}",
                         f"{f3(f['top1'])} / {pct(f['coverage'])} / {size(f['mean_size'])}"])
    for prior in ("lists", "equal"):
        t, f = res[BASELINE][prior]["test"], res[BASELINE][prior]["final"]
        rows.append([BASELINE_NAME, expecting[prior], f"{f3(t['top1'])} / – / –", f"{f3(f['top1'])} / – / –"])
    n = res[MODELS[0]]["lists"]["final"]["n"]
    return table(["model", "expecting", "test split: top-1 / 90% sets hold / size",
                  f"real surnames (final set, {n:,}): top-1 / sets hold / size"], rows)


def t_novelty(src: Sources) -> list[str]:
    """The novelty score's AUROCs (metrics.json, novelty.measured, from bench/novelty.py)."""
    rows = []
    for kind in ("rnn", "gru"):
        m = src.metrics(kind)["novelty"]["measured"]
        rows.append([kind.upper(),
                     f"{f3(m['dev']['auroc_vs_test_split'])} / {f3(m['dev']['auroc_vs_in_language'])}",
                     f"{f3(m['heldout']['auroc_vs_test_split'])} / **{f3(m['heldout']['auroc_vs_in_language'])}**"])
    return table(["model", "AUROC, development set: vs test split / vs unseen in-language",
                  "held-out set: vs test split / vs unseen in-language"], rows)


TABLES = {
    "readme": t_readme,
    "clean": t_clean,
    "cv": t_cv,
    "cv-diff": t_cv_diff,
    "seed": t_seed,
    "conformal": t_conformal,
    "outside": t_outside,
    "novelty": t_novelty,
}


# ------------------------------------------------------------------------------------------------- the documents

def render(text: str, src: Sources, where: str = "") -> str:
    """``text`` with every marked table regenerated; ValueError for an unknown, unclosed or nested marker."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = MARKER.match(line)
        out.append(line)
        i += 1
        if not match:
            continue
        name, indent = match["name"], match["indent"]
        if name not in TABLES:
            raise ValueError(f"{where}:{i}: unknown table {name!r} (known: {', '.join(TABLES)})")
        end = indent + END.format(name=name)
        j = i
        while j < len(lines) and lines[j].rstrip() != end:
            if MARKER.match(lines[j]):
                raise ValueError(f"{where}:{i}: table {name!r} is not closed before the next marker")
            j += 1
        if j == len(lines):
            raise ValueError(f"{where}:{i}: table {name!r} has no closing {end.strip()!r}")
        out += [""] + [indent + row for row in TABLES[name](src)] + [""]
        i = j  # the closing marker is appended by the loop
    return "\n".join(out)


def documents(root: Path = ROOT) -> list[Path]:
    found: list[Path] = []
    for pattern in DOCUMENTS:
        found += sorted(root.glob(pattern))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any table is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this script's)")
    args = parser.parse_args(argv)
    src = Sources(args.root)
    stale = []
    for path in documents(args.root):
        text = path.read_text(encoding="utf-8")
        new = render(text, src, str(path.relative_to(args.root)))
        if new != text:
            stale.append(path.relative_to(args.root))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "stale" if args.check else "rewritten"
    for path in stale:
        print(f"{verb}: {path}", file=sys.stderr if args.check else sys.stdout)
    if args.check and stale:
        print("run: python scripts/tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
