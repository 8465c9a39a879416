"""Tests of signseg_core.metrics.stats: hand-worked values, known p-values, planted trends and
signs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, pearsonr, permutation_test, rankdata, spearmanr
from scipy.stats import t as student_t

from signseg_core.metrics.stats import (
    binomial_consistency,
    bootstrap_ci,
    correlation,
    describe_correlation,
    mean_ci,
    paired_difference,
    robustness_trend,
    spearman,
)

T_975_DF4 = 2.7764451051977987  # Student t quantile, 0.975, 4 degrees of freedom (tables: 2.776)


# -- mean_ci -----------------------------------------------------------------------------------

def test_mean_ci_hand_worked():
    # mean 3, s = sqrt(2.5), sem = sqrt(2.5 / 5) = sqrt(0.5)
    m, lo, hi = mean_ci([1, 2, 3, 4, 5])
    half = T_975_DF4 * math.sqrt(0.5)
    assert m == pytest.approx(3.0)
    assert lo == pytest.approx(3.0 - half, abs=1e-12)
    assert hi == pytest.approx(3.0 + half, abs=1e-12)
    assert half == pytest.approx(1.96324, abs=1e-5)


def test_mean_ci_ignores_nans_and_small_n():
    assert mean_ci([1, 2, np.nan, 3, 4, 5]) == pytest.approx(mean_ci([1, 2, 3, 4, 5]))
    m, lo, hi = mean_ci([7.0, np.nan])
    assert m == 7.0 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in mean_ci([np.nan, np.nan]))
    assert all(math.isnan(v) for v in mean_ci([]))
    assert mean_ci([2.5, 2.5, 2.5]) == (2.5, 2.5, 2.5)


def test_mean_ci_axis_matches_columnwise():
    x = np.random.default_rng(0).normal(size=(6, 3))
    x[2, 1] = np.nan
    m, lo, hi = mean_ci(x, axis=0)
    assert m.shape == lo.shape == hi.shape == (3,)
    for j in range(3):
        assert (m[j], lo[j], hi[j]) == pytest.approx(mean_ci(x[:, j]))
    # a column with a single value gets a NaN interval, the others do not
    x[1:, 2] = np.nan
    _, lo, _ = mean_ci(x, axis=0)
    assert np.isnan(lo[2]) and not np.isnan(lo[:2]).any()


def test_mean_ci_covers_the_true_mean_95_percent_of_the_time():
    # With n = 5 a z-interval would cover only ~88%; the t-interval covers 95%.
    x = np.random.default_rng(1).normal(loc=2.0, size=(4000, 5))
    _, lo, hi = mean_ci(x, axis=1)
    coverage = np.mean((lo <= 2.0) & (2.0 <= hi))
    assert 0.935 < coverage < 0.965


@pytest.mark.parametrize("c", [0.0, 1.0, 1.5, -0.1])
def test_mean_ci_rejects_bad_confidence(c):
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1, 2, 3], confidence=c)


# -- bootstrap_ci ------------------------------------------------------------------------------

def test_bootstrap_ci_is_seeded_and_brackets_the_statistic():
    x = np.random.default_rng(2).normal(size=40)
    a = bootstrap_ci(x, seed=3)
    assert a == bootstrap_ci(x, seed=3)
    assert a != bootstrap_ci(x, seed=4)
    value, lo, hi = a
    assert value == pytest.approx(x.mean())
    assert lo < value < hi


def test_bootstrap_ci_statistic_without_axis_gives_same_resamples():
    x = np.random.default_rng(5).exponential(size=25)
    vectorised = bootstrap_ci(x, statistic=np.median, n_boot=300, seed=1)
    looped = bootstrap_ci(x, statistic=lambda v: float(np.median(v)), n_boot=300, seed=1)
    assert vectorised == pytest.approx(looped)


def test_bootstrap_ci_agrees_with_t_interval_for_normal_data():
    x = np.random.default_rng(6).normal(size=300)
    _, blo, bhi = bootstrap_ci(x, n_boot=3000)
    _, tlo, thi = mean_ci(x)
    assert (bhi - blo) == pytest.approx(thi - tlo, rel=0.15)


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0, 4.0)
    v, lo, hi = bootstrap_ci([1.0, np.nan])
    assert v == 1.0 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1, 2, 3], n_boot=0)


# -- spearman ----------------------------------------------------------------------------------

def test_spearman_hand_worked():
    # d = (0, 1, 1, 0): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    rho, p = spearman([1, 2, 3, 4], [1, 3, 2, 4])
    assert rho == pytest.approx(0.8)
    assert 0 < p < 1


def test_spearman_drops_nan_pairs_and_validates():
    assert spearman([1, 2, np.nan, 3, 4], [1, 3, 0, 2, 4]) == pytest.approx(
        spearman([1, 2, 3, 4], [1, 3, 2, 4])
    )
    with pytest.raises(ValueError, match="lengths 3 and 4"):
        spearman([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least 3"):
        spearman([1, 2, np.nan], [1, 2, 3])


def test_spearman_constant_input_is_nan_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rho, p = spearman([1, 2, 3, 4], [5, 5, 5, 5])
    assert math.isnan(rho) and math.isnan(p)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=3, max_size=20, unique=True), st.integers(0, 99))
def test_spearman_invariant_to_monotone_transforms(xs, seed):
    x = np.array(xs, dtype=float)
    y = np.random.default_rng(seed).normal(size=x.size)
    rho, _ = spearman(x, y)
    rho_t, _ = spearman(x**3 + 2.0 * x, y)  # strictly increasing
    assert rho_t == pytest.approx(rho, abs=1e-12)
    assert spearman(x, -y)[0] == pytest.approx(-rho, abs=1e-12)


# -- robustness_trend (Table 1) ------------------------------------------------------------------

EPS = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]


def _trend_table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for eps in EPS:
        for unit in range(11):
            for sign, alpha, sim in [
                ("positive", 0.5, 0.9 - 0.05 * eps),       # falls with eps: rho = -1
                ("positive", 1.0, 0.2 + 0.01 * eps),       # rises with eps: rho = +1
                ("negative", 0.5, 0.7),                     # constant: rho = NaN
                ("negative", 1.0, rng.uniform()),           # noise
            ]:
                rows.append(dict(model=f"eps{eps}", unit=unit, sign=sign, alpha=alpha,
                                 eps=eps, similarity=sim))
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # row order must not matter


def test_robustness_trend_planted_trends():
    table = _trend_table()
    out = robustness_trend(table)
    assert list(out.columns) == ["sign", "alpha", "rho", "p", "n", "n_models"]
    got = {(r.sign, r.alpha): r for r in out.itertuples()}
    assert set(got) == {("positive", 0.5), ("positive", 1.0), ("negative", 0.5), ("negative", 1.0)}
    assert got["positive", 0.5].rho == pytest.approx(-1.0)
    assert got["positive", 1.0].rho == pytest.approx(1.0)
    assert got["positive", 1.0].p < 1e-20
    assert math.isnan(got["negative", 0.5].rho) and math.isnan(got["negative", 0.5].p)
    assert abs(got["negative", 1.0].rho) < 0.35
    assert (out["n"] == 66).all() and (out["n_models"] == 6).all()
    # the noise group equals scipy's answer on the same rows
    g = table[(table.sign == "negative") & (table.alpha == 1.0)]
    assert (got["negative", 1.0].rho, got["negative", 1.0].p) == pytest.approx(
        spearman(g.eps, g.similarity)
    )


def test_robustness_trend_one_minus_flips_rho_keeps_p():
    table = _trend_table()
    a = robustness_trend(table)
    b = robustness_trend(table, transform="one_minus")
    np.testing.assert_allclose(b.rho, -a.rho)
    np.testing.assert_allclose(b.p, a.p)


def test_robustness_trend_small_groups_and_custom_columns():
    table = pd.DataFrame({"kind": ["a", "a", "b", "b", "b"], "L": [0, 1, 0, 1, 2],
                          "change": [0.1, 0.2, 0.3, 0.2, 0.1]})
    out = robustness_trend(table, value="change", eps="L", by="kind")
    assert list(out.kind) == ["a", "b"]
    assert math.isnan(out.rho[0]) and out.n[0] == 2
    assert out.rho[1] == pytest.approx(-1.0) and out.n_models[1] == 3


def test_robustness_trend_validates():
    with pytest.raises(ValueError, match="similarity"):
        robustness_trend(pd.DataFrame({"eps": [0], "sign": ["p"], "alpha": [1]}))
    with pytest.raises(ValueError, match="one_minus"):
        robustness_trend(_trend_table(), transform="log")


# -- binomial_consistency (Fig. 23) ----------------------------------------------------------------

def test_binomial_consistency_finds_planted_features_only():
    rng = np.random.default_rng(11)
    signs = rng.choice([-1, 1], size=(30, 1000))
    signs[:, :5] = 1
    signs[:, 5:10] = -1
    out = binomial_consistency(signs)
    assert list(out.feature[out.consistently_positive]) == [0, 1, 2, 3, 4]
    assert list(out.feature[out.consistently_negative]) == [5, 6, 7, 8, 9]
    # 30 of 30: p = 2 / 2^30, times 1000 features
    assert out.p[0] == pytest.approx(2.0 * 0.5**30)
    assert out.p_bonferroni[0] == pytest.approx(1000 * 2.0 * 0.5**30)
    assert out.fraction_positive[0] == 1.0 and out.fraction_positive[7] == 0.0


def test_binomial_consistency_excludes_zeros():
    signs = np.zeros((30, 3), dtype=int)
    signs[:20, 0] = 1                      # 20 positive, 10 zero: n = 20
    signs[:15, 1], signs[15:, 1] = 1, -1   # balanced
    out = binomial_consistency(signs)      # column 2: all zero
    assert list(out.n) == [20, 30, 0]
    assert out.p[0] == pytest.approx(2.0 * 0.5**20)
    assert bool(out.consistently_positive[0]) and not out.consistently_negative[0]
    assert out.p[1] == 1.0 and out.p[2] == 1.0
    assert math.isnan(out.fraction_positive[2])
    assert not out.consistently_positive[1:].any() and not out.consistently_negative.any()


def test_binomial_consistency_matches_binomtest_and_paper_scale():
    rng = np.random.default_rng(3)
    signs = rng.choice([-1, 0, 1], p=[0.3, 0.1, 0.6], size=(56, 40))
    out = binomial_consistency(signs)
    for f in range(40):
        expected = binomtest(int(out.n_positive[f]), int(out.n[f]), 0.5).pvalue
        assert out.p[f] == pytest.approx(expected, rel=1e-9)
    # Fig. 23: 50 of 56 models sharing a sign; two-sided p is twice the paper's 5.09e-10
    one = binomial_consistency(np.array([[1]] * 50 + [[-1]] * 6))
    assert one.p[0] == pytest.approx(2 * 5.091046889615924e-10, rel=1e-9)


def test_binomial_consistency_sign_flip_symmetry():
    signs = np.random.default_rng(4).choice([-1, 0, 1], size=(25, 60))
    signs[:, 0] = -1
    a, b = binomial_consistency(signs), binomial_consistency(-signs)
    np.testing.assert_allclose(a.p, b.p)
    assert (a.consistently_positive == b.consistently_negative).all()
    assert (a.n_positive == b.n_negative).all()
    assert bool(a.consistently_negative[0])


def test_binomial_consistency_validates():
    with pytest.raises(ValueError, match="np.sign"):
        binomial_consistency(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="n_models, n_features"):
        binomial_consistency(np.array([1, -1]))
    with pytest.raises(ValueError, match="alpha"):
        binomial_consistency(np.ones((3, 2)), alpha=0.0)


# -- paired_difference --------------------------------------------------------------------------

def test_paired_difference():
    a = np.array([2.0, 3.0, 4.0, 5.0, 6.0, 9.0])
    b = np.array([1.0, 1.0, 1.0, 1.0, 1.0, np.nan])
    m, lo, hi = paired_difference(a, b)
    assert (m, lo, hi) == pytest.approx((3.0, 3.0 - T_975_DF4 * math.sqrt(0.5),
                                         3.0 + T_975_DF4 * math.sqrt(0.5)))
    with pytest.raises(ValueError, match="equal shapes"):
        paired_difference([1, 2], [1, 2, 3])


# -- correlation (Fig 1A) ----------------------------------------------------------------------

# The paper's Table 3: trained readout Dale index and top-1 of its 18 torchvision models.
TABLE3_DALE = [0.5461, 0.5567, 0.5590, 0.5601, 0.5905, 0.5923, 0.6004, 0.5998, 0.6007, 0.5570,
               0.5737, 0.5583, 0.5747, 0.5606, 0.5761, 0.5619, 0.5748, 0.5597]
TABLE3_TOP1 = [56.52, 74.43, 75.60, 76.90, 69.76, 73.31, 80.86, 81.89, 82.28, 69.02, 70.37,
               69.93, 71.59, 71.59, 73.36, 72.38, 74.22, 77.29]


def _pearson_from_definition(x, y) -> tuple[float, float]:
    """r in float64 from its definition; p from t = r sqrt(n-2) / sqrt(1-r^2), n-2 df."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    r = float(np.sum(dx * dy) / np.sqrt(np.sum(dx * dx) * np.sum(dy * dy)))
    t = r * math.sqrt((x.size - 2) / (1 - r * r))
    return r, float(2 * student_t.sf(abs(t), x.size - 2))


