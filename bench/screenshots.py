"""What a person sees in Step through: full-page screenshots and the page's width, for names at two screen widths in
the light and the dark theme.

Starts ``python app.py`` on a free port and, in headless Chromium (Debian's ``/usr/bin/chromium``), opens the page
at 1366x900 (a laptop) and 390x844 (a phone, touch), in ``?__theme=light`` and ``?__theme=dark``; for each name it
opens Step through, types the name, presses Enter, waits for the story and for the page to go quiet (the variants
arrive after the first paint), and saves ``<out>/<width>-<theme>-<name>.png``. It prints, for each shot, the page's
``scrollWidth`` against the screen (a page wider than the screen is a defect) and how many elements of the tab end
past its right edge outside a sideways-scrolling box; ``<out>/measurements.json`` keeps them with those elements.

    python bench/screenshots.py                              # Nakamura, Yilmaz and a 64-letter name: 12 shots
    python bench/screenshots.py --names Nguyen --widths 390 --themes dark --out /tmp/shots
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path

from common import OFFLINE, ROOT, free_port, start_server, stop_group

LONGEST = ("Wolfeschlegelsteinhausenbergerdorff" * 2)[:64]  # the longest name the app accepts
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENS = {1366: dict(viewport=dict(width=1366, height=900)),
           390: dict(viewport=dict(width=390, height=844), is_mobile=True, has_touch=True, device_scale_factor=2)}

# Elements of the Step through tab whose right edge is past the screen, unless a sideways-scrolling box holds them.
STICKING_OUT_JS = """
(width) => {
  const panel = document.querySelector('#trace-name').closest('[role=tabpanel], .tabitem') || document.body;
  const out = [];
  for (const el of panel.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= width + 0.5) continue;
    let a = el.parentElement, scrolled = false;
    while (a && a !== panel.parentElement) {
      if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX)) { scrolled = true; break; }
      a = a.parentElement;
    }
    if (scrolled) continue;
    const owner = el.closest('[id]');
    out.push({element: el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''), inside: owner ? owner.id : null,
              right: Math.round(r.right), text: (el.innerText || '').trim().slice(0, 40)});
  }
  return out;
}
"""


class Quiet:
    """Requests in flight (gradio's heartbeat stream aside: it never ends, so Playwright's networkidle never
    fires); :meth:`wait` returns once none has been in flight for ``quiet_ms``."""

    def __init__(self, page):
        self.page, self.live = page, set()
        page.on("request", lambda r: None if "heartbeat" in r.url else self.live.add(r))
        page.on("requestfinished", lambda r: self.live.discard(r))
        page.on("requestfailed", lambda r: self.live.discard(r))

    def wait(self, quiet_ms: int = 700, timeout_ms: int = 60_000) -> None:
        quiet = waited = 0
        while waited < timeout_ms and quiet < quiet_ms:
            busy = self.live or self.page.evaluate("() => !!document.querySelector('.pending, .generating')")
            quiet = 0 if busy else quiet + 100
            self.page.wait_for_timeout(100)
            waited += 100


def open_step_through(page) -> None:
    """Click the tab (behind gradio's "⋯" menu if the bar hides it)."""
    tab = page.locator("[role=tablist] button[role=tab]", has_text="Step through")
    if tab.count() and tab.first.is_visible():
        tab.first.click()
    else:
        page.click('button[aria-label="More tabs"]')
        page.locator(".overflow-dropdown button", has_text="Step through").first.click()
    page.wait_for_selector("#trace-name textarea, #trace-name input", state="visible")


def shoot(browser, url: str, width: int, theme: str, name: str, out: Path) -> dict:
    """One name traced at one width in one theme: the screenshot's path and the page's width."""
    context = browser.new_context(**SCREENS[width])
    try:
        page = context.new_page()
        quiet = Quiet(page)
        page.goto(f"{url}?__theme={theme}")
        page.wait_for_selector("#tabs")
        quiet.wait()
        open_step_through(page)
        quiet.wait()
        box = page.locator("#trace-name textarea, #trace-name input").first
        box.fill(name)
        box.press("Enter")
        page.locator("#trace-display").get_by_text(f"of {len(name)}:").first.wait_for(timeout=60_000)
        quiet.wait()
        page.wait_for_timeout(2000)  # the variants, after the first paint
        quiet.wait()
        slug = name if len(name) <= 20 else f"{len(name)}-letters"
        path = out / f"{width}-{theme}-{slug}.png"
        page.screenshot(path=str(path), full_page=True)
        return {"path": str(path), "screen": width,
                "scroll_width": page.evaluate("document.documentElement.scrollWidth"),
                "sticking_out": page.evaluate(STICKING_OUT_JS, width)}
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", nargs="+", default=["Nakamura", "Yilmaz", LONGEST],
                        help="names to trace (default: Nakamura, Yilmaz and a 64-letter name)")
    parser.add_argument("--widths", nargs="+", type=int, default=list(SCREENS), choices=list(SCREENS),
                        help="screen widths in px (1366: a laptop; 390: a phone, touch)")
    parser.add_argument("--themes", nargs="+", default=["light", "dark"], choices=["light", "dark"],
                        help="gradio themes (?__theme=...)")
    parser.add_argument("--out", type=Path, default=ROOT / "test-artifacts" / "screenshots",
                        help="folder for the PNGs and measurements.json (default: test-artifacts/screenshots)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, **OFFLINE, "GRADIO_SERVER_PORT": str(port)}

    def ready() -> None:
        urllib.request.urlopen(f"{url}gradio_api/info", timeout=5).close()

    server = start_server([sys.executable, "app.py"], env, args.out / "server.log", ready, timeout=120, poll=0.5)
    results = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            for width in args.widths:
                for theme in args.themes:
                    for name in args.names:
                        shot = shoot(browser, url, width, theme, name, args.out)
                        results.append(shot)
                        verdict = "fits" if shot["scroll_width"] <= width else "WIDER THAN THE SCREEN"
                        print(f"{shot['path']}: page {shot['scroll_width']} px on a {width} px screen ({verdict}); "
                              f"{len(shot['sticking_out'])} elements past its edge", flush=True)
            browser.close()
    finally:
        stop_group(server, timeout=15)
    (args.out / "measurements.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
