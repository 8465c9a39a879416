"""The neuron workflow: demo data with planted neurons, fit_study, readout models, ablation through
the engine (and its store), Dale-like features, lasso, localization, and the figures."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from signseg_core.ablation import ablate_weights
from signseg_core.figures.neuron_plots import (
    dale_features_figure,
    fit_quality_figure,
    lasso_figure,
    neuron_ablation_figure,
    prediction_scatter_figure,
    sign_ratio_figure,
    weight_distribution_figure,
)
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import load_image
from signseg_core.neurons.data import load_neuron_data
from signseg_core.neurons.demo import BASELINE, write_demo_dataset
from signseg_core.neurons.fitting import (
    best_per_session,
    dale_like_features,
    fit_pls,
    fits_table,
)
from signseg_core.neurons.localize import background_clearing_effect, perturbation_mask
from signseg_core.neurons.readout import predicted_responses
from signseg_core.neurons.study import (
    NeuronStudy,
    ablate_neuron,
    dale_features_table,
    fit_study,
    lasso_table,
    localize_and_clear,
    neuron_readout_model,
    neuron_request,
    response_table,
)
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.store import ResultStore

FAST = VisualizeSettings(generations=2, restarts=2, generator_options=(("size", 32),))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """6 neurons in 3 sessions on tiny_test features of 40 images (features not stored)."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), n_images=40, n_neurons=6,
                              n_sessions=3, image_size=48, model_name="tiny_test", store=False)


@pytest.fixture(scope="module")
def study(tiny, demo):
    return fit_study(tiny, load_neuron_data(demo), store=False)


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """The demo at its default size with 24 neurons on EfficientNet-Lite0 (about 6 s)."""
    store = ResultStore(tmp_path_factory.mktemp("lite_store"))
    csv = write_demo_dataset(tmp_path_factory.mktemp("lite"), n_neurons=24, n_sessions=6,
                             store=store)
    model = load_model("efficientnet_lite0")
    study = fit_study(model, load_neuron_data(csv), store=store)  # features from the store
    return study, np.load(csv.parent / "planted_weights.npz")


# -- demo data ------------------------------------------------------------------------------------

def test_demo_round_trips_through_the_loader(demo, study):
    ds = study.dataset
    assert ds.n_images == 40 and ds.neurons == ("n00", "n01", "n02", "n03", "n04", "n05")
    assert ds.sessions == ("s1", "s2", "s3") * 2 and ds.areas == ("V1", "V4", "IT") * 2
    assert ds.monkeys == ("C", "D", "C") * 2
    assert ds.images[0] == demo.parent / "images" / "img_000.png" and not np.isnan(
        ds.responses).any()
    # firing-rate-like: each neuron's smallest response is the baseline (CSV keeps 6 decimals)
    np.testing.assert_allclose(ds.responses.min(axis=0), BASELINE, atol=1e-6)
    planted = np.load(demo.parent / "planted_weights.npz")
    assert planted["weights"].shape == (6, 16) and str(planted["model"]) == "tiny_test"
    assert (planted["support"].sum(axis=1) == 10).all()  # 2 + 2 shared + 6 of its own
    # the shared features carry one sign in every neuron
    assert (planted["weights"][:, planted["consistent_positive"]] > 0).all()
    assert (planted["weights"][:, planted["consistent_negative"]] < 0).all()
    # residuals of the planted model are the noise: SD = gain * noise (0.5) within sampling
    resid = ds.responses - (study.features.astype(float) @ planted["weights"].T + planted["bias"])
    assert 0.7 < resid.std(axis=0).mean() / (8.0 * 0.5) < 1.3


def test_noise_free_demo_is_exactly_the_planted_linear_model(tiny, tmp_path):
    csv = write_demo_dataset(tmp_path, n_images=12, n_neurons=2, n_sessions=1, noise=0.0,
                             image_size=32, model_name="tiny_test", store=False, seed=3)
    ds, planted = load_neuron_data(csv), np.load(tmp_path / "planted_weights.npz")
    feats = fit_study(tiny, ds, test_fraction=0.25, store=False).features.astype(float)
    np.testing.assert_allclose(feats @ planted["weights"].T + planted["bias"], ds.responses,
                               atol=1e-4)
    # the signal is scaled to SD 1 and the gain makes it 8 spikes/s
    np.testing.assert_allclose(ds.responses.std(axis=0), 8.0, rtol=1e-5)


