"""Does a "from elsewhere" score separate foreign surnames from the kind of names the models were trained on?

    python bench/novelty.py            # AUROC table of every candidate score, both models, on
                                       # bench/data/novelty-dev.csv
    python bench/novelty.py --heldout  # the chosen score (namecls.posthoc.novelty.CHOSEN) on the held-out set
    python bench/novelty.py --heldout --write  # ... and record its AUROCs in the committed checkpoints
                                       # (metrics.json and novelty.json, "measured": what the app quotes)
    python bench/novelty.py --build    # rebuild both CSV files from the names-dataset package
                                       # (pip install names-dataset)

The development and held-out sets (bench/data/README.md) hold surnames of two groups, drawn from the
``names-dataset`` package's per-country top last names: ``foreign`` (countries none of whose official languages
is one of the 18) and ``in_language`` (countries of the 18 languages; names absent from the project's data files).
Every candidate score is fitted on the clean split's training names only (seed 0, the committed checkpoints'
split) and evaluated twice: foreign vs the clean test split's names, and foreign vs the unseen in-language names.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT  # noqa: E402

DATA = ROOT / "bench" / "data"
DEV = DATA / "novelty-dev.csv"
HELDOUT = DATA / "novelty-heldout.csv"
PER_COUNTRY = 40

# Where each file's names come from. A foreign country's official languages include none of the 18; the
# held-out countries are never used for development.
FOREIGN_DEV = ["AF", "AL", "BD", "DK", "ET", "HR", "IS", "KH", "MV", "NO", "RS", "SI"]
FOREIGN_HELDOUT = ["EE", "FI", "GE", "HU", "ID", "IN", "IR", "LT", "MY", "NG", "SE", "TR"]
# Left out of both, and why (decided before any score was computed):
EXCLUDED = {
    "BG AZ TM KZ MD": "surnames in the Russian list's own patronymic form (Ivanov, Aliyev): Russian, not foreign, "
                      "by spelling; Russian is official or in wide use in several",
    "US CA GB AE KW QA OM BH SA SG": "one of the 18 official, or lists dominated by migrants' names",
    "GH NA BW ZA FJ MT JM BI BF CM DJ HT MU AO PH LU BE CH CY IL PS BN": "one of the 18 is an official language",
}
# In-language source countries, and each language's countries (a candidate is kept only if its most frequent
# country, leaving out the US and Canada, is one of its language's countries: this drops migrants' names
# such as Khan in the Saudi list or Gujjar in the Greek one).
IN_LANGUAGE = {
    "Arabic": (["EG", "JO"], ["EG", "JO", "LB", "SY", "IQ", "YE", "LY", "SD", "PS", "DZ", "MA", "TN"]),
    "Chinese": (["CN"], ["CN", "TW", "HK", "MO"]),
    "Czech": (["CZ"], ["CZ"]),
    "Dutch": (["NL"], ["NL", "BE"]),
    "English": (["GB"], ["GB", "IE"]),  # also Scottish: GB's list holds both
    "French": (["FR"], ["FR", "BE", "CH", "LU"]),
    "German": (["DE"], ["DE", "AT", "CH", "LU"]),
    "Greek": (["GR"], ["GR", "CY"]),
    "Irish": (["IE"], ["IE", "GB"]),
    "Italian": (["IT"], ["IT", "CH"]),
    "Japanese": (["JP"], ["JP"]),
    "Korean": (["KR"], ["KR"]),
    "Polish": (["PL"], ["PL"]),
    "Portuguese": (["PT"], ["PT", "BR"]),
    "Russian": (["RU"], ["RU", "KZ"]),
    "Spanish": (["ES"], ["ES", "MX", "AR", "CO", "CL", "PE", "BO", "EC", "GT", "HN", "SV", "CR", "PA", "UY", "PR"]),
    # Vietnamese: names-dataset has no Vietnam list.
}
IMMIGRATION = {"US", "CA"}
# The candidate picked on the dev set (the highest AUROC vs unseen in-language names for both models among the
# scores fitted on training names only, also among the best vs the test split); namecls.posthoc.novelty.CHOSEN.
CHOSEN_LABEL = "z-mean: best-language lm5 + knn32"
# What the measured AUROCs support ({...} filled from the measured ranges), recorded beside them.
CLAIM = ("The novelty score ranks names by how unusual their spelling is for these 18 lists: a foreign surname "
         "scores above a name like the test data about {test_low}-{test_high}% of the time, but above an unseen "
         "surname of one of the 18 languages only about {in_low}-{in_high}% of the time, so the \"unfamiliar\" flag "
         "means \"unusual for these 18 lists\", not \"from another language\"; it must not be read as detecting "
         "foreign names.")


# Candidate scores the library does not ship (the chosen score is namecls.posthoc.novelty.Novelty).
def mix_nll(langs, names: list[str]) -> np.ndarray:
    """(N,): mean negative log-likelihood per symbol under the mixture of the per-language models
    (``namecls.posthoc.novelty.LanguageNGrams``), weighted by the languages' shares of the training names."""
    total = langs._totals(names) + np.log(langs.weights)[:, None]
    m = total.max(0)
    return -(m + np.log(np.exp(total - m).sum(0))) / np.array([len(n) + 1 for n in names], dtype=np.float64)


