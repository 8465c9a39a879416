"""Sweeps: a tidy table per image, summaries over units, resumable from the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import signseg_core.optimize.visualize as vis_mod
import signseg_core.sweeps.measure as sweep_mod
from signseg_core.figures.plots import image_strip, metric_vs_alpha_figure, spectrum_ratio_figure
from signseg_core.metrics.similarity import ensemble_similarity
from signseg_core.models.registry import load_model
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import run_request
from signseg_core.store import ResultStore
from signseg_core.sweeps.report import render_markdown
from signseg_core.sweeps.run import SweepSpec, run_sweep, summarize

SPEC = SweepSpec(models=("tiny_test",), units=(1, 2), alphas=(0.0, 0.5, 1.0),
                 ensemble=("tiny_test", "tiny_test_b"), lpips=False, detector=None,
                 settings=VisualizeSettings(generations=2, restarts=2,
                                            generator_options=(("size", 32),)))


def test_one_row_per_image_with_every_column(tmp_path):
    result = run_sweep(SPEC, store=ResultStore(tmp_path / "s"))
    t = result.table
    assert len(t) == 2 * 5 * 2  # units x (control + 2 signs x 2 alphas) x restarts
    assert {"model", "unit", "class_name", "sign", "alpha", "generator", "restart", "seed",
            "activation", "intact_activation", "similarity", "lpips_similarity", "objectness",
            "spectral_slope"} <= set(t.columns)
    assert set(t.sign) == {"control", "positive", "negative"}
    assert (t[t.unit == 1].class_name == "goldfish").all()
    assert t.lpips_similarity.isna().all() and t.objectness.isna().all()
    assert result.statuses["lpips"] == "off" and result.statuses["objectness"] == "off"
    # a control image is compared with the *other* control images, never with itself
    assert (t[t.sign == "control"].similarity < 1.0).all()
    assert t.similarity.between(-1, 1).all() and np.isfinite(t.spectral_slope).all()
    files = result.save(tmp_path / "out")
    back = pd.read_parquet(tmp_path / "out" / "sweep.parquet")
    pd.testing.assert_frame_equal(back, t)
    assert (tmp_path / "out" / "sweep_summary.csv").exists() and len(files) == 6


def test_similarity_is_the_held_out_ensembles_and_similarity_full_the_whole(tmp_path):
    # the sweep's own images, measured again directly: held-out = tiny_test_b alone (the sweep
    # optimised tiny_test), full = both networks; each image's value is its mean over the controls
    store = ResultStore(tmp_path / "s")
    t = run_sweep(SPEC, store=store).table
    tiny = load_model("tiny_test")
    (request,) = SPEC.requests(tiny, SPEC.generators_for(tiny), 1)
    by_key = {r.condition.key: r for r in run_request(request, store=store)}
    control = by_key[(1, "control", 0.0)].images
    ablated = by_key[(1, "negative", 1.0)].images
    rows = t[(t.unit == 1) & (t.sign == "negative") & (t.alpha == 1.0)].sort_values("restart")
    held = ensemble_similarity(control, ablated, [load_model("tiny_test_b")]).pairwise
    full = ensemble_similarity(control, ablated, [load_model(n) for n in SPEC.ensemble]).pairwise
    np.testing.assert_allclose(rows.similarity, held.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(rows.similarity_full, full.mean(axis=0), atol=1e-9)
    assert not np.allclose(rows.similarity, rows.similarity_full)


def test_interrupted_sweep_resumes_from_the_store(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "s")
    done = []  # the stop is asked for once unit 1 is measured, however often it is polled
    partial = run_sweep(SPEC, store=store, progress=done.append, should_stop=lambda: bool(done))
    assert partial.cancelled and set(partial.table.unit) == {1}

    runs, metric_calls = [], []
    real_run, real_rows = vis_mod.evolve_conditions, sweep_mod.unit_rows
    monkeypatch.setattr(vis_mod, "evolve_conditions",
                        lambda *a, **k: runs.append(1) or real_run(*a, **k))
    monkeypatch.setattr(sweep_mod, "unit_rows",
                        lambda *a, **k: metric_calls.append(1) or real_rows(*a, **k))
    full = run_sweep(SPEC, store=store)
    assert not full.cancelled and set(full.table.unit) == {1, 2}
    assert len(runs) == 1 and len(metric_calls) == 1  # only unit 2 was computed
    pd.testing.assert_frame_equal(full.table[full.table.unit == 1].reset_index(drop=True),
                                  partial.table.reset_index(drop=True))
    again = run_sweep(SPEC, store=store)
    assert len(runs) == 1 and len(metric_calls) == 1
    pd.testing.assert_frame_equal(again.table, full.table)


def test_summary_is_the_mean_over_unit_means_with_a_t_interval():
    rows = []
    for unit, base in ((1, 0.2), (2, 0.4), (3, 0.6)):
        for restart, extra in enumerate((0.0, 0.2)):  # unit means: 0.3, 0.5, 0.7
            rows.append({"model": "m", "unit": unit, "sign": "positive", "alpha": 1.0,
                         "activation": base + extra, "intact_activation": 0.0,
                         "similarity": base + extra, "lpips_similarity": np.nan,
                         "objectness": np.nan, "spectral_slope": -2.0, "restart": restart})
            rows.append({**rows[-1], "sign": "control", "alpha": 0.0, "similarity": 1.0})
    summary = summarize(pd.DataFrame(rows))
    pos = summary[(summary.sign == "positive") & (summary.alpha == 1.0)].iloc[0]
    assert pos.n_units == 3 and pos.similarity == pytest.approx(0.5)
    half = 4.302653 * 0.2 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert pos.similarity_ci_high - pos.similarity == pytest.approx(half, rel=1e-5)
    # the control is the alpha = 0 point of both curves
    assert set(summary[summary.alpha == 0.0].sign) == {"positive", "negative"}
    assert np.isnan(pos.lpips_similarity)


def test_figures_from_a_summary_and_spectra():
    summary = pd.DataFrame({
        "sign": ["positive", "positive", "negative", "negative"], "alpha": [0.0, 1.0, 0.0, 1.0],
        "similarity": [1.0, 0.6, 1.0, 0.9], "similarity_ci_low": [0.9, 0.5, 0.9, 0.8],
        "similarity_ci_high": [1.0, 0.7, 1.0, 1.0]})
    fig = metric_vs_alpha_figure(summary, "similarity")
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["positive", "negative"]
    assert list(lines[0].y) == [1.0, 0.6]
    spectra = pd.DataFrame({"sign": ["control", "control", "positive", "positive"],
                            "alpha": [0.0, 0.0, 1.0, 1.0], "freq": [1, 2, 1, 2],
                            "power": [4.0, 1.0, 2.0, 1.0], "unit": 1, "model": "m"})
    ratio = spectrum_ratio_figure(spectra, alpha=1.0)
    assert list(ratio.data[0].y) == [2.0, 1.0]
    strip = image_strip({"a": [(np.zeros((8, 8, 3), np.uint8), "x")] * 3}, tile=16)
    assert strip.dtype == np.uint8 and strip.shape[2] == 3 and strip.shape[1] >= 3 * 16


def test_report_markdown_states_the_setting_and_the_numbers():
    numbers = {"positive_1": {"similarity": (0.5, 0.4, 0.6), "activation": (1.0, 0.5, 1.5),
                              "intact_activation": (2.0, 1.0, 3.0)},
               "similarity_neg_minus_pos_1": (0.3, 0.2, 0.4)}
    summary = pd.DataFrame({"sign": ["positive"], "alpha": [0.0], "similarity": [0.8],
                            "similarity_ci_low": [0.7], "similarity_ci_high": [0.9],
                            "activation": [5.0], "activation_ci_low": [4.0],
                            "activation_ci_high": [6.0], "intact_activation": [5.0],
                            "intact_activation_ci_low": [4.0], "intact_activation_ci_high": [6.0]})
    text = render_markdown(numbers, {"lpips": "unavailable: x"}, summary, 1155)
    # held-out similarity, then the full ensemble's (absent here), activation, intact logit
    assert "| positive, α = 1 | 0.500 [0.400, 0.600] | n/a | 1.000 [0.500, 1.500]" in text
    assert "| negative, α = 1 | n/a |" in text
    assert "negative minus positive 0.300 [0.200, 0.400] (paired over units)" in text
    assert "unavailable here (weights not on this machine)" in text and "1155 images" in text
    assert "unavailable: x" not in text  # a status's own words (paths) stay out of the report


def test_spec_validation():
    with pytest.raises(ValueError, match="units must not be empty"):
        SweepSpec(units=())


def test_robustness_table_recovers_a_planted_trend():
    from signseg_core.models.registry import model_eps
    from signseg_core.sweeps.tables import spearman_table as robustness_table

    assert model_eps("resnet50_robust_linf_0.5") == 0.5 and model_eps("resnet50") == 0.0
    assert model_eps("alexnet") is None
    rows = []
    for name, eps in (("resnet50", 0), ("resnet50_robust_linf_1", 1), ("resnet50_robust_linf_4", 4),
                      ("resnet50_robust_linf_8", 8), ("alexnet", None)):
        for unit in (1, 2):
            for sign, slope in (("positive", -0.05), ("negative", 0.01)):
                rows.append({"model": name, "unit": unit, "sign": sign, "alpha": 1.0,
                             "similarity": 0.9 + slope * (eps or 0) + 0.001 * unit})
            rows.append({"model": name, "unit": unit, "sign": "control", "alpha": 0.0,
                         "similarity": 1.0})
    out = robustness_table(pd.DataFrame(rows)).set_index("sign")
    assert out.loc["positive", "rho"] < -0.9 and out.loc["negative", "rho"] > 0.9
    assert (out.n_models == 4).all()


def test_metric_key_names_the_weights_not_where_they_lie_or_why_they_are_missing():
    """Stored metric rows must be found again under another TORCH_HOME or another wording of
    'missing': the key holds weight fingerprints, "unavailable" or "off", never status text."""
    from signseg_core.metrics.objectness import random_detector
    from signseg_core.sweeps.measure import Metrics

    here = Metrics([], None, random_detector(0), {"lpips": "unavailable: x", "objectness": "a"})
    moved = Metrics([], None, random_detector(0), {"lpips": "unavailable: y", "objectness": "b"})
    other = Metrics([], None, random_detector(1), {"lpips": "unavailable: x", "objectness": "a"})
    gone = Metrics([], None, None, {"lpips": "off", "objectness": "unavailable: z"})
    assert here.key([]) == moved.key([])
    assert here.key([]) != other.key([])  # other weights, other numbers
    assert gone.key([]).detector == "unavailable" and gone.key([]).lpips == "unavailable"


def test_no_downloads_is_offline_within_the_block_only(monkeypatch):
    from signseg_core import paths

    monkeypatch.delenv("SIGNSEG_OFFLINE", raising=False)
    assert not paths.offline()
    with paths.no_downloads():
        assert paths.offline()
    assert not paths.offline()


def test_saved_sweep_rows_import_into_a_store_that_holds_the_images(tmp_path):
    import json

    from signseg_core.conditions import condition_grid
    from signseg_core.models.registry import load_model
    from signseg_core.sweeps.bundle import import_sweep_rows
    from signseg_core.sweeps.measure import Metrics, read_unit_rows

    store = ResultStore(tmp_path / "s")
    result = run_sweep(SPEC, store=store)
    result.save(tmp_path / "out")
    metrics = Metrics.build(SPEC, "cpu", {})
    keys = {}
    for unit in SPEC.units:  # forget the measured rows, keep the images
        results = vis_mod.visualize(load_model("tiny_test"),
                                    condition_grid([unit], alphas=SPEC.alphas),
                                    settings=SPEC.settings, store=store)
        keys[unit] = metrics.key(results)
        store.delete(keys[unit])
    table = tmp_path / "out" / "sweep.parquet"
    lines = import_sweep_rows(table, store=store)
    assert lines == ["tiny_test unit 1: imported 10 rows", "tiny_test unit 2: imported 10 rows"]
    for unit in SPEC.units:
        rows, spectra = read_unit_rows(store, keys[unit])
        want = result.table[result.table.unit == unit].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows[want.columns], want, check_dtype=False)
        assert len(spectra) and set(spectra.unit) == {unit}
    assert import_sweep_rows(table, store=store)[0] == "tiny_test unit 1: already in the store"

    store.delete(keys[1])  # rows of other images are refused, not filed
    bad = pd.read_parquet(table)
    bad.loc[bad.unit == 1, "activation"] += 1.0
    bad.to_parquet(table)
    assert import_sweep_rows(table, store=store)[0] == (
        "tiny_test unit 1: the table's rows do not match the stored images")
    status = tmp_path / "out" / "sweep_status.json"
    saved = json.loads(status.read_text())
    status.write_text(json.dumps({**saved, "lpips": "ok: LPIPS v0.1 alex (/x.pth)"}))
    with pytest.raises(ValueError, match="lpips was 'ok: LPIPS"):
        import_sweep_rows(table, store=store)
    status.write_text(json.dumps(saved))
    old = pd.read_parquet(table).drop(columns="similarity_full")  # saved before held-out existed
    old.to_parquet(table)
    with pytest.raises(ValueError, match="no similarity_full column: it was saved by an older"):
        import_sweep_rows(table, store=store)


def test_a_sweep_whose_held_out_ensemble_is_empty_is_refused_with_one_sentence():
    with pytest.raises(ValueError, match="held-out similarity ensemble of tiny_test is empty"):
        SweepSpec(models=("tiny_test",), ensemble=("tiny_test",))


def test_pooled_image_sets_measure_each_condition_over_every_generators_images(tmp_path):
    # the paper's 20-image sets (10 DeePSiM + 10 BigGAN), here 2 fourier + 2 pixel per condition
    spec = SweepSpec(models=("tiny_test",), units=(1,), alphas=(0.0, 1.0),
                     ensemble=("tiny_test", "tiny_test_b"), lpips=False, detector=None,
                     generators=("fourier", "pixel"), settings=SPEC.settings)
    assert spec.image_set == "fourier 2 + pixel 2 (pooled)"
    store = ResultStore(tmp_path / "s")
    t = run_sweep(spec, store=store).table
    assert len(t) == 3 * 4 and set(t.image_set) == {"fourier+pixel"}  # 3 conditions x 4 images
    assert (t.groupby(["sign", "alpha"]).generator.nunique() == 2).all()
    tiny, other = load_model("tiny_test"), load_model("tiny_test_b")
    gens = spec.generators_for(tiny)
    by_gen = {g: {r.condition.key: r for r in run_request(req, store=store)}
              for g, req in zip(spec.generator_names, spec.requests(tiny, gens, 1))}
    assert all(r.from_store for results in by_gen.values() for r in results.values())
    control = np.concatenate([by_gen[g][(1, "control", 0.0)].images for g in ("fourier", "pixel")])
    pairwise = ensemble_similarity(control, control, [other]).pairwise  # held-out: tiny_test_b
    # a control image is compared with the 3 other pooled control images, not with itself
    expected = [(pairwise[:, i].sum() - pairwise[i, i]) / 3 for i in range(4)]
    rows = t[t.sign == "control"].sort_values(["generator", "restart"])
    np.testing.assert_allclose(rows.similarity, expected, atol=1e-9)
    # an ablated image is compared with all 4 pooled control images
    ablated = by_gen["pixel"][(1, "negative", 1.0)].images
    want = ensemble_similarity(control, ablated, [other]).pairwise.mean(axis=0)
    got = t[(t.sign == "negative") & (t.generator == "pixel")].sort_values("restart").similarity
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_rows_measured_with_lpips_import_only_where_the_same_weights_would_measure(
        tmp_path, monkeypatch):
    import json

    import signseg_core.sweeps.bundle as bundle_mod
    from signseg_core.sweeps.bundle import import_sweep_rows
    from signseg_core.sweeps.measure import Metrics

    store = ResultStore(tmp_path / "s")
    run_sweep(SPEC, store=store).save(tmp_path / "out")
    status_path = tmp_path / "out" / "sweep_status.json"
    saved = json.loads(status_path.read_text())
    assert json.loads(saved["identities"]) == {"lpips": "off", "objectness": "off"}

    real_build = Metrics.build

    def with_lpips(fingerprint):  # this machine measures LPIPS with weights `fingerprint`
        def build(spec, device, models):
            m = real_build(spec, device, models)
            return Metrics(m.ensemble, m.lpips, m.detector, {**m.statuses, "lpips": "ok: x"},
                           {**m.identities, "lpips": fingerprint})
        monkeypatch.setattr(bundle_mod.Metrics, "build", staticmethod(build))

    table = tmp_path / "out" / "sweep.parquet"
    made_there = {**saved, "lpips": "ok: LPIPS v0.1 alex (alexnet.ckpt)",
                  "identities": json.dumps({"lpips": "fp-a", "objectness": "off"})}
    status_path.write_text(json.dumps(made_there))
    with_lpips("fp-b")  # other weights here: refused, nothing filed
    with pytest.raises(ValueError, match="do not record the same weights"):
        import_sweep_rows(table, store=store)
    with_lpips("fp-a")  # the same weights: the rows are taken
    assert import_sweep_rows(table, store=store) == [
        "tiny_test unit 1: imported 10 rows", "tiny_test unit 2: imported 10 rows"]
    status_path.write_text(json.dumps({k: v for k, v in made_there.items()
                                       if k != "identities"}))  # an older file: no record
    with pytest.raises(ValueError, match="do not record the same weights"):
        import_sweep_rows(table, store=store)
