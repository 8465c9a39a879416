"""The maco generator (fixed natural amplitude spectrum, phases optimised) and gradient ascent on
the ablated readout row: the spectrum, determinism, batch independence, keys, the objective
rising, cancel and the store."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from signseg_core.ablation import ablate_weights
from signseg_core.conditions import Condition
from signseg_core.generators import maco
from signseg_core.generators.catalog import (
    COLOR_CORRELATION_SVD_SQRT,
    colour_matrix,
    list_generators,
    make_generator,
)
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import load_condition
from signseg_core.optimize.settings import (
    VisualizeSettings,
    condition_key,
    describe_optimizer,
    describe_run,
    evolution_seed,
)
from signseg_core.optimize.visualize import evolve_conditions, run_request

SETTINGS = VisualizeSettings(generator="maco", generations=12, restarts=2,
                             generator_options=(("size", 32),))


@pytest.fixture(scope="module")
def gen():
    """maco at 32 px with the natural spectrum; small transforms for 32-px images."""
    return maco.MacoGenerator(size=32, pad=2, jitter=2, lr=0.1)


def _run(model, generator, conditions, settings=SETTINGS, **kw):
    todo = [(c, condition_key(model, generator, c, settings)) for c in conditions]
    return evolve_conditions(model, generator, todo, settings, "fp32", kw.pop("batch_size", 64),
                             None, kw.pop("should_stop", None), **kw)


# -- the parameterisation ------------------------------------------------------------------

def test_a_single_frequency_renders_the_cosine_worked_out_by_hand():
    # Only (ky, kx) = (0, 2) carries amplitude a = S^2 / sqrt(2): irfft2 (1/S^2 norm, the kx and
    # -kx terms) gives z(y, x) = (2a / S^2) cos(2 pi 2 x / S + phi) = sqrt(2) cos(...): variance 1.
    S = 16
    mag = np.zeros((S, S // 2 + 1), np.float32)
    mag[0, 2] = S**2 / math.sqrt(2)
    g = maco.MacoGenerator(size=S, magnitude=mag, gain=1.5)
    codes = torch.zeros(1, g.dim)
    phi = (0.3, -1.2, 2.0)
    view = codes.view(1, 3, S, S // 2 + 1)
    for c in range(3):
        view[0, c, 0, 2] = phi[c]
    x = np.arange(S)[None, :].repeat(S, 0)
    want = np.stack([math.sqrt(2) * np.cos(2 * np.pi * 2 * x / S + p) for p in phi])
    np.testing.assert_allclose(g.latent(codes)[0].numpy(), want, atol=1e-5)
    rgb = np.einsum("ij,jhw->ihw", colour_matrix().numpy(), want)
    np.testing.assert_allclose(g(codes)[0].numpy(), 1 / (1 + np.exp(-1.5 * rgb)), atol=1e-5)


def test_every_image_has_the_fixed_natural_amplitude_spectrum(gen):
    target = maco.natural_magnitude(32)
    latent = gen.latent(gen.initial_code(3, seed=4)).double().numpy()
    amplitude = np.abs(np.fft.rfft2(latent))  # numpy's own FFT of each channel
    np.testing.assert_allclose(amplitude, np.broadcast_to(target, amplitude.shape),
                               atol=1e-4 * target.max())
    np.testing.assert_allclose(latent.var(axis=(2, 3)), 1.0, rtol=1e-4)  # Parseval scaling
    images = gen(gen.initial_code(3, seed=4))
    assert images.shape == (3, 3, 32, 32) and 0 <= images.min() and images.max() <= 1


def test_the_natural_spectrum_falls_like_a_photos():
    mag = maco.natural_magnitude(32).astype(np.float64)
    fy, fx = np.fft.fftfreq(32)[:, None] * 32, np.fft.rfftfreq(32)[None, :] * 32
    f = np.hypot(fy, fx)
    band = (f >= 1) & (f <= 16)
    slope = np.polyfit(np.log(f[band]), np.log(mag[band]), 1)[0]
    assert -2.2 < slope < -0.8  # natural photos: amplitude about 1/f (Field 1987), ours ~1/f^1.5
    assert mag[0, 0] == 0 and np.allclose(mag[:, 0], mag[maco.conjugate_rows(32), 0])


def test_the_colour_matrix_is_the_catalogs():
    assert maco.COLOR_CORRELATION_SVD_SQRT == COLOR_CORRELATION_SVD_SQRT
    torch.testing.assert_close(maco.MacoGenerator(size=16, magnitude=np.ones((16, 9))).colour,
                               colour_matrix())


def test_seeds_decide_the_start(gen):
    a, b = gen.initial_code(2, seed=7), gen.initial_code(2, seed=7)
    assert torch.equal(gen(a), gen(b))
    assert not torch.equal(gen(a), gen(gen.initial_code(2, seed=8)))
    assert a.abs().max() <= math.pi


def test_registered_weight_free_and_offered():
    listed = {g["name"]: g for g in list_generators()}
    assert listed["maco"]["weights_present"] and not listed["maco"]["needs_weights"]
    assert listed["maco"]["dim"] == 3 * 224 * 113
    g = make_generator("maco", size=32)
    assert g.method == "gradient" and g.dim == 3 * 32 * 17


def test_the_method_is_listed_and_the_run_is_named_as_what_runs(gen):
    listed = {g["name"]: g["method"] for g in list_generators()}
    assert listed["maco"] == "gradient" and listed["fourier"] == listed["pixel"] == "evolution"
    words = describe_run(SETTINGS, gen)
    assert words.startswith("gradient ascent (Adam, lr 0.1 rad)") and "12 steps" in words
    assert "ES" not in words and "λ" not in words
    fourier = make_generator("fourier", size=32)
    assert describe_run(SETTINGS, fourier) == describe_optimizer(SETTINGS, fourier.dim)


def test_a_requests_image_count_is_one_image_per_restart_per_step(tiny, gen):
    # ETAs and the throughput record count images scored: 3 restarts x 12 steps x 1 image
    request = VisualizeRequest(tiny, gen, (Condition(3, "positive", 0.0),), SETTINGS)
    assert request.popsize == 1 and request.images_per_condition == SETTINGS.restarts * 12
    seen = []
    run_request(request, store=False, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (12, 12)  # steps, as generations are counted for an evolution


# -- keys ----------------------------------------------------------------------------------

def test_the_key_names_the_gradient_optimiser_not_cmaes(tiny, gen):
    cond = Condition(3, "positive", 0.5)
    key = condition_key(tiny, gen, cond, SETTINGS)
    fourier = condition_key(tiny, make_generator("fourier", size=32), cond,
                            dataclasses.replace(SETTINGS, generator="fourier"))
    assert key != fourier and key.optimizer != fourier.optimizer
    described = json.loads(key.optimizer)
    assert described["method"] == "adam-phase-ascent" and described["steps"] == 12
    assert described["lr"] == 0.1 and "popsize" not in described
    other_lr = maco.MacoGenerator(size=32, pad=2, jitter=2, lr=0.2)
    assert condition_key(tiny, other_lr, cond, SETTINGS) != key


# -- gradient ascent -----------------------------------------------------------------------

def test_ascent_raises_the_intact_logit_of_the_control(tiny, gen):
    unit = 3
    result = _run(tiny, gen, [Condition(unit, "positive", 0.0)])[0]
    assert result.images.shape == (2, 32, 32, 3) and result.max_per_gen.shape == (12, 2)
    # The start images, scored independently of the optimiser's own bookkeeping.
    key = result.key
    starts = torch.cat([gen.initial_code(1, seed=evolution_seed(key, r)) for r in range(2)])
    with torch.no_grad():
        before = tiny(gen(starts))[:, unit].double().numpy()
        after = tiny(gen(torch.from_numpy(result.best_codes)))[:, unit].double().numpy()
        spread = tiny(gen(gen.initial_code(16, seed=99)))[:, unit].std().item()
    # Each restart rises, on average by more than the spread over random-phase images.
    assert (after > before).all() and (after - before).mean() > spread, (before, after, spread)
    np.testing.assert_allclose(result.intact_scores, after, rtol=1e-4, atol=1e-4)


def test_the_objective_is_the_ablated_row(tiny, gen):
    cond = Condition(5, "negative", 0.6)
    result = _run(tiny, gen, [cond], dataclasses.replace(SETTINGS, generations=3))[0]
    row = ablate_weights(tiny.readout.weight[5].detach(), "negative", 0.6)
    with torch.no_grad():
        feats = tiny.features(gen(torch.from_numpy(result.best_codes)))
    want = (feats.double() @ row.double()) + tiny.readout.bias[5].double()
    np.testing.assert_allclose(result.best_scores, want.numpy(), rtol=1e-4, atol=1e-4)


def test_a_condition_alone_equals_the_same_condition_in_a_batch(tiny, gen):
    conds = [Condition(1, "positive", 0.0), Condition(4, "positive", 0.5),
             Condition(1, "negative", 1.0)]
    batch = _run(tiny, gen, conds, batch_size=3)  # chunks split restarts across conditions
    alone = _run(tiny, gen, [conds[1]])[0]
    np.testing.assert_allclose(alone.best_codes, batch[1].best_codes, atol=1e-4)
    np.testing.assert_allclose(alone.best_scores, batch[1].best_scores, atol=1e-4)
    assert np.abs(alone.images.astype(int) - batch[1].images).max() <= 1


def test_cancel_stops_between_chunks_and_stores_nothing(tiny, gen, store):
    asked, scored = [], []

    def stop():
        asked.append(1)
        return len(asked) > 5  # the 6th chunk never runs

    conds = [Condition(2, "positive", 0.0), Condition(2, "positive", 0.5)]
    results = _run(tiny, gen, conds, batch_size=1, should_stop=stop, on_batch=scored.append)
    assert all(r.cancelled for r in results) and scored == [1] * 5
    assert results[0].max_per_gen.shape == (1, 2)  # one whole step (4 chunks), then stopped
    request = VisualizeRequest.build(tiny, conds, SETTINGS, generator=gen)
    calls = []
    run_request(request, store=store, should_stop=lambda: bool(calls.append(1)) or len(calls) > 3)
    assert not any(k in store for k in request.keys)


def test_results_round_trip_through_the_store(tiny, gen, store):
    request = VisualizeRequest.build(tiny, [Condition(6, "positive", 0.3)],
                                     dataclasses.replace(SETTINGS, generations=4), generator=gen)
    first = run_request(request, store=store)[0]
    back = load_condition(store, request.keys[0])
    assert back is not None and back.from_store and back.key == first.key
    np.testing.assert_array_equal(back.images, first.images)
    for name, value in first.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), value)
    assert run_request(request, store=store)[0].from_store


def test_observe_sees_each_steps_scores_and_codes(tiny, gen):
    seen = []

    def observe(step, state, images_of):
        seen.append((step, state.best_score.shape, images_of(state.best_code[:1]).shape))

    _run(tiny, gen, [Condition(0, "positive", 0.0)], dataclasses.replace(SETTINGS, generations=2),
         observe=observe)
    assert seen == [(1, (2,), (1, 32, 32, 3)), (2, (2,), (1, 32, 32, 3))]
