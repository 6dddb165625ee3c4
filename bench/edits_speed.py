"""One-letter variants (``namecls.explain.edits.one_letter_edits``): latency of the shared-prefix pass next to the plain
batched pass, in the same run, for names of 4, 8, 16 and 32 letters on both committed models at one torch thread.

For each (model, name) the two paths take turns, ``--calls`` calls each (after ``--warmup`` untimed ones): the
whole ``one_letter_edits`` call (generating the variants, classifying them, choosing six), with
``shared_prefix=True`` (every variant continues from the name's state after its unchanged prefix) and with
``shared_prefix=False`` (every variant read whole in a padded batch). Prints p50 / p99 in ms of each, the ratio of
the p50s, the number of variants, and the largest difference between the two passes' probabilities.

    python bench/edits_speed.py                 # about 2 min on 2 busy cores
    python bench/edits_speed.py --calls 20 --lengths 8
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import ROOT, machine

sys.path.insert(0, str(ROOT))

import namecls  # noqa: E402  (first: it sets OMP_WAIT_POLICY before torch is imported)
import torch  # noqa: E402
from namecls.explain import edits  # noqa: E402

NAMES = {4: "Kang", 8: "Nakamura"}  # real surnames; longer ones are cut from a long real one
LONG = "Wolfeschlegelsteinhausenbergerdorff"  # 35 letters


def name_of_length(length: int) -> str:
    return NAMES.get(length) or (LONG * (length // len(LONG) + 1))[:length]


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms."""
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="timed calls per path and name (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per path and name first (default 3)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[4, 8, 16, 32], help="name lengths (4 8 16 32)")
    parser.add_argument("--models", nargs="+", default=["rnn", "gru"], help="checkpoints to load (rnn gru)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a server request)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(machine())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.calls} calls per path, taking turns")
    print(f"{'model':<5} {'letters':>7} {'name':<34} {'variants':>8}  {'shared p50/p99 ms':>18}  "
          f"{'plain p50/p99 ms':>17}  {'plain/shared':>12}  {'max |dp|':>8}")
    for kind in args.models:
        clf = namecls.load(kind)
        for length in args.lengths:
            name = name_of_length(length)
            found = edits.one_letter_variants(name)
            gap = np.abs(edits.shared_prefix_probabilities(clf, name, found)
                         - edits.plain_probabilities(clf, [e.variant for e in found])).max()
            times = {True: [], False: []}
            for call in range(args.warmup + args.calls):
                for shared in (True, False):
                    start = time.perf_counter()
                    edits.one_letter_edits(clf, name, n=6, shared_prefix=shared)
                    if call >= args.warmup:
                        times[shared].append(time.perf_counter() - start)
            shared_p50, shared_p99 = percentiles(times[True])
            plain_p50, plain_p99 = percentiles(times[False])
            print(f"{kind:<5} {length:>7} {name:<34} {len(found):>8}  {shared_p50:>8.1f} / {shared_p99:>7.1f}  "
                  f"{plain_p50:>7.1f} / {plain_p99:>7.1f}  {plain_p50 / shared_p50:>11.2f}x  {gap:>8.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
