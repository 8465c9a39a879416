"""Neuron models: PLS recovers planted neurons, positivity costs fit, Dale-like features, and
neuron models run through the ablation and visualization engine as readout units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import nnls
from scipy.stats import pearsonr
from sklearn.cross_decomposition import PLSRegression
from sklearn.metrics import r2_score

from signseg_core.ablation import ablate_weights, ablated_readout
from signseg_core.conditions import Condition
from signseg_core.neurons.fitting import (
    best_per_session,
    dale_like_features,
    fit_pls,
    fits_table,
    lasso_path,
    pearson_r2,
    sign_ratios,
)
from signseg_core.neurons.readout import NeuronReadout, as_readout_model, predicted_responses
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import visualize

N = 600


def smooth_images(n, *, size=32, seed=0):
    """Random smooth images (N, 3, size, size) in (0, 1): sums of upsampled coarse noise grids."""
    g = torch.Generator().manual_seed(seed)
    total = 0
    for grid, weight in ((2, 1.0), (4, 0.7), (8, 0.5), (16, 0.3)):
        z = torch.randn(n, 3, grid, grid, generator=g) * weight
        total = total + torch.nn.functional.interpolate(z, size=(size, size), mode="bilinear",
                                                        align_corners=False)
    return torch.sigmoid(1.5 * total)


@pytest.fixture(scope="module")
def images():
    return smooth_images(N)


@pytest.fixture(scope="module")
def feats(tiny, images):
    """tiny_test's real penultimate features (N, 16) of the smooth images, float64."""
    with torch.inference_mode():
        return tiny.features(images).double().numpy()


def _standardize(x):
    return (x - x.mean(0)) / x.std(0)


# -- PLS -------------------------------------------------------------------------------------------

def test_pls_recovers_a_planted_neuron_to_the_r2_the_noise_allows(feats):
    # A one-component PLS predicts along X^T y; a planted direction v that is an eigenvector of
    # the feature correlation (here the top one) is exactly representable, so the test r2 it
    # reaches should be the noise ceiling var(signal) / (var(signal) + noise^2).
    xs = _standardize(feats)
    v = np.linalg.eigh(np.corrcoef(xs.T))[1][:, -1]
    assert (v > 0).any() and (v < 0).any()  # both signs planted
    signal = xs @ v
    signal /= signal.std()
    noise = 1.0
    r2, ceiling, agree = [], [], []
    for seed in range(8):
        y = signal + noise * np.random.default_rng(seed).standard_normal(N)
        fit = fit_pls(feats, y, seed=seed)[0]
        test = signal[fit.test_index]
        r2.append(fit.r2_test)
        ceiling.append(test.var() / (test.var() + noise**2))
        # the planted weight in the original feature space is v / std: same signs as v
        agree.append(np.mean(np.sign(fit.weight) == np.sign(v)))
    assert 0.4 < np.mean(ceiling) < 0.6
    assert abs(np.mean(r2) - np.mean(ceiling)) < 0.04, (np.mean(r2), np.mean(ceiling))
    assert np.mean(agree) >= 0.9 and min(agree) >= 0.8  # chance is 0.5


def test_readout_row_reproduces_pls_predict(feats):
    rng = np.random.default_rng(3)
    # Offsets and scales far from standardised stress the centring/scaling bookkeeping.
    x = feats * rng.uniform(0.1, 50, feats.shape[1]) + rng.uniform(-100, 100, feats.shape[1])
    y = np.stack([x @ rng.standard_normal(x.shape[1]) + 7.0 + rng.standard_normal(N)
                  for _ in range(3)], axis=1)
    for fit, column in zip(fit_pls(x, y, seed=5), y.T):
        pls = PLSRegression(n_components=1).fit(x[fit.train_index], column[fit.train_index])
        expected = pls.predict(x).ravel()
        np.testing.assert_allclose(x @ fit.weight + fit.bias, expected, rtol=1e-6,
                                   atol=1e-6 * np.abs(expected).max())


