"""Check the hand-written backpropagation through time (:mod:`namecls.models.bptt`) against autograd.

    python -m namecls.models.gradcheck  # several hidden sizes, float64; exit 1 if any difference > 1e-6
    python -m namecls.models.gradcheck --hidden-sizes 256  # the project's default size

For each hidden size it builds a random RNN in float64 (random weights, a random learned initial state), a padded
batch of names with mixed lengths (always including length 1 and the longest; padded positions filled with random
letters, which must not matter), random class weights and label smoothing, and computes the loss's gradient with
respect to every parameter twice: by autograd through ``RNNClassifier.forward`` + ``nn.CrossEntropyLoss``, and by
hand through ``bptt.manual_loss``. It prints, per parameter, the largest absolute difference and the largest
relative difference |manual - autograd| / max(|manual|, |autograd|, 1e-8) (the floor keeps exact zeros, e.g. the
columns of letters absent from the batch, from dividing by zero). A final check runs ``torch.autograd.gradcheck``
(finite differences, independent of autograd's own backward) on the two autograd Functions at a small size.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from . import bptt
from .networks import RNNClassifier, RNNConfig

PARAMETERS = ("i2h.weight", "i2h.bias", "i2o.weight", "i2o.bias", "h0")
REL_FLOOR = 1e-8


def random_case(hidden_size: int, batch_size: int = 12, max_length: int = 10, num_classes: int = 18,
                vocab_size: int = 59, learn_initial_state: bool = True, seed: int = 0, dtype=torch.float64):
    """A random float64 RNN, a padded batch with mixed lengths (including 1 and ``max_length``), targets and a loss."""
    g = torch.Generator().manual_seed(seed)
    config = RNNConfig(vocab_size=vocab_size, num_classes=num_classes, hidden_size=hidden_size,
                       learn_initial_state=learn_initial_state)
    model = RNNClassifier(config).to(dtype)
    with torch.no_grad():
        for p in model.parameters():  # scale 1 keeps the sigmoids away from saturation, so gradients are sizeable
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) / max(1.0, p.shape[-1] ** 0.5) * 2)
    lengths = torch.randint(1, max_length + 1, (batch_size,), generator=g)
    lengths[0], lengths[-1] = 1, max_length  # the two edge cases, always present
    x = torch.randint(0, vocab_size, (batch_size, max_length), generator=g)  # (B, T): padding is random letters
    targets = torch.randint(0, num_classes, (batch_size,), generator=g)
    weight = torch.rand(num_classes, generator=g, dtype=dtype) + 0.5
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    return model, x, lengths, targets, loss_fn


def gradients(model: RNNClassifier, x, lengths, targets, loss_fn, manual: bool) -> tuple[float, dict]:
    """The loss and {parameter name: gradient or None} by hand (``manual``) or by autograd."""
    model.zero_grad(set_to_none=True)
    loss = bptt.manual_loss(model, x, lengths, targets, loss_fn) if manual else loss_fn(model(x, lengths), targets)
    loss.backward()
    params = dict(model.named_parameters())
    grads = {name: (None if (grad := params[name].grad) is None else grad.clone()) for name in PARAMETERS}
    return loss.item(), grads


def compare(model: RNNClassifier, x, lengths, targets, loss_fn) -> list[dict]:
    """One row per parameter (and one for the loss value): shape, largest gradient, largest abs/rel difference."""
    loss_a, auto = gradients(model, x, lengths, targets, loss_fn, manual=False)
    loss_m, hand = gradients(model, x, lengths, targets, loss_fn, manual=True)
    rows = [{"parameter": "loss value", "shape": "()", "max |grad|": abs(loss_a),
             "max abs diff": abs(loss_m - loss_a), "max rel diff": abs(loss_m - loss_a) / max(abs(loss_a), REL_FLOOR)}]
    for name in PARAMETERS:
        a, m = auto[name], hand[name]
        if a is None or m is None:  # a frozen h0: neither side may produce a gradient
            ok = a is None and m is None
            rows.append({"parameter": name, "shape": "frozen" if ok else "MISMATCH", "max |grad|": 0.0,
                         "max abs diff": 0.0 if ok else float("inf"), "max rel diff": 0.0 if ok else float("inf")})
            continue
        diff = (m - a).abs()
        rel = diff / torch.maximum(torch.maximum(m.abs(), a.abs()), torch.tensor(REL_FLOOR, dtype=a.dtype))
        rows.append({"parameter": name, "shape": "x".join(map(str, a.shape)), "max |grad|": a.abs().max().item(),
                     "max abs diff": diff.max().item(), "max rel diff": rel.max().item()})
    return rows


def finite_differences(seed: int = 0) -> bool:
    """``torch.autograd.gradcheck`` on both Functions: our backward against numerical derivatives."""
    model, x, lengths, targets, loss_fn = random_case(hidden_size=4, batch_size=5, max_length=4, num_classes=3,
                                                      vocab_size=6, seed=seed)
    params = (model.i2h.weight, model.i2h.bias, model.i2o.weight, model.i2o.bias, model.h0)
    ok_rnn = torch.autograd.gradcheck(lambda *p: bptt.RNNLogits.apply(x, lengths, *p), params, raise_exception=False)
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ok_ce = torch.autograd.gradcheck(
        lambda z: bptt.CrossEntropyByHand.apply(z, targets, loss_fn.weight, loss_fn.label_smoothing), (logits,),
        raise_exception=False)
    return ok_rnn and ok_ce


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=[1, 8, 32, 256],
                   help="hidden sizes of the random RNNs (default: 1 8 32 256; 256 is the default RNN)")
    p.add_argument("--batch-size", type=int, default=12, help="names per random batch (default: 12)")
    p.add_argument("--max-length", type=int, default=10,
                   help="longest name of a batch: lengths range 1..this (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random models and batches (default: 0)")
    p.add_argument("--tolerance", type=float, default=1e-6,
                   help="largest allowed absolute or relative difference; exit 1 above it (default: 1e-6)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    cases = [(h, True) for h in args.hidden_sizes] + [(args.hidden_sizes[0], False)]  # and once with a frozen h0
    header = (f"{'H':>4} {'h0':>7} {'parameter':<11} {'shape':>9} {'max |grad|':>11} {'max abs diff':>13} "
              f"{'max rel diff':>13}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for i, (hidden, learn_h0) in enumerate(cases):
        model, x, lengths, targets, loss_fn = random_case(hidden, args.batch_size, args.max_length,
                                                          learn_initial_state=learn_h0, seed=args.seed + i)
        for row in compare(model, x, lengths, targets, loss_fn):
            worst = max(worst, row["max abs diff"], row["max rel diff"])
            print(f"{hidden:>4} {'learned' if learn_h0 else 'frozen':>7} {row['parameter']:<11} {row['shape']:>9} "
                  f"{row['max |grad|']:>11.3e} {row['max abs diff']:>13.3e} {row['max rel diff']:>13.3e}")
    print(f"\nlengths per batch: 1..{args.max_length} (length 1 and {args.max_length} always present), float64")
    fd_ok = finite_differences(args.seed)
    print("finite differences (torch.autograd.gradcheck) on RNNLogits and CrossEntropyByHand:",
          "ok" if fd_ok else "FAILED")
    passed = worst <= args.tolerance and fd_ok
    print(f"largest difference {worst:.3e} {'<=' if worst <= args.tolerance else '>'} tolerance {args.tolerance:g}: "
          f"{'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