def max_prob_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N,): 1 - the top probability of softmax(logits / temperature)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return 1.0 - (p / p.sum(1, keepdims=True)).max(1)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N,): -T logsumexp(logits / T) (Liu et al., 2020): high when no language's logit is large."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    m = z.max(1)
    return -temperature * (m + np.log(np.exp(z - m[:, None]).sum(1)))


def _script_ok(raw: str) -> bool:
    """Latin, Greek or Cyrillic letters only (unidecode romanises those faithfully; CJK, Hangul, Arabic,
    Ethiopic, Khmer ... it does not: 田中 would become the Mandarin 'Tian Zhong')."""
    import unicodedata

    for ch in raw:
        if ch in " -'.":
            continue
        name = unicodedata.name(ch, "")
        if not name.startswith(("LATIN", "GREEK", "CYRILLIC")):
            return False
    return True


class TopLists:
    """names-dataset's top last names per country (``top[country]``: most common first), with the filters both
    name sets use (bench/data/README.md). Needs ``pip install names-dataset`` (not a project requirement)."""

    def __init__(self, n: int = 3000):
        try:
            from names_dataset import NameDataset
        except ImportError:
            sys.exit("--build needs the names-dataset package: pip install names-dataset (not a project requirement)")
        import pycountry

        self.nd = NameDataset(load_first_names=False)
        self.top = self.nd.get_top_names(n=n, use_first_names=False)
        self.country_names = {getattr(c, attr).lower() for c in pycountry.countries
                              for attr in ("name", "common_name", "official_name") if hasattr(c, attr)}

    def home(self, raw: str) -> str | None:
        """The country where ``raw`` is most frequent, leaving out the US and Canada."""
        dist = {c: p for c, p in self.nd.last_names[raw]["country"].items() if c not in IMMIGRATION}
        return max(sorted(dist), key=dist.get) if dist else None

    def candidates(self, country: str, group_countries: set[str]):
        """Normalised names of ``country``'s list, most common first, that pass every filter: Latin, Greek or
        Cyrillic letters, most frequent in one of ``group_countries``, 3+ letters and a vowel, not a country."""
        from namecls.data.names import validate

        for raw in self.top.get(country, []):
            if not _script_ok(raw) or self.home(raw) not in group_countries:
                continue
            try:
                text = validate(raw).text
            except ValueError:
                continue
            letters = sum(ch.isalpha() for ch in text)
            if letters < 3 or not any(v in text.lower() for v in "aeiouy") or text.lower() in self.country_names:
                continue
            yield text


