"""Fig. 7 (right): the population's z-scored response per ablation condition, by hand, against
scipy/numpy references, over models, from a conditions file, and in silico on neuron models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from signseg_core.figures.neuron_plots import population_response_figure
from signseg_core.neurons.data import load_neuron_data
from signseg_core.neurons.demo import write_demo_dataset
from signseg_core.neurons.population import (
    model_population_table,
    population_over_models,
    population_response,
    read_conditions,
    zscore_responses,
)
from signseg_core.neurons.study import ablate_neuron, fit_study, neuron_readout_model
from signseg_core.optimize.settings import VisualizeSettings

# Two neurons, five images. A = 0, 0, 1, 2, 2: mean 1, deviations -1, -1, 0, 1, 1, SS 4, SD
# (ddof 1) sqrt(4 / 4) = 1, so z_A = A - 1. B = 2, 0, 1, 2, 0: mean 1, SS 4, SD 1, z_B = B - 1.
HAND = np.array([[0, 2], [0, 0], [1, 1], [2, 2], [2, 0]], dtype=float)
SIGNS = ["control", "positive", "positive", "negative", "negative"]
ALPHAS = [0.0, 0.0, 0.5, 1.0, 1.0]  # images 0 and 1 are controls (alpha 0, whatever the sign)


def test_population_response_by_hand():
    # per image, the mean over neurons of z: (-1 + 1)/2 = 0, (-1 - 1)/2 = -1, (0 + 0)/2 = 0,
    # (1 + 1)/2 = 1, (1 - 1)/2 = 0. Control: mean(0, -1) = -0.5; pos 0.5: 0; neg 1: mean(1, 0)
    # = 0.5; differences from the control: 0, 0.5, 1.
    table = population_response(HAND, SIGNS, ALPHAS)
    assert list(table["condition"]) == ["control", "pos 0.5", "neg 1"]
    assert list(table["sign"]) == ["control", "positive", "negative"]
    np.testing.assert_allclose(table["population_z"], [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(table["difference_from_control"], [0.0, 0.5, 1.0])
    assert list(table["n_images"]) == [2, 1, 2] and set(table["n_neurons"]) == {2}
    # control's CI over its 2 images: SD(0, -1) = .7071, se = .5, t(.975, 1 df) = 12.706
    low, high = stats.t.interval(0.95, 1, loc=-0.5, scale=0.5)
    assert table.loc[0, "ci_low"] == pytest.approx(low) and table.loc[0, "ci_high"] == (
        pytest.approx(high))
    assert np.isnan(table.loc[1, "ci_low"])  # one image: no interval


def test_zscores_are_scipys_and_the_reference_sets_mean_and_sd():
    rng = np.random.default_rng(0)
    r = rng.normal(10, 3, size=(30, 7))
    np.testing.assert_allclose(zscore_responses(r), stats.zscore(r, axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(zscore_responses(r, ddof=0), stats.zscore(r, axis=0), rtol=1e-12)
    natural = rng.normal(5, 2, size=(160, 7))
    want = (r - natural.mean(0)) / natural.std(0, ddof=1)
    np.testing.assert_allclose(zscore_responses(r, reference=natural), want, rtol=1e-12)
    # a constant neuron cannot be z-scored: NaN, and it leaves the population average
    r[:, 3] = 4.0
    z = zscore_responses(r)
    assert np.isnan(z[:, 3]).all() and np.isfinite(np.delete(z, 3, axis=1)).all()
    table = population_response(r, ["control"] * 30, [0.0] * 30)
    assert table.loc[0, "n_neurons"] == 6


def test_population_response_equals_a_pandas_reference_with_unshown_images():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(40, 6))
    r[rng.random(r.shape) < 0.15] = np.nan  # some neurons were not shown some images
    signs = rng.choice(["positive", "negative"], size=40)
    alphas = rng.choice([0.0, 0.5, 1.0], size=40)
    reference = rng.normal(size=(50, 6))
    table = population_response(r, signs, alphas, reference=reference)
    z = (r - reference.mean(0)) / reference.std(0, ddof=1)
    frame = pd.DataFrame({"sign": np.where(alphas == 0, "control", signs), "alpha": alphas,
                          "pop": pd.DataFrame(z).mean(axis=1, skipna=True)})
    want = frame.groupby(["sign", "alpha"])["pop"].mean()
    assert len(table) == len(want) == 5  # control, then 2 strengths per sign
    for _, row in table.iterrows():
        assert row["population_z"] == pytest.approx(want[(row["sign"], row["alpha"])], rel=1e-12)


def test_over_models_is_the_mean_ci_and_a_paired_t_test_against_the_control():
    rng = np.random.default_rng(2)
    tables = []
    for m in range(6):
        r = rng.normal(size=(15, 8))
        r[5:10] -= 1.0  # positive ablation images: the population responds less
        signs = ["control"] * 5 + ["positive"] * 5 + ["negative"] * 5
        tables.append(population_response(r, signs, [0.0] * 5 + [1.0] * 10).assign(model=m))
    stacked = pd.concat(tables, ignore_index=True)
    over = population_over_models(stacked)
    assert list(over["condition"]) == ["control", "pos 1", "neg 1"]
    assert set(over["n_models"]) == {6}
    wide = stacked.pivot(index="model", columns="condition", values="population_z")
    for _, row in over.iterrows():
        values = wide[row["condition"]].to_numpy()
        low, high = stats.t.interval(0.95, 5, loc=values.mean(), scale=stats.sem(values))
        assert row["population_z"] == pytest.approx(values.mean(), rel=1e-12)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    p = stats.ttest_rel(wide["pos 1"], wide["control"]).pvalue
    assert over.loc[1, "p_vs_control"] == pytest.approx(p, rel=1e-12) and p < 0.01
    assert np.isnan(over.loc[0, "p_vs_control"])
    with pytest.raises(ValueError, match="'model' column"):
        population_over_models(tables[0].drop(columns="model"))


def test_read_conditions_and_its_errors(tmp_path):
    good = tmp_path / "c.csv"
    good.write_text("Image,Sign,Alpha,Model\na.png,control,0,n1\nb.png, Positive ,0.5,n1\n")
    table = read_conditions(good)
    assert table.to_dict("list") == {"image": ["a.png", "b.png"], "sign": ["control", "positive"],
                                     "alpha": [0.0, 0.5], "model": ["n1", "n1"]}
    for text, match in (("image,alpha\n", r"missing column\(s\) \['sign'\]"),
                        ("image,sign,alpha\na.png,up,0.5\n", "line 2: sign 'up'"),
                        ("image,sign,alpha\na.png,positive,2\n", r"line 2: alpha must be in"),
                        ("image,sign,alpha\n", "no conditions")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_conditions(bad)
    with pytest.raises(ValueError, match="one sign and one alpha per image"):
        population_response(HAND, SIGNS[:3], ALPHAS[:3])


def test_figure_has_bands_lines_and_the_control_level():
    fig = population_response_figure(population_response(HAND, SIGNS, ALPHAS))
    names = [t.name for t in fig.data]
    assert names == ["positive 95% CI", "positive", "negative 95% CI", "negative", "control"]
    assert list(fig.data[1].x) == [0.0, 0.5] and list(fig.data[1].y) == [-0.5, 0.0]
    assert list(fig.data[4].y) == [-0.5, -0.5]


def test_in_silico_population_is_every_neuron_model_zscored_over_natural_images(tiny, tmp_path):
    csv = write_demo_dataset(tmp_path / "demo", n_images=24, n_neurons=4, n_sessions=2,
                             image_size=32, model_name="tiny_test", store=False)
    study = fit_study(tiny, load_neuron_data(csv), store=False)
    settings = VisualizeSettings(generations=2, restarts=2, generator_options=(("size", 32),))
    ablation = ablate_neuron(tiny, study, "n01", settings=settings, alphas=(0.0, 1.0),
                             store=False)
    table = model_population_table(tiny, study, ablation.results)
    assert list(table["condition"]) == ["control", "pos 1", "neg 1"]
    assert list(table["n_images"]) == [2, 2, 2] and set(table["n_neurons"]) == {4}
    # reference: each neuron model on its own, z-scored by hand over the natural predictions
    for _, row in table.iterrows():
        result = ablation.result(row["sign"] if row["sign"] != "control" else "positive",
                                 row["alpha"])
        x = torch.from_numpy(result.images).permute(0, 3, 1, 2).float() / 255
        z = []
        for j, neuron in enumerate(study.neurons):
            one = neuron_readout_model(tiny, study, [neuron])
            with torch.no_grad():
                pred = one(x)[:, 0].double().numpy()
            natural = study.features.astype(float) @ study.fits[j].weight + study.fits[j].bias
            z.append((pred - natural.mean()) / natural.std(ddof=1))
        assert row["population_z"] == pytest.approx(np.mean(z), rel=1e-4, abs=1e-4)
