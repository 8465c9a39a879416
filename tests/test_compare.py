"""Comparing models: families, stored sweeps read back without recomputing, the change and
Spearman tables (Table 1), their figures, the CLI lines, and the export widgets' size maths."""

from __future__ import annotations

import dataclasses
import shlex

import numpy as np
import pandas as pd
import pytest

import signseg_core.optimize.visualize as vis_mod
import signseg_core.sweeps.measure as sweep_mod
from signseg_core.cli import commands, options
from signseg_core.cli import main as cli
from signseg_core.conditions import condition_grid
from signseg_core.errors import UnknownNameError
from signseg_core.figures.compare import (
    alpha_strip,
    change_vs_model_figure,
    family_curves_figure,
    readout_dale_figure,
)
from signseg_core.figures.plots import SIGN_COLORS, sign_shades
from signseg_core.optimize.results import ConditionResult
from signseg_core.optimize.settings import ConditionKey, VisualizeSettings
from signseg_core.optimize.visualize import visualize
from signseg_core.sweeps.measure import METRIC_COLUMNS
from signseg_core.sweeps.run import SweepResult, SweepSpec, run_sweep
from signseg_core.sweeps.stored import read_stored_sweep, sweep_command, visualize_command
from signseg_core.sweeps.tables import change_table, family_models, spearman_table, table1
from signseg_ui.export_page import Panel
from signseg_ui.export_widgets import (
    ExportChoice,
    describe_size,
    file_stem,
    size_from_widgets,
)

ROBUST = ("resnet50", "resnet50_robust_linf_1", "resnet50_robust_linf_4",
          "resnet50_robust_linf_8")
TINY = SweepSpec(models=("tiny_test",), units=(1,), alphas=(0.0, 1.0),
                 ensemble=("tiny_test", "tiny_test_b"), lpips=False, detector=None,
                 settings=VisualizeSettings(generations=2, restarts=2,
                                            generator_options=(("size", 32),)))


def sweep_rows(values: dict[tuple[str, int], dict[tuple[str, float], float]]) -> pd.DataFrame:
    """Per-image rows (two identical images per condition) from {(model, unit): {(sign, alpha):
    similarity}}."""
    rows = []
    for (model, unit), conds in values.items():
        for (sign, alpha), value in conds.items():
            rows += [{"model": model, "unit": unit, "sign": sign, "alpha": alpha, "restart": r,
                      "similarity": value} for r in range(2)]
    return pd.DataFrame(rows)


# -- families ----------------------------------------------------------------------------------

def test_families_list_their_models_and_refuse_unknown_names():
    assert family_models("robust") == ("resnet50", "resnet50_robust_linf_0.5",
                                       "resnet50_robust_linf_1", "resnet50_robust_linf_2",
                                       "resnet50_robust_linf_4", "resnet50_robust_linf_8")
    assert family_models("tanh") == ("resnet18", "resnet18_tanh")
    assert family_models("tanh", arch="vgg16") == ("vgg16", "vgg16_tanh")
    with pytest.raises(ValueError, match="no Tanh variant of 'densenet121'; choose from"):
        family_models("tanh", arch="densenet121")
    with pytest.raises(UnknownNameError, match="unknown family 'nope'"):
        family_models("nope")


# -- tables ------------------------------------------------------------------------------------

def test_change_table_is_the_mean_over_units_of_ablated_minus_control():
    table = sweep_rows({
        ("m", 1): {("control", 0.0): 1.0, ("positive", 1.0): 0.6},
        ("m", 2): {("control", 0.0): 0.8, ("positive", 1.0): 0.6},
    })
    out = change_table(table).set_index(["sign", "alpha"])
    pos = out.loc[("positive", 1.0)]
    assert pos.n_units == 2 and np.isnan(pos.eps)
    assert pos["mean"] == pytest.approx(0.6) and pos.mean_ci_low == pytest.approx(0.6)
    assert pos.delta == pytest.approx(-0.3)  # (0.6 - 1.0 + 0.6 - 0.8) / 2
    half = 12.706205 * np.std([-0.4, -0.2], ddof=1) / np.sqrt(2)  # t(0.975, 1) s / sqrt(n)
    assert pos.delta_ci_high - pos.delta == pytest.approx(half, rel=1e-6)
    # the control starts the curve of every sign in the table, with no change
    assert list(out.index) == [("positive", 0.0), ("positive", 1.0)]
    assert out.loc[("positive", 0.0)].delta == 0.0
    assert out.loc[("positive", 0.0)]["mean"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match=r"table lacks column\(s\) \['lpips'\]"):
        change_table(table, value="lpips")


