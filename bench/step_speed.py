"""Step through in a real browser: how long a step (Next ▶, ◀ Previous) and a typed letter take to show.

Starts ``python app.py`` (one torch thread per request, as served) with gradio's own profiler on
(``GRADIO_PROFILING=1``), opens it in headless Chromium through Playwright, goes to the "Step through" tab and traces
a name (``--name``, 8 letters by default), then for each model (``--models``):

- **steps**: clicks ``#prev`` from the last letter to the first, then ``#next`` back to the last, and so on until
  ``--reps`` clicks each way; each click is timed from the click event in the page to the moment the DOM shows the
  new step (``#trace-display td.current[data-step=k]``) and to the end of the next frame after it (on screen);
- **typing**: types one letter at the end of the name (``page.keyboard.type``), ``--reps`` times (a different letter
  each time, the name traced again between them); timed from the key press in the page to the DOM showing the new
  number of letters and the new story (``#trace-story .story``), to the end of the next frame, and to the variants
  list (``#trace-edits``) filled by the follow-up event. After each, Backspace deletes the letter and the page is
  watched for ``--backspace-wait`` s: does deleting a letter trace the name again?

The page stamps every moment itself (``performance.now()`` in a MutationObserver and a requestAnimationFrame
callback), so Playwright's polling adds nothing to the figures. It also stamps, for every gradio event, when its
``queue/join`` request left and when its ``process_completed`` message arrived on the event stream; gradio's
profiler (``/gradio_api/profiling/traces``) gives the same event's queue wait, preprocess, handler and postprocess
times. Each click or key press is thereby split into: the browser until the request (gradio's JS), the round trip
and transport not spent in the server (a residual: the browser's request-to-message time minus the server's queue
wait and total; it includes the wait for the page's main thread, which reads the message, when it is busy
drawing), queue wait, preprocess, the handler (``fn_call``), postprocess, the browser from the message to
the DOM, and from the DOM to the next frame. All figures in ms: p50 / p90 / max over the repetitions.

Then (``--handler-calls``, with the server stopped) the same handlers are called in this process, as is and with
matplotlib's colour maps looked up once, taking turns; their time is split into Classifier.trace, Classifier.edits,
the trajectory figure, the HTML's colours and the rest.

    python bench/step_speed.py                      # both models, 20 of each: about 9 min on 2 busy cores
    python bench/step_speed.py --models gru --reps 40
    python bench/step_speed.py --handlers-only      # no browser: the handlers in-process (about 1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import OFFLINE, ROOT, free_port, machine, pct, start_server, stop_group

TARGET_MS = 300.0
LETTERS = "saionekyrtlmudhgbcpz"  # typed at the end of the name in turn

# Installed before any page script: stamps the gradio client's requests and the event stream's messages.
INIT_JS = r"""
(() => {
  const B = window.__bench = {joins: [], done: {}, starts: {}};
  // One observer for the page's life; a measurement hooks into it (window.__look).
  document.addEventListener("DOMContentLoaded", () => new MutationObserver((list) => {
    if (window.__look) window.__look();
  }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true}));
  const origFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : (input && input.url) || String(input);
    const sent = performance.now();
    const resp = await origFetch(input, init);
    if (url.includes("/queue/join")) {
      resp.clone().json().then((body) => B.joins.push({sent, answered: performance.now(),
                                                       event_id: body && body.event_id}), () => {});
    } else if (url.includes("/queue/data") && resp.body) {
      const reader = resp.clone().body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      (async () => {
        for (;;) {
          const {value, done} = await reader.read();
          if (done) return;
          const now = performance.now();
          buffer += decoder.decode(value, {stream: true});
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            for (const line of block.split("\n")) {
              if (!line.startsWith("data:")) continue;
              try {
                const msg = JSON.parse(line.slice(5));
                if (msg.msg === "process_completed" && msg.event_id) B.done[msg.event_id] = now;
                if (msg.msg === "process_starts" && msg.event_id) B.starts[msg.event_id] = now;
              } catch (e) {}
            }
          }
        }
      })();
    }
    return resp;
  };
})();
"""

# Arms one measurement: the start is the first event of type `start` in the page (capture phase); each named
# condition is stamped the first time it holds after a DOM mutation, and again at the end of the frame after it.
ARM_JS = r"""
([startType, conditions]) => {
  const m = window.__m = {start: null, dom: {}, frame: {}, joins: window.__bench.joins.length};
  const checks = Object.fromEntries(Object.entries(conditions).map(([k, body]) => [k, new Function(body)]));
  const onStart = (event) => { if (m.start === null) m.start = performance.now(); };
  document.addEventListener(startType, onStart, {capture: true, once: true});
  m.errors = [];
  const look = () => {
    const now = performance.now();
    if (m.start === null) return;
    for (const [k, check] of Object.entries(checks)) {
      if (k in m.dom) continue;
      let ok = false;
      try { ok = check(); } catch (e) { m.errors.push(k + ": " + e); }
      if (ok) {
        m.dom[k] = now;
        // rAF runs just before the frame is painted; a message posted from it runs after that paint.
        requestAnimationFrame(() => {
          const channel = new MessageChannel();
          channel.port1.onmessage = () => { m.frame[k] = performance.now(); };
          channel.port2.postMessage(0);
        });
      }
    }
    if (Object.keys(m.dom).length === Object.keys(checks).length) window.__look = null;
  };
  window.__look = look;
}
"""


# The variants' choices (radio inputs in their labels; the block's own label and status text are not choices).
EDIT_LABELS_JS = ('[...document.querySelectorAll("#trace-edits input[type=radio]")]'
                  '.map(i => (i.closest("label") || i).textContent.trim())')


def js_string(value: str) -> str:
    return json.dumps(value)


def letters_shown(n: int) -> str:
    """Condition: the letter tiles show ``n`` letters."""
    return f'return document.querySelectorAll("#trace-display table.letters tr:first-child td").length === {n};'


def step_shown(k: int) -> str:
    return f'return !!document.querySelector(\'#trace-display td.current[data-step="{k}"]\');'


def text_changed(selector: str, old: str) -> str:
    return (f'const e = document.querySelector({js_string(selector)}); '
            f'return !!e && e.textContent.trim() !== "" && e.textContent !== {js_string(old)};')


def edits_changed(old: list[str]) -> str:
    """Condition: the variants list holds choices, not the ones it held before."""
    return (f"const labels = {EDIT_LABELS_JS}; "
            f"return labels.length > 0 && JSON.stringify(labels) !== JSON.stringify({json.dumps(old)});")


def edit_labels(page) -> list[str]:
    return page.evaluate(f"() => {EDIT_LABELS_JS}")


# What the page shows when a measurement times out (for the error message).
STATE_JS = """() => ({start: window.__m.start, stamped: window.__m.dom, errors: window.__m.errors.slice(0, 3),
  now: performance.now(), events_sent: window.__bench.joins.length - window.__m.joins,
  open: window.__bench.joins.filter(j => !(j.event_id in window.__bench.done)).length,
  current_step: [...document.querySelectorAll("#trace-display td.current")].map(e => e.dataset.step).join(","),
  slider: (document.querySelector("#step input") || {}).value,
  focus: document.activeElement && (document.activeElement.tagName + "#" + document.activeElement.id),
  name_box: (document.querySelector("#trace-name input, #trace-name textarea") || {}).value,
  letters: document.querySelectorAll("#trace-display table.letters tr:first-child td").length})"""


def measure(page, start_type: str, conditions: dict, action, timeout: float) -> dict:
    """Arm, act, wait until every condition's frame stamp is in; return the page's stamps and the events' joins."""
    page.evaluate(ARM_JS, [start_type, conditions])
    action()
    keys = js_string(json.dumps(list(conditions)))
    try:
        page.wait_for_function(f"JSON.parse({keys}).every(k => window.__m && k in window.__m.frame)",
                               timeout=timeout * 1000)
    except Exception:
        state = page.evaluate(STATE_JS)
        raise RuntimeError(f"not all of {list(conditions)} happened within {timeout:g} s: {state}") from None
    return page.evaluate("""() => { const m = window.__m;
        return {start: m.start, dom: m.dom, frame: m.frame, joins: window.__bench.joins.slice(m.joins),
                done: window.__bench.done}; }""")


