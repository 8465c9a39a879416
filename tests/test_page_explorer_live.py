"""The explorer on a unit nobody computed: budgets with their times, the live preview, Cancel that
respects other sessions, pooled image sets, precomputed units marked (AppTest on tiny_test)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from apptest_helpers import ROOT, open_page
from streamlit.testing.v1 import AppTest

from signseg_core.conditions import Condition, condition_grid
from signseg_core.jobs import default_manager
from signseg_core.models.registry import load_model
from signseg_core.optimize.live import Preview
from signseg_core.optimize.results import save_condition
from signseg_core.optimize.visualize import visualize
from signseg_core.store import default_store
from signseg_core.sweeps import preview as budgets
from signseg_core.sweeps.tasks import visualize_job_key
from signseg_ui.explorer import unit_request, unit_requests
from signseg_ui.live_view import precomputed_note, unit_format

PAGE = str(ROOT / "pages" / "0_Ablation_explorer.py")
TINY = {"restarts": 2, "generations": 2, "seed": 0}

pytestmark = pytest.mark.usefixtures("tiny_dashboard")


def custom(at: AppTest, generator: str = "fourier") -> AppTest:
    at.radio(key="explorer_budget").set_value("custom").run()
    at.selectbox(key="explorer_generator").set_value(generator)
    at.number_input(key="explorer_restarts").set_value(TINY["restarts"])
    at.number_input(key="explorer_generations").set_value(TINY["generations"])
    return at.run()


def settings_for(generator: str = "fourier"):
    return dataclasses.replace(budgets.default_settings("tiny_test"), generator=generator, **TINY)


_DONE: dict = {}


def fill(unit: int, generator: str, settings=None) -> dict:
    settings = settings or settings_for(generator)
    key = (unit, generator, settings)
    if key not in _DONE:
        _DONE[key] = visualize(load_model("tiny_test"), condition_grid([unit]), store=False,
                               settings=settings)
    for r in _DONE[key]:
        save_condition(default_store(), r)
    return {r.condition.key: r for r in _DONE[key]}


def test_precomputed_units_are_marked_and_listed():
    label = unit_format("efficientnet_lite0")
    assert label(373) == "373 macaque ★ precomputed" and label(1) == "1 goldfish"
    assert "373 macaque" in precomputed_note("efficientnet_lite0")
    assert precomputed_note("tiny_test") == "" and unit_format("tiny_test")(373) == "373 macaque"


def test_budget_choices_say_how_long_a_unit_takes_here():
    at = open_page(PAGE)
    budget = at.radio(key="explorer_budget")
    assert budget.value == "preview" and budget.options[2].startswith("Custom")
    p = budgets.CPU_PREVIEW
    restarts = f"{p.restarts} restart{'s' * (p.restarts != 1)}"  # "1 restart", "2 restarts"
    # the preview is maco: gradient steps, one image each, no population
    assert budget.options[0].startswith(f"Preview: {restarts} × {p.generations} steps of maco "
                                        "— about ")
    assert budget.options[0].endswith("for a unit on this CPU")
    assert budget.options[1].startswith("Full budget: 10 restarts × 100 generations")


def test_the_full_budget_is_shown_when_stored_even_on_the_preview(monkeypatch):
    monkeypatch.setitem(budgets.PRECOMPUTED, "tiny_test", settings_for())
    found = fill(373, "fourier")
    at = open_page(PAGE)
    assert at.radio(key="explorer_budget").value == "preview"
    assert any("full-budget results" in c.value for c in at.caption)
    assert "explorer_compute" not in [b.key for b in at.button]
    best = found[Condition(373, "positive", 0.5).key]
    assert f"activation {best.best_scores[best.best_index]:.2f}" in \
        at.get("image")[0].proto.imgs[0].caption
    assert any(c.value == "Image set: fourier 2 restarts (one generator, not pooled)."
               for c in at.caption)


def _hold(progress, should_stop, release, payload=None):
    progress(7, 100, "positive α = 0.5: generation 1/20", payload)
    while not should_stop() and not release.wait(0.02):
        pass


def test_the_live_preview_shows_the_best_image_so_far():
    at = custom(open_page(PAGE))
    requests = unit_requests("tiny_test", 373, settings_for())
    image = np.full((32, 32, 3), 200, np.uint8)
    preview = Preview((373, "positive", 0.5), "fourier", image, 1.234, 1, 3, 20)
    release = threading.Event()
    job = default_manager().submit(visualize_job_key(requests),
                                   lambda p, s: _hold(p, s, release, preview), label="live")
    try:
        at.run()
        assert not at.exception
        bar = at.get("progress")[0]
        assert bar.value == 7 and "generation 1/20" in bar.text
        captions = [i.proto.imgs[0].caption for i in at.get("image")]
        assert "best so far · activation 1.23" in captions
        assert any("Evolving now: positive weights, α = 0.5** (the condition on screen)" in m.value
                   for m in at.markdown)
    finally:
        release.set()
        job.wait(10)


def test_cancel_lets_go_but_a_job_another_session_watches_goes_on():
    at = custom(open_page(PAGE))
    requests = unit_requests("tiny_test", 373, settings_for())
    release = threading.Event()
    job = default_manager().submit(visualize_job_key(requests),
                                   lambda p, s: _hold(p, s, release), label="shared")
    try:
        at.run()
        job.seen("another-browser-tab")
        at.button(key="explorer_job_cancel").click().run()
        assert not job.cancel_requested and job.is_active  # the other tab still watches
        assert any("1 other session still watches" in i.value for i in at.info)
        job.leave("another-browser-tab")  # the other one cancels too: nobody is left
        assert job.wait(10) and job.state == "cancelled"
        at.run()
        assert at.button(key="explorer_compute").label.startswith("Compute unit 373")
    finally:
        release.set()


def test_a_pooled_image_set_shows_every_generator_and_the_best_on_the_strip():
    fourier, pixel = fill(373, "fourier"), fill(373, "pixel")
    at = custom(open_page(PAGE))
    at.multiselect(key="explorer_pool").set_value(["pixel"]).run()
    assert not at.exception and "explorer_compute" not in [b.key for b in at.button]
    # each generator's best and restarts for the shown condition, then the strip of 2 x 11
    assert len(at.get("image")) == 2 * (1 + TINY["restarts"]) + 2 * 11
    assert any("Image set: fourier 2 restarts + pixel 2 restarts (pooled)" in c.value
               for c in at.caption)
    key = Condition(373, "negative", 1.0).key
    best = max(fourier[key].best_scores.max(), pixel[key].best_scores.max())
    assert f"**{best:.2f}**" in [m.value for m in at.markdown]
    assert len(unit_requests("tiny_test", 373, settings_for(), ["fourier", "pixel"])) == 2
    assert unit_request("tiny_test", 373, settings_for("pixel")).settings.generator == "pixel"