def test_demo_is_seeded_and_validates(tmp_path):
    kw = dict(n_images=10, n_neurons=2, n_sessions=1, image_size=16, model_name="tiny_test",
              store=False)
    a = write_demo_dataset(tmp_path / "a", **kw).read_bytes()
    assert write_demo_dataset(tmp_path / "b", **kw).read_bytes() == a
    assert write_demo_dataset(tmp_path / "c", seed=1, **kw).read_bytes() != a
    with pytest.raises(ValueError, match="n_sessions=3 exceeds n_neurons=2"):
        write_demo_dataset(tmp_path, **{**kw, "n_sessions": 3})
    for bad in ({"noise": -1.0}, {"n_images": 9}, {"seed": -1}):
        with pytest.raises(ValueError):
            write_demo_dataset(tmp_path, **{**kw, **bad})


# -- fitting --------------------------------------------------------------------------------------

def test_fit_study_is_the_blocks_composed(study):
    ds = study.dataset
    fits = fit_pls(study.features, ds.responses, neurons=ds.neurons)
    pd.testing.assert_frame_equal(study.table, fits_table(fits, dataset=ds))
    pd.testing.assert_frame_equal(study.best, best_per_session(study.table))
    assert study.best_neurons == tuple(study.best["neuron"]) and len(study.best) == 3
    assert not study.features.flags.writeable and study.n_features == 16
    copy = pickle.loads(pickle.dumps(study))  # as st.cache_data hands it out
    assert not copy.features.flags.writeable and copy.summary() == study.summary()
    assert study.weights(["n02", "n00"]).tolist() == [list(fits[2].weight), list(fits[0].weight)]
    summary = study.summary()
    assert summary["n_sessions"] == 3 and summary["n_neurons"] == 6
    assert summary["best_r2_test_mean"] == pytest.approx(study.best["r2_test"].mean())
    with pytest.raises(ValueError, match=r"unknown neuron 'zz'; choose from \['n00'"):
        study.fit("zz")
    with pytest.raises(ValueError, match="one per neuron in the dataset's order"):
        NeuronStudy(ds, "m", "f", study.features, study.fits[::-1], study.table,
                    study.best)


def test_min_sd_ratio_is_part_of_the_study_and_of_every_key_built_from_its_fits(tiny, study,
                                                                               store):
    assert study.min_sd_ratio == 0.0 and study.summary()["min_sd_ratio"] == 0.0
    filtered = fit_study(tiny, study.dataset, min_sd_ratio=0.3, store=store)
    again = fit_study(tiny, study.dataset, store=store)  # features from the store: same fits
    assert filtered.min_sd_ratio == 0.3
    np.testing.assert_array_equal(again.weights(), study.weights())
    assert not np.array_equal(filtered.weights(), study.weights())
    # some of tiny_test's features vary far less than 0.3 x the median SD: they are left out
    assert (filtered.weights() == 0).sum() > (study.weights() == 0).sum()
    # the stored preferred images are keyed by the readout's fingerprint: never shared
    keys = [set(neuron_request(tiny, s, "n01", FAST).keys) for s in (study, filtered, again)]
    assert not keys[0] & keys[1] and keys[0] == keys[2]
    summary = study.summary()
    best = study.best
    assert summary["best_r2_test_pearson_mean"] == pytest.approx(best["r2_test_pearson"].mean())
    assert summary["best_r2_test_pearson_sd"] == pytest.approx(best["r2_test_pearson"].std())
    with pytest.raises(ValueError, match="min_sd_ratio must be a number in"):
        fit_study(tiny, study.dataset, min_sd_ratio=1.0, store=False)


def test_fit_recovers_planted_signs_to_the_r2_the_noise_allows(lite):
    study, planted = lite
    ds = study.dataset
    agree, r2_truth = [], []
    for j, fit in enumerate(study.fits):
        support = planted["support"][j]
        agree.append(np.mean(np.sign(fit.weight[support]) == np.sign(planted["weights"][j,
                                                                                         support])))
        te = fit.test_index  # r² of the true model on the same held-out images: the ceiling
        truth = study.features[te].astype(float) @ planted["weights"][j] + planted["bias"][j]
        y = ds.responses[te, j]
        r2_truth.append(1 - np.sum((y - truth) ** 2) / np.sum((y - y.mean()) ** 2))
    assert np.mean(agree) > 0.7 and min(agree) >= 0.5, agree  # chance: 0.5 (here: 0.80)
    assert abs(np.mean(r2_truth) - float(planted["r2_ceiling"])) < 0.08  # 1 / (1 + 0.5²)
    r2 = study.table["r2_test"].to_numpy()
    assert (r2 <= np.array(r2_truth) + 0.02).all()  # never beats the noise
    assert np.mean(r2) > 0.3 and study.summary()["best_r2_test_mean"] > 0.5