def settle(page, quiet: float = 1.0, timeout: float = 120.0) -> None:
    """Wait until every gradio event the page sent has completed and none was sent for ``quiet`` seconds."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        state = page.evaluate("""() => { const B = window.__bench;
            return {n: B.joins.length, open: B.joins.filter(j => !(j.event_id in B.done)).length}; }""")
        if state["open"] == 0:
            time.sleep(quiet)
            again = page.evaluate("() => window.__bench.joins.length")
            if again == state["n"]:
                return
        else:
            time.sleep(0.1)
    raise RuntimeError("the page's events did not finish")


def profiler_traces(url: str) -> dict:
    """gradio's profiler: {event_id: trace}."""
    with urllib.request.urlopen(f"{url}gradio_api/profiling/traces", timeout=30) as resp:
        return {t["event_id"]: t for t in json.load(resp) if t.get("event_id")}


SEGMENTS = ("browser to request", "round trip and transport", "queue wait", "preprocess", "handler (fn_call)",
            "postprocess", "message to DOM", "DOM to frame")


def split(sample: dict, join: dict, trace: dict | None, done: float | None, dom: float, frame: float) -> dict:
    """One event's time from the start stamp to the frame, in segments (ms)."""
    out = {"browser to request": join["sent"] - sample["start"]}
    if trace is not None and done is not None:
        server = trace["queue_wait_ms"] + trace["total_ms"]
        out.update({"round trip and transport": (done - join["sent"]) - server,
                    "queue wait": trace["queue_wait_ms"], "preprocess": trace["preprocess_ms"],
                    "handler (fn_call)": trace["fn_call_ms"], "postprocess": trace["postprocess_ms"]})
        # total_ms also holds what the profiler does not name (sending the message, state bookkeeping)
        out["round trip and transport"] += trace["total_ms"] - (trace["preprocess_ms"] + trace["fn_call_ms"]
                                                                + trace["postprocess_ms"])
    if done is not None:
        out["message to DOM"] = dom - done
    out["DOM to frame"] = frame - dom
    return out


