"""Which 2-D projection should the hidden-state map use? PCA vs LDA on the committed checkpoints.

Both are fitted on the same balanced sample of training names (at most 150 per language) and scored on the
VALIDATION names (never test): 5-NN language accuracy of each validation name's map point against the sample's
points, the same balanced over languages, and the between- over within-language variance of the validation points.
Also checks that LDA's transform is the linear map the Projection format stores.

    .venv/bin/python bench/projection_choice.py --data-dir ../shared/data/names
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from namecls import load
from namecls.explain import projection  # noqa: E402
from namecls.data.names import read_names  # noqa: E402
from namecls.data.splits import make_split  # noqa: E402


def lda_transform_gap(model, train, labels) -> float:
    """Largest |lda.transform(h) - (h - xbar) @ scalings[:, :2]| over the balanced sample."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    sampled = np.concatenate(projection._sample_rows(train[1], len(labels), projection.PER_LANGUAGE,
                                                     projection.SAMPLE_SEED))
    states = projection.top_states(model, [train[0][i] for i in sampled]).astype(np.float64)
    lda = LinearDiscriminantAnalysis(n_components=2, solver="svd").fit(states, train[1][sampled])
    return float(np.abs(lda.transform(states) - (states - lda.xbar_) @ lda.scalings_[:, :2]).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("NAMECLS_DATA_DIR", "../shared/data/names"))
    args = p.parse_args()
    data = read_names(args.data_dir)
    print(f"{'model':<5} {'method':<6} {'5-NN acc':>9} {'5-NN bal.':>10} {'separation':>11}")
    for kind in ("rnn", "gru"):
        clf = load(kind)
        split = make_split(data, clf.config["protocol"], int(clf.config["split_seed"]))
        start = time.perf_counter()
        rows = projection.compare_methods(clf.model, split.part("train"), split.part("val"), clf.labels)
        for method, row in rows.items():
            print(f"{kind:<5} {method:<6} {row['knn5_accuracy']:>9.3f} {row['knn5_balanced_accuracy']:>10.3f} "
                  f"{row['separation']:>11.3f}")
        print(f"{kind:<5} LDA transform = (h - xbar) @ scalings[:, :2] up to "
              f"{lda_transform_gap(clf.model, split.part('train'), clf.labels):.1e}; "
              f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
