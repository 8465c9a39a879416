"""The dashboard in a real browser: ``streamlit run app.py`` on 127.0.0.1, driven by Playwright in
Debian's headless Chromium.

One server serves the module. Before it starts, unit 373's 21 conditions are computed on the
32-px ``tiny_test`` network into the module's own result store (2 restarts × 1 step of the
default ``maco`` generator), so the explorer shows stored images once its settings are set to
those.
The tests check what a visitor sees: the home page's numbers against the engine's, the URL
restoring the explorer's choices, and the alpha slider swapping in the stored images of the new
condition. The seconds from a slider key press to the new condition's images being loaded are
printed and recorded as the ``slider_to_images_s`` property (``pytest -rP`` shows the printout);
they are a measurement, not a pass/fail threshold.

Screenshots go to ``test-artifacts/browser_*.png`` at the repository root (git-ignored). Needs
the ``playwright`` package (never ``playwright install``: the system ``chromium`` is used);
without it, or without ``chromium``, the module is skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from apptest_helpers import ROOT

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="browser tests need the playwright package (pip install -r requirements-dev.txt)")
expect = sync_api.expect

from signseg_core.conditions import Condition, condition_grid  # noqa: E402
from signseg_core.models.imagenet import class_names  # noqa: E402
from signseg_core.models.registry import load_model  # noqa: E402
from signseg_core.optimize.results import ConditionResult  # noqa: E402
from signseg_core.optimize.visualize import visualize  # noqa: E402
from signseg_core.signs import dale_index, expected_untrained_dale_index  # noqa: E402
from signseg_core.store import ResultStore  # noqa: E402
from signseg_core.sweeps.preview import default_settings  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (`make chromium` installs it)",
                allow_module_level=True)
UNIT = 373
#: Explorer settings small enough to precompute in seconds (the page's CPU preview takes ~45 s).
TINY = {"generator": "maco", "restarts": 2, "generations": 1, "seed": 0}  # the default generator
#: First page load imports torch and builds the model; later waits are for cached reruns.
FIRST_LOAD_MS = 60_000
RERUN_MS = 20_000


# -- fixtures: the stored unit, the server, the browser ----------------------------------------

@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, dict[tuple, ConditionResult]]:
    """``(cache_dir, results by Condition.key)``: unit 373 computed into a fresh cache dir, with
    the settings object the page builds (so the page's store keys match)."""
    settings = dataclasses.replace(default_settings("tiny_test"), **TINY)
    cache = tmp_path_factory.mktemp("e2e") / "cache"
    results = visualize(load_model("tiny_test"), condition_grid([UNIT]),
                        settings=settings, store=ResultStore(cache / "results"))
    return cache, {r.condition.key: r for r in results}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(stored) -> Iterator[str]:
    """Base URL of ``streamlit run app.py`` on the stored cache, tiny_test as the default model;
    the server's whole process group is killed at teardown, whatever happened."""
    cache, _ = stored
    port = _free_port()
    env = {**os.environ, "SIGNSEG_CACHE_DIR": str(cache), "SIGNSEG_OFFLINE": "1",
           "SIGNSEG_UI_TEST_MODEL": "tiny_test", "TORCH_HOME": str(cache.parent / "torch")}
    env.pop("SIGNSEG_WEIGHTS_DIR", None)
    log = cache.parent / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start (exit {proc.poll()}):\n"
                            + log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        _kill_group(proc)
        text = log.read_text(errors="replace")
        if "Traceback" in text:  # shown with the test's output
            print(f"streamlit log {log}:\n{text[-4000:]}")


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def browser(server):
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(RERUN_MS)
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """The whole page as ``test-artifacts/browser_<name>.png``. Streamlit scrolls inside its
    main container, not the document, so ``full_page`` alone would stop at the viewport: the
    viewport is stretched to the content's height for the shot, then restored."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"browser_{name}.png"
    size = page.viewport_size
    height = page.get_by_test_id("stMain").evaluate("el => el.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    try:
        page.wait_for_timeout(300)  # let charts re-lay out at the new size
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path


def no_errors_on(page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.locator('[data-testid="stAlertContentError"]')).to_have_count(0)


# -- expected text, worked out from the engine -------------------------------------------------

def best_caption(result: ConditionResult) -> str:
    best, key = result.best_index, result.key
    label = "control (intact)" if key.alpha == 0 else f"{key.sign} weights, α = {key.alpha:.1f}"
    return (f"{label} · activation {result.best_scores[best]:.2f} · "
            f"intact {result.intact_scores[best]:.2f}")


def strip_score(result: ConditionResult) -> str:
    return f"{result.best_scores[result.best_index]:.2f}"


def condition_heading(sign: str, alpha: float) -> str:
    return f"{UNIT} {class_names()[UNIT]} — {sign} weights, α = {alpha:.1f}"


# -- the tests ---------------------------------------------------------------------------------

def test_home_page_shows_the_test_model_and_the_store(page, server, stored):
    model = load_model("tiny_test")
    weight = model.readout.weight.detach()
    page.goto(server)
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="signseg", exact=True)).to_be_visible(
        timeout=FIRST_LOAD_MS)
    metrics = page.get_by_test_id("stMetric")
    expect(metrics.filter(has_text="Stored results")).to_contain_text("21 entries",
                                                                      timeout=FIRST_LOAD_MS)
    expect(metrics.filter(has_text="Readout Dale index (mean)")).to_contain_text(
        f"{dale_index(weight).mean().item():.4f}")
    expect(metrics.filter(has_text="Untrained expectation")).to_contain_text(
        f"{expected_untrained_dale_index(model.readout.out_features):.4f}")
    expect(metrics.filter(has_text="Readout size")).to_contain_text(
        f"{model.n_features} → {model.n_classes}")
    expect(main.get_by_role("radiogroup", name="Compute on")).to_contain_text("CPU")
    expect(main.get_by_role("combobox", name="Model")).to_have_value("tiny_test")
    expect(main.get_by_text(f"fingerprint {model.fingerprint[:16]}")).to_be_visible()
    expect(page.get_by_test_id("stPlotlyChart")).to_be_visible()
    expect(page.get_by_text("No computations running.")).to_be_visible()
    nav = page.get_by_test_id("stSidebar")
    for name in ("Home", "Ablation explorer", "Dale index", "Dale-ranked channels",
                 "Compare models", "Export"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(nav.get_by_text("app", exact=True)).to_have_count(0)
    expect(page).to_have_url(re.compile(r"[?&]model=tiny_test\b"))
    no_errors_on(page)
    screenshot(page, "home")

    nav.get_by_role("link", name="Ablation explorer", exact=True).click()
    expect(main.get_by_role("heading", name="Ablation explorer", exact=True)).to_be_visible()
    expect(main.get_by_role("combobox", name="Model")).to_have_value("tiny_test")


def choose_custom(page) -> None:
    """The explorer's Custom budget, whose settings are the number inputs."""
    budget = page.get_by_test_id("stMain").get_by_role("radiogroup", name="Budget")
    budget.get_by_text("Custom", exact=False).click()
    expect(page.get_by_label("Restarts", exact=True)).to_be_visible()


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    field.blur()
    expect(field).to_have_value(str(value))


def strip_column(page, alpha: float):
    """The α-strip columns (one per sign) whose image is captioned ``α = <alpha>``."""
    caption = page.get_by_test_id("stImageCaption").filter(
        has_text=re.compile(rf"^α = {alpha:.1f}$"))
    return page.get_by_test_id("stMain").get_by_test_id("stColumn").filter(has=caption)


def test_the_alpha_slider_swaps_in_the_stored_images(page, server, stored, record_property):
    _, found = stored
    sign, alphas = "negative", [0.3, 0.4, 0.5, 0.6]  # restored from the URL, then 3 key presses
    results = [found[Condition(UNIT, sign, a).key] for a in alphas]
    n_images = 1 + TINY["restarts"] + 2 * 11  # the best, every restart, the α strip

    page.goto(f"{server}/Ablation_explorer?unit={UNIT}&sign={sign}&alpha={alphas[0]}")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="Ablation explorer", exact=True)).to_be_visible(
        timeout=FIRST_LOAD_MS)
    # The page opens at the CPU preview budget, which is not stored: it offers to compute, with
    # the time that takes on this machine.
    expect(main.get_by_role("button", name=re.compile(
        r"^Compute unit 373 \(21 conditions, about .+ on this CPU\)$"))).to_be_visible(
        timeout=FIRST_LOAD_MS)
    expect(main.get_by_test_id("stImage")).to_have_count(0)
    choose_custom(page)
    set_number(page, "Restarts", TINY["restarts"])
    set_number(page, "Generations", TINY["generations"])

    images = main.get_by_test_id("stImage")
    best = images.first
    # Inner locators of filter(has=...) are matched inside the outer one: start them at page.
    marked = page.get_by_test_id("stMarkdownContainer").filter(has_text="◀")
    slider = main.get_by_test_id("stSlider").filter(has_text="Ablation strength α")
    expect(images).to_have_count(n_images)
    expect(main.get_by_role("button", name=re.compile("^Compute unit"))).to_have_count(0)
    expect(main.get_by_role("heading", name=condition_heading(sign, alphas[0]))).to_be_visible()
    expect(best.get_by_test_id("stImageCaption")).to_have_text(best_caption(results[0]))
    expect(strip_column(page, alphas[0])).to_have_count(2)  # one per sign
    expect(marked).to_have_count(1)
    expect(marked).to_have_text(f"{strip_score(results[0])} ◀")
    expect(strip_column(page, alphas[0]).filter(has=marked)).to_have_count(1)
    expect(slider.get_by_test_id("stSliderThumbValue")).to_have_text(f"{alphas[0]:.1f}")
    settled(page, best)
    no_errors_on(page)
    screenshot(page, "explorer_before")

    thumb = slider.get_by_role("slider")
    seconds = []
    for i, (alpha, result) in enumerate(zip(alphas[1:], results[1:])):
        thumb.focus()
        start = time.perf_counter()
        thumb.press("ArrowRight")
        # The strip is drawn after the condition's own images, so once the marker sits in the new
        # α's column, the big image and the restarts above it have arrived too.
        expect(strip_column(page, alpha).filter(has=marked)).to_have_count(1)
        expect(best.get_by_test_id("stImageCaption")).to_have_text(best_caption(result))
        _wait_loaded(page, best)
        seconds.append(time.perf_counter() - start)

        expect(main.get_by_role("heading", name=condition_heading(sign, alpha))).to_be_visible()
        expect(main.get_by_text(f"{sign} weights, α = {alpha:.1f}: best of "
                                f"{TINY['restarts']} restarts", exact=True)).to_be_visible()
        expect(slider.get_by_test_id("stSliderThumbValue")).to_have_text(f"{alpha:.1f}")
        expect(marked).to_have_count(1)
        expect(marked).to_have_text(f"{strip_score(result)} ◀")
        expect(images).to_have_count(n_images)
        expect(page).to_have_url(re.compile(rf"[?&]alpha={alpha:g}(&|$)"))
        if i == 0:
            settled(page, best)
            no_errors_on(page)
            screenshot(page, "explorer_after")

    median = statistics.median(seconds)
    record_property("slider_to_images_s", [round(s, 3) for s in seconds])
    print(f"\nslider key press → stored images shown: "
          f"{', '.join(f'{s:.3f}' for s in seconds)} s (median {median:.3f} s)")
    no_errors_on(page)


