"""The optimiser is named for what it is wherever a user meets it: the settings widget's caption
(here on the ablation explorer, through AppTest) and the code dimension it is described at."""

from __future__ import annotations

import dataclasses

import pytest
from apptest_helpers import ROOT, open_page

from signseg_core.generators.catalog import make_generator
from signseg_core.optimize.settings import VisualizeSettings, describe_optimizer
from signseg_core.sweeps.preview import budget_settings, default_settings
from signseg_ui.evolution_settings import code_dim, optimizer_caption

EXPLORER = ROOT / "pages" / "0_Ablation_explorer.py"


def test_code_dim_is_the_generators_own_under_its_options():
    assert code_dim(VisualizeSettings(generator="pixel")) == 3 * (16 + 64 + 256 + 1024)
    assert code_dim(VisualizeSettings(generator="pixel",
                                      generator_options=(("grids", (4, 8)),))) == 3 * (16 + 64)
    assert code_dim(VisualizeSettings(generator="deepsim")) == 4096  # weights or not
    assert code_dim(VisualizeSettings()) == make_generator("fourier").dim


def test_optimizer_caption_words_the_default_as_an_isotropic_es():
    caption = optimizer_caption(VisualizeSettings(generator="deepsim"))
    assert caption == f"Optimiser: {describe_optimizer(VisualizeSettings(), 4096)}."
    assert caption.startswith("Optimiser: isotropic (μ/μ_w, λ)-ES with cumulative step-size")
    assert "no covariance adaptation; λ = 40, μ = 20 at d = 4096." in caption
    assert optimizer_caption(VisualizeSettings(covariance="full")).startswith("Optimiser: CMA-ES")


@pytest.mark.usefixtures("tiny_dashboard")
def test_the_explorer_settings_caption_names_the_optimizer_that_runs():
    at = open_page(EXPLORER)
    captions = [c.value for c in at.caption if "Optimiser:" in c.value]
    assert len(captions) == 1
    # the default budget is a fixed one: its own settings are named, with the way to change them
    settings = budget_settings("tiny_test", at.radio(key="explorer_budget").value)
    assert captions[0] == f"{optimizer_caption(settings)} Choose Custom to change the settings."
    # the CPU preview is maco: gradient ascent, not an evolution strategy
    assert "gradient ascent (Adam" in captions[0] and "-ES" not in captions[0]

    at.radio(key="explorer_budget").set_value("custom").run()
    captions = [c.value for c in at.caption if "Optimiser:" in c.value]
    generator = at.selectbox(key="explorer_generator").value
    settings = dataclasses.replace(default_settings("tiny_test"), generator=generator)
    assert len(captions) == 1 and captions[0].endswith(optimizer_caption(settings))
