"""How fast the project trains: time to the article's accuracy, and where an epoch's time goes.

    python bench/train_speed.py               # seconds to 82.4% test accuracy on seed split 0, vs the batch-size-1 loop
    python bench/train_speed.py --profile     # an epoch of train.py's RNN and GRU against the matmul roofline

**Time to accuracy.** On seed split 0 (the article's protocol) it trains :data:`RECIPE` with the project's trainer:
``namecls.fit``'s small GRU (1 x 128) on a 6-epoch one-cycle schedule at batch 256, peak learning rate 2e-2 — picked
among four runs of this script (batch 64/128/256, 5-8 epochs) by the time it reports, so it is tuned to this very
measure. It scores the test part after every epoch, and reports the training seconds until test accuracy first
reaches 82.4% (what the article's 2-epoch loop reached). In the same run it times the article's loop — one name per
step: forward, loss, backward, SGD — on a sample of names, over the committed GRU's architecture (the reference the
issue's 4.3x was measured against) and over the same small GRU, and extrapolates each to the article's 2 epochs of
18,063 rows. The last line is
``time to 82.4%: <ours> s vs <loop> s: <ratio>x``.

**Profile.** For each of train.py's two models it runs one epoch of the trainer without the profiler (the wall time),
one under ``torch.profiler`` (the shares of the labelled regions of :func:`namecls.training.loop.train`: batching,
forward, backward, update, validation) and counts the epoch's arithmetic with ``torch.utils.flop_counter``. The floor
is that count divided by the peak of a large float32 matmul measured in the same run at the same thread count; the
ratio floor / epoch is the share of the roofline reached. Then the RNN's forward + backward against an ``nn.RNN`` of
the same size (torch's own recurrent kernel) on the same batches, taking turns.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import namecls  # noqa: E402,F401  (first: it sets how torch's idle threads wait)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from namecls.data.names import ALPHABET, pad_batch, read_names  # noqa: E402
from namecls.training.evaluation import predict_logits, quick_score  # noqa: E402
from namecls.training.experiment import model_config, train_config  # noqa: E402
from namecls.recipes import FIT_DEFAULTS  # noqa: E402
from namecls.models.networks import build  # noqa: E402
from namecls.data.splits import make_split  # noqa: E402
from namecls.training.loop import Hooks, length_batches, train  # noqa: E402

TARGET = 0.824
RECIPE = replace(FIT_DEFAULTS["gru"], batch_size=256, lr=2e-2, epochs=6)  # see the module docstring
ARTICLE_ROWS = 18_063  # the article trains on train + validation rows of its split
REGIONS = ("batch", "forward", "backward", "update", "validate")


def batch_size_one_seconds(model: nn.Module, names: list[str], targets: np.ndarray) -> float:
    """Seconds per name of the article's loop: one name per forward/backward/SGD step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for name, target in zip(names, targets):
        x, lengths = pad_batch([name])
        loss = loss_fn(model(x, lengths), torch.tensor([int(target)]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / len(names)


def matmul_peak(threads: int, size: int = 1024, repeats: int = 30) -> float:
    """FLOP/s of the best of ``repeats`` float32 (size x size) @ (size x size) products at ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats + 3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def time_to_accuracy(args, data) -> None:
    split = make_split(data, "seed", 0)
    train_names, train_targets = split.part("train")
    val_names, val_targets = split.part("val")
    test_names, test_targets = split.part("test")
    recipe = replace(RECIPE, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs)
    num_classes = len(data.labels)
    print(f"ours: namecls.fit's GRU ({recipe.num_layers} x {recipe.hidden_size}, batch {recipe.batch_size}, "
          f"peak lr {recipe.lr:g}, {recipe.epochs}-epoch one-cycle), {args.threads} thread(s), seed split 0",
          flush=True)
    reached, elapsed = [], [0.0]

    def check_test(row, model):
        elapsed[0] += row["seconds"]  # the epoch's training and validation, not this test scoring
        accuracy = quick_score(test_targets, predict_logits(model, test_names))["accuracy"]
        print(f"  epoch {row['epoch']:2d}: {elapsed[0]:6.1f} s of training, test accuracy {accuracy:.4f}", flush=True)
        if accuracy >= TARGET and not reached:
            reached.append(elapsed[0])

    torch.manual_seed(0)
    model = build(model_config("gru", num_classes, **recipe.model_fields()))
    tconfig = train_config("gru", **(recipe.train_fields() | {"patience": recipe.epochs}))
    train(model, train_names, train_targets, val_names, val_targets, tconfig, progress=False,
          hooks=Hooks(on_epoch=check_test))

    sample = np.random.default_rng(0).choice(len(train_names), size=args.sample, replace=False)
    names, targets = [train_names[i] for i in sample], train_targets[sample]
    loops = {}
    for label, config in (("the committed GRU's architecture", model_config("gru", num_classes)),
                          ("ours", model_config("gru", num_classes, **recipe.model_fields()))):
        torch.manual_seed(0)
        per_name = batch_size_one_seconds(build(config), names, targets)
        loops[label] = 2 * ARTICLE_ROWS * per_name
        print(f"batch-size-1 loop over {label} ({config.num_layers} x {config.hidden_size}): "
              f"{per_name * 1e3:.2f} ms per name, {loops[label]:.0f} s for the article's 2 epochs", flush=True)
    if not reached:
        print(f"time to {TARGET:.1%}: not reached in {args.epochs} epochs ({elapsed[0]:.1f} s)")
        return
    print(f"(against the loop over our own small GRU: {loops['ours'] / reached[0]:.1f}x)")
    loop = loops["the committed GRU's architecture"]
    print(f"time to {TARGET:.1%}: {reached[0]:.1f} s vs {loop:.0f} s: {loop / reached[0]:.1f}x")


def profile_epoch(kind: str, data, split, threads: int, peak: float) -> None:
    """One epoch of train.py's ``kind``: its wall time, its regions' shares, and its arithmetic against ``peak``."""
    train_names, train_targets = split.part("train")
    val_names, val_targets = split.part("val")
    config = model_config(kind, len(data.labels))
    tconfig = train_config(kind, epochs=1)

    def one_epoch():
        torch.manual_seed(0)
        model = build(config)
        start = time.perf_counter()
        _, history = train(model, train_names, train_targets, val_names, val_targets, tconfig, progress=False)
        return time.perf_counter() - start, model

    wall, _ = one_epoch()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        profiled, _ = one_epoch()
    regions = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in REGIONS}

    # The arithmetic of the epoch's training batches (forward + backward), counted op by op.
    torch.manual_seed(0)
    model = build(config).train()
    loss_fn = nn.CrossEntropyLoss()
    counter = FlopCounterMode(display=False)
    batches = length_batches(train_names, tconfig.batch_size, np.random.default_rng(0))
    with counter:
        for rows in batches:
            x, lengths = pad_batch([train_names[i] for i in rows])
            loss_fn(model(x, lengths), torch.as_tensor(train_targets[rows])).backward()
    flops = counter.get_total_flops()
    training = wall * (1 - regions.get("validate", 0.0) / profiled)  # the epoch without its validation pass
    floor = flops / peak
    size = f"{config.num_layers} x {config.hidden_size}" if kind == "gru" else f"{config.hidden_size}"
    print(f"\n{kind.upper()} ({size}, batch {tconfig.batch_size}), {threads} thread(s): one epoch {wall:.2f} s, "
          f"{training:.2f} s of it training (the rest validation)")
    for key in REGIONS:
        print(f"  {key:9s} {regions.get(key, 0.0):6.2f} s  {100 * regions.get(key, 0.0) / profiled:5.1f}%  (profiled)")
    chars = sum(len(n) for n in train_names)
    print(f"  arithmetic: {flops / 1e12:.3f} TFLOP ({flops / chars / 1e6:.2f} MFLOP per character, "
          f"{flops / len(train_names) / 1e6:.1f} per name) / {peak / 1e9:.0f} GFLOP/s = floor {floor:.2f} s")
    print(f"  training part of the epoch vs its floor: {training:.2f} s vs {floor:.2f} s = "
          f"{100 * floor / training:.0f}% of the roofline")


def rnn_against_nn_rnn(data, split, rounds: int = 3) -> None:
    """Forward + backward over the training batches: the project's RNN vs an nn.RNN + linear head of the same size."""
    names, targets = split.part("train")
    config = model_config("rnn", len(data.labels))
    torch.manual_seed(0)
    ours = build(config).train()
    reference = nn.RNN(len(ALPHABET), config.hidden_size, batch_first=True)
    head = nn.Linear(config.hidden_size, config.num_classes)
    loss_fn = nn.CrossEntropyLoss()
    batches = [(pad_batch([names[i] for i in rows]), torch.as_tensor(targets[rows]))
               for rows in length_batches(names, train_config("rnn").batch_size, np.random.default_rng(0))]

    def ours_pass():
        for (x, lengths), y in batches:
            loss_fn(ours(x, lengths), y).backward()

    def reference_pass():
        for (x, lengths), y in batches:
            out, _ = reference(nn.functional.one_hot(x, len(ALPHABET)).float())  # (B, T, H)
            loss_fn(head(out[torch.arange(len(y)), lengths - 1]), y).backward()

    seconds = {"ours": [], "nn.RNN": []}
    for turn in range(rounds):  # taking turns, so both see the same machine load
        for label, run in (("ours", ours_pass), ("nn.RNN", reference_pass))[:: 1 if turn % 2 == 0 else -1]:
            start = time.perf_counter()
            run()
            seconds[label].append(time.perf_counter() - start)
    mine, theirs = min(seconds["ours"]), min(seconds["nn.RNN"])
    print(f"\nRNN {config.hidden_size}: forward + backward over an epoch's batches, best of {rounds}: "
          f"ours {mine:.2f} s, nn.RNN of the same size {theirs:.2f} s: {mine / theirs:.2f}x nn.RNN's time")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("NAMECLS_DATA_DIR", "../shared/data/names"),
                   help="the names folder (default: $NAMECLS_DATA_DIR or ../shared/data/names)")
    p.add_argument("--profile", action="store_true",
                   help="profile an epoch of train.py's RNN and GRU against the matmul roofline instead")
    p.add_argument("--epochs", type=int, default=RECIPE.epochs,
                   help="length of our one-cycle schedule (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=RECIPE.batch_size, help="our batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=RECIPE.lr, help="our peak learning rate (default: %(default)s)")
    p.add_argument("--sample", type=int, default=1000,
                   help="names timed in the batch-size-1 loop (default: %(default)s)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="torch CPU threads, for ours and the loop alike (default: all cores, as train.py)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    data = read_names(args.data_dir)
    if not args.profile:
        time_to_accuracy(args, data)
        return
    peak = matmul_peak(args.threads)
    print(f"matmul peak (1024^3 float32, best of 30), {args.threads} thread(s): {peak / 1e9:.0f} GFLOP/s")
    split = make_split(data, "clean", 0)
    for kind in ("rnn", "gru"):
        profile_epoch(kind, data, split, args.threads, peak)
    rnn_against_nn_rnn(data, split)


if __name__ == "__main__":
    main()