def monotone_family() -> pd.DataFrame:
    """One unit per model: similarity falls with ε after positive ablation, rises after
    negative; alexnet has no ε."""
    values = {}
    for name, eps in zip((*ROBUST, "alexnet"), (0, 1, 4, 8, 2)):
        values[(name, 7)] = {("control", 0.0): 1.0, ("positive", 1.0): 0.9 - 0.05 * eps,
                             ("negative", 1.0): 0.5 + 0.01 * eps}
    return sweep_rows(values)


def test_spearman_on_a_monotone_family_is_minus_and_plus_one():
    out = spearman_table(monotone_family()).set_index("sign")
    assert out.loc["positive", "rho"] == pytest.approx(-1.0)
    assert out.loc["negative", "rho"] == pytest.approx(1.0)
    assert (out.n_models == 4).all() and (out.n == 4).all()  # alexnet has no ε: left out
    # placed by list position instead, alexnet included (it sits where its ε would put it)
    order = {name: i for i, name in enumerate(("resnet50", "resnet50_robust_linf_1", "alexnet",
                                                "resnet50_robust_linf_4",
                                                "resnet50_robust_linf_8"))}
    out = spearman_table(monotone_family(), against=order).set_index("sign")
    assert out.loc["positive", "rho"] == pytest.approx(-1.0) and out.loc["positive", "n"] == 5


def test_the_sweeps_robustness_file_is_spearman_table(tmp_path):
    rng = np.random.default_rng(0)
    values = {(name, unit): {("control", 0.0): 1.0,
                             **{(s, a): float(rng.uniform(0.3, 0.9))
                                for s in ("positive", "negative") for a in (0.5, 1.0)}}
              for name in ROBUST for unit in (1, 2, 3)}
    table = sweep_rows(values)
    table = table.assign(**{c: np.nan for c in METRIC_COLUMNS if c not in table})
    SweepResult(table, pd.DataFrame(), {}).save(tmp_path, stem="s")
    written = pd.read_csv(tmp_path / "s_robustness.csv")
    pd.testing.assert_frame_equal(written, spearman_table(table), check_dtype=False)


def test_spearman_of_the_change_uses_each_units_own_control():
    # ablated similarity is the same everywhere, but the control rises with ε: the change
    # (ablated - control) falls with ε while the raw value is constant (no ranks: NaN)
    values = {(name, 1): {("control", 0.0): 0.5 + 0.1 * i, ("positive", 1.0): 0.4}
              for i, name in enumerate(ROBUST)}
    table = sweep_rows(values)
    assert np.isnan(spearman_table(table, change=False).rho.iloc[0])
    assert spearman_table(table).rho.iloc[0] == pytest.approx(-1.0)  # the default: Table 1


def test_table1_lays_out_rho_and_p_per_alpha_and_sign():
    rho = pd.DataFrame({"sign": ["negative", "positive", "negative", "positive"],
                        "alpha": [0.5, 0.5, 1.0, 1.0], "rho": [-0.46, -0.47, np.nan, -0.5],
                        "p": [9e-5, 6e-5, np.nan, 2e-5], "n": 4, "n_models": 4})
    out = table1(rho)
    assert list(out.columns) == ["alpha", "positive ρ (p)", "negative ρ (p)"]
    assert out.iloc[0].tolist() == [0.5, "-0.47 (6e-05)", "-0.46 (9e-05)"]
    assert out.iloc[1].tolist() == [1.0, "-0.50 (2e-05)", "n/a"]


