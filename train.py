"""Train the RNN and/or GRU name classifiers and write their checkpoints.

    python train.py --data-dir ../shared/data/names        # reproduces the committed checkpoints
    python train.py --model gru --protocol seed --seed 1    # the article's protocol, another split
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from namecls import checkpoint
from namecls.training import posthoc  # before torch: namecls sets how torch's idle threads wait

import torch  # noqa: E402
from namecls.data.names import data_dirs, download, find_data, read_names  # noqa: E402
from namecls.training.evaluation import results_table  # noqa: E402
from namecls.training.experiment import checkpoint_extra, default_text, run  # noqa: E402
from namecls.recipes import DRY_RUN  # noqa: E402
from namecls.data.splits import PROTOCOLS, make_split  # noqa: E402


def positive(cast):
    """An argparse type: ``cast`` the value and refuse zero or negative numbers."""
    def parse(text: str):
        value = cast(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def check_out(out: str) -> str | None:
    """Why the checkpoints cannot be written under ``out``, or None if they can; leaves nothing behind.

    Tried for real (root may write where permission bits say no, and not write in /proc): each missing folder of
    the path is created, a file written in the last one, then all of it removed again.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        return "it is a file, not a folder"
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            if not folder.is_dir():
                return f"{str(folder)!r} is a file, not a folder"
            break
        missing.append(folder)
    created = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        return f"cannot create it or write in it ({err.strerror or err})"
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
    return None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["rnn", "gru", "all"], default="all", help="which model to train (default: all)")
    p.add_argument("--data-dir",
                   help="folder with one <Language>.txt per language (default: $NAMECLS_DATA_DIR; else the first "
                        "of data/names, ../shared/data/names beside the project and the download cache that holds it)")
    p.add_argument("--download", action="store_true",
                   help="download the PyTorch tutorial's data.zip into --data-dir first (checks SHA-256 hashes; "
                        "default: $NAMECLS_DATA_DIR or data/names)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="clean",
                   help="clean: unique names, grouped 80/10/10 split (default); seed: the article's 10%% row split")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initial weights and the batch order")
    p.add_argument("--epochs", type=positive(int), help=f"maximum number of epochs (default: {default_text('epochs')})")
    p.add_argument("--batch-size", type=positive(int),
                   help=f"names per mini-batch (default: {default_text('batch_size')})")
    p.add_argument("--lr", type=positive(float),
                   help=f"peak learning rate of the one-cycle schedule (default: {default_text('lr')})")
    p.add_argument("--hidden-size", type=positive(int),
                   help=f"hidden units per layer (default: {default_text('hidden_size')})")
    p.add_argument("--layers", type=positive(int),
                   help=f"GRU layers (default: {default_text('num_layers')}; the RNN has one)")
    p.add_argument("--backprop", choices=["autograd", "manual"], default="autograd",
                   help="how the RNN's gradients are computed: autograd (default) or manual, the hand-written "
                        "backpropagation through time of namecls/models/bptt.py (RNN only)")
    p.add_argument("--like", metavar="FOLDER",
                   help="take each model's architecture and training settings from FOLDER/<model>/config.json instead "
                        "of the defaults (e.g. --like checkpoints retrains the committed checkpoints' recipe); the "
                        "flags above still override them")
    p.add_argument("--out", default="checkpoints", help="folder that receives <out>/rnn and <out>/gru")
    p.add_argument("--threads", type=positive(int), default=os.cpu_count(),
                   help="torch CPU threads (default: all cores)")
    p.add_argument("--dry-run", action="store_true", help="a tiny model, one short epoch: a smoke test")
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bar")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.backprop == "manual" and args.model != "rnn":
        raise SystemExit(f"--backprop manual is written for the RNN only: add --model rnn (got --model {args.model})")
    problem = check_out(args.out)
    if problem is not None:  # before the data and any training: one line, exit status 2 (a usage error)
        print(f"train.py: error: --out {args.out}: {problem}", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    try:
        if args.download:
            download(args.data_dir or data_dirs()[0][0])
        data = read_names(find_data(args.data_dir))
    except (OSError, RuntimeError) as err:
        raise SystemExit(f"error: {err}") from None
    split = make_split(data, args.protocol, args.seed)
    model_overrides = {k: v for k, v in {"hidden_size": args.hidden_size, "num_layers": args.layers}.items()
                       if v is not None}
    train_overrides = {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}.items()
                       if v is not None}
    train_overrides["seed"] = args.seed
    train_overrides["backprop"] = args.backprop
    if args.dry_run:
        model_overrides |= DRY_RUN["model"]
        train_overrides |= DRY_RUN["train"]
    for kind in ["rnn", "gru"] if args.model == "all" else [args.model]:
        architecture: dict
        settings: dict
        architecture, settings = {}, {}
        if args.like:
            try:
                architecture, settings = checkpoint.recipe(Path(args.like) / kind)
            except checkpoint.CheckpointError as err:
                raise SystemExit(f"error: --like: {err}") from None
            architecture = {k: v for k, v in architecture.items() if k not in ("kind", "num_classes")}
        trained = run(kind, data.labels, split, architecture | model_overrides, settings | train_overrides,
                      with_baselines=not args.dry_run, progress=not args.no_progress)
        fitted = posthoc.fit(trained.model, data.labels, split, trained.val_logits, trained.test_logits)
        metrics = trained.metrics | fitted.metrics
        folder = checkpoint.save(Path(args.out) / kind, trained.model, data.labels,
                                 checkpoint_extra(data, split, metrics), metrics, fitted)
        print(f"\n{kind.upper()} on the {split.protocol} test split ({metrics['test']['n']} names), "
              f"{metrics['training_seconds']:.0f} s of training, saved to {folder}\n{results_table(metrics)}\n"
              f"{posthoc.coverage_line(metrics)}\n")


if __name__ == "__main__":
    main()