def test_correlation_of_the_papers_table3_matches_scipy_and_the_definition():
    got = correlation(TABLE3_DALE, TABLE3_TOP1)
    assert got["n"] == 18 and got["spearman_p_method"] == "t approximation"
    ref_p, ref_s = pearsonr(TABLE3_DALE, TABLE3_TOP1), spearmanr(TABLE3_DALE, TABLE3_TOP1)
    assert got["pearson_r"] == pytest.approx(ref_p.statistic, abs=1e-12)
    assert got["pearson_p"] == pytest.approx(ref_p.pvalue, rel=1e-9)
    assert got["spearman_rho"] == pytest.approx(ref_s.statistic, abs=1e-12)
    assert got["spearman_p"] == pytest.approx(ref_s.pvalue, rel=1e-9)
    r, p = _pearson_from_definition(TABLE3_DALE, TABLE3_TOP1)
    assert (got["pearson_r"], got["pearson_p"]) == (pytest.approx(r), pytest.approx(p))
    rho, _ = _pearson_from_definition(rankdata(TABLE3_DALE), rankdata(TABLE3_TOP1))
    assert got["spearman_rho"] == pytest.approx(rho)
    # The paper's claim, in numbers: r = 0.61 (p = 0.007), rho = 0.47 (p = 0.049).
    assert round(got["pearson_r"], 2) == 0.61 and round(got["spearman_rho"], 2) == 0.47


