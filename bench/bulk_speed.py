"""Names in bulk: ``namecls batch`` on a big file against the library's batch speed, and ``namecls.annotate`` in
one process against a Dask LocalCluster, side by side in one run.

1. Side by side, ``--repeats`` rounds on ``--sample`` names: ``Classifier.predict_batch`` (the model alone) and
   ``service.predict_batch`` (the library's batch path with the uncertainty fields, what the command line and
   ``annotate`` run), in this process, 10,000 names a call; then ``namecls batch sample.csv -o out.csv`` (the
   console script of this venv, a fresh process: start-up and checkpoint load included). Medians.
2. ``namecls batch names.csv -o out.csv`` on ``--names`` names: wall seconds, names/s and the process's peak RSS
   (``ru_maxrss`` from ``wait4``, what ``/usr/bin/time -v`` calls "Maximum resident set size"), next to the peak
   RSS of the runs on ``--sample`` names: equal peaks mean the memory stays flat.
3. ``--dask-names`` names in Parquet files of 10,000 rows: ``namecls.annotate`` on the whole table in this process
   (torch's default threads, then one thread, as a worker runs), then
   ``dd.read_parquet(...).map_partitions(namecls.annotate, ...)`` on a ``LocalCluster(n_workers=2,
   threads_per_worker=1)`` (start-up timed apart), checked equal.

    python bench/bulk_speed.py                              # 1,000,000 names (about 15 min on 2 busy cores)
    python bench/bulk_speed.py --names 100000 --dask-names 50000 --sample 20000   # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine

sys.path.insert(0, str(ROOT))

import namecls  # noqa: E402  (first: it sets OMP_WAIT_POLICY before torch is imported, as the command does)
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from namecls.serving import service  # noqa: E402

CONSOLE_SCRIPT = Path(sys.executable).parent / "namecls"
PATHS = {"Classifier.predict_batch": "`Classifier.predict_batch` (the model alone, in-process)",
         "service.predict_batch": "`service.predict_batch` (the library's batch path, in-process)",
         "namecls batch": "`namecls batch sample.csv -o out.csv --chunk-size {chunk}` (fresh process)"}


def data_names(data_dir: Path) -> list[str]:
    """Every line of the names files as written (accents and all), blank lines skipped."""
    return [line.strip() for path in sorted(data_dir.glob("*.txt"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cycled(names: list[str], n: int) -> list[str]:
    return [names[i % len(names)] for i in range(n)]


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def library_speed(clf: namecls.Classifier, names: list[str]) -> dict[str, float]:
    """Seconds of the model alone and of the library's batch path, 10,000 names a call, in this process."""
    models = {clf.kind: clf}
    step = service.MAX_BATCH_NAMES
    slices = [names[i : i + step] for i in range(0, len(names), step)]
    return {"Classifier.predict_batch": timed(lambda: [clf.predict_batch(part, 3) for part in slices]),
            "service.predict_batch": timed(lambda: [service.predict_batch(models, part, clf.kind, 3)
                                                    for part in slices])}


def command_line(source: Path, target: Path, model: str, chunk: int) -> dict:
    """One ``namecls batch`` in a fresh process: wall seconds and peak RSS (MB)."""
    command = [str(CONSOLE_SCRIPT), "batch", str(source), "-o", str(target), "--model", model, "--chunk-size",
               str(chunk), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.read().decode()}")
    proc.stderr.close()
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def checkpoint_loads() -> int:
    """Run on a worker: how many checkpoints its process has loaded."""
    from namecls.serving import bulk

    return bulk.classifier.cache_info().misses