def test_readout_model_predicts_what_the_fits_predict(tiny, study):
    model = neuron_readout_model(tiny, study)
    assert model.class_names == study.neurons and model.name == "tiny_test+6 neurons"
    images = torch.stack([load_image(p) for p in study.dataset.images])
    got = predicted_responses(model, images).double().numpy()
    want = study.features.astype(float) @ study.weights().T + np.array([f.bias
                                                                      for f in study.fits])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    table = response_table(study, "n01")
    np.testing.assert_allclose(table["predicted"], want[:, 1])
    assert sorted(table["split"].value_counts().to_dict().items()) == [("test", 8),
                                                                      ("train", 32)]
    assert neuron_readout_model(tiny, study, ["n01"]).name == "tiny_test+neuron:n01"
    other = load_model("tiny_test", seed=1)
    with pytest.raises(ValueError, match="fitted on the features of tiny_test"):
        neuron_readout_model(other, study)


# -- ablation -------------------------------------------------------------------------------------

def test_ablate_neuron_control_is_the_intact_model_and_comes_back_from_the_store(tiny, study,
                                                                                 store):
    first = ablate_neuron(tiny, study, "n01", settings=FAST, alphas=(0, 0.5, 1), store=store)
    table = first.table
    assert list(table["condition"]) == ["control", "pos 0.5", "pos 1", "neg 0.5", "neg 1"]
    assert not table["from_store"].any() and (table["restarts"] == 2).all()
    control = table.iloc[0]
    assert control["ablated_response"] == pytest.approx(control["predicted_response"], rel=1e-4)
    # the intact neuron model on each best image (as saved, uint8) gives the predicted response
    fit = study.fit("n01")
    best = torch.stack([torch.from_numpy(first.result(s, a).best_image).permute(2, 0, 1)
                        for s, a in zip(table["sign"], table["alpha"])]).float() / 255
    feats = tiny.features(best).double().numpy()
    np.testing.assert_allclose(feats @ fit.weight + fit.bias, table["predicted_response"],
                               rtol=0.02, atol=0.05)
    # the ablated model is the neuron's row with the sign's weights removed (paper's rule)
    row = ablate_weights(torch.tensor(fit.weight), "positive", 1.0).numpy()
    assert table.iloc[2]["ablated_response"] == pytest.approx(feats[2] @ row + fit.bias,
                                                              rel=0.02, abs=0.05)
    assert first.natural_max_predicted == pytest.approx(
        response_table(study, "n01")["predicted"].max())
    again = ablate_neuron(tiny, study, "n01", settings=FAST, alphas=(0, 0.5, 1), store=store)
    assert again.table["from_store"].all()
    pd.testing.assert_frame_equal(again.table.drop(columns="from_store"),
                                  table.drop(columns="from_store"))
    other = ablate_neuron(tiny, study, "n02", settings=FAST, alphas=(0,), store=store)
    assert not other.table["from_store"].any()  # another neuron: another readout fingerprint
    with pytest.raises(ValueError, match="no condition"):
        first.result("positive", 0.3)


# -- Dale's-law analyses --------------------------------------------------------------------------

def test_dale_features_table_finds_the_planted_features(lite, study):
    lite_study, planted = lite
    table = dale_features_table(lite_study)
    labels = table["label"]
    found = (list(labels[planted["consistent_positive"]] == "consistent-positive")
             + list(labels[planted["consistent_negative"]] == "consistent-negative"))
    assert sum(found) >= 3, found
    assert not (labels[planted["consistent_positive"]] == "consistent-negative").any()
    assert not (labels[planted["consistent_negative"]] == "consistent-positive").any()
    # on the tiny study: exactly the engine's table of the chosen weights, plus agreement
    chosen = list(study.best_neurons)
    small = dale_features_table(study, neurons=chosen, alpha=0.1)
    want = dale_like_features(study.weights(chosen), alpha=0.1)
    pd.testing.assert_frame_equal(small.drop(columns="agreement"), want)
    agreement = np.maximum(want.n_positive, want.n_negative) / want.n
    np.testing.assert_allclose(small["agreement"], agreement)