def summary(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{pct(values, 50):,.0f} / {pct(values, 90):,.0f} / {max(values):,.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="Nakamura", help="the name traced (default: Nakamura, 8 letters)")
    p.add_argument("--models", nargs="+", default=["gru", "rnn"], choices=["gru", "rnn"],
                   help="models traced, in turn (default: gru rnn)")
    p.add_argument("--reps", type=int, default=20,
                   help="clicks each way (#prev, #next), and letters typed, per model (default: 20)")
    p.add_argument("--pause", type=float, default=0.3,
                   help="seconds between one measurement's end and the next action, so that nothing of the last "
                        "one is still running (default: 0.3)")
    p.add_argument("--settle", type=float, default=1.5,
                   help="before a typed letter: seconds with no event open and none sent, so that no follow-up of "
                        "the last trace arrives during the measurement (default: 1.5)")
    p.add_argument("--backspace-wait", type=float, default=1.5,
                   help="seconds to watch for an event after Backspace deletes the typed letter (default: 1.5)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one change (default: 30)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the browser (default: /usr/bin/chromium)")
    p.add_argument("--viewport", default="1280x900", help="browser window, WIDTHxHEIGHT (default: 1280x900)")
    p.add_argument("--server-log", help="file for the server's output (default: a temporary file)")
    p.add_argument("--handler-calls", type=int, default=20,
                   help="after the browser: calls of each handler in this process, each way (default: 20; 0: skip)")
    p.add_argument("--handlers-only", action="store_true",
                   help="only the in-process handler timings (no server, no browser)")
    p.add_argument("--no-split", action="store_true",
                   help="do not print where the time goes (the server still runs with GRADIO_PROFILING=1)")
    args = p.parse_args()

    if args.handlers_only:
        print(f"# bench/step_speed.py --handlers-only, {time.strftime('%Y-%m-%d %H:%M %Z')}")
        print(f"machine: {machine()}\n")
        handler_profile(args)
        return

    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(args.server_log or tempfile.mkstemp(prefix="step_speed-", suffix=".log")[1])
    env = {**os.environ, **OFFLINE, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_PROFILING": "1"}
    env.setdefault("NAMECLS_DATA_DIR", str(ROOT.parent / "shared" / "data" / "names"))

    def ready():
        with urllib.request.urlopen(f"{url}gradio_api/info", timeout=5) as resp:
            resp.read()

    print(f"# bench/step_speed.py, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}")
    began = time.monotonic()
    proc = start_server([sys.executable, "app.py"], env, log_path, ready, timeout=240, poll=0.5)
    print(f"server: python app.py on port {port}, ready in {time.monotonic() - began:.1f} s (log: {log_path}); "
          f"browser: {args.chromium}, headless, viewport {args.viewport}")
    width, height = (int(v) for v in args.viewport.split("x"))
    results = {}  # (model, kind) -> list of samples
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                         args=["--headless", "--no-sandbox", "--disable-gpu",
                                               "--disable-background-networking"])
            print(f"browser version: {browser.version}; name: {args.name}; {args.reps} repetitions of each; "
                  f"{args.pause:g} s between them\n")
            page = browser.new_page(viewport={"width": width, "height": height})
            page.add_init_script(INIT_JS)
            page.goto(url, wait_until="load", timeout=120_000)
            page.get_by_role("tab", name="Step through").wait_for(timeout=120_000)
            page.get_by_role("tab", name="Step through").click()
            page.wait_for_selector("#trace-display table.letters", timeout=120_000)
            box = page.locator("#trace-name textarea, #trace-name input").first
            name = args.name
            for model in args.models:
                label = {"gru": "GRU", "rnn": "RNN"}[model]
                page.locator("#trace-model").get_by_label(label, exact=True).check()
                settle(page, quiet=args.settle)
                box.fill(name)
                box.press("Enter")
                settle(page, quiet=args.settle)
                page.wait_for_function(f"() => {{ {letters_shown(len(name))} }}", timeout=60_000)
                page.wait_for_function(f"() => {EDIT_LABELS_JS}.length > 0",
                                       timeout=60_000)
                n = len(name)
                # (a) steps: from the last letter down to the first and back, until reps clicks each way
                clicks = {"prev": 0, "next": 0}
                current = n - 1
                direction = "prev"
                while min(clicks.values()) < args.reps:
                    if current == 0:
                        direction = "next"
                    elif current == n - 1:
                        direction = "prev"
                    target = current - 1 if direction == "prev" else current + 1
                    sample = measure(page, "click", {"step": step_shown(target)},
                                     lambda: page.click(f"#{direction}"), args.timeout)
                    sample["what"] = direction
                    results.setdefault((model, "step"), []).append(sample)
                    clicks[direction] += 1
                    current = target
                    time.sleep(args.pause)
                # back at the last letter (the typed names are traced to their last letter anyway)
                # (b) typing: a letter at the end, then Backspace
                box.click()
                box.press("End")
                backspace = {"presses": 0, "events": 0, "retraced": 0}
                for i in range(args.reps):
                    letter = LETTERS[i % len(LETTERS)]
                    new = name + letter
                    old_story = page.evaluate("() => (document.querySelector('#trace-story .story') || {})"
                                              ".textContent || ''")
                    old_edits = edit_labels(page)
                    conditions = {"letters": letters_shown(len(new)),
                                  "story": text_changed("#trace-story .story", old_story),
                                  "edits": edits_changed(old_edits)}
                    sample = measure(page, "keydown", conditions, lambda: page.keyboard.type(letter), args.timeout)
                    sample["what"] = "typed"
                    sample["value"] = box.input_value()
                    if sample["value"] != new:
                        print(f"warning: the box holds {sample['value']!r}, not {new!r}")
                    results.setdefault((model, "type"), []).append(sample)
                    settle(page, quiet=args.settle)
                    # Back to the name, untimed. First Backspace, as a user would: does deleting re-trace?
                    sent = page.evaluate("() => window.__bench.joins.length")
                    page.keyboard.press("Backspace")
                    time.sleep(args.backspace_wait)
                    backspace["presses"] += 1
                    backspace["events"] += page.evaluate("() => window.__bench.joins.length") - sent
                    backspace["retraced"] += page.evaluate(f"() => {{ {letters_shown(n)} }}")
                    settle(page, quiet=args.settle)
                    box.fill(name)  # then the name traced again by Enter (fill sends no input event)
                    box.press("Enter")
                    settle(page, quiet=args.settle)
                    page.wait_for_function(f"() => {{ {letters_shown(n)} }}", timeout=args.timeout * 1000)
                    box.press("End")
                results[(model, "backspace")] = backspace
            traces = profiler_traces(url)
            browser.close()
    finally:
        stop_group(proc, timeout=15)

    verdicts = report(results, traces, args)
    if args.handler_calls > 0:
        handler_profile(args)
    print_verdicts(verdicts)


# ---------------------------------------------------------------------------------------------------------------
# The same handlers in this process: where their time goes, and what a colour map looked up once would save


class _CachedColormaps:
    """matplotlib's colormap registry returns a fresh copy on every lookup, whose 256-colour table is built again
    on its first use; this one keeps one initialised copy per name (only inside this benchmark's process)."""

    def __init__(self, registry):
        self.registry, self.cache = registry, {}

    def __getitem__(self, name):
        if name not in self.cache:
            cmap = self.registry[name]
            cmap(0.0)  # builds its table now
            self.cache[name] = cmap
        return self.cache[name]


class _Timers:
    """Wraps functions (module or class attributes) to add up the seconds spent in each, by label."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.restore = []

    def wrap(self, owner, attr: str, label: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:
            return

        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
                self.counts[label] = self.counts.get(label, 0) + 1

        setattr(owner, attr, timed)
        self.restore.append((owner, attr, original))

    def take(self) -> tuple[dict, dict]:
        out = dict(self.seconds), dict(self.counts)
        self.seconds.clear()
        self.counts.clear()
        return out


def handler_profile(args) -> None:
    """Time the tab's handlers in this process at one torch thread, as the server calls them (app.py's demo, looked
    up by api_name), taking turns: as they are, and with the colour maps looked up once."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import app  # noqa: E402  (loads both models and builds the demo)
    from namecls.inference import Classifier
    from namecls.ui.render import html, palette
    from namecls.ui.tabs import step_through

    fns = {f.api_name: f.fn for f in app.demo.fns.values() if f.api_name and f.fn is not None}
    timers = _Timers()
    timers.wrap(Classifier, "trace", "Classifier.trace")
    timers.wrap(Classifier, "edits", "Classifier.edits")
    timers.wrap(step_through, "_trajectory", "trajectory figure (matplotlib PNG)")
    for attr in ("scale_color", "gradient_css"):
        timers.wrap(html, attr, "colours of the HTML (palette.scale_color, gradient_css)")
    registry, cached = palette.colormaps, _CachedColormaps(palette.colormaps)
    labels = ["Classifier.trace", "Classifier.edits", "trajectory figure (matplotlib PNG)",
              "colours of the HTML (palette.scale_color, gradient_css)"]
    short = {"Classifier.trace": "trace", "Classifier.edits": "edits",
             "trajectory figure (matplotlib PNG)": "trajectory PNG",
             "colours of the HTML (palette.scale_color, gradient_css)": "HTML colours"}
    print(f"## The handlers in-process (1 torch thread; {args.handler_calls} calls each way, taking turns; ms)\n")
    print("The same functions the server runs (app.demo's, by api_name), called directly: no gradio, no browser. "
          "CPU: the calling thread's (time.thread_time). "
          "\"Cached\" looks each matplotlib colour map up once (palette.colormaps replaced in this process only) "
          "instead of a fresh copy whose 256-colour table is rebuilt for every cell. The last five columns split the "
          "as-is call (medians of the per-call sums): Classifier.trace (its calls per handler call), "
          "Classifier.edits, the trajectory figure (step_through._trajectory: matplotlib to PNG), the HTML's colours "
          "(palette.scale_color and gradient_css as html.py calls them), and the rest (the HTML itself, gradio "
          "updates).\n")
    print("| model | handler | p50 as is | p90 | p50 CPU | p50 colour maps cached | p50 CPU | as is / cached (CPU) | "
          "same output | "
          + " | ".join(short[label] for label in labels) + " | rest |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|" + "---:|" * (len(labels) + 1))
    try:
        for model in args.models:
            first = fns["ui_trace_live"](args.name, model, 3, None)
            view = next(v for v in first.values() if isinstance(v, step_through.StepView))
            n = len(view.trace.chars)
            calls = {
                "ui_next (Next ▶)": lambda i: fns["ui_next"](1 + i % (n - 1), view),
                "ui_prev (◀ Previous)": lambda i: fns["ui_prev"](2 + i % (n - 1), view),
                "ui_trace_live (a typed letter)": lambda i: fns["ui_trace_live"](args.name + LETTERS[i % len(LETTERS)],
                                                                                 model, 3, view),
                "ui_variants_1 (its variants)": lambda i: fns["ui_variants_1"](view, ""),
            }
            for label, call in calls.items():
                call(0)  # warm-up
                timers.take()
                times = {"as is": [], "cached": []}
                cpu_times = {"as is": [], "cached": []}
                parts: dict[str, list[float]] = {}
                counts = {}
                same = True
                for i in range(args.handler_calls):
                    outputs = {}
                    for way in ("as is", "cached"):
                        palette.colormaps = cached if way == "cached" else registry
                        start, cpu = time.perf_counter(), time.thread_time()
                        outputs[way] = call(i)
                        times[way].append(time.perf_counter() - start)
                        cpu_times[way].append(time.thread_time() - cpu)
                        seconds, counted = timers.take()
                        if way == "as is":
                            for part in labels:
                                parts.setdefault(part, []).append(seconds.get(part, 0.0))
                            parts.setdefault("rest", []).append(times[way][-1] - sum(seconds.get(p, 0.0)
                                                                                     for p in labels))
                            counts = counted
                    palette.colormaps = registry
                    a, b = outputs["as is"], outputs["cached"]
                    same = same and isinstance(a, dict) and a.keys() == b.keys() and all(
                        a[k] == b[k] for k in a if isinstance(a[k], str))
                ms = {way: [1000 * t for t in v] for way, v in times.items()}
                cells = []
                for part in labels + ["rest"]:
                    value = 1000 * statistics.median(parts[part])
                    times_called = counts.get(part)
                    cells.append(f"{value:,.1f}" + (f" ({times_called}x)" if times_called and part in labels[:2]
                                                    else ""))
                cpu_ms = {way: [1000 * t for t in v] for way, v in cpu_times.items()}
                print(f"| {model} | {label} | {pct(ms['as is'], 50):,.1f} | {pct(ms['as is'], 90):,.1f} | "
                      f"{pct(cpu_ms['as is'], 50):,.1f} | {pct(ms['cached'], 50):,.1f} | "
                      f"{pct(cpu_ms['cached'], 50):,.1f} | {pct(ms['as is'], 50) / pct(ms['cached'], 50):.2f}x "
                      f"({pct(cpu_ms['as is'], 50) / pct(cpu_ms['cached'], 50):.2f}x) | "
                      f"{'yes' if same else 'NO'} | " + " | ".join(cells) + " |")
    finally:
        palette.colormaps = registry
        for owner, attr, original in reversed(timers.restore):
            setattr(owner, attr, original)
    print()