# -- figures -----------------------------------------------------------------------------------

def test_change_vs_model_figure_puts_models_at_their_eps_or_in_order():
    changes = change_table(monotone_family()[lambda t: t.model != "alexnet"])
    fig = change_vs_model_figure(changes, alpha=1.0)
    pos = {t.name: t for t in fig.data}["positive"]
    assert list(pos.x) == [0.0, 1.0, 4.0, 8.0]
    np.testing.assert_allclose(pos.y, [-0.1, -0.15, -0.3, -0.5])
    assert fig.layout.xaxis.title.text.startswith("L∞ training ε")
    mixed = change_table(monotone_family(), order=["alexnet", "resnet50"])
    fig = change_vs_model_figure(mixed, alpha=1.0, value="mean")
    neg = {t.name: t for t in fig.data}["negative"]
    assert list(neg.x)[:2] == ["alexnet", "resnet50"] and neg.y[0] == pytest.approx(0.52)
    assert list(fig.layout.xaxis.categoryarray)[:2] == ["alexnet", "resnet50"]
    with pytest.raises(ValueError, match="value must be 'delta' or 'mean'"):
        change_vs_model_figure(changes, alpha=1.0, value="rho")


def test_family_curves_and_readout_dale_figures():
    changes = change_table(monotone_family(), order=list(ROBUST))
    fig = family_curves_figure(changes)
    assert [t.name for t in fig.data][:2] == ["resnet50 · positive", "resnet50 · negative"]
    assert list(fig.data[0].x) == [0.0, 1.0] and list(fig.data[0].y) == [0.0, pytest.approx(-0.1)]
    assert fig.data[0].line.dash == "solid" and fig.data[1].line.dash == "dash"
    # the signs' colours of every page: one model alone is drawn in exactly red and blue
    one = family_curves_figure(changes[changes.model == "resnet50"])
    assert [t.line.color for t in one.data] == [SIGN_COLORS["positive"], SIGN_COLORS["negative"]]
    # several models: shades of red (positive) and blue (negative), one marker per model
    reds = [t.line.color for t in fig.data if t.name.endswith("positive")]
    blues = [t.line.color for t in fig.data if t.name.endswith("negative")]
    n = len(dict.fromkeys(t.legendgroup for t in fig.data))
    assert n >= 4 and reds == sign_shades("positive", n) and blues == sign_shades("negative", n)
    assert all(int(c[1:3], 16) > int(c[5:7], 16) for c in reds)  # more red than blue
    assert all(int(c[5:7], 16) > int(c[1:3], 16) for c in blues)
    assert len(set(reds)) == n and fig.data[0].marker.symbol != fig.data[2].marker.symbol
    table = pd.DataFrame({"model": ["b", "a"], "mean_dale": [0.56, 0.58]})
    fig = readout_dale_figure(table, expected_untrained=0.5126)
    assert list(fig.data[0].x) == ["b", "a"] and list(fig.data[0].y) == [0.56, 0.58]
    assert list(fig.data[1].y) == [0.5126, 0.5126] and fig.data[1].name == "untrained expectation"


def _result(unit: int, sign: str, alpha: float, colour: int) -> ConditionResult:
    key = ConditionKey("m", "f", unit, sign, alpha, "fourier", "g", "{}", 1, 2, 0, "fp32")
    images = np.full((2, 4, 4, 3), colour, np.uint8)
    images[1] = 255 - colour  # restart 1 is the best one
    return ConditionResult(key, images, np.array([1.0, 2.0]), np.zeros(2), np.zeros((1, 2)),
                           np.zeros((1, 2)), np.zeros((2, 1), np.float32),
                           np.zeros((2, 1), np.float32))