def settled(page, image) -> None:
    """The run is over (no faded stale element is left) and ``image`` has loaded."""
    expect(page.get_by_test_id("stMain").locator('[data-stale="true"]')).to_have_count(
        0, timeout=RERUN_MS)  # a loaded CI machine's first rerun after Custom can pass 5 s
    _wait_loaded(page, image)


def test_a_bad_url_value_is_an_error_message_in_the_page(page, server):
    page.goto(f"{server}/Ablation_explorer?unit={UNIT}&alpha=0.25")
    error = page.get_by_test_id("stAlertContentError")  # the hook no_errors_on relies on
    expect(error).to_contain_text("Cannot open ?alpha=0.25: alpha must be one of",
                                  timeout=FIRST_LOAD_MS)
    slider = page.get_by_test_id("stSlider").filter(has_text="Ablation strength α")
    expect(slider.get_by_test_id("stSliderThumbValue")).to_have_text("0.5")
    expect(page).to_have_url(re.compile(r"[?&]alpha=0\.5(&|$)"))
    expect(page.get_by_test_id("stException")).to_have_count(0)


def _wait_loaded(page, image) -> None:
    """Until the <img> inside ``image`` has finished loading (naturalWidth > 0)."""
    handle = image.locator("img").element_handle()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle)


def test_compute_on_an_uncached_unit_shows_an_image_and_cancel_stops_it(page, server):
    """Press Compute on a unit nobody computed: a best-so-far image appears while it runs; Cancel
    stops the job (the server's job list empties). Seconds are printed, not asserted."""
    unit = 5
    page.goto(f"{server}/Ablation_explorer?unit={unit}&sign=positive&alpha=0.5")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name="Ablation explorer", exact=True)).to_be_visible(
        timeout=FIRST_LOAD_MS)
    choose_custom(page)
    set_number(page, "Generations", 5000)  # long enough to be cancelled mid-way
    button = main.get_by_role("button", name=re.compile(rf"^Compute unit {unit} "))
    expect(button).to_be_visible()
    start = time.perf_counter()
    button.click()
    preview = main.get_by_test_id("stImageCaption").filter(has_text="best so far")
    expect(preview).to_be_visible(timeout=FIRST_LOAD_MS)
    first_image = time.perf_counter() - start
    expect(button).to_have_count(0)  # no stale Compute button while it runs
    expect(main.get_by_text(re.compile(r"Optimising now: positive weights, α = 0\.5"))).to_be_visible()
    no_errors_on(page)
    screenshot(page, "explorer_live")
    start = time.perf_counter()
    main.get_by_role("button", name="Cancel", exact=True).click()
    expect(button).to_be_visible(timeout=RERUN_MS)  # offered again once the worker stopped
    stopped = time.perf_counter() - start
    page.goto(server)
    expect(page.get_by_text("No computations running.")).to_be_visible(timeout=FIRST_LOAD_MS)
    print(f"\nCompute → first image {first_image:.2f} s; Cancel → job stopped {stopped:.2f} s")
