"""Inference speed: single-name latency, batch throughput, and how close batch inference runs to the roofline.

Everything is measured in one run, side by side, and every figure is the median over ``--repeats`` repeats:

- ``predict`` and ``trace`` latency (p50 / p99 over ``--calls`` calls of one real name each) for the RNN and the GRU,
  at one torch thread and at all cores;
- ``predict_batch`` throughput on every name of the data set (names per second), next to the TF-IDF + logistic
  regression baseline's ``predict_proba`` on the same names, and next to the pre-optimisation batch path
  (per-name tensors in ``pad_batch``, one NumPy top-k per row) kept here as ``legacy``;
- the achieved GFLOP/s of batch inference (the recurrence's multiply-adds per character, counted on the real name
  lengths without padding) against the machine's matmul GFLOP/s (a large ``torch.matmul`` timed in the same run);
- Step through's trace of an 8-letter name, by part, at one torch thread (issue 19): ``Classifier.trace`` whole, the
  same call with its new parts left out (what trace did before them), each new part alone
  (``namecls.explain.cell.contributions``, ``cell.gates``, ``namecls.explain.gradient.state_gradients``,
  ``Trace.story``),
  ``Classifier.edits``, and the ``/trace`` endpoint's handler (``service.trace``); p50 / p99 over ``--trace-calls``
  rounds in which every part takes its turn on the same name.

    python bench/inference.py                              # the committed checkpoints, all 20,070 names
    python bench/inference.py --fresh                      # untrained models of the default size (2x256 GRU)
    python bench/inference.py --calls 200 --repeats 2 --limit 3000   # a quick look
    python bench/inference.py --trace-only                 # only Step through's trace by part (3-6 min)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from namecls.explain import cell, gradient  # noqa: E402
from namecls.data import names as nd  # noqa: E402
from namecls.serving import service  # noqa: E402
from namecls.training.evaluation import tfidf_baseline  # noqa: E402
from namecls.training.experiment import model_config  # noqa: E402
from namecls.inference import Classifier, _top_k  # noqa: E402
from namecls.models.networks import build, config_to_dict  # noqa: E402

TARGETS = {"predict_p50_ms": 1.0, "trace_p50_ms": 3.0, "roofline_share": 0.60,
           "full_trace_p50_ms": 15.0, "edits_p50_ms": 100.0}  # the last two: issue 19, an 8-letter name
TRACE_NAMES = ["Nakamura", "Kowalski", "Schröder"]  # 8 letters each (Schröder is read as Schroder)


def classifiers(args, labels: list[str]) -> dict[str, Classifier]:
    if not args.fresh:
        return service.load_models(args.checkpoints or None)
    out = {}
    for kind in ("rnn", "gru"):
        torch.manual_seed(0)
        model = build(model_config(kind, len(labels))).eval()
        config = {"labels": labels, "model": config_to_dict(model.config)}
        out[kind] = Classifier(model, config, {}, Path("<fresh>"))
    return out


def describe(clf: Classifier) -> str:
    m = clf.config["model"]
    if m["kind"] == "gru":
        return f"GRU {m['num_layers']}x{m['hidden_size']} (embedding {m['embedding_size']})"
    return f"RNN 1x{m['hidden_size']}"


def flops_per_name(clf: Classifier, length: int) -> float:
    """Multiply-adds x 2 of one name of ``length`` characters: the recurrence at every character, the readout once."""
    m = clf.config["model"]
    H, C = m["hidden_size"], len(clf.labels)
    if m["kind"] == "gru":
        inputs = [m["embedding_size"]] + [H] * (m["num_layers"] - 1)
        per_char = sum(2 * 3 * H * (i + H) for i in inputs)  # input and hidden projections of the 3 gates
        readout = 2 * C * (2 * H if m.get("running_max") else H)
    else:
        per_char = 2 * H * H  # the one-hot input is a column lookup
        readout = 2 * C * H
    return per_char * length + readout


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def latency(fn, names: list[str], calls: int) -> tuple[float, float]:
    """(p50, p99) in ms of ``calls`` calls of ``fn`` on names taken in turn."""
    for name in names[:20]:
        fn(name)  # warm-up
    seconds = []
    for i in range(calls):
        name = names[i % len(names)]
        start = time.perf_counter()
        fn(name)
        seconds.append(time.perf_counter() - start)
    return 1000 * percentile(seconds, 50), 1000 * percentile(seconds, 99)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_gflops(n: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    seconds = min(timed(lambda: torch.matmul(a, b)) for _ in range(3))  # best of 3 = one sample of the peak
    return 2 * n**3 / seconds / 1e9


def legacy_predict_batch(clf: Classifier, names: list[str], k: int = 3, batch_size: int = 512):
    """The batch path before this benchmark: per-name tensors in pad_batch and one argsort per row."""
    texts = [nd.validate(n).text for n in names]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    results: list = [None] * len(texts)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            chunk = [texts[i] for i in rows]
            lengths = torch.tensor([len(n) for n in chunk], dtype=torch.long)
            x = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
            for row, name in enumerate(chunk):
                x[row, : len(name)] = torch.tensor(nd.encode(name), dtype=torch.long)
            probs = torch.softmax(clf.model(x, lengths) / clf.temperature, dim=-1).numpy()
            for row, p in zip(rows, probs):
                results[row] = _top_k(p, clf.labels, k)
    return results


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


@contextlib.contextmanager
def without_new_parts():
    """``Classifier.trace`` as it was before issue 19: its contributions, gates and gradient left out (the three
    functions it calls return None while this is active; nothing else changes)."""
    saved = cell.contributions, cell.gates, gradient.state_gradients
    cell.contributions = cell.gates = gradient.state_gradients = lambda *a, **k: None
    try:
        yield
    finally:
        cell.contributions, cell.gates, gradient.state_gradients = saved


def old_trace(clf: Classifier, name):
    with without_new_parts():
        return clf.trace(name)


def trace_parts(models: dict[str, Classifier], names: list[str], calls: int) -> dict:
    """{(kind, part): [(wall seconds, this thread's CPU seconds) per call]} for Step through's trace of each of
    ``names``, one call of every part after another on the same name, ``calls`` rounds per name (names in turn), at
    the current torch threads."""
    parts = {}
    for kind, clf in models.items():
        norms = [service.check_name(n) for n in names]
        inputs = {}
        for norm in norms:  # what the new parts take: the encoded name, its states, its answer; a finished trace
            x, lengths = nd.pad_batch([norm.text])
            with torch.inference_mode():
                hidden = clf.model.steps(x, lengths).hidden[:, 0]
            t = clf.trace(norm)
            inputs[norm.text] = (x, lengths, hidden, t.target, t)
        temperature = clf.temperature

        def older(norm):  # what trace did before issue 19 beyond model.steps, each alone (None: no such data)
            x, _, hidden, target, t = inputs[norm.text]
            return {
                "novelty score (older part)": None if clf.novelty is None else
                lambda: clf.novelty.score([norm.text], t.layers[-1][-1:]),
                "nearest training names, every prefix (older part)": None if clf.explain is None else
                lambda: clf.explain.nearest(t.layers[-1]),
                "leave-one-out deletion (older part)": lambda: clf._deletion(norm.text, target, t.probs[-1, target]),
                "prediction sets, every prefix (older part)": lambda: clf.sets(t.probs),
                "map projection (older part)": None if clf.projection is None else
                lambda: clf.projection.transform(t.layers[-1]),
            }
        with torch.inference_mode():
            olders = {norm.text: older(norm) for norm in norms}

        def steps_only(norm):
            x, lengths = inputs[norm.text][:2]
            with torch.inference_mode():
                clf.model.steps(x, lengths)

        def contributions(norm):
            x, _, hidden, target, _ = inputs[norm.text]
            cell.contributions(clf.model, x[0], target, temperature, hidden=hidden)

        def gates(norm):
            x, _, hidden, _, _ = inputs[norm.text]
            cell.gates(clf.model, x[0], hidden=hidden)

        def state_gradients(norm):
            x, _, _, target, _ = inputs[norm.text]
            gradient.state_gradients(clf.model, x[0], target, temperature)

        def story(norm):
            inputs[norm.text][4].story  # a property: computed on every access

        def trace_and_story(norm):
            clf.trace(norm).story

        ops = {"model.steps alone": steps_only,
               "trace without the new parts (before)": lambda n: old_trace(clf, n),
               **{label: (lambda n, label=label: olders[n.text][label]())
                  for label, fn in olders[norms[0].text].items() if fn is not None},
               "cell.contributions": contributions, "cell.gates": gates,
               "gradient.state_gradients": state_gradients, "Trace.story": story,
               "trace (whole)": clf.trace, "trace + story": trace_and_story,
               "edits": clf.edits,
               "/trace handler (service.trace: trace, story, edits, lists)":
                   lambda n: service.trace(models, n.original, kind)}
        for norm in norms:  # warm-up
            for fn in ops.values():
                fn(norm)
        for i in range(calls * len(norms)):
            norm = norms[i % len(norms)]
            for label, fn in ops.items():
                start, cpu = time.perf_counter(), time.thread_time()
                fn(norm)
                parts.setdefault((kind, label), []).append((time.perf_counter() - start, time.thread_time() - cpu))
    return parts


def print_trace_parts(parts: dict, models: dict, names: list[str], calls: int) -> dict:
    """Print the table; return {(kind, part): (wall p50 ms, CPU p50 ms)}."""
    shown = ", ".join(f"{n} ({service.check_name(n).text})" if service.check_name(n).text != n else n
                      for n in names)
    print(f"\n## Step through's trace of an 8-letter name, by part (1 thread; ms; {calls} rounds x {len(names)} names: "
          f"{shown}; every part takes its turn on the same name)\n")
    print("Wall time, and the CPU time of the calling thread (time.thread_time: what the call costs when it has a "
          "core to itself; on shared cores the wall time also holds the waits for one).\n")
    print("| model | part | p50 | p99 | p50 CPU | p50 / trace before | p50 CPU / trace before |")
    print("|---|---|---:|---:|---:|---:|---:|")
    p50s = {}
    for kind in models:
        before = [1000 * percentile([v[j] for v in parts[(kind, "trace without the new parts (before)")]], 50)
                  for j in (0, 1)]
        for (k, label), samples in parts.items():
            if k != kind:
                continue
            wall = [1000 * v[0] for v in samples]
            cpu = [1000 * v[1] for v in samples]
            p50, p99, c50 = percentile(wall, 50), percentile(wall, 99), percentile(cpu, 50)
            p50s[(kind, label)] = (p50, c50)
            print(f"| {kind} | {label} | {fmt(p50, 3)} | {fmt(p99, 3)} | {fmt(c50, 3)} | {p50 / before[0]:.2f}x | "
                  f"{c50 / before[1]:.2f}x |")
        new = [sum(p50s[(kind, p)][j] for p in ("cell.contributions", "cell.gates", "gradient.state_gradients",
                                                "Trace.story")) for j in (0, 1)]
        print(f"| {kind} | *sum of the four new parts' p50s* | {fmt(new[0], 3)} | | {fmt(new[1], 3)} | "
              f"{new[0] / before[0]:.2f}x | {new[1] / before[1]:.2f}x |")
    return p50s


def print_trace_targets(p50s: dict, models: dict) -> None:
    for kind in models:
        for label, part, target in (("trace with story, contributions, gates and gradient", "trace + story",
                                     TARGETS["full_trace_p50_ms"]),
                                    ("Classifier.edits", "edits", TARGETS["edits_p50_ms"])):
            wall, cpu = p50s[(kind, part)]
            print(f"- {kind.upper()} {label}, 8 letters, p50 (1 thread): {wall:.2f} ms wall, {cpu:.2f} ms CPU "
                  f"(target ≤ {target:g} ms): {'met' if wall <= target else 'MISSED'} (wall), "
                  f"{'met' if cpu <= target else 'MISSED'} (CPU)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("NAMECLS_DATA_DIR", "../shared/data/names"),
                   help="the names folder (default: $NAMECLS_DATA_DIR or ../shared/data/names)")
    p.add_argument("--checkpoints", help="folder holding rnn/ and gru/ (default: the committed checkpoints)")
    p.add_argument("--fresh", action="store_true",
                   help="time untrained models of the project's default size instead of the checkpoints")
    p.add_argument("--calls", type=int, default=1000, help="single-name calls per latency sample (default: 1000)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of every measurement; medians are reported "
                                                          "(default: 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="the larger torch thread count timed beside 1 thread (default: all cores)")
    p.add_argument("--batch-size", type=int, default=512, help="predict_batch's batch size (default: 512)")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[128, 2048],
                   help="other batch sizes timed beside --batch-size, GRU only (default: 128 2048; none: skip)")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n roofline matmul (default: 2048)")
    p.add_argument("--limit", type=int, help="use only the first N names of the (shuffled) data set")
    p.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baseline (its fit takes a while)")
    p.add_argument("--no-legacy", action="store_true", help="skip the pre-optimisation batch path")
    p.add_argument("--trace-calls", type=int, default=100,
                   help="rounds per name of Step through's trace by part (default: 100; 0: skip that section)")
    p.add_argument("--trace-names", nargs="+", default=TRACE_NAMES,
                   help=f"the 8-letter names traced by part (default: {' '.join(TRACE_NAMES)})")
    p.add_argument("--trace-only", action="store_true",
                   help="time only Step through's trace by part (skip latency, batch throughput and roofline)")
    args = p.parse_args()

    data = nd.read_names(args.data_dir)
    perm = np.random.default_rng(0).permutation(len(data.names))
    names = [data.names[i] for i in perm]
    targets = [data.targets[i] for i in perm]
    if args.limit:
        names, targets = names[: args.limit], targets[: args.limit]
    models = classifiers(args, data.labels)
    single = names[:200]  # the names cycled through by the latency loops
    mean_len = float(np.mean([len(n) for n in names]))

    print(f"# bench/inference.py, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}, torch {torch.__version__}")
    print(f"models: {', '.join(f'{k}: {describe(c)}' for k, c in models.items())}"
          + (" (untrained, --fresh)" if args.fresh else f" from {args.checkpoints or 'checkpoints/'}"))
    if not args.trace_only:
        print(f"names: {len(names):,} (mean length {mean_len:.2f}); medians of {args.repeats} repeats\n")

    if args.trace_only:
        torch.set_num_threads(1)
        parts = trace_parts(models, args.trace_names, args.trace_calls)
        p50s = print_trace_parts(parts, models, args.trace_names, args.trace_calls)
        print("\n## Targets\n")
        print_trace_targets(p50s, models)
        return

    # -- Single-name latency at 1 thread and at all cores, interleaved so that both see the same machine --------
    lat = {}
    thread_counts = sorted({1, args.threads})
    for r in range(args.repeats):
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for kind, clf in models.items():
                for op in ("predict", "trace"):
                    p50, p99 = latency(getattr(clf, op), single, args.calls)
                    lat.setdefault((kind, op, threads), []).append((p50, p99))
    torch.set_num_threads(args.threads)
    print(f"## Single-name latency (ms; p50 / p99 over {args.calls:,} calls, median of {args.repeats} repeats)\n")
    print("| model | call | " + " | ".join(f"{t} thread{'s' * (t > 1)} p50 | p99" for t in thread_counts)
          + " | p50 ratio " + f"{thread_counts[-1]}/1 |" * (len(thread_counts) > 1) + " target p50 |")
    print("|---|---|" + "---:|---:|" * len(thread_counts) + "---:|" * (len(thread_counts) > 1) + "---:|")
    medians = {}
    for kind in models:
        for op in ("predict", "trace"):
            cells, p50s = [], []
            for t in thread_counts:
                samples = lat[(kind, op, t)]
                p50 = statistics.median(s[0] for s in samples)
                p99 = statistics.median(s[1] for s in samples)
                medians[(kind, op, t)] = p50
                cells += [fmt(p50, 3), fmt(p99, 3)]
                p50s.append(p50)
            ratio = [fmt(p50s[-1] / p50s[0])] if len(p50s) > 1 else []
            target = TARGETS[f"{op}_p50_ms"] if kind == "gru" else None
            print(f"| {kind} | {op} | " + " | ".join(cells + ratio)
                  + f" | {'≤ ' + fmt(target, 1) if target else '—'} |")

    # -- Where a single GRU prediction's time goes (1 thread) -------------------------------------------------------
    gru = models["gru"].model
    encoded = {name: nd.pad_batch([nd.validate(name).text]) for name in single}
    hidden_weights = [layer.weight_hh_l0 for layer in gru.layers]  # (3H, H) each

    def forward_only(name):
        with torch.inference_mode():
            gru(*encoded[name])

    def matvecs_only(name):  # the recurrence's unavoidable work: one (3H, H) matvec per layer and character
        h = torch.zeros(1, gru.config.hidden_size)
        with torch.inference_mode():
            for w in hidden_weights:
                for _ in range(int(encoded[name][1][0])):
                    torch.mm(h, w.t())

    torch.set_num_threads(1)
    parts = {"predict": models["gru"].predict, "model forward on a pre-encoded name": forward_only,
             "the recurrent matvecs alone": matvecs_only}
    samples = {label: [] for label in parts}
    for _ in range(args.repeats):  # interleaved, so that the parts see the same machine
        for label, fn in parts.items():
            samples[label].append(latency(fn, single, args.calls)[0])
    part_p50 = {label: statistics.median(values) for label, values in samples.items()}
    torch.set_num_threads(args.threads)
    print("\nWhere a GRU predict's time goes (1 thread, p50 ms, median of the repeats): "
          + "; ".join(f"{label} {fmt(v, 3)} ({v / part_p50['predict']:.0%})" for label, v in part_p50.items()))

    # -- Batch throughput and the roofline, interleaved repeats ---------------------------------------------------
    baseline = None
    if not args.no_baseline:
        start = time.perf_counter()
        baseline = tfidf_baseline().fit(names, targets)
        print(f"\n(TF-IDF baseline fitted on the same names in {time.perf_counter() - start:.0f} s; not timed below)")
    gflop = {kind: sum(flops_per_name(clf, len(n)) for n in names) / 1e9 for kind, clf in models.items()}
    rows: dict[tuple[int, str], list[float]] = {}  # (threads, path) -> seconds per repeat (matmul: GFLOP/s)
    for r in range(args.repeats):
        for threads in thread_counts:
            torch.set_num_threads(threads)
            rows.setdefault((threads, "matmul"), []).append(matmul_gflops(args.matmul_size))
            for kind, clf in models.items():
                rows.setdefault((threads, f"{kind} predict_batch"), []).append(
                    timed(lambda: clf.predict_batch(names, 3, args.batch_size)))
                if not args.no_legacy:
                    rows.setdefault((threads, f"{kind} legacy"), []).append(
                        timed(lambda: legacy_predict_batch(clf, names, 3, args.batch_size)))
            if threads == args.threads:
                for size in args.batch_sizes:
                    rows.setdefault((threads, f"gru predict_batch, batch size {size}"), []).append(
                        timed(lambda: models["gru"].predict_batch(names, 3, size)))
        if baseline is not None:
            torch.set_num_threads(args.threads)
            rows.setdefault((args.threads, "tfidf"), []).append(timed(lambda: baseline.predict_proba(names)))
    torch.set_num_threads(args.threads)
    n = len(names)
    peaks = {t: statistics.median(rows[(t, "matmul")]) for t in thread_counts}
    print(f"\n## Batch throughput ({n:,} names, batch size {args.batch_size}; median of {args.repeats} repeats)\n")
    for t in thread_counts:
        print(f"- roofline at {t} thread{'s' * (t > 1)}: {args.matmul_size}x{args.matmul_size} float32 matmul = "
              f"**{fmt(peaks[t], 1)} GFLOP/s** (samples: {', '.join(fmt(v, 1) for v in rows[(t, 'matmul')])})")
    print("\n| threads | path | seconds | names/s | MFLOP/name (mean) | GFLOP/s | share of roofline | vs TF-IDF |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    tfidf_rate = n / statistics.median(rows[(args.threads, "tfidf")]) if baseline is not None else None
    for (t, key), samples in rows.items():
        if key == "matmul":
            continue
        seconds = statistics.median(samples)
        rate = n / seconds
        kind = key.split()[0]
        if kind in gflop:
            achieved = gflop[kind] / seconds
            cells = [fmt(1000 * gflop[kind] / n, 2), fmt(achieved, 1), f"{100 * achieved / peaks[t]:.0f}%"]
        else:
            cells = ["—", "—", "—"]
        versus = f"{rate / tfidf_rate:.2f}x" if tfidf_rate else "—"
        label = key if key != "tfidf" else "TF-IDF + logreg predict_proba (threads: sklearn's own)"
        print(f"| {t} | {label} | {seconds:.3f} | {rate:,.0f} | " + " | ".join(cells) + f" | {versus} |")
    if not args.no_legacy:
        print()
        for t in thread_counts:
            for kind in models:
                speedup = (statistics.median(rows[(t, f"{kind} legacy")])
                           / statistics.median(rows[(t, f"{kind} predict_batch")]))
                print(f"- {t} thread{'s' * (t > 1)}, {kind}: predict_batch is {speedup:.2f}x as fast as the "
                      f"pre-optimisation batch path")

    p50s = None
    if args.trace_calls > 0:
        torch.set_num_threads(1)
        parts = trace_parts(models, args.trace_names, args.trace_calls)
        torch.set_num_threads(args.threads)
        p50s = print_trace_parts(parts, models, args.trace_names, args.trace_calls)

    print("\n## Targets\n")
    checks = [
        ("GRU predict p50 (1 thread)", medians[("gru", "predict", 1)], TARGETS["predict_p50_ms"], "ms"),
        ("GRU trace p50 (1 thread)", medians[("gru", "trace", 1)], TARGETS["trace_p50_ms"], "ms"),
    ]
    for label, value, target, unit in checks:
        print(f"- {label}: {value:.3f} {unit} (target ≤ {target:g} {unit}): {'met' if value <= target else 'MISSED'}")
    for t in thread_counts:
        share = gflop["gru"] / statistics.median(rows[(t, "gru predict_batch")]) / peaks[t]
        print(f"- GRU batch throughput at {t} thread{'s' * (t > 1)}: {100 * share:.0f}% of that roofline (target ≥ "
              f"{100 * TARGETS['roofline_share']:.0f}%): {'met' if share >= TARGETS['roofline_share'] else 'MISSED'}")
    if p50s is not None:
        print_trace_targets(p50s, models)

if __name__ == "__main__":
    main()