def test_lasso_table_default_penalties_follow_the_response_scale(study):
    table = lasso_table(study, "n01", folds=4)
    sd = np.nanstd(study.dataset.responses[:, 1])
    np.testing.assert_allclose(sorted(set(table["penalty"])), sd * np.logspace(-2.5, -0.5, 5))
    assert sorted(set(table["positive"])) == [False, True] and len(table) == 10
    assert "r2_test_gain" in table.columns
    fixed = lasso_table(study, "n01", penalties=[0.5, 1.0], folds=4)
    assert list(fixed["penalty"]) == [0.5, 1.0, 0.5, 1.0]


def test_localize_and_clear_is_mask_then_clearing(tiny, study):
    image = load_image(study.dataset.images[0])
    score = lambda x: tiny(x)[:, 3]  # noqa: E731
    loc, clearing = localize_and_clear(score, image, diameter=12, sigma=6.0, n_disks=10, seed=2)
    want = perturbation_mask(score, image, diameter=12, sigma=6.0, n_disks=10, seed=2)
    np.testing.assert_array_equal(loc.mask, want.mask)
    direct = background_clearing_effect(score, image, want.mask.copy(), fill="gray")
    assert clearing.relative_change == pytest.approx(direct.relative_change)
    assert clearing.fill == (0.5, 0.5, 0.5)


# -- figures --------------------------------------------------------------------------------------

def test_figures_have_their_documented_traces(study):
    fig = fit_quality_figure(study.table, best=study.best)
    assert [t.name for t in fig.data] == ["session s1", "session s2", "session s3",
                                          "best per session"]
    order = list(fig.layout.xaxis.categoryarray)
    assert order == list(study.table.sort_values("r2_test", ascending=False)["neuron"])
    assert list(fig.data[-1].x) == list(study.best["neuron"])

    ratios = pd.DataFrame({"positive_negative_ratio": [0.5, 1.5, np.inf, 1.0]})
    fig = sign_ratio_figure(ratios)
    assert [t.name for t in fig.data] == ["neuron models", "mean 1.00", "equal (1)"]
    assert len(fig.data[0].x) == 3  # inf left out

    fig = weight_distribution_figure(study.weights(), names=study.neurons)
    assert len(fig.data) == 6 and np.std(fig.data[0].x) == pytest.approx(1.0)

    fig = lasso_figure(lasso_table(study, "n01", penalties=[0.5, 1.0], folds=4))
    assert [t.name for t in fig.data] == ["train: unconstrained", "test: unconstrained",
                                          "train: positive only", "test: positive only",
                                          "test r² gain"]

    table = pd.DataFrame({"feature": [0, 1, 2], "n_positive": [6, 0, 3],
                          "n_negative": [0, 6, 3], "n": [6, 6, 6], "p_bonferroni": [0.1, 0.1, 1],
                          "label": ["consistent-positive", "consistent-negative", "mixed"]})
    fig = dale_features_figure(table)
    assert [t.name for t in fig.data] == ["consistent-positive", "consistent-negative", "mixed",
                                          "n+ = n−"]
    assert list(fig.data[0].y) == [6] and list(fig.data[1].x) == [6]

    fig = prediction_scatter_figure(response_table(study, "n00"))
    assert [t.name for t in fig.data] == ["train", "test", "identity"]
    assert len(fig.data[0].x) + len(fig.data[1].x) == 40


def test_neuron_ablation_figure_starts_both_signs_at_the_control():
    table = pd.DataFrame({"sign": ["control", "positive", "negative"], "alpha": [0.0, 1.0, 1.0],
                          "ablated_response": [10.0, 4.0, 12.0],
                          "predicted_response": [10.0, 6.0, 9.0]})
    fig = neuron_ablation_figure(table, natural_max=8.0)
    assert [t.name for t in fig.data] == ["positive: ablated model", "positive: intact model",
                                          "negative: ablated model", "negative: intact model",
                                          "max over natural images"]
    assert list(fig.data[0].y) == [10.0, 4.0] and list(fig.data[3].y) == [10.0, 9.0]
    assert list(fig.data[4].y) == [8.0, 8.0]