def report(results: dict, traces: dict, args) -> list:
    verdicts = []
    for (model, kind), samples in results.items():
        if kind == "step":
            print(f"## {model.upper()}: a step (click to the new step on screen), ms: p50 / p90 / max\n")
            print("| click | n | to the DOM | to the frame (on screen) | handler (fn_call) | frame / 300 ms |")
            print("|---|---:|---:|---:|---:|---:|")
            groups = [(w, [s for s in samples if s["what"] == w]) for w in ("prev", "next")]
            groups.append(("both", samples))
            for what, group in groups:
                dom = [s["dom"]["step"] - s["start"] for s in group]
                frame = [s["frame"]["step"] - s["start"] for s in group]
                fn = [traces[j["event_id"]]["fn_call_ms"] for s in group for j in s["joins"][:1]
                      if j["event_id"] in traces]
                label = {"prev": "`#prev`", "next": "`#next`", "both": "**both**"}[what]
                print(f"| {label} | {len(group)} | {summary(dom)} | {summary(frame)} | {summary(fn)} | "
                      f"{pct(frame, 50) / TARGET_MS:.2f} |")
                if what == "both":
                    verdicts.append((f"{model.upper()} step (click #next/#prev → on screen)", frame))
            print()
            if not args.no_split:
                print_split(samples, traces, "step", "step")
        elif kind == "type":
            print(f"## {model.upper()}: a letter typed at the end of the name (key press to the new trace on "
                  f"screen), ms: p50 / p90 / max\n")
            print("| n | letters in the DOM | story in the DOM | new trace on screen (frame) | variants on screen | "
                  "events per key | frame / 300 ms | variants / 300 ms |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            col = {k: [s["dom"][k] - s["start"] for s in samples] for k in ("letters", "story")}
            frame = [max(s["frame"]["letters"], s["frame"]["story"]) - s["start"] for s in samples]
            edits = [s["frame"]["edits"] - s["start"] for s in samples]
            events = statistics.median(len(s["joins"]) for s in samples)
            print(f"| {len(samples)} | {summary(col['letters'])} | {summary(col['story'])} | {summary(frame)} | "
                  f"{summary(edits)} | {events:g} | {pct(frame, 50) / TARGET_MS:.2f} | "
                  f"{pct(edits, 50) / TARGET_MS:.2f} |")
            verdicts.append((f"{model.upper()} typed letter (key → new trace on screen)", frame))
            verdicts.append((f"{model.upper()} typed letter (key → variants on screen)", edits))
            print()
            if not args.no_split:
                print_split(samples, traces, "letters", "trace (the name box's `live`)")
                print_split(samples, traces, "edits", "variants (the follow-up event)", second=True)
        else:
            b = samples
            print(f"Backspace after each typed letter ({args.backspace_wait:g} s watched each time): "
                  f"{b['events']} events sent for {b['presses']} presses; the 8-letter trace came back "
                  f"{b['retraced']} of {b['presses']} times\n")
    return verdicts


def print_verdicts(verdicts) -> None:
    print("## Verdict (target: under 300 ms at p50; p90 beside it)\n")
    for label, values in verdicts:
        p50, p90 = pct(values, 50), pct(values, 90)
        print(f"- {label}: p50 {p50:,.0f} ms, p90 {p90:,.0f} ms: "
              f"{'met' if p50 < TARGET_MS else 'MISSED'} at p50, {'met' if p90 < TARGET_MS else 'MISSED'} at p90")


def print_split(samples: list[dict], traces: dict, key: str, what: str, second: bool = False) -> None:
    """Median of each segment over the samples: the event that drew ``key`` (the first event of the measurement,
    or with ``second`` the last one that completed before ``key`` appeared)."""
    parts: dict[str, list[float]] = {}
    fn_names = set()
    for s in samples:
        joins = sorted(s["joins"], key=lambda j: j["sent"])
        if not joins:
            continue
        if second:  # the event whose message came last before the condition held
            done_before = [j for j in joins if j["event_id"] in s["done"] and s["done"][j["event_id"]] <= s["dom"][key]]
            if not done_before:
                continue
            join = max(done_before, key=lambda j: s["done"][j["event_id"]])
            start = {**s, "start": s["done"][joins[0]["event_id"]] if joins[0]["event_id"] in s["done"] else s["start"]}
        else:
            join, start = joins[0], s
        trace = traces.get(join["event_id"])
        if trace is not None:
            fn_names.add(trace.get("fn_name"))
        seg = split(start, join, trace, s["done"].get(join["event_id"]), s["dom"][key], s["frame"][key])
        for name, value in seg.items():
            parts.setdefault(name, []).append(value)
    if not parts:
        return
    total = sum(statistics.median(v) for v in parts.values())
    origin = "after the first event's message" if second else "from the click or key"
    print(f"Where the {what}'s time goes ({origin}; median ms of {len(next(iter(parts.values())))} events, "
          f"handler: {', '.join(sorted(str(f) for f in fn_names))}):\n")
    print("| " + " | ".join(SEGMENTS) + " | sum |")
    print("|" + "---:|" * (len(SEGMENTS) + 1))
    print("| " + " | ".join(f"{statistics.median(parts[s]):,.1f}" if s in parts else "—" for s in SEGMENTS)
          + f" | {total:,.0f} |")
    print()


if __name__ == "__main__":
    main()
