"""namecls: which of 18 languages a surname comes from, and how a recurrent network reaches its answer.

    python app.py            # serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

A thin shell: load the models, lay out one tab per module of ``namecls.ui``, register the public API
(``/predict``, ``/predict_details``, ``/trace``, ``/predict_batch``; every UI event is private), launch. The same
four endpoints, and only they, are also MCP tools for AI assistants at ``/gradio_api/mcp/``.
"""

import os

# No network: no analytics or version check, no hub lookups (must precede the gradio import).
for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("MPLBACKEND", "Agg")):
    os.environ.setdefault(_key, _value)

from namecls.serving import service  # noqa: E402
from namecls.checkpoint import CheckpointError  # noqa: E402

# Both models, loaded once. NAMECLS_CHECKPOINTS may point at another folder holding rnn/ and gru/.
# Loaded before gradio is imported, so a broken checkpoint stops start-up within seconds, naming the file and the fix.
try:
    MODELS = service.load_models(os.environ.get("NAMECLS_CHECKPOINTS") or None)
except CheckpointError as err:
    raise SystemExit(f"namecls: cannot start: {err}") from None

import gradio as gr  # noqa: E402

from namecls.ui import api, server, yours  # noqa: E402
from namecls.ui.tabs import batch, classify, compare, model_card, step_through, train  # noqa: E402
from namecls.ui.common import prior_control  # noqa: E402
from namecls.ui.render.html import CSS, HEAD  # noqa: E402

ENDPOINTS = api.endpoints(MODELS)  # the public API, built once: its docstrings quote the served checkpoints

INTRO = f"""\
# Where does a surname come from?
A character-level **RNN** (the PyTorch tutorial's hand-written cell) and a **GRU** read a surname one letter at a
time and guess which of {len(MODELS["gru"].labels)} languages' surname lists it resembles. *Step through* shows
which letters decided the answer and what the network holds after each one. A surname is not a nationality: see
*Model card*.
"""

# Served fonts are gradio's own copies (no request leaves the machine); Source Sans 3 and IBM Plex Mono draw every
# letter plainly (the Soft theme's Montserrat makes N, Q and F read oddly).
# The Soft theme's own colours fail text contrast (WCAG 4.5:1): indigo-500 labels on indigo-100 (3.6:1), white on
# indigo-500 buttons (4.46:1), grey-400 notes (2.4:1); one shade darker each passes (6:1 or more).
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="rose",
                       font=[gr.themes.LocalFont("Source Sans 3"), "ui-sans-serif", "sans-serif"],
                       font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"]).set(
    block_label_text_color="*primary_700", block_title_text_color="*primary_700",
    button_primary_background_fill="*primary_600", button_primary_background_fill_hover="*primary_700",
    checkbox_label_background_fill_selected="*primary_600", body_text_color_subdued="*neutral_600",
    body_text_color_subdued_dark="*neutral_300")