def build() -> None:
    """Write DEV and HELDOUT from names-dataset's top last names per country (see bench/data/README.md)."""
    from namecls.data.names import read_names

    lists = TopLists()
    candidates = lists.candidates
    data = read_names(data_dir())
    known = {n.lower() for n in data.names}

    rows = {"dev": [], "heldout": []}
    seen: set[str] = set()
    # In-language: alternate accepted names between the two files (same countries, disjoint names).
    for language, (sources, group) in IN_LANGUAGE.items():
        for country in sources:
            taken = {"dev": 0, "heldout": 0}
            turn = 0
            for text in candidates(country, set(group)):
                if text.lower() in known or text.lower() in seen:
                    continue
                part = ("dev", "heldout")[turn % 2]
                if taken[part] >= PER_COUNTRY:
                    part = ("dev", "heldout")[(turn + 1) % 2]
                    if taken[part] >= PER_COUNTRY:
                        break
                seen.add(text.lower())
                rows[part].append((text, country, "in_language"))
                taken[part] += 1
                turn += 1
    for part, countries in (("dev", FOREIGN_DEV), ("heldout", FOREIGN_HELDOUT)):
        for country in countries:
            taken = 0
            for text in candidates(country, set(countries)):
                if text.lower() in known or text.lower() in seen:
                    continue
                seen.add(text.lower())
                rows[part].append((text, country, "foreign"))
                taken += 1
                if taken >= PER_COUNTRY:
                    break
    for part, path in (("dev", DEV), ("heldout", HELDOUT)):
        DATA.mkdir(parents=True, exist_ok=True)
        write_set(path, "surnames from the names-dataset package 3.3.1 (Apache-2.0, "
                  "github.com/philipperemy/name-dataset); built by: python bench/novelty.py --build; see "
                  "bench/data/README.md", ["name", "country", "group"], rows[part])
        counts = {}
        for _, c, g in rows[part]:
            counts.setdefault(g, {}).setdefault(c, 0)
            counts[g][c] += 1
        print(f"{path.relative_to(ROOT)}: {len(rows[part])} names, {path.stat().st_size / 1024:.1f} KB")
        for g, per in counts.items():
            print(f"  {g}: {sum(per.values())} ({', '.join(f'{c} {n}' for c, n in per.items())})")