def test_alpha_strip_shows_the_best_image_per_alpha_with_the_control_first():
    results = [_result(3, "negative", 1.0, 40), _result(3, "control", 0.0, 10),
               _result(3, "positive", 0.5, 20), _result(3, "positive", 1.0, 30)]
    strip = alpha_strip(results, tile=16)
    # two caption lines of 14 px over each 16-px image, rows 16 + 28 + 4 px apart, tiles 20 px
    # apart after the label column, and the note beneath
    label_w = strip.shape[1] - 3 * 20
    assert label_w >= 90 and strip.dtype == np.uint8
    assert strip.shape[0] >= 2 * 48 + 4 + 14

    def tile(row: int, col: int) -> np.ndarray:
        y, x = row * 48 + 2 + 28, label_w + col * 20
        return strip[y + 4, x + 8]

    assert tile(0, 0).tolist() == [245] * 3 and tile(1, 0).tolist() == [245] * 3  # control
    assert tile(0, 1).tolist() == [235] * 3 and tile(0, 2).tolist() == [225] * 3
    assert tile(1, 1).tolist() == [215] * 3 and tile(1, 2).tolist() == [255] * 3  # blank
    with pytest.raises(ValueError, match="one unit; got units"):
        alpha_strip([_result(3, "control", 0.0, 1), _result(4, "control", 0.0, 1)])
    with pytest.raises(ValueError, match="at least one stored result"):
        alpha_strip([])


# -- stored sweeps -----------------------------------------------------------------------------

def test_a_stored_sweep_reads_back_exactly_and_names_what_is_missing(store, tiny,
                                                                     monkeypatch):
    computed = run_sweep(TINY, store=store)
    # reading never evolves or measures anything
    monkeypatch.setattr(vis_mod, "evolve_conditions",
                        lambda *a, **k: pytest.fail("evolution ran"))
    monkeypatch.setattr(sweep_mod, "unit_rows", lambda *a, **k: pytest.fail("metrics ran"))
    spec = dataclasses.replace(TINY, models=("tiny_test", "resnet50", "nope"))
    stored = read_stored_sweep(spec, store=store)
    pd.testing.assert_frame_equal(stored.table, computed.table)
    assert {k: v for k, v in computed.statuses.items()
            if k not in ("spec", "identities")} == stored.statuses
    cov = stored.coverage.set_index("model")
    assert cov.status.tolist() == ["complete", "no weights", "unknown"]
    assert cov.loc["tiny_test", "units_found"] == [1] and cov.loc["tiny_test", "reason"] == ""
    assert "resnet50-0676ba61.pth" in cov.loc["resnet50", "reason"]
    assert "unknown model 'nope'" in cov.loc["nope", "reason"]
    assert stored.found == ["tiny_test"] and stored.to_compute == []
    # a metric setup the caller holds (the dashboard's cached one) is used, not built again
    held, build = sweep_mod.Metrics.build(TINY, "cpu", {}), sweep_mod.Metrics.__dict__["build"]
    monkeypatch.setattr(sweep_mod.Metrics, "build", lambda *a, **k: pytest.fail("built again"))
    again = read_stored_sweep(spec, store=store, metrics=held)
    pd.testing.assert_frame_equal(again.table, computed.table)
    monkeypatch.setattr(sweep_mod.Metrics, "build", build)

    # unit 2: first nothing stored, then its images (not its metrics)
    two = dataclasses.replace(TINY, units=(1, 2))
    cov = read_stored_sweep(two, store=store).coverage.iloc[0]
    assert cov.status == "partial" and cov.units_missing == [2]
    assert "images" not in cov.reason
    monkeypatch.undo()
    visualize(tiny, condition_grid([2], alphas=TINY.alphas), settings=TINY.settings,
              store=store)
    again = read_stored_sweep(two, store=store)
    assert "the images of unit(s) [2] are stored but not their metrics" in again.coverage.reason[0]
    assert again.to_compute == ["tiny_test"] and set(again.table.unit) == {1}
    # another metric setup was never computed
    other = read_stored_sweep(dataclasses.replace(TINY, ensemble=("efficientnet_lite0",)),
                              store=store)
    assert other.coverage.status.tolist() == ["not computed"] and other.table.empty


