"""The visualization engine: batched, deterministic, cached per condition, cancellable."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from signseg_core.ablation import ablate_weights
from signseg_core.cli.main import main
from signseg_core.conditions import Condition, condition_grid
from signseg_core.figures.png import png_bytes, png_decode
from signseg_core.models.imagenet import class_names
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.results import summary_table
from signseg_core.optimize.settings import VisualizeSettings, condition_key
from signseg_core.optimize.visualize import visualize
from signseg_core.store import key_digest

SETTINGS = VisualizeSettings(generations=4, restarts=2, generator_options=(("size", 32),))


def test_second_call_comes_from_the_store_unchanged(tiny, store):
    conds = condition_grid([1, 2], alphas=(0.0, 0.5))
    first = visualize(tiny, conds, settings=SETTINGS, store=store)
    assert len(first) == 6 and not any(r.from_store for r in first)  # one control per unit
    second = visualize(tiny, conds, settings=SETTINGS, store=store)
    assert all(r.from_store for r in second)
    for a, b in zip(first, second):
        assert a.key == b.key
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.best_scores, b.best_scores)
        np.testing.assert_array_equal(a.max_per_gen, b.max_per_gen)


def test_controls_of_both_signs_are_one_condition(tiny):
    results = visualize(tiny, [Condition(3, "positive", 0.0), Condition(3, "negative", 0.0)],
                        settings=SETTINGS, store=False)
    assert len(results) == 1 and results[0].key.sign == "control"


def test_a_condition_alone_equals_the_same_condition_in_a_batch(tiny):
    conds = condition_grid([1, 5], alphas=(0.0, 0.3, 1.0))
    batch = visualize(tiny, conds, settings=SETTINGS, store=False)
    target = batch[3]
    alone = visualize(tiny, [target.condition], settings=SETTINGS, store=False)[0]
    np.testing.assert_array_equal(alone.best_scores, target.best_scores)
    np.testing.assert_array_equal(alone.images, target.images)


def test_seed_decides_and_the_objective_rises(tiny):
    cond = [Condition(7, "negative", 0.5)]
    a = visualize(tiny, cond, settings=SETTINGS, store=False)[0]
    b = visualize(tiny, cond, settings=SETTINGS, store=False)[0]
    c = visualize(tiny, cond, settings=dataclasses.replace(SETTINGS, seed=1), store=False)[0]
    np.testing.assert_array_equal(a.best_codes, b.best_codes)
    assert not np.array_equal(a.best_codes, c.best_codes)
    longer = visualize(tiny, cond, settings=dataclasses.replace(SETTINGS, generations=12),
                       store=False)[0]
    assert (longer.max_per_gen[-1] > longer.max_per_gen[0]).all()
    assert (longer.best_scores >= longer.max_per_gen.max(0) - 1e-9).all()


def test_scores_are_the_ablated_readout_and_intact_the_full_one(tiny):
    cond = Condition(9, "positive", 0.6)
    res = visualize(tiny, [cond], settings=SETTINGS, store=False)[0]
    images = torch.from_numpy(res.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        feats = tiny.features(images)
        row = ablate_weights(tiny.readout.weight[9], "positive", 0.6)
        ablated = feats @ row + tiny.readout.bias[9]
        intact = tiny(images)[:, 9]
    # images were quantised to uint8 after scoring: agreement to quantisation error
    np.testing.assert_allclose(ablated.numpy(), res.best_scores, atol=2e-3)
    np.testing.assert_allclose(intact.numpy(), res.intact_scores, atol=2e-3)


def test_every_setting_is_in_the_key(tiny):
    from signseg_core.generators.catalog import make_generator

    gen = make_generator("fourier", size=32)
    cond = Condition(1, "positive", 0.5)
    base = condition_key(tiny, gen, cond, SETTINGS, "fp32")
    changed = [
        condition_key(tiny, gen, cond, dataclasses.replace(SETTINGS, **kw), "fp32")
        for kw in ({"seed": 1}, {"generations": 5}, {"restarts": 3}, {"sigma0": 0.5},
                   {"popsize": 8}, {"step_size_rule": "hansen"})
    ]
    changed.append(condition_key(tiny, gen, Condition(1, "positive", 0.6), SETTINGS, "fp32"))
    changed.append(condition_key(tiny, gen, Condition(1, "negative", 0.5), SETTINGS, "fp32"))
    changed.append(condition_key(tiny, make_generator("fourier", size=48), cond, SETTINGS, "fp32"))
    changed.append(condition_key(load_model("tiny_test", seed=1, untrained=True), gen, cond,
                                 SETTINGS, "fp32"))
    changed.append(condition_key(tiny, gen, cond, SETTINGS, "bf16"))
    digests = {key_digest(k) for k in [base, *changed]}
    assert len(digests) == len(changed) + 1


def test_cancel_returns_partial_results_and_stores_nothing(tiny, store):
    calls = []

    # Asked before each generation and before each scored batch: 2 restarts x popsize 35 = 70
    # samples are two batches of 64, so three questions per generation.
    def stop():
        calls.append(1)
        return len(calls) > 6  # two generations run, the third is refused

    seen = []
    res = visualize(tiny, [Condition(2, "positive", 0.2)], settings=SETTINGS, store=store,
                    should_stop=stop, progress=lambda d, t: seen.append((d, t)))
    assert res[0].cancelled and res[0].max_per_gen.shape[0] == 2
    assert seen == [(1, 4), (2, 4)]
    assert len(store) == 0


def test_corrupt_entry_is_recomputed(tiny, store):
    cond = [Condition(4, "negative", 1.0)]
    first = visualize(tiny, cond, settings=SETTINGS, store=store)[0]
    store._cache.set(key_digest(first.key), b"garbage")
    again = visualize(tiny, cond, settings=SETTINGS, store=store)[0]
    assert not again.from_store
    np.testing.assert_array_equal(first.best_scores, again.best_scores)


def _flat_model() -> ZooModel:
    """Unit 0 reads only positive weights: ablating all of them makes it a constant."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 1000))
    with torch.no_grad():
        net[4].weight[0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
        net[4].bias[0] = 0.25
    return ZooModel(name="flat", module=net, input_size=16, mean=(0.5,) * 3, std=(0.5,) * 3,
                    class_names=class_names(), trained=False, weights_source="test")


def test_a_unit_made_flat_by_ablation_gives_its_bias_and_no_nan():
    res = visualize(_flat_model(), [Condition(0, "positive", 1.0)], settings=SETTINGS,
                    store=False)[0]
    np.testing.assert_allclose(res.best_scores, 0.25, rtol=1e-6)
    assert np.isfinite(res.final_means).all() and np.isfinite(res.max_per_gen).all()


def test_png_round_trip_is_lossless():
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(png_decode(png_bytes(img)), img)


def test_summary_table(tiny):
    res = visualize(tiny, condition_grid([1], alphas=(0.0, 1.0)), settings=SETTINGS, store=False)
    table = summary_table(res, tiny.class_names)
    assert list(table.sign) == ["control", "positive", "negative"]
    assert (table["class"] == "goldfish").all()
    assert (table.best_score >= table.mean_score).all()


def test_settings_validation():
    with pytest.raises(ValueError, match="generations"):
        VisualizeSettings(generations=0)
    with pytest.raises(ValueError, match="precision"):
        VisualizeSettings(precision="fp8")
    with pytest.raises(ValueError, match="popsize"):
        VisualizeSettings(popsize=1)


def test_cli_visualize_twice_second_from_store(capsys):
    argv = ["visualize", "tiny_test", "--unit", "373", "--sign", "positive", "--alphas", "0:1:0.5",
            "--restarts", "2", "--generations", "2", "--generator-option", "size=32", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "macaque" in out and "3 conditions (0 from the store)" in out
    assert main(argv) == 0
    assert "3 conditions (3 from the store)" in capsys.readouterr().out


def test_cli_rejects_bad_alphas(capsys):
    with pytest.raises(SystemExit):
        main(["visualize", "tiny_test", "--unit", "1", "--alphas", "zero:one"])
    assert "alphas must look like" in capsys.readouterr().err
    assert main(["visualize", "tiny_test", "--unit", "1000", "--generations", "1", "--quiet"]) == 2
    assert "unit 1000 is out of range" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_scorer_matches_eager_with_a_padded_last_chunk(tiny):
    """torch.compile changes scores only by rounding; 7 samples in chunks of 4 pad the last one."""
    from signseg_core.generators.catalog import make_generator
    from signseg_core.optimize.visualize import make_scorer

    gen = make_generator("pixel", size=32)
    rows, bias = tiny.readout.weight[:2].float(), tiny.readout.bias[:2].float()
    evo = torch.tensor([0, 1])
    codes = torch.randn(8, gen.dim, generator=torch.Generator().manual_seed(0)) * gen.sigma0
    with torch.inference_mode():
        eager = make_scorer(tiny, gen, rows, bias, evo, 4, batch_size=3, precision="fp32")(codes)
        compiled = make_scorer(tiny, gen, rows, bias, evo, 4, batch_size=3, precision="fp32",
                               compile=True)(codes)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    assert not torch.equal(eager[:4], eager[4:])  # the two conditions' rows really differ


def test_half_precisions_fall_back_to_fp32_on_cpu(tiny):
    res = visualize(tiny, [Condition(1, "positive", 0.5)], store=False,
                    settings=dataclasses.replace(SETTINGS, precision="fp16"))
    assert res[0].key.precision == "fp32"


@pytest.mark.needs_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_scoring_keeps_the_ranking_of_a_population(precision):
    """Half-precision autocast is used on CUDA only where it keeps which samples CMA-ES keeps."""
    from scipy.stats import spearmanr

    from signseg_core.generators.catalog import make_generator
    from signseg_core.optimize.visualize import make_scorer

    model = load_model("alexnet", untrained=True, device="cuda")
    gen = make_generator("deepsim", untrained=True, device="cuda")
    rows, bias = model.readout.weight[:1].float(), model.readout.bias[:1].float()
    evo = torch.zeros(1, dtype=torch.long, device="cuda")
    rng = torch.Generator("cuda").manual_seed(0)
    codes = torch.randn(40, 4096, device="cuda", generator=rng) * 3
    with torch.inference_mode():
        fp32 = make_scorer(model, gen, rows, bias, evo, 40, batch_size=40, precision="fp32")(codes)
        half = make_scorer(model, gen, rows, bias, evo, 40, batch_size=40,
                           precision=precision)(codes)
    rho = spearmanr(fp32.cpu().numpy(), half.cpu().numpy()).statistic
    assert rho > 0.98
    top_fp32 = set(fp32.topk(20).indices.tolist())  # the mu = 20 parents CMA-ES keeps
    assert len(top_fp32 & set(half.topk(20).indices.tolist())) >= 18



def test_keys_default_to_the_precision_that_runs_on_the_models_device(tiny):
    """A bf16 request on a CPU runs (and is stored) in fp32: the key says so, whoever builds it
    (the bundle importer once built it with the unresolved bf16 and filed rows nobody found)."""
    from signseg_core.generators.catalog import make_generator

    gen = make_generator("fourier", size=32)
    half = dataclasses.replace(SETTINGS, precision="bf16")
    cond = Condition(1, "positive", 0.5)
    assert half.precision_on(tiny.device) == "fp32" and half.precision_on("cuda") == "bf16"
    key = condition_key(tiny, gen, cond, half)
    assert key.precision == "fp32" and key == condition_key(tiny, gen, cond, SETTINGS)
    stored = visualize(tiny, [cond], settings=half, store=False)[0].key
    assert stored == key
