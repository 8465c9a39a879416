"""scripts/optimizer_covariance.py on a tiny case: rows and summary keys, common random numbers
across the three covariance modes, and the summary's statistics against hand-made rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_script
from scipy import stats


@pytest.fixture(scope="module")
def oc():
    return load_script("optimizer_covariance")


@pytest.fixture(scope="module")
def tiny_setup(oc):
    # d = 3 (4^2 + 8^2) = 240: "full" eigendecomposes a 240 x 240 matrix, in milliseconds
    return oc.build("tiny_test", image_size=None, generator="pixel", grids=(4, 8), size=32)


def test_measure_returns_one_row_per_mode_unit_and_restart(oc, tiny_setup):
    model, generator = tiny_setup
    rows = oc.measure(model, generator, units=[1, 7], restarts=2, generations=10, popsize=4,
                      eigen_interval=2, chunk=3, batch_size=16)
    assert len(rows) == 3 * 2 * 2
    assert {(r["mode"], r["unit"], r["restart"]) for r in rows} == {
        (m, u, r) for m in oc.MODES for u in (1, 7) for r in (0, 1)}
    keys = {"mode", "unit", "restart", "seed", "best", "best_at", "last_gen_mean",
            "final_mean_score", "final_sigma", "cov_eig_min", "cov_eig_max",
            "seconds_per_evolution"}
    assert all(set(r) == keys and np.isfinite(r["best"]) and r["final_sigma"] > 0 for r in rows)
    assert all(r["best_at"] == {"10": r["best"]} for r in rows)  # checkpoints reached: 10
    # the isotropic ES keeps C = I; the others move it, a little, with positive eigenvalues
    for r in rows:
        spread = (r["cov_eig_min"], r["cov_eig_max"])
        assert spread == (1.0, 1.0) if r["mode"] == "none" else 0 < spread[0] < spread[1]
    # the same (unit, restart) has the same seed in every mode: paired comparisons
    seeds = {(r["unit"], r["restart"]): set() for r in rows}
    for r in rows:
        seeds[(r["unit"], r["restart"])].add(r["seed"])
    assert all(len(s) == 1 for s in seeds.values())
    json.dumps(rows)  # the raw rows are plain JSON


def test_the_first_generation_is_the_same_in_every_mode(oc, tiny_setup):
    # C = I at the start: diagonal and full draw exactly the isotropic ES's first samples
    model, generator = tiny_setup
    rows = oc.measure(model, generator, units=[3], restarts=2, generations=1, popsize=4,
                      eigen_interval=1, chunk=2, batch_size=8)
    best = {(r["mode"], r["restart"]): r["best"] for r in rows}
    for restart in (0, 1):
        assert best[("none", restart)] == best[("diagonal", restart)] == best[("full", restart)]


def test_summarise_gives_unit_means_with_t_intervals_and_paired_differences(oc):
    # unit u, restart r: none = u + r, diagonal = u + r + 0.5 u, full = none
    rows = [{"mode": m, "unit": u, "restart": r,
             "best": u + r + (0.5 * u if m == "diagonal" else 0.0)}
            for m in oc.MODES for u in (1, 2, 4) for r in (0, 1)]
    s = oc.summarise(rows)
    assert (s["n_units"], s["restarts"], s["units"]) == (3, 2, [1, 2, 4])
    none = np.array([1.5, 2.5, 4.5])  # per-unit means over restarts
    half = stats.t.ppf(0.975, 2) * none.std(ddof=1) / np.sqrt(3)
    assert s["modes"]["none"]["mean"] == pytest.approx(none.mean())
    assert s["modes"]["none"]["high"] == pytest.approx(none.mean() + half)
    diff = s["differences"]["diagonal - none"]
    d = np.array([0.5, 1.0, 2.0])
    d_half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert diff["mean"] == pytest.approx(d.mean())
    assert diff["low"] == pytest.approx(d.mean() - d_half)
    assert s["differences"]["full - none"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    text = oc.format_summary(s)
    assert text.splitlines()[0].startswith("best: mean over 3 units (2 restarts each)")
    assert "diagonal - none" in text and "full - diagonal" in text