def test_splits_are_seeded_shared_and_skip_unshown_images(feats):
    y = np.random.default_rng(0).standard_normal((N, 3))
    y[:50, 2] = np.nan
    a, b, c = fit_pls(feats, y, seed=1, neurons=["a", "b", "c"])
    assert [f.neuron for f in (a, b, c)] == ["a", "b", "c"]
    np.testing.assert_array_equal(a.test_index, b.test_index)  # same images, same split
    assert a.test_index.size == 120 and a.train_index.size == 480
    assert np.intersect1d(a.train_index, a.test_index).size == 0
    assert c.test_index.size == 110 and min(c.train_index.min(), c.test_index.min()) >= 50
    again = fit_pls(feats, y[:, 0], seed=1)[0]
    np.testing.assert_array_equal(again.weight, a.weight)
    other = fit_pls(feats, y[:, 0], seed=2)[0]
    assert not np.array_equal(other.test_index, a.test_index)
    with pytest.raises(ValueError, match="test_fraction"):
        fit_pls(feats, y, test_fraction=1.0)
    with pytest.raises(ValueError, match="neuron '0': 4 images .* each needs at least 2"):
        fit_pls(feats[:4], y[:4, 0])


def test_sign_ratios_by_hand():
    assert sign_ratios([3.0, -1.0, 2.0, -2.0, 0.0]) == (5 / 3, 1.0)
    assert sign_ratios([1.0, 2.0, -0.5]) == (6.0, 2.0)
    assert sign_ratios([1.0]) == (float("inf"), float("inf"))


def test_table_and_best_per_session(feats):
    y = np.random.default_rng(0).standard_normal((N, 2))
    y[:, 0] += _standardize(feats)[:, 0] * 3  # neuron "a" is predictable, "b" is noise
    table = fits_table(fit_pls(feats, y, neurons=["a", "b"]))
    assert list(table["neuron"]) == ["a", "b"]
    assert table.loc[0, "r2_test"] > 0.5 and table.loc[1, "r2_test"] < 0.1
    assert table.loc[0, "n_positive"] + table.loc[0, "n_negative"] == feats.shape[1]
    hand = pd.DataFrame({"neuron": list("pqrstu"), "session": ["s2", "s1", "s1", "s2", "s3", "s1"],
                         "r2_test": [0.3, 0.1, 0.4, 0.5, np.nan, 0.4]})
    best = best_per_session(hand)
    assert best["neuron"].tolist() == ["r", "s"]  # s3 has no usable fit; the tie goes to r
    with pytest.raises(ValueError, match="session"):
        best_per_session(hand.drop(columns="session"))


# -- Lasso with and without positivity -------------------------------------------------------------

def _lasso_gain(feats, v, seed=0):
    signal = _standardize(feats) @ v
    signal /= signal.std()
    y = signal + 0.7 * np.random.default_rng(seed).standard_normal(N)
    return lasso_path(feats, y, penalties=[1e-3, 1e-2, 0.1], positive=(False, True), seed=seed)


def test_positivity_lowers_fit_when_planted_weights_have_both_signs(feats):
    xs = _standardize(feats)
    d = xs.shape[1]
    ones = np.ones((N, 1))

    def positive_fit(s):  # population-level best r2 with non-negative weights
        coef, res = nnls(np.hstack([xs, ones, -ones]), s)
        return 1 - res**2 / np.sum((s - s.mean()) ** 2)

    # Plant the +/- contrast of two features that positive weights represent worst.
    _, a, b = min((positive_fit(xs[:, a] - xs[:, b]), a, b)
                  for a in range(d) for b in range(d) if a != b)
    v = np.zeros(d)
    v[a], v[b] = 1.0, -1.0
    table = _lasso_gain(feats, v)
    free, pos = table[~table["positive"]], table[table["positive"]]
    assert (free["r2_test"].to_numpy() > pos["r2_test"].to_numpy() + 0.2).all(), table
    assert (free["r2_train"].to_numpy() > pos["r2_train"].to_numpy() + 0.2).all()
    assert (table["r2_test_gain"] > 0.2).all()
    np.testing.assert_allclose(table["gap"], table["r2_train"] - table["r2_test"], atol=1e-12)
    # Control: an all-positive plant costs the constraint (almost) nothing.
    v = np.zeros(d)
    v[a], v[b] = 1.0, 1.0
    control = _lasso_gain(feats, v)
    assert (control["r2_test_gain"].abs() < 0.02).all(), control
    assert len(control) == 6 and set(control["positive"]) == {False, True}


