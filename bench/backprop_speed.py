"""Seconds per training epoch of the RNN: hand-written backpropagation through time vs autograd, in the same run.

    python bench/backprop_speed.py --data-dir ../shared/data/names            # default RNN, 5 epochs each
    python bench/backprop_speed.py --data-dir ../shared/data/names --threads 2 --epochs 5

Two copies of the same model (same initial weights) train on the train part of the clean split with the project's
training step (length-bucketed batches, class-weighted smoothed cross-entropy, AdamW, one-cycle schedule, clipping):
one gets its gradients from autograd, the other from ``namecls.models.bptt``. Both see the same batches in the same
order,
taking turns batch by batch (who goes first alternates) so that both see the same machine load. Only the optimiser
steps are timed (no validation). The loss columns and the final weight difference check that the two copies are
still training the same model.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from namecls.models import bptt  # noqa: E402
from namecls.data.names import pad_batch, read_names  # noqa: E402
from namecls.training.experiment import model_config, train_config  # noqa: E402
from namecls.models.networks import build  # noqa: E402
from namecls.data.splits import make_split  # noqa: E402
from namecls.training.loop import class_weights, length_batches  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("NAMECLS_DATA_DIR", "data/names"),
                   help="folder with one <Language>.txt per language (default: $NAMECLS_DATA_DIR or data/names)")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per backprop mode (default: 5)")
    p.add_argument("--hidden-size", type=int, help="RNN hidden units (default: the project's default RNN, 256)")
    p.add_argument("--batch-size", type=int, help="names per mini-batch (default: the RNN's training default, 64)")
    p.add_argument("--max-batches", type=int, help="cap batches per epoch, for a quick look (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, weights and batch order (default: 0)")
    return p.parse_args(argv)


class Trainer:
    """The project's training step (namecls.training.loop.train without validation), for one backprop mode."""

    def __init__(self, model, loss_fn, tconfig, total_steps: int, backprop: str):
        self.model, self.loss_fn, self.backprop, self.clip = model.train(), loss_fn, backprop, tconfig.clip
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=tconfig.lr, weight_decay=tconfig.weight_decay)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=tconfig.lr, total_steps=total_steps,
                                                            pct_start=0.15)

    def step(self, x, lengths, y) -> tuple[float, float]:
        """One optimiser step on a batch; return (seconds, loss)."""
        start = time.perf_counter()
        if self.backprop == "manual":
            loss = bptt.manual_loss(self.model, x, lengths, y, self.loss_fn)
        else:
            loss = self.loss_fn(self.model(x, lengths), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.schedule.step()
        return time.perf_counter() - start, loss.item()


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = read_names(args.data_dir)
    split = make_split(data, "clean", args.seed)
    names, targets = split.part("train")
    overrides = {"hidden_size": args.hidden_size} if args.hidden_size else {}
    mconfig = model_config("rnn", len(data.labels), **overrides)
    tconfig = train_config("rnn", seed=args.seed, **({"batch_size": args.batch_size} if args.batch_size else {}))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(targets, mconfig.num_classes, tconfig.class_weight_power),
                                  label_smoothing=tconfig.label_smoothing)
    torch.manual_seed(args.seed)
    autograd_model = build(mconfig)
    manual_model = build(mconfig)
    manual_model.load_state_dict(autograd_model.state_dict())
    steps = math.ceil(len(names) / tconfig.batch_size)
    if args.max_batches:
        steps = min(steps, args.max_batches)
    trainers = {mode: Trainer(model, loss_fn, tconfig, args.epochs * steps, mode)
                for mode, model in (("autograd", autograd_model), ("manual", manual_model))}
    rng = np.random.default_rng(args.seed)
    print(f"RNN hidden {mconfig.hidden_size}, clean split train part: {len(names)} names, {steps} batches of "
          f"{tconfig.batch_size}, {args.threads} thread(s), torch {torch.__version__}\n")
    print(f"{'epoch':>5} {'autograd s':>11} {'manual s':>9} {'manual/autograd':>16} {'autograd loss':>14} "
          f"{'manual loss':>12}")
    seconds = {"autograd": [], "manual": []}
    for epoch in range(1, args.epochs + 1):
        batches = []
        for rows in length_batches(names, tconfig.batch_size, rng)[:steps]:
            x, lengths = pad_batch([names[i] for i in rows])
            batches.append((x, lengths, torch.as_tensor(targets[rows])))
        rows_total = sum(len(y) for _, _, y in batches)
        result = {mode: [0.0, 0.0] for mode in trainers}  # mode -> [seconds, mean loss]
        for i, (x, lengths, y) in enumerate(batches):
            for mode in ("autograd", "manual") if i % 2 else ("manual", "autograd"):  # alternate who goes first
                seconds_step, loss = trainers[mode].step(x, lengths, y)
                result[mode][0] += seconds_step
                result[mode][1] += loss * len(y) / rows_total
        for mode in seconds:
            seconds[mode].append(result[mode][0])
        print(f"{epoch:>5} {result['autograd'][0]:>11.2f} {result['manual'][0]:>9.2f} "
              f"{result['manual'][0] / result['autograd'][0]:>16.2f} {result['autograd'][1]:>14.5f} "
              f"{result['manual'][1]:>12.5f}")
    med = {mode: statistics.median(s) for mode, s in seconds.items()}
    print(f"{'median':>5} {med['autograd']:>11.2f} {med['manual']:>9.2f} {med['manual'] / med['autograd']:>16.2f}")
    drift = max((a - m).abs().max().item() for a, m in zip(autograd_model.parameters(), manual_model.parameters()))
    print(f"\nmanual backprop takes {med['manual'] / med['autograd']:.2f}x autograd's time per epoch "
          f"(medians); largest weight difference between the two models after training: {drift:.1e}")


if __name__ == "__main__":
    main()