@pytest.mark.parametrize("y, rho, p", [
    ([1, 2, 3], 1.0, 2 / 6),          # only the identity and the reversal reach |rho| = 1
    ([3, 2, 1], -1.0, 2 / 6),
    ([1, 3, 2], 0.5, 1.0),            # n = 3: every pairing has |rho| >= 0.5
    ([1, 3, 2, 4], 0.8, 8 / 24),      # n = 4: rho = +-1 once each, +-0.8 three times each
    ([0, 0, 1], math.sqrt(3) / 2, 4 / 6),  # ties: ranks (1.5, 1.5, 3); 4 pairings reach |rho|
])
def test_small_n_spearman_p_is_exact_by_hand(y, rho, p):
    got = correlation(list(range(1, len(y) + 1)), y)
    assert got["spearman_p_method"] == "exact"
    assert got["spearman_rho"] == pytest.approx(rho) and got["spearman_p"] == pytest.approx(p)
    assert spearmanr(range(len(y)), y).statistic == pytest.approx(rho)


def _rank_correlation(a, b, axis=-1):
    """Spearman rho along ``axis`` (vectorised, for scipy's permutation_test)."""
    ra, rb = rankdata(a, axis=axis), rankdata(b, axis=axis)
    ra = ra - ra.mean(axis, keepdims=True)
    rb = rb - rb.mean(axis, keepdims=True)
    return (ra * rb).sum(axis) / np.sqrt((ra * ra).sum(axis) * (rb * rb).sum(axis))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(-20, 20), st.floats(-5, 5)), min_size=3, max_size=6,
                unique_by=(lambda t: t[0], lambda t: t[1])))