def dask_speed(names: list[str], folder: Path, model: str) -> dict:
    """annotate in this process vs map_partitions on a 2-worker LocalCluster, on the same Parquet files."""
    import dask.dataframe as dd
    from dask.dataframe.utils import make_meta
    from distributed import Client, LocalCluster

    per_file = 10_000
    for i in range(0, len(names), per_file):
        pd.DataFrame({"id": range(i, i + len(names[i : i + per_file])), "surname": names[i : i + per_file]}) \
            .to_parquet(folder / f"part-{i // per_file:04d}.parquet", index=False)
    table = dd.read_parquet(folder).compute()
    namecls.annotate(table.head(100), column="surname", model=model)  # load the checkpoint once, as workers do
    start = time.perf_counter()
    single = namecls.annotate(table, column="surname", model=model)
    one_process = time.perf_counter() - start
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker runs (the nanny sets OMP_NUM_THREADS=1)
    one_thread = timed(lambda: namecls.annotate(table, column="surname", model=model))
    torch.set_num_threads(threads)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        startup = time.perf_counter() - start
        ddf = dd.read_parquet(folder)
        meta = namecls.annotate(make_meta(ddf), column="surname", model=model)
        start = time.perf_counter()
        distributed = ddf.map_partitions(namecls.annotate, column="surname", model=model, meta=meta).compute()
        cluster_seconds = time.perf_counter() - start
        loads = client.run(checkpoint_loads)
    pd.testing.assert_frame_equal(distributed, single)
    return {"partitions": ddf.npartitions, "one_process": one_process, "one_thread": one_thread,
            "threads": threads, "cluster": cluster_seconds,
            "startup": startup, "loads": loads}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--names", type=int, default=1_000_000, help="names in the file namecls batch reads "
                   "(default: 1,000,000)")
    p.add_argument("--sample", type=int, default=100_000, help="names of each side-by-side round (default: "
                   "100,000)")
    p.add_argument("--repeats", type=int, default=3, help="side-by-side rounds (default: 3)")
    p.add_argument("--dask-names", type=int, default=200_000, help="names for one process vs the cluster "
                   "(default: 200,000)")
    p.add_argument("--model", choices=["rnn", "gru"], default="gru", help="which checkpoint (default: gru)")
    p.add_argument("--chunk-size", type=int, default=service.MAX_BATCH_NAMES, help="namecls batch --chunk-size "
                   "(default: 10,000)")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("NAMECLS_DATA_DIR",
                                                                        ROOT.parent / "shared" / "data" / "names")),
                   help="the names folder (default: $NAMECLS_DATA_DIR or ../shared/data/names)")
    p.add_argument("--skip-dask", action="store_true", help="only the library and the command line")
    args = p.parse_args()
    if not CONSOLE_SCRIPT.is_file():
        sys.exit(f"{CONSOLE_SCRIPT} is missing: pip install -e . first")
    pool = data_names(args.data_dir)
    print(f"**bench/bulk_speed.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}**\n")
    print(f"machine: {machine()}")
    print(f"model: {args.model}; names: the {len(pool):,} lines of the data files, repeated; torch threads in this "
          f"process: {torch.get_num_threads()}\n", flush=True)

    with tempfile.TemporaryDirectory(prefix="namecls-bulk-") as tmp:
        tmp = Path(tmp)
        sample = tmp / "sample.csv"
        pd.DataFrame({"id": range(args.sample), "surname": cycled(pool, args.sample)}).to_csv(sample, index=False)
        clf = namecls.load(args.model)
        clf.predict_batch(pool[:512], 3)  # warm-up
        rounds = []
        for _ in range(args.repeats):
            seconds = library_speed(clf, cycled(pool, args.sample))
            run = command_line(sample, tmp / "out.csv", args.model, args.chunk_size)
            rounds.append({**seconds, "namecls batch": run["seconds"], "peak_mb": run["peak_mb"]})
        median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        library = median["service.predict_batch"]
        print(f"| {args.sample:,} names, median of {args.repeats} rounds | seconds | names/s | vs the library's "
              f"batch path |\n|---|---:|---:|---:|")
        for path, what in PATHS.items():
            print(f"| {what.format(chunk=args.chunk_size)} | {median[path]:.1f} | {args.sample / median[path]:,.0f} | "
                  f"{library / median[path]:.2f}x |")
        print(flush=True)

        source = tmp / "names.csv"
        pd.DataFrame({"id": range(args.names), "surname": cycled(pool, args.names)}).to_csv(source, index=False)
        run = command_line(source, tmp / "out.csv", args.model, args.chunk_size)
        rows = sum(1 for _ in open(tmp / "out.csv", encoding="utf-8")) - 1
        assert rows == args.names, f"{rows} rows written for {args.names} names"
        source.unlink()
        print(f"| `namecls batch names.csv -o out.csv --chunk-size {args.chunk_size}` | names | seconds | names/s | "
              f"vs the library's batch path (median above) | peak RSS MB |\n|---|---:|---:|---:|---:|---:|")
        for n, seconds, peak in ((args.names, run["seconds"], run["peak_mb"]),
                                 (args.sample, median["namecls batch"], median["peak_mb"])):
            print(f"| fresh process | {n:,} | {seconds:.1f} | {n / seconds:,.0f} | "
                  f"{n / seconds / (args.sample / library):.2f}x | {peak:.0f} |", flush=True)
        if not args.skip_dask:
            folder = tmp / "parquet"
            folder.mkdir()
            d = dask_speed(cycled(pool, args.dask_names), folder, args.model)
            n = args.dask_names
            print(f"\n| `namecls.annotate`, {n:,} names from {d['partitions']} Parquet files | seconds | names/s | "
                  f"vs one process |\n|---|---:|---:|---:|")
            print(f"| one process, {d['threads']} torch threads (the default) | {d['one_process']:.1f} | "
                  f"{n / d['one_process']:,.0f} | 1.00x |")
            print(f"| one process, 1 torch thread | {d['one_thread']:.1f} | {n / d['one_thread']:,.0f} | "
                  f"{d['one_process'] / d['one_thread']:.2f}x |")
            print(f"| LocalCluster, 2 workers x 1 thread (start-up {d['startup']:.1f} s not included) | "
                  f"{d['cluster']:.1f} | {n / d['cluster']:,.0f} | {d['one_process'] / d['cluster']:.2f}x |")
            print(f"\nchecked: the cluster's table equals the single process's (assert_frame_equal); checkpoint "
                  f"loads per worker: {sorted(d['loads'].values())}")


if __name__ == "__main__":
    main()