def _spec_from_command(command: str) -> SweepSpec:
    """What ``python -m signseg_core sweep ...`` would run."""
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "signseg_core", "sweep"]
    return commands.sweep_spec_from_args(cli.build_parser().parse_args(words[3:]))


@pytest.mark.parametrize("spec", [
    SweepSpec(models=("efficientnet_lite0", "efficientnet_lite1")),
    SweepSpec(models=("a", "b"), units=(3, 1), signs=("negative",), alphas=(0.25, 1.0),
              ensemble=("tiny_test", "tiny_test_b"), lpips=False, detector=None,
              settings=VisualizeSettings(generator="pixel", generations=7, restarts=3, seed=2,
                                         precision="bf16", generator_options=(("size", 32),))),
    SweepSpec(models=("a",), generators=("deepsim", "biggan"),  # the paper's pooled sets
              settings=VisualizeSettings(restarts=10, covariance="diagonal")),
])
def test_sweep_command_runs_the_same_sweep(spec):
    command = sweep_command(spec, out="out dir")
    back = _spec_from_command(command)
    assert back.__dict__ | {"alphas": None} == spec.__dict__ | {"alphas": None}
    assert set(back.alphas) | {0.0} == set(spec.alphas) | {0.0}  # run_sweep adds the control
    assert command.endswith("--out 'out dir'")
    assert sweep_command(spec, ["b"]).split("--models b ")[1].startswith("--")


def test_visualize_command_and_settings_the_cli_cannot_set():
    settings = VisualizeSettings(generations=5, restarts=2, seed=3)
    args = cli.build_parser().parse_args(shlex.split(visualize_command("m", [1, 2], settings))[3:])
    assert args.model == "m" and args.unit == [1, 2]
    assert options.settings_from_args(args) == settings
    with pytest.raises(ValueError, match=r"cannot set \['popsize'\]"):
        sweep_command(SweepSpec(settings=VisualizeSettings(popsize=8)))


# -- export sizes ------------------------------------------------------------------------------

def test_export_sizes_from_millimetres_or_pixels():
    size = size_from_widgets(unit="mm", width=89.0, height=67.0, dpi=300)
    assert size.png_pixels() == (1051, 791)  # 89 mm = 3.504 in; x 300 dpi
    assert describe_size(size).startswith("PNG 1051 × 791 px at 300 dpi; SVG/PDF 89 × 67 mm")
    size = size_from_widgets(unit="px", width=700, height=525, scale=2)
    assert size.png_pixels() == (1400, 1050) and size.layout_px() == (700, 525)
    with pytest.raises(ValueError, match="unknown size unit 'cm'"):
        size_from_widgets(unit="cm", width=1, height=1)
    with pytest.raises(ValueError, match="each side must be at most 10000"):
        size_from_widgets(unit="mm", width=1000.0, height=10.0, dpi=600)
    assert file_stem("tiny test/0 ranking") == "tiny_test_0_ranking"
    assert file_stem("_conv_head") == "conv_head" and file_stem("///") == "panel"
    with pytest.raises(ValueError, match=r"unknown format\(s\) \['gif'\]"):
        ExportChoice(("png", "gif"), size)
    with pytest.raises(ValueError, match="unknown panel kind 'pie'"):
        Panel("pie", "x", None, "not drawn")
    with pytest.raises(ValueError, match="either content or a reason"):
        Panel("strip", "x", None)


def test_precomputed_defaults_are_the_shipped_bundles_settings():
    # the bundle file names carry the budget they were made with: g60 r5 fourier
    from signseg_core.paths import REPO_ROOT
    from signseg_core.sweeps.preview import PRECOMPUTED, default_settings, describe_defaults

    shipped = sorted((REPO_ROOT / "docs" / "data").glob("lite0_fourier_g60_r5_*.npz"))
    assert shipped, "the precomputed preview bundles are missing from docs/data"
    s = default_settings("efficientnet_lite0")
    assert (s.generator, s.generations, s.restarts) == ("fourier", 60, 5)
    assert default_settings("alexnet") not in PRECOMPUTED.values()
    assert "5 restarts × 60 generations" in describe_defaults()