def test_exact_spearman_p_equals_scipys_permutation_test(pairs):
    # Without ties the null is symmetric, so scipy's 2 min(P<=, P>=) is P(|rho| >= |rho_obs|).
    x, y = np.array(pairs, dtype=float).T
    got = correlation(x, y)
    ref = permutation_test((x, y), _rank_correlation, vectorized=True,
                           permutation_type="pairings", n_resamples=np.inf)
    assert got["spearman_p"] == pytest.approx(ref.pvalue, abs=1e-9)


def test_correlation_drops_nans_and_computes_nothing_below_three():
    got = correlation([1.0, np.nan, 2.0, 3.0], [2.0, 5.0, np.nan, 1.0])
    assert got["n"] == 2 and all(math.isnan(got[k]) for k in
                                 ("pearson_r", "pearson_p", "spearman_rho", "spearman_p"))
    assert describe_correlation(got) == "n = 2 models: fewer than 3, so no correlation is computed."
    assert correlation([], [])["n"] == 0
    assert "constant" in describe_correlation(correlation([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="lengths 3 and 2"):
        correlation([1, 2, 3], [1, 2])


def test_describe_correlation_says_when_n_is_too_small_to_reach_005():
    three = describe_correlation(correlation([0.54, 0.55, 0.56], [75.1, 76.7, 77.6]))
    assert three.startswith("Pearson r = 0.99 (p = 0.1), Spearman ρ = 1.00 (exact p = 0.33)")
    assert "n = 3 models; with n = 3 no two-sided Spearman p can be below 0.33" in three
    five = describe_correlation(correlation([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]))
    assert five.endswith("n = 5 models.") and "exact p = " in five
    assert "can be below" not in describe_correlation(
        correlation([0.54, 0.55, 0.56], [75.1, 76.7, 77.6]), caveat=False)