def test_lasso_path_validates():
    x, y = np.random.default_rng(0).standard_normal((20, 3)), np.zeros(20)
    with pytest.raises(ValueError, match="penalties"):
        lasso_path(x, y, penalties=[0.0], positive=True)
    with pytest.raises(ValueError, match="folds"):
        lasso_path(x, y, penalties=[0.1], positive=True, folds=11)
    one = lasso_path(x, x[:, 0], penalties=[0.1], positive=True)
    assert len(one) == 1 and "r2_test_gain" not in one


# -- Dale-like features ----------------------------------------------------------------------------

def test_binomial_test_finds_planted_consistent_features_only():
    rng = np.random.default_rng(0)
    n_models, d = 56, 200
    signs = rng.choice([-1.0, 1.0], size=(n_models, d))
    signs[:, :5] = 1.0
    signs[:, 5:10] = -1.0
    signs[:3, :10] *= -1  # a few models disagree (53 of 56 agree)
    weights = signs * rng.uniform(0.1, 2.0, size=(n_models, d))
    table = dale_like_features(weights)
    labels = table["label"].to_numpy()
    assert (labels[:5] == "consistent-positive").all()
    assert (labels[5:10] == "consistent-negative").all()
    assert (labels[10:] == "mixed").all()
    assert table.loc[0, "n_positive"] == 53 and table.loc[0, "n_negative"] == 3
    assert (table["mean_normalized_weight"][:5] > 0).all()


def test_dale_like_features_of_fitted_models_on_planted_neurons():
    # End to end: iid features, 30 neurons sharing the signs of features 0-3 (+) and 4-7 (-),
    # random signs elsewhere; PLS weights carry the shared signs into the binomial test.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 40))
    w = rng.standard_normal((30, 40))
    w[:, :4] = rng.uniform(1.0, 2.0, (30, 4))
    w[:, 4:8] = -rng.uniform(1.0, 2.0, (30, 4))
    y = x @ w.T + rng.standard_normal((300, 30))
    weights = np.stack([f.weight for f in fit_pls(x, y)])
    table = dale_like_features(weights)
    assert table.index[table["label"] == "consistent-positive"].tolist() == [0, 1, 2, 3]
    assert table.index[table["label"] == "consistent-negative"].tolist() == [4, 5, 6, 7]


# -- neuron models as readout units ----------------------------------------------------------------

@pytest.fixture(scope="module")
def neuron_model(tiny, feats):
    y = np.random.default_rng(0).standard_normal((N, 3)) + _standardize(feats)[:, :3] * 2
    fits = fit_pls(feats, y, neurons=["n0", "n1", "n2"])
    return as_readout_model(tiny, [f.readout for f in fits]), fits


