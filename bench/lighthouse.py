"""Lighthouse on the first page: accessibility, performance and layout shift of ``python app.py`` beside a bare app.

Starts ``python app.py`` (the app as served) and, on another port, a bare gradio app (a ``gr.Blocks`` with a
Markdown title and two tabs, each a Textbox and a Button, ``ssr_mode=False``: gradio's own floor), waits until both
answer, then runs the Lighthouse 12 CLI (``--preset=desktop --only-categories=accessibility,performance``) in
headless Chromium against each, taking turns (namecls, bare, namecls, bare, ...) for ``--runs`` rounds. From each
report it reads the accessibility and performance scores (0-1) and the cumulative layout shift; it prints the
medians side by side with their ratio (namecls / bare) and every run's values, then the accessibility audits
namecls fails (score 0 with offending elements): id, title and the first few elements (selector and snippet; for
color-contrast Lighthouse's explanation with the colours and the ratio found). Both servers are stopped at the end,
also on error.

Lighthouse is not a Python package; install it once outside the project:

    mkdir -p /work/lh && cd /work/lh && npm i -E lighthouse@12.2.3

    python bench/lighthouse.py                    # 3 rounds, about 2-3 min
    python bench/lighthouse.py --runs 5 --nodes 5 --keep-reports /tmp/lh
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import OFFLINE, ROOT, free_port, machine, start_server, stop_group

DEFAULT_LIGHTHOUSE = "/work/lh/node_modules/.bin/lighthouse"
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"]
APPS = ("namecls", "bare")


def serve_bare(port: int) -> None:
    """The bare gradio app (run in a subprocess through ``--serve-bare``): a title and two tabs, each a Textbox
    and a Button, nothing else."""
    import gradio as gr

    with gr.Blocks() as demo:
        gr.Markdown("# Bare gradio app")
        with gr.Tab("First"):
            first = gr.Textbox(label="Text")
            gr.Button("Go").click(lambda s: s, first, first)
        with gr.Tab("Second"):
            second = gr.Textbox(label="Text")
            gr.Button("Go").click(lambda s: s, second, second)
    demo.launch(server_name="127.0.0.1", server_port=port, ssr_mode=False, quiet=True)


def answers(url: str) -> None:
    """Raises unless ``url``'s gradio API info is served (the readiness probe for ``start_server``)."""
    with urllib.request.urlopen(f"{url}gradio_api/info", timeout=5) as resp:
        resp.read()


def start_apps(ports: tuple[int, int], log_dir: Path, timeout: float) -> dict:
    """Start ``python app.py`` and the bare app on ``ports``; return {app: (process, url)}. A failure to start
    the second stops the first."""
    env = {**os.environ, **OFFLINE, "GRADIO_SERVER_NAME": "127.0.0.1"}
    env.setdefault("NAMECLS_DATA_DIR", str(ROOT.parent / "shared" / "data" / "names"))
    cmds = {"namecls": [sys.executable, "app.py"],
            "bare": [sys.executable, str(Path(__file__).resolve()), "--serve-bare", "--port", str(ports[1])]}
    servers = {}
    try:
        for app, port in zip(APPS, ports):
            url = f"http://127.0.0.1:{port}/"
            proc = start_server(cmds[app], {**env, "GRADIO_SERVER_PORT": str(port)}, log_dir / f"{app}.log",
                                lambda url=url: answers(url), timeout, poll=0.5)
            servers[app] = (proc, url)
    except Exception:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: dict) -> None:
    """Stop every server started by ``start_apps``."""
    for proc, _ in servers.values():
        stop_group(proc, timeout=15)


