"""Refit every post-training part of existing checkpoints (:mod:`namecls.training.posthoc`) without retraining:

    python -m namecls.training.refit --checkpoint checkpoints/rnn checkpoints/gru --data-dir ../shared/data/names

On the split each checkpoint's config records (protocol, split seed), it fits the temperature, the low-confidence
rule, the prediction sets, the training-name table, the hidden-state map, the explanation data (and the novelty
score when ``namecls.posthoc.novelty`` is installed), then rewrites the checkpoint's files as one set
(:func:`namecls.checkpoint.save`). The weights are the loaded ones, written back unchanged; running it twice gives
the same files.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from .. import checkpoint
from . import posthoc
from ..data.names import find_data, read_names
from ..data.splits import make_split

TRAINING_FACTS = ("protocol", "split_seed", "data_fingerprint", "train_config")  # config.json's keys kept as they are


def refit(folder: str | os.PathLike, data_dir: str | os.PathLike, allow_other_data: bool = False,
          with_maps: bool = True) -> dict:
    """Refit ``folder``'s post-training parts on ``data_dir``; return the updated metrics.

    ``with_maps=False`` refits only calibration, the prediction sets and the training names, and keeps the
    checkpoint's map, explanation data and novelty score as they are. Raises ``ValueError`` when ``data_dir`` is
    not the data the checkpoint was trained on (unless ``allow_other_data``) or has other languages.
    """
    folder = Path(folder)
    model, config, metrics = checkpoint.load(folder)
    data = read_names(data_dir)
    if data.fingerprint != config.get("data_fingerprint") and not allow_other_data:
        raise ValueError(f"{data_dir} is not the data {folder} was trained on (fingerprint "
                         f"{data.fingerprint[:12]}… ≠ {str(config.get('data_fingerprint'))[:12]}…): "
                         "the split would differ. Pass --allow-other-data to go on anyway.")
    if data.labels != config["labels"]:
        raise ValueError(f"{data_dir} has languages {data.labels}, the checkpoint {config['labels']}")
    split = make_split(data, config.get("protocol", "clean"), int(config.get("split_seed", 0)))
    fitted = posthoc.fit_on_split(model, config["labels"], split, with_maps=with_maps)
    if not with_maps:
        kept = checkpoint.load_posthoc(folder, config, metrics)
        fitted.projection, fitted.explain, fitted.novelty = kept.projection, kept.explain, kept.novelty
        fitted.metrics |= {k: kept.metrics[k] for k in ("projection", "explain", "novelty") if k in kept.metrics}
    metrics = {**metrics, **fitted.metrics}
    extra = {k: config[k] for k in TRAINING_FACTS if k in config}
    checkpoint.save(folder, model, config["labels"], extra, metrics, fitted)
    return metrics


def summary_line(metrics: dict) -> str:
    """'T = 1.31; test ECE 0.052 → 0.018 (…); low confidence below …; 90% sets: test coverage …'."""
    cal, flag = metrics.get("calibration") or {}, metrics.get("low_confidence") or {}
    if not cal:
        return "not calibrated"
    test, rates = cal.get("test", {}), flag.get("test", {})

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    return (f"T = {cal['temperature']:.3f}; test ECE {test.get('ece_before', float('nan')):.4f} → "
            f"{test.get('ece_after', float('nan')):.4f} (validation {cal['validation']['ece_before']:.4f} → "
            f"{cal['validation']['ece_after']:.4f}); low confidence below top probability "
            f"{flag.get('threshold', float('nan')):.3f}: flags {pct(rates.get('flag_rate'))} of test names "
            f"(accuracy {pct(rates.get('accuracy_flagged'))} flagged vs {pct(rates.get('accuracy_confident'))} "
            f"not); {posthoc.coverage_line(metrics)}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m namecls.training.refit", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", nargs="+", required=True, help="checkpoint folder(s), e.g. checkpoints/gru")
    p.add_argument("--data-dir",
                   help="the names folder the checkpoints were trained on (default: as train.py's, "
                        "namecls.data.names.find_data: $NAMECLS_DATA_DIR, else data/names, ../shared/data/names, "
                        "the cache)")
    p.add_argument("--no-maps", action="store_true",
                   help="refit calibration, prediction sets and training names only; keep the map, the explanation "
                        "data and the novelty score as they are")
    p.add_argument("--allow-other-data", action="store_true",
                   help="go on when the data fingerprint differs from the checkpoint's")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        data_dir = find_data(args.data_dir)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    for folder in args.checkpoint:
        try:
            metrics = refit(folder, data_dir, args.allow_other_data, not args.no_maps)
        except (OSError, ValueError) as err:
            raise SystemExit(f"error: {folder}: {err}") from None
        print(f"{folder}: {summary_line(metrics)}")


if __name__ == "__main__":
    main()
