"""The world outside the lists: both models under each prior, on the clean test split and on real surnames.

    python bench/surnames.py --build   # write bench/data/surnames-dev.csv and surnames-final.csv (pip install names-dataset)
    python bench/surnames.py           # the table on the test split and the development set (bench/results/surnames.md)
    python bench/surnames.py --designs # the prior and set designs compared on the development set
    python bench/surnames.py --final   # add the untouched final set (looked at once, at the end)

The real-surname sets (bench/data/README.md) hold in-language surnames from the ``names-dataset`` package's
per-country top last names that are **absent from the project's data files** and from the novelty sets, 100 a
language in each file, for 14 languages (no Vietnamese list; GB's list mixes English and Scottish names, so it is
read as English; the Latin-script Chinese and Korean lists are mostly not surnames, see LEFT_OUT). No name of them enters training or calibration: every fitted number
(temperature, the prior the network learned, the set thresholds) comes from the lists' validation split.

Every row is a model and a prior: top-1 accuracy, macro-F1 and the 90% sets' coverage and mean size, with
TF-IDF + logistic regression trained on the same training split beside them.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from itertools import zip_longest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, machine  # noqa: E402
from bench.novelty import DEV as NOVELTY_DEV, HELDOUT as NOVELTY_HELDOUT, IMMIGRATION, IN_LANGUAGE, _script_ok  # noqa: E402
from bench.novelty import data_dir, read_set  # noqa: E402

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
    try:
        from names_dataset import NameDataset
    except ImportError:
        sys.exit("--build needs the names-dataset package: pip install names-dataset (not a project requirement)")
    import pycountry

    from namecls.data import read_names, validate

    known = {n.lower() for n in read_names(data_dir()).names}
    for path in (NOVELTY_DEV, NOVELTY_HELDOUT):  # already looked at by the novelty work: not "untouched"
        known |= {n.lower() for n in read_set(path)[0]}
    nd = NameDataset(load_first_names=False)
    top = nd.get_top_names(n=TOP_N, use_first_names=False)
    country_names = {getattr(c, a).lower() for c in pycountry.countries
                     for a in ("name", "common_name", "official_name") if hasattr(c, a)}

    def home(raw: str) -> str | None:
        dist = {c: p for c, p in nd.last_names[raw]["country"].items() if c not in IMMIGRATION}
        return max(sorted(dist), key=dist.get) if dist else None

    rows: dict[str, list] = {"dev": [], "final": []}
    seen: set[str] = set()
    for language, (sources, group) in IN_LANGUAGE.items():
        if language in LEFT_OUT:
            continue
        # Alternate a language's accepted names between the files, most common first, round-robin over its countries.
        streams = []
        for country in sources:
            kept = []
            for raw in top.get(country, []):
                if not _script_ok(raw) or home(raw) not in group:
                    continue
                try:
                    text = validate(raw).text
                except ValueError:
                    continue
                low = text.lower()
                if (sum(ch.isalpha() for ch in text) < 3 or not any(v in low for v in "aeiouy")
                        or low in country_names or low in known):
                    continue
                kept.append((text, country))
            streams.append(kept)
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
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write("# real surnames absent from the project's data, from the names-dataset package 3.3.1 "
                    "(Apache-2.0, github.com/philipperemy/name-dataset); built by: python bench/surnames.py --build; "
                    "see bench/data/README.md\n")
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["name", "language", "country"])
            writer.writerows(rows[part])
        counts: dict[str, int] = {}
        for _, language, _ in rows[part]:
            counts[language] = counts.get(language, 0) + 1
        print(f"{path.relative_to(ROOT)}: {len(rows[part])} names, {path.stat().st_size / 1024:.1f} KB; "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))


def read_surnames(path: Path) -> tuple[list[str], list[str]]:
    """(names, languages) of a real-surname CSV file."""
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return [r["name"] for r in rows], [r["language"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="rebuild the two CSV files from names-dataset")
    args = parser.parse_args()
    if args.build:
        build()
        return


if __name__ == "__main__":
    main()