# ← / → step through the characters when no text box has the focus and the Step through tab is open; a tap on a
# map dot names it; gradio's empty placeholders get a role; a letter table keeps its current letter in view.
KEYS_JS = """
() => {
  document.addEventListener("keydown", (event) => {
    if (!["ArrowLeft", "ArrowRight"].includes(event.key) || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (target && (target.closest("input, textarea, select, [contenteditable=true]"))) return;
    const button = document.querySelector(event.key === "ArrowLeft" ? "#prev" : "#next");
    if (button && button.offsetParent !== null) { event.preventDefault(); button.click(); }
  });
  // A tap (or click) on a map dot names its training name: touch screens never show an SVG <title>.
  document.addEventListener("click", (event) => {
    const dot = event.target.closest && event.target.closest("circle.ref");
    let tip = document.getElementById("map-tip");
    if (!dot) { if (tip) tip.remove(); return; }
    if (!tip) { tip = document.createElement("div"); tip.id = "map-tip"; document.body.appendChild(tip); }
    tip.textContent = dot.querySelector("title") ? dot.querySelector("title").textContent : "";
    tip.style.cssText = `position:absolute;left:${event.pageX + 10}px;top:${event.pageY - 28}px;z-index:50;` +
      "background:#111;color:#fff;padding:2px 6px;border-radius:4px;font-size:13px;pointer-events:none";
  });
  // gradio's empty-value placeholder is a <div aria-label="Empty value"> with no role, which ARIA prohibits (an
  // accessibility audit fails on it): give it the role its label implies.
  const label_empty = () => document.querySelectorAll("div.empty[aria-label]:not([role])").forEach(
    (el) => el.setAttribute("role", "img"));
  // A long name's letter tables scroll sideways in their box: keep the current letter in view as it moves.
  const follow_current = () => document.querySelectorAll(".scroll-x").forEach((box) => {
    const current = box.querySelector(".current");
    if (!current || box.scrollWidth <= box.clientWidth) return;
    const outer = box.getBoundingClientRect(), inner = current.getBoundingClientRect();
    if (inner.left < outer.left || inner.right > outer.right)
      box.scrollLeft += (inner.left + inner.right) / 2 - (outer.left + outer.right) / 2;
  });
  new MutationObserver(() => { label_empty(); follow_current(); })
    .observe(document.body, {childList: true, subtree: true});
  label_empty();
}
"""



def launch_kwargs(**limits) -> dict:
    """Everything launch() needs besides host and port, fresh each time (gradio changes app_kwargs in place);
    tests launch with the same settings, and may lower the request limits (``limits``: server.middleware's). The
    limits and their worst cases are in namecls/ui/server.py."""
    return dict(theme=THEME, css=CSS, head=HEAD, js=KEYS_JS, max_file_size=service.MAX_UPLOAD_BYTES, ssr_mode=False,
                footer_links=["api", "gradio"], run_history=False, state_session_capacity=server.SESSION_CAPACITY,
                app_kwargs={"middleware": server.middleware(api.last_defaults(ENDPOINTS), **limits)},
                mcp_server=True)  # the public API as MCP tools at /gradio_api/mcp/ (docs/api.md: For AI assistants)


def build_demo(ui_visibility: str = "private") -> gr.Blocks:
    """The app. ``ui_visibility`` is the API visibility of the UI's own events: "private" in production;
    tests and benchmarks pass "undocumented" to drive the exact UI path with gradio_client."""
    ui = dict(api_visibility=ui_visibility)
    with gr.Blocks(title="namecls: where does a surname come from?", delete_cache=server.DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        prior = prior_control(MODELS)  # one choice for every tab that answers
        with gr.Tabs(elem_id="tabs"):
            picked = classify.build(MODELS, ui, prior)
            stepper = step_through.build(MODELS, ui, follow=picked, prior=prior)
            compare.build(MODELS, ui, follow=picked, prior=prior)
            batcher = batch.build(MODELS, ui, prior)
            train.build(MODELS, ui, radios=[picked.model, stepper, batcher])
            model_card.build(MODELS, ui)
        demo.unload(yours.forget)  # a session's trained model goes with the session
        api.register(demo, ENDPOINTS)  # the API endpoints and MCP tools (their results as JSON)
    demo.queue(default_concurrency_limit=4)
    server.bound_the_allocator()
    server.bound_slow_connections()  # uvicorn, as launch() starts it: deadlines on headers and bodies
    server.start_sweeper(demo)
    return demo


demo = build_demo()

if __name__ == "__main__":
    import torch

    # One torch thread per request: requests run side by side on the queue's worker threads, and intra-op threads
    # of concurrent requests only wait for each other (measured in bench/README.md). NAMECLS_TORCH_THREADS overrides.
    torch.set_num_threads(int(os.environ.get("NAMECLS_TORCH_THREADS") or 1))
    demo.launch(**launch_kwargs())