def test_readout_model_predicts_like_the_fits_and_leaves_the_base_alone(tiny, images, feats,
                                                                       neuron_model):
    base_weight = tiny.readout.weight.clone()
    base_fp = tiny.fingerprint
    model, fits = neuron_model
    assert model.class_names == ("n0", "n1", "n2") and model.n_classes == 3
    got = predicted_responses(model, images[:100], batch_size=32).numpy()
    expected = np.stack([feats[:100] @ f.weight + f.bias for f in fits], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(tiny.readout.weight, base_weight) and tiny.n_classes == 1000
    assert tiny.fingerprint == base_fp == tiny.info()["fingerprint"]
    assert model.fingerprint != base_fp
    shared = {p.data_ptr() for p in tiny.trunk.parameters()}
    assert {p.data_ptr() for p in model.trunk.parameters()} == shared
    rng_state = torch.random.get_rng_state()
    same = as_readout_model(tiny, [f.readout for f in fits])
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # no global draw
    assert same.fingerprint == model.fingerprint
    nudged = fits[0].weight.copy()
    nudged[0] += 1e-3
    changed = as_readout_model(tiny, [NeuronReadout(nudged, fits[0].bias, "n0"),
                                      *[f.readout for f in fits[1:]]])
    assert changed.fingerprint != model.fingerprint


def test_readout_validation(tiny):
    with pytest.raises(ValueError, match="features"):
        as_readout_model(tiny, [NeuronReadout(np.ones(5), 0.0, "x")])
    with pytest.raises(ValueError, match="finite"):
        NeuronReadout(np.array([1.0, np.nan]), 0.0, "x")
    with pytest.raises(ValueError, match="at least one"):
        as_readout_model(tiny, [])


def test_neuron_units_run_through_ablation_and_visualize(neuron_model):
    model, fits = neuron_model
    conds = [Condition(1, "positive", 1.0), Condition(2, "negative", 0.5)]
    rows, biases = ablated_readout(model.readout.weight, model.readout.bias, conds)
    w1 = torch.tensor(fits[1].weight, dtype=torch.float32)
    assert torch.equal(rows[0], ablate_weights(w1, "positive", 1.0))
    assert (rows[0] <= 0).all() and float(biases[0]) == pytest.approx(fits[1].bias, rel=1e-6)
    settings = VisualizeSettings(generator="pixel", generations=2, restarts=1,
                                 generator_options=(("size", 32),))
    results = visualize(model, [Condition(0, "positive", 0.0), *conds], settings=settings,
                        store=False)
    assert [r.key.unit for r in results] == [0, 1, 2]
    assert all(r.key.model_fingerprint == model.fingerprint for r in results)
    for r in results:
        assert r.images.shape == (1, 32, 32, 3) and np.isfinite(r.best_scores).all()
    # the intact score is the neuron model's predicted response to the evolved image
    img = torch.from_numpy(results[0].images).permute(0, 3, 1, 2).float() / 255
    pred = predicted_responses(model, img)[0, 0]
    assert float(pred) == pytest.approx(float(results[0].intact_scores[0]), abs=0.05)


def _sklearn_readout(x, y):
    """Reference: sklearn's own PLS on the given columns, as (weight, bias) in raw units."""
    pls = PLSRegression(n_components=1).fit(x, y)
    return pls.coef_.ravel(), float(pls.predict(np.zeros((1, x.shape[1]))).ravel()[0])


def test_by_default_every_varying_feature_is_kept_as_the_paper_fits():
    """A ReLU feature active by 1e-6 on one training image: the paper's fit (the default) keeps
    it, and PLS's 1/SD scaling gives it a huge weight; min_sd_ratio > 0 leaves it out."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = x @ np.array([1.0, -1.0, 0.5, 0.0, 0.0, 0.0]) + 0.1 * rng.normal(size=200)
    silent = np.zeros((200, 1))
    plain = fit_pls(x, y, seed=1)[0]
    silent[plain.train_index[0], 0] = 1e-6  # active on one training image only
    xs = np.hstack([x, silent])
    paper = fit_pls(xs, y, seed=1)[0]
    tr = paper.train_index
    w, b = _sklearn_readout(xs[tr], y[tr])  # independent reference: sklearn on all 7 columns
    np.testing.assert_allclose(paper.weight, w, rtol=1e-6)
    assert paper.bias == pytest.approx(b, rel=1e-6)
    # SD of one 1e-6 among 160 values ~ 1e-6 / sqrt(160) ~ 8e-8, so its weight is of order 1/SD
    assert abs(paper.weight[-1]) > 1e3
    filtered = fit_pls(xs, y, seed=1, min_sd_ratio=1e-3)[0]
    assert filtered.weight[-1] == 0.0
    np.testing.assert_allclose(filtered.weight[:-1], plain.weight, rtol=1e-9)
    assert filtered.r2_test == pytest.approx(plain.r2_test)


def test_exactly_constant_features_get_weight_zero_whatever_their_float_sd():
    # np.full(n, 0.1).std() is 1.4e-17, not 0: an SD test would let PLS divide by it
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=200)
    plain = fit_pls(x, y, seed=3)[0]
    for value in (0.1, 0.0, -7.3):
        padded = fit_pls(np.hstack([x, np.full((200, 1), value)]), y, seed=3)[0]
        assert padded.weight[-1] == 0.0
        np.testing.assert_allclose(padded.weight[:-1], plain.weight, rtol=1e-12)
        assert padded.bias == pytest.approx(plain.bias, rel=1e-12)
    flat = fit_pls(np.zeros((50, 2)), rng.normal(size=50), seed=0)[0]
    assert not flat.weight.any() and np.isfinite(flat.bias)
    assert np.isnan(flat.r2_test_pearson)  # a constant prediction has no correlation
    for bad in (-0.1, 1.0, float("nan"), True, "0"):
        with pytest.raises(ValueError, match="min_sd_ratio must be a number in"):
            fit_pls(x, y, min_sd_ratio=bad)


# -- which r² --------------------------------------------------------------------------------------

def test_pearson_r2_by_hand_and_against_scipy():
    # y = 1, 2, 3, 4; p = 2, 1, 4, 3: dy = (-1.5, -.5, .5, 1.5), dp = (-.5, -1.5, 1.5, .5);
    # sum dy*dp = .75 + .75 + .75 + .75 = 3; sum dy² = sum dp² = 5; r² = 9 / 25 = 0.36
    assert pearson_r2([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.36)
    # an affine map of y correlates perfectly, while its coefficient of determination is < 0
    assert pearson_r2([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert np.isnan(pearson_r2([1, 1, 1], [1, 2, 3])) and np.isnan(pearson_r2([1, 2], [3, 3]))
    rng = np.random.default_rng(4)
    for _ in range(20):
        y, p = rng.normal(size=(2, 30))
        assert pearson_r2(y, p + 0.5 * y) == pytest.approx(pearsonr(y, p + 0.5 * y)[0] ** 2,
                                                           rel=1e-12)


def test_fits_report_both_r2_on_both_splits(feats):
    rng = np.random.default_rng(5)
    y = feats @ rng.normal(size=feats.shape[1]) + 3 * rng.normal(size=N)
    y = np.stack([y, 5 + 0.5 * y + rng.normal(size=N)], axis=1)
    fits = fit_pls(feats, y, seed=2)
    table = fits_table(fits)
    for fit, column, (_, row) in zip(fits, y.T, table.iterrows()):
        for split, idx in (("train", fit.train_index), ("test", fit.test_index)):
            pred = feats[idx] @ fit.weight + fit.bias
            want_cod = r2_score(column[idx], pred)
            want_pearson = pearsonr(column[idx], pred)[0] ** 2
            assert getattr(fit, f"r2_{split}") == pytest.approx(want_cod, rel=1e-9)
            assert getattr(fit, f"r2_{split}_pearson") == pytest.approx(want_pearson, rel=1e-9)
            assert row[f"r2_{split}"] == getattr(fit, f"r2_{split}")
            assert row[f"r2_{split}_pearson"] == getattr(fit, f"r2_{split}_pearson")
        # one PLS component is a least-squares line on its score: on the training images the two
        # r² agree; on held-out ones the best line through the prediction can only do better
        assert fit.r2_train_pearson == pytest.approx(fit.r2_train, rel=1e-9)
        assert fit.r2_test_pearson >= fit.r2_test - 1e-12


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(-5, 5), st.floats(0.1, 10))
def test_pearson_r2_is_blind_to_offset_and_scale_unlike_determination(seed, offset, scale):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=25)
    p = y + rng.normal(size=25)
    assert pearson_r2(y, offset + scale * p) == pytest.approx(pearson_r2(y, p), rel=1e-9)
    assert 0.0 <= pearson_r2(y, p) <= 1.0
    assert pearson_r2(y, p) >= r2_score(y, offset + scale * p) - 1e-12
