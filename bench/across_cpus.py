"""What another CPU changes: both committed models' answers on every validation and test name, computed natively
and under each emulated kernel path (MKL_CBWR=AVX2, MKL_CBWR=COMPATIBLE, ATEN_CPU_CAPABILITY=default), then
compared with the native run: the largest change of a probability, and how many names change their top language,
their 90% prediction set, their low-confidence flag or their novelty flag.

    python bench/across_cpus.py            # about 1 min

Each emulation runs in its own process (the settings are read when MKL and ATen start).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine  # noqa: E402

EMULATIONS = {"native": {}, "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"}, "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
              "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"}}


def answers(data_dir: str, out: str) -> None:
    """Write every validation and test name's calibrated probabilities, set sizes and flags, per model, to ``out``."""
    sys.path.insert(0, str(ROOT))
    import torch

    import namecls
    from namecls.data.names import read_names
    from namecls.data.splits import make_split

    torch.set_num_threads(1)
    arrays = {}
    for kind in ("rnn", "gru"):
        clf = namecls.load(kind)
        split = make_split(read_names(data_dir), clf.config["protocol"], clf.config["split_seed"])
        names = [n for part in ("val", "test") for n in split.part(part)[0]]
        full = clf.predict_batch(names, len(clf.labels))
        probs = np.array([[dict(row)[lang] for lang in clf.labels] for row in full])  # (N, C) label order
        sorted_probs = [[p for _, p in row] for row in full]
        arrays[f"{kind}_probs"] = probs
        arrays[f"{kind}_sizes"] = clf.conformal.sizes(sorted_probs)
        arrays[f"{kind}_low"] = np.asarray(clf.is_low_confidence(sorted_probs))
        arrays[f"{kind}_novel"] = np.asarray(clf.novelty.unfamiliar(clf.novelty.score_model(clf.model, names)))
    np.savez(out, **arrays)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("NAMECLS_DATA_DIR", str(ROOT.parent / "shared/data/names")),
                   help="the names folder (default: $NAMECLS_DATA_DIR or ../shared/data/names)")
    p.add_argument("--answers", metavar="OUT", help=argparse.SUPPRESS)  # the child process's job
    args = p.parse_args()
    if args.answers:
        return answers(args.data_dir, args.answers)
    print(machine())
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in EMULATIONS.items():
            out = str(Path(tmp) / f"{len(runs)}.npz")
            env = {**os.environ, **extra}
            subprocess.run([sys.executable, __file__, "--data-dir", args.data_dir, "--answers", out], env=env,
                           check=True)
            runs[label] = dict(np.load(out))
    base = runs["native"]
    print(f"{'kernels':<28} {'model':<5} {'names':>6} {'max |dp|':>10} {'top-1':>6} {'set':>5} {'low conf':>9} "
          f"{'novelty':>8}   (names that differ from native)")
    for label, run in runs.items():
        if label == "native":
            continue
        for kind in ("rnn", "gru"):
            probs = run[f"{kind}_probs"]
            n = len(probs)
            dp = np.abs(probs - base[f"{kind}_probs"]).max()
            top = int((probs.argmax(1) != base[f"{kind}_probs"].argmax(1)).sum())
            sets = int((run[f"{kind}_sizes"] != base[f"{kind}_sizes"]).sum())
            low = int((run[f"{kind}_low"] != base[f"{kind}_low"]).sum())
            novel = int((run[f"{kind}_novel"] != base[f"{kind}_novel"]).sum())
            print(f"{label:<28} {kind:<5} {n:>6,} {dp:>10.2e} {top:>6} {sets:>5} {low:>9} {novel:>8}")


if __name__ == "__main__":
    main()
