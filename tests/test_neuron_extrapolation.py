"""Fig. 21 (left)'s permutation t-test: preferred images against natural images, checked by hand
and against scipy.stats (ttest_ind, permutation_test)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from signseg_core.neurons.extrapolation import permutation_t_test, t_statistic


def scipy_permutation(a, b, *, alternative="greater", equal_var=True, n_resamples=10_000,
                      rng=0):
    def t(x, y, axis):
        return stats.ttest_ind(x, y, axis=axis, equal_var=equal_var).statistic

    return stats.permutation_test((a, b), t, permutation_type="independent", vectorized=True,
                                  n_resamples=n_resamples, alternative=alternative, rng=rng)


def test_a_single_image_above_every_natural_one_by_hand():
    # a = [3], b = [1, 2, 0, 1.5]: mean_b = 1.125; SS_b = .015625 + .765625 + 1.265625 + .140625
    # = 2.1875; pooled s² = 2.1875 / 3 = .729167; se = sqrt(.729167 * (1 + 1/4)) = .954703;
    # t = (3 - 1.125) / .954703 = 1.96396. The 5 relabellings put each value in a once; 3 gives
    # the largest t, so the exact one-sided p is 1/5.
    res = permutation_t_test([3.0], [1.0, 2.0, 0.0, 1.5])
    assert res.t == pytest.approx(1.96396, abs=1e-5)
    assert res.exact and res.n_permutations == 5 and res.p == pytest.approx(0.2)
    # SD(b) (ddof 1) = sqrt(2.1875 / 3) = .853913; effect = 1.875 / .853913 = 2.19578
    assert res.effect_sd == pytest.approx(2.19578, abs=1e-5)
    assert permutation_t_test([3.0], [1.0, 2.0, 0.0, 1.5], alternative="less").p == 1.0
    # two-sided: 2 * min(1/5, 5/5) = 0.4
    assert permutation_t_test([3.0], [1.0, 2.0, 0.0, 1.5], alternative="two-sided").p == 0.4


def test_two_preferred_images_above_three_natural_ones_by_hand():
    # C(5, 2) = 10 relabellings; only the observed one puts both large values in a: p = 1/10
    res = permutation_t_test([10.0, 11.0], [0.0, 1.0, 2.0])
    assert res.exact and res.n_permutations == 10 and res.p == pytest.approx(0.1)
    assert (res.mean_a, res.mean_b) == (10.5, 1.0)


@pytest.mark.parametrize("equal_var", [True, False])
def test_t_statistic_is_scipys_ttest_ind(equal_var):
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 2, size=(40, 5)), rng.normal(0, 1, size=(40, 17))
    want = stats.ttest_ind(a, b, axis=1, equal_var=equal_var).statistic
    np.testing.assert_allclose(t_statistic(a, b, equal_var=equal_var), want, rtol=1e-12)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("equal_var", [True, False])
def test_exact_p_equals_scipys_permutation_test(alternative, equal_var):
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.8, 1, 4), rng.normal(0, 1, 11)  # C(15, 4) = 1365 relabellings
    res = permutation_t_test(a, b, alternative=alternative, equal_var=equal_var)
    ref = scipy_permutation(a, b, alternative=alternative, equal_var=equal_var)
    assert res.exact and res.n_permutations == 1365
    assert res.t == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p == pytest.approx(ref.pvalue, rel=1e-12)


def test_random_permutations_agree_with_scipy_within_monte_carlo_error():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.6, 1, 5), rng.normal(0, 1, 60)  # C(65, 5) = 8.3e6: not exact
    res = permutation_t_test(a, b, n_permutations=20_000, seed=7)
    ref = scipy_permutation(a, b, n_resamples=20_000, rng=11)
    assert not res.exact and res.n_permutations == 20_000
    se = np.sqrt(ref.pvalue * (1 - ref.pvalue) / 20_000)
    assert abs(res.p - ref.pvalue) < 5 * se + 1e-4, (res.p, ref.pvalue)
    assert permutation_t_test(a, b, n_permutations=2000, seed=7) == permutation_t_test(
        a, b, n_permutations=2000, seed=7)  # seeded


def test_a_planted_effect_gives_a_small_p_like_the_papers_claim():
    # 5 preferred images driving a neuron 2 SD above 160 natural ones (the paper's sizes)
    rng = np.random.default_rng(4)
    natural = rng.normal(20, 5, 160)
    preferred = rng.normal(30, 5, 5)
    res = permutation_t_test(preferred, natural)
    assert res.p < 0.001 and res.effect_sd > 1
    # the smallest p 10 000 random permutations can give is 1 / 10 001
    assert res.p >= 1 / 10_001


def test_under_the_null_p_is_roughly_uniform():
    rng = np.random.default_rng(5)
    ps = np.array([permutation_t_test(rng.normal(size=5), rng.normal(size=30),
                                      n_permutations=200, seed=i).p for i in range(400)])
    # P(p <= 0.05) = 0.05: binomial SD over 400 datasets is 0.011, so [0.012, 0.088] is ±3.5 SD
    assert 0.012 <= np.mean(ps <= 0.05) <= 0.088
    assert 0.44 <= ps.mean() <= 0.56  # a uniform has mean 0.5 (SD of the mean 0.014)
    assert stats.kstest(ps, "uniform").pvalue > 0.001


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(2, 9))
def test_p_is_a_probability_and_exact_tests_ignore_the_seed(seed, n_a, n_b):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n_a), rng.normal(size=n_b)
    res = permutation_t_test(a, b, seed=seed)
    assert res.exact and 0 < res.p <= 1  # C(13, 4) = 715 <= 10 000
    assert res == permutation_t_test(a, b, seed=seed + 1)
    greater, less = res.p, permutation_t_test(a, b, alternative="less").p
    assert greater + less >= 1  # the observed relabelling counts on both sides


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="at least 2 response"):
        permutation_t_test([1.0], [1.0, 2.0], equal_var=False)
    with pytest.raises(ValueError, match="3 in all"):
        permutation_t_test([1.0], [2.0])
    with pytest.raises(ValueError, match="unknown alternative 'more'"):
        permutation_t_test([1.0, 2.0], [1.0, 2.0], alternative="more")
    with pytest.raises(ValueError, match="finite"):
        permutation_t_test([np.nan, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="n_permutations must be an int >= 1"):
        permutation_t_test([1.0, 2.0], [1.0, 2.0], n_permutations=0)
    same = permutation_t_test([1.0, 1.0], [1.0, 1.0, 1.0])
    assert np.isnan(same.t) and same.p == 1.0