def write_set(path: Path, comment: str, header: list[str], rows) -> None:
    """A name set as the bench reads it: one ``# comment`` line, then CSV with ``header``."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(f"# {comment}\n")
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def data_dir() -> Path:
    import os

    env = os.environ.get("NAMECLS_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "names"


def read_rows(path: Path) -> list[dict]:
    """The rows of a name set written by :func:`write_set` (its ``#`` line skipped)."""
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def read_set(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(names, countries, is_foreign) of a novelty CSV file."""
    rows = read_rows(path)
    return ([r["name"] for r in rows], [r["country"] for r in rows],
            np.array([r["group"] == "foreign" for r in rows]))




def candidates_table(models=("rnn", "gru")) -> dict:
    """Every candidate score of every model on the dev set: {model: [(candidate, auroc_test, auroc_in_language)]}."""
    import namecls
    from namecls.posthoc import novelty as nv
    from namecls.data.names import read_names
    from namecls.data.splits import make_split
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    data = read_names(data_dir())
    split = make_split(data, "clean", 0)
    train = sorted(set(split.part("train")[0]))
    val = sorted(set(split.part("val")[0]))
    test = sorted(set(split.part("test")[0]))
    names, countries, foreign = read_set(DEV)
    dev_f = [n for n, f in zip(names, foreign) if f]
    dev_i = [n for n, f in zip(names, foreign) if not f]
    sets = {"val": val, "test": test, "foreign": dev_f, "in": dev_i}

    lm_feats = {}
    for order in (3, 4, 5):
        t = time.perf_counter()
        lm = nv.CharNGram.fit(train, order)
        lm_feats[order] = {s: lm.nll(v) for s, v in sets.items()}
        print(f"(LM order {order}: fitted and scored in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
    tr_names, tr_targets = split.part("train")
    for order in (4, 5):
        t = time.perf_counter()
        langs = nv.LanguageNGrams.fit(tr_names, tr_targets, len(data.labels), order)
        lm_feats[f"min{order}"] = {s: langs.min_nll(v) for s, v in sets.items()}
        lm_feats[f"mix{order}"] = {s: mix_nll(langs, v) for s, v in sets.items()}
        print(f"(per-language LMs order {order}: fitted and scored in {time.perf_counter() - t:.1f} s)",
              file=sys.stderr)
    results = {}
    for kind in models:
        clf = namecls.load(kind)
        t = time.perf_counter()
        tr_states, _ = nv.final_states(clf.model, train)
        out = {s: nv.final_states(clf.model, v) for s, v in sets.items()}
        print(f"({kind}: states in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
        feats: dict[str, dict[str, np.ndarray]] = {}
        feats["maxprob (1 - top p)"] = {s: max_prob_score(lg, clf.temperature) for s, (_, lg) in out.items()}
        feats["energy"] = {s: energy_score(lg) for s, (_, lg) in out.items()}
        for k in (1, 3, 5, 10):
            feats[f"knn k={k} (full {tr_states.shape[1]}-d)"] = {s: nv.knn_distance(st, tr_states, k)
                                                               for s, (st, _) in out.items()}
        mean = tr_states.astype(np.float64).mean(0)
        _, _, vt = np.linalg.svd(tr_states - mean, full_matrices=False)
        for dims in (16, 32, 64):
            basis = vt[:dims].T
            ref = ((tr_states - mean) @ basis).astype(np.float16).astype(np.float32)
            feats[f"knn k=5 (PCA {dims}-d, float16)"] = {
                s: nv.knn_distance((st - mean) @ basis, ref, 5) for s, (st, _) in out.items()}
        normed = tr_states / np.linalg.norm(tr_states, axis=1, keepdims=True)
        feats["knn k=5 cosine (full)"] = {s: nv.knn_distance(st / np.linalg.norm(st, axis=1, keepdims=True),
                                                             normed, 5) for s, (st, _) in out.items()}
        for order in (3, 4, 5):
            feats[f"lm {order}-gram KN"] = lm_feats[order]
        for order in (4, 5):
            feats[f"per-language lm {order}-gram, best language"] = lm_feats[f"min{order}"]
            feats[f"per-language lm {order}-gram, mixture"] = lm_feats[f"mix{order}"]

        def z(name):
            f = feats[name]
            mu, sd = f["val"].mean(), f["val"].std()
            return {s: (v - mu) / sd for s, v in f.items()}

        combos = {
            "lm5 + knn32": ["lm 5-gram KN", "knn k=5 (PCA 32-d, float16)"],
            "lm4 + knn32": ["lm 4-gram KN", "knn k=5 (PCA 32-d, float16)"],
            "lm5 + knn32 + maxprob": ["lm 5-gram KN", "knn k=5 (PCA 32-d, float16)", "maxprob (1 - top p)"],
            "lm5 + energy": ["lm 5-gram KN", "energy"],
            "lm5 + maxprob": ["lm 5-gram KN", "maxprob (1 - top p)"],
            "lm5 + knn32 + energy": ["lm 5-gram KN", "knn k=5 (PCA 32-d, float16)", "energy"],
            "best-language lm5 + knn32": ["per-language lm 5-gram, best language", "knn k=5 (PCA 32-d, float16)"],
            "best-language lm5 + knn32 + energy": ["per-language lm 5-gram, best language",
                                                   "knn k=5 (PCA 32-d, float16)", "energy"],
            "best-language lm5 + energy": ["per-language lm 5-gram, best language", "energy"],
            "mixture lm5 + knn32": ["per-language lm 5-gram, mixture", "knn k=5 (PCA 32-d, float16)"],
            "mixture lm5 + knn32 + energy": ["per-language lm 5-gram, mixture", "knn k=5 (PCA 32-d, float16)",
                                             "energy"],
            "best-language lm5 + mixture lm5": ["per-language lm 5-gram, best language",
                                                "per-language lm 5-gram, mixture"],
        }
        for label, parts in combos.items():
            zs = [z(p) for p in parts]
            feats[f"z-mean: {label}"] = {s: np.mean([q[s] for q in zs], axis=0) for s in sets}
        rows = []
        for label, f in feats.items():
            y_t = np.r_[np.ones(len(f["foreign"])), np.zeros(len(f["test"]))]
            y_i = np.r_[np.ones(len(f["foreign"])), np.zeros(len(f["in"]))]
            rows.append((label, roc_auc_score(y_t, np.r_[f["foreign"], f["test"]]),
                         roc_auc_score(y_i, np.r_[f["foreign"], f["in"]])))
        # Logistic regression on z-scored [lm5, best-language lm5, mixture lm5, knn32, maxprob, energy], fitted on
        # the dev set (foreign vs unseen in-language), 5-fold stratified cross-validation; out-of-fold scores for the
        # dev names, and for the test split the mean of the five fold models (the test names are in no fold).
        base = ["lm 5-gram KN", "per-language lm 5-gram, best language", "per-language lm 5-gram, mixture",
                "knn k=5 (PCA 32-d, float16)", "maxprob (1 - top p)", "energy"]
        X = {s: np.stack([z(p)[s] for p in base], 1) for s in sets}
        Xd = np.r_[X["foreign"], X["in"]]
        yd = np.r_[np.ones(len(X["foreign"])), np.zeros(len(X["in"]))]
        oof = np.empty(len(yd))
        test_score = np.zeros(len(X["test"]))
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(Xd, yd):
            lr = LogisticRegression(C=1.0, max_iter=1000).fit(Xd[tr], yd[tr])
            oof[te] = lr.decision_function(Xd[te])
            test_score += lr.decision_function(X["test"]) / 5
        nf = len(X["foreign"])
        rows.append(("logistic regression on dev (5-fold out-of-fold)",
                     roc_auc_score(np.r_[np.ones(nf), np.zeros(len(test_score))], np.r_[oof[:nf], test_score]),
                     roc_auc_score(yd, oof)))
        results[kind] = rows
        # per-country detection at the 95% validation quantile, for the z-mean lm5+knn32 score
        f = feats["z-mean: lm5 + knn32"]
        thr = np.quantile(f["val"], 0.95)
        per = {}
        for n_, c, fo in zip(names, countries, foreign):
            per.setdefault((c, fo), [])
        fi, ii = iter(f["foreign"]), iter(f["in"])
        for n_, c, fo in zip(names, countries, foreign):
            per[(c, fo)].append(next(fi) if fo else next(ii))
        results[kind + ":per_country"] = {c: float(np.mean(np.asarray(v) > thr)) for (c, _), v in per.items()}
    return results


def print_table(results: dict) -> None:
    names, _, foreign = read_set(DEV)
    print(f"dev set {DEV.relative_to(ROOT)}: {int(foreign.sum())} foreign, {int((~foreign).sum())} unseen "
          "in-language names; every score fitted on the clean split's training names (seed 0)\n")
    for kind, rows in results.items():
        if kind.endswith(":per_country"):
            continue
        print(f"### {kind}\n")
        print("| candidate | AUROC foreign vs clean test split | AUROC foreign vs unseen in-language |")
        print("|---|---:|---:|")
        for label, a, b in rows:
            print(f"| {label} | {a:.3f} | {b:.3f} |")
        print()
        per = results[kind + ":per_country"]
        print(f"share flagged at the 95% validation quantile ({CHOSEN_LABEL}): " +
              ", ".join(f"{c} {v:.0%}" for c, v in per.items()) + "\n")


def heldout(models=("rnn", "gru"), write: bool = False) -> dict:
    """The chosen score, fitted as namecls.posthoc.novelty.fit does, on the dev file and (once) on the held-out file;
    {model: {"dev": AUROCs, "heldout": AUROCs}}, recorded in the committed checkpoints with ``write``."""
    import namecls
    from namecls.posthoc import novelty as nv
    from namecls.data.names import read_names
    from namecls.data.splits import make_split

    data = read_names(data_dir())
    split = make_split(data, "clean", 0)
    train_names, train_targets = split.part("train")
    val = sorted(set(split.part("val")[0]))
    test = sorted(set(split.part("test")[0]))
    print(f"chosen score: {nv.describe(nv.CHOSEN, nv.LM_ORDER, nv.KNN_K, nv.KNN_DIMS)}\n")
    print("| model | file | foreign | in-language | AUROC vs clean test split | AUROC vs unseen in-language |"
          " flagged: test split / in-language / foreign | fit s | stored KB |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|")
    measured: dict[str, dict] = {}
    for kind in models:
        clf = namecls.load(kind)
        t = time.perf_counter()
        novelty = nv.fit(clf.model, train_names, train_targets, clf.labels, val_names=val)
        fit_s = time.perf_counter() - t
        size = sum(v.numel() * v.element_size() for v in novelty.tensors().values()) / 1024
        for path in (DEV, HELDOUT):
            names, _, foreign = read_set(path)
            groups = ["foreign" if f else "in_language" for f in foreign]
            r = nv.evaluate(novelty, clf.model, names, groups, test, name=path.name)
            measured.setdefault(kind, {})["dev" if path == DEV else "heldout"] = {
                key: r[key] for key in ("auroc_vs_in_language", "auroc_vs_test_split")}
            s_names = novelty.score_model(clf.model, names)
            s_test = novelty.score_model(clf.model, test)
            flags = (f"{novelty.unfamiliar(s_test).mean():.0%} / {novelty.unfamiliar(s_names[~foreign]).mean():.0%}"
                     f" / {novelty.unfamiliar(s_names[foreign]).mean():.0%}")
            print(f"| {kind} | {path.name} | {r['foreign']} | {r['in_language']} | {r['auroc_vs_test_split']:.3f} "
                  f"| {r['auroc_vs_in_language']:.3f} | {flags} | {fit_s:.1f} | {size:.0f} |")
    if write:
        record(measured)
    return measured


def record(measured: dict) -> None:
    """Write the measured AUROCs into each committed checkpoint's novelty summary (novelty.json) and metrics.json,
    with the claim they support: the whole set is saved again (namecls.checkpoint.save), nothing else changes."""
    import namecls
    from namecls.inference import CHECKPOINTS

    held = [m["heldout"] for m in measured.values()]
    claim = CLAIM.format(
        test_low=round(100 * min(h["auroc_vs_test_split"] for h in held)),
        test_high=round(100 * max(m["dev"]["auroc_vs_test_split"] for m in measured.values())),
        in_low=round(100 * min(h["auroc_vs_in_language"] for h in held)),
        in_high=round(100 * max(m["dev"]["auroc_vs_in_language"] for m in measured.values())))
    for kind, result in measured.items():
        clf = namecls.load(kind)
        block = {**result, "claim": claim, "by": "python bench/novelty.py --heldout --write (committed checkpoints, "
                                                  "clean seed 0)"}
        clf.metrics["novelty"]["measured"] = block
        clf.posthoc.novelty.summary["measured"] = block
        clf.save(CHECKPOINTS / kind)
        print(f"recorded in {CHECKPOINTS / kind}: {block['heldout']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="rebuild the dev and held-out CSV files")
    parser.add_argument("--heldout", action="store_true", help="report the chosen score on the held-out file")
    parser.add_argument("--write", action="store_true", help="with --heldout: record the AUROCs in the committed "
                                                            "checkpoints (what the app quotes)")
    args = parser.parse_args()
    if args.build:
        build()
    elif args.heldout:
        heldout(write=args.write)
    else:
        print_table(candidates_table())