def run_lighthouse(lighthouse: str, chrome: str, url: str, report: Path, timeout: float) -> dict:
    """One Lighthouse run (desktop preset, accessibility and performance) against ``url``; the JSON report is
    written to ``report`` and returned parsed."""
    cmd = [lighthouse, url, "--preset=desktop", "--only-categories=accessibility,performance", "--output=json",
           f"--output-path={report}", "--quiet", f"--chrome-flags={' '.join(CHROME_FLAGS)}"]
    done = subprocess.run(cmd, env={**os.environ, "CHROME_PATH": chrome}, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0 or not report.exists():
        raise RuntimeError(f"lighthouse exited with {done.returncode} on {url}:\n{done.stderr[-2000:]}")
    result = json.loads(report.read_text())
    if result.get("runtimeError"):
        raise RuntimeError(f"lighthouse runtime error on {url}: {result['runtimeError']}")
    return result


def figures(result: dict) -> dict:
    """The figures of one report: accessibility and performance scores, cumulative layout shift, and the failing
    accessibility audits ({id: (title, items)})."""
    audits = result["audits"]
    failing = {}
    for ref in result["categories"]["accessibility"]["auditRefs"]:
        audit = audits.get(ref["id"], {})
        items = (audit.get("details") or {}).get("items") or []
        if audit.get("score") == 0 and items:
            failing[ref["id"]] = (audit.get("title", ""), items)
    return {"accessibility": result["categories"]["accessibility"]["score"],
            "performance": result["categories"]["performance"]["score"],
            "cls": audits["cumulative-layout-shift"].get("numericValue"),
            "failing": failing}


def show(value, fmt: str) -> str:
    """``value`` formatted with ``fmt``; a dash when Lighthouse gave none (a score is null when a run failed)."""
    return "—" if value is None else fmt.format(value)


def ratio(a: float, b: float, floor: float) -> str:
    """``a / b`` for the table; a dash when a value is missing, and when ``b`` is below ``floor`` (a layout shift
    of ~0 makes any ratio meaningless)."""
    if a is None or b is None:
        return "—"
    if b < floor or b == 0:
        return f"— (bare < {floor:g})"
    return f"{a / b:.2f}"


def print_table(runs: dict) -> None:
    """Medians side by side with their ratio, then every run's values."""
    rows = (("accessibility score", "accessibility", "{:.2f}", 0.0),
            ("performance score", "performance", "{:.2f}", 0.0),
            ("cumulative layout shift", "cls", "{:.4f}", 0.001))
    n = len(runs["namecls"])
    print(f"| measure (median of {n} runs) | namecls | bare gradio | namecls / bare | namecls runs | bare runs |")
    print("|---|---:|---:|---:|---|---|")
    for label, key, fmt, floor in rows:
        values = {app: [r[key] for r in runs[app] if r[key] is not None] for app in APPS}
        med = {app: statistics.median(v) if v else None for app, v in values.items()}
        shown = {app: show(m, fmt) for app, m in med.items()}
        each = {app: ", ".join(fmt.format(v) for v in values[app]) for app in APPS}
        print(f"| {label} | {shown['namecls']} | {shown['bare']} | {ratio(med['namecls'], med['bare'], floor)} | "
              f"{each['namecls']} | {each['bare']} |")


def describe(item: dict) -> str:
    """One offending element of an audit: selector and snippet, and Lighthouse's explanation (for
    color-contrast: the colours, font and the ratio found against the one expected)."""
    node = item.get("node") or item
    text = f"`{node.get('selector', '?')}`: `{node.get('snippet', '')}`"
    explanation = node.get("explanation")
    if explanation:
        text += "\n    " + " ".join(explanation.split())
    return text


def print_failing(runs: list[dict], app: str, nodes: int) -> None:
    """The accessibility audits ``app`` failed, with in how many runs, and the first ``nodes`` offending elements
    (of the last run that failed each)."""
    seen: dict = {}
    for r in runs:
        for audit_id, (title, items) in r["failing"].items():
            count, _, _ = seen.get(audit_id, (0, title, items))
            seen[audit_id] = (count + 1, title, items)
    if not seen:
        print(f"No failing accessibility audits for {app}.")
        return
    print(f"Failing accessibility audits, {app}:\n")
    for audit_id, (count, title, items) in seen.items():
        print(f"- **{audit_id}** ({title}), failed in {count} of {len(runs)} runs, {len(items)} elements")
        for item in items[:nodes]:
            print(f"  - {describe(item)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3,
                   help="Lighthouse rounds (one run of each app per round, taking turns); medians are reported "
                        "(default: 3)")
    p.add_argument("--lighthouse", default=DEFAULT_LIGHTHOUSE,
                   help=f"the Lighthouse 12 CLI (default: {DEFAULT_LIGHTHOUSE})")
    p.add_argument("--chrome", default=os.environ.get("CHROME_PATH", "/usr/bin/chromium"),
                   help="the Chromium Lighthouse drives (default: $CHROME_PATH or /usr/bin/chromium)")
    p.add_argument("--ports", type=int, nargs=2, metavar=("NAMECLS", "BARE"),
                   help="ports for app.py and the bare app (default: two free ports from the OS)")
    p.add_argument("--nodes", type=int, default=3,
                   help="offending elements to print per failing accessibility audit (default: 3)")
    p.add_argument("--timeout", type=float, default=240.0,
                   help="give up on a server start, or on one Lighthouse run, after this many seconds (default: 240)")
    p.add_argument("--keep-reports", metavar="DIR",
                   help="keep the Lighthouse JSON reports and the server logs in DIR (default: a temporary "
                        "directory, removed at the end)")
    p.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_bare:
        serve_bare(args.port)
        return
    if not Path(args.lighthouse).exists():
        sys.exit(f"Lighthouse CLI not found at {args.lighthouse}. Install it with\n"
                 f"    mkdir -p /work/lh && cd /work/lh && npm i -E lighthouse@12.2.3\n"
                 f"or pass --lighthouse PATH/TO/node_modules/.bin/lighthouse.")
    if not Path(args.chrome).exists():
        sys.exit(f"Chromium not found at {args.chrome}; pass --chrome or set CHROME_PATH.")

    scratch = None if args.keep_reports else tempfile.TemporaryDirectory(prefix="lighthouse-")
    out_dir = Path(args.keep_reports or scratch.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    ports = tuple(args.ports) if args.ports else (free_port(), free_port())
    if ports[0] == ports[1]:
        ports = (ports[0], free_port())

    print(f"# bench/lighthouse.py, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}")
    began = time.monotonic()
    servers = start_apps(ports, out_dir, args.timeout)
    try:
        version = subprocess.run([args.lighthouse, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"servers: python app.py at {servers['namecls'][1]}, bare gradio at {servers['bare'][1]}, ready in "
              f"{time.monotonic() - began:.1f} s (logs in {out_dir}); Lighthouse {version}, --preset=desktop, "
              f"{args.chrome} {' '.join(CHROME_FLAGS)}\n")
        runs = {app: [] for app in APPS}
        for r in range(args.runs):
            for app in APPS:
                url = servers[app][1]
                result = figures(run_lighthouse(args.lighthouse, args.chrome, url, out_dir / f"{app}-{r + 1}.json",
                                                args.timeout))
                runs[app].append(result)
                print(f"round {r + 1}, {app}: accessibility {show(result['accessibility'], '{:.2f}')}, performance "
                      f"{show(result['performance'], '{:.2f}')}, CLS {show(result['cls'], '{:.4f}')}, "
                      f"{len(result['failing'])} failing accessibility audits", flush=True)
        print()
        print_table(runs)
        print()
        print_failing(runs["namecls"], "namecls", args.nodes)
        if any(r["failing"] for r in runs["bare"]):
            print()
            print_failing(runs["bare"], "bare gradio", args.nodes)
    finally:
        stop_all(servers)
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    main()
