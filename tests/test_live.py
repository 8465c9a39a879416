"""Any unit live: compute order along the strip, each condition stored as it finishes, previews,
progress per scored batch, and the same images whether conditions run one by one or in lockstep."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signseg_core.conditions import DEFAULT_ALPHAS, Condition
from signseg_core.generators.catalog import make_generator
from signseg_core.optimize.live import condition_order, run_live, strip_position
from signseg_core.optimize.request import VisualizeRequest, unit_conditions
from signseg_core.optimize.results import load_condition
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.throughput import (
    cached_rate,
    expected_seconds,
    images_per_second,
    record_rate,
    say_duration,
)
from signseg_core.sweeps.measure import Metrics, unit_rows
from signseg_core.sweeps.run import SweepSpec

SETTINGS = VisualizeSettings(generations=3, restarts=2, popsize=6, generator_options=(("size", 32),))


def test_strip_positions_put_negative_left_of_the_control():
    assert strip_position(Condition(0, "positive", 0.0)) == 0.0
    assert strip_position(Condition(0, "positive", 0.3)) == 0.3
    assert strip_position(Condition(0, "negative", 0.3)) == -0.3


def test_order_starts_on_screen_then_walks_out_along_the_strip():
    conds = unit_conditions(7)  # control, positive 0.1..1.0, negative 0.1..1.0
    order = [conds[i].key for i in condition_order(conds, Condition(7, "positive", 0.3))]
    # distances from +0.3: 0 | 0.1, 0.1 | 0.2, 0.2 | 0.3 (control, listed first), 0.3 (+0.6) | ...
    assert order[:7] == [(7, "positive", 0.3), (7, "positive", 0.2), (7, "positive", 0.4),
                         (7, "positive", 0.1), (7, "positive", 0.5), (7, "control", 0.0),
                         (7, "positive", 0.6)]
    assert order[-1] == (7, "negative", 1.0)  # farthest: -1.0 is 1.3 away
    assert condition_order(conds) == list(range(len(conds)))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["positive", "negative"]), st.sampled_from(DEFAULT_ALPHAS))
def test_order_is_a_permutation_by_rising_distance(sign, alpha):
    conds = unit_conditions(3)
    first = Condition(3, sign, alpha)
    order = condition_order(conds, first)
    assert sorted(order) == list(range(len(conds)))
    dist = [abs(strip_position(conds[i]) - strip_position(first)) for i in order]
    assert all(a <= b + 1e-9 for a, b in zip(dist, dist[1:])) and dist[0] == 0


def _request(tiny, unit=4):
    generator = make_generator("fourier", size=32)
    conds = [Condition(unit, "positive", 0.0), Condition(unit, "positive", 0.5), Condition(unit, "negative", 1.0)]
    return VisualizeRequest.build(tiny, conds, SETTINGS, generator=generator)


def test_one_by_one_equals_lockstep_bit_for_bit(tiny):
    alone = run_live(_request(tiny), store=False, lockstep=False, group=1)
    grouped = run_live(_request(tiny), store=False, lockstep=False, group=2,
                       first=Condition(4, "negative", 1.0))
    together = run_live(_request(tiny), store=False, lockstep=True)
    assert not alone.cancelled and len(alone.results) == 3
    for a, b, c in zip(alone.results, together.results, grouped.results):
        assert a.key == c.key
        np.testing.assert_array_equal(a.images, c.images)
        assert a.key == b.key
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.best_scores, b.best_scores)


def test_progress_counts_every_scored_batch_and_previews_the_running_condition(tiny):
    request = _request(tiny)
    seen, previews = [], []

    def progress(done, total, message, preview=None):
        seen.append((done, total))
        if preview is not None:
            previews.append(preview)

    run = run_live(request, store=False, batch_size=5, progress=progress,
                   first=Condition(4, "negative", 1.0), preview_every=2, group=1)
    per_condition = 2 * 6 * 3  # restarts x popsize x generations
    total = 3 * per_condition
    assert {t for _, t in seen} == {total} and seen[-1][0] == total
    done = [d for d, _ in seen]
    assert done == sorted(done)
    # 12 samples per generation in batches of 5: 3 batches, so 9 reports per condition (plus
    # previews and the "stored" line, which repeat the count)
    assert len(set(done)) == 3 * 3 * 3
    # previews after generations 1, 2 and 3 (the last) of each condition, the first condition
    # being the one asked for
    assert [(p.condition, p.generation) for p in previews[:3]] == [
        ((4, "negative", 1.0), 1), ((4, "negative", 1.0), 2), ((4, "negative", 1.0), 3)]
    final = {r.condition.key: r for r in run.results}[(4, "negative", 1.0)]
    last = previews[2]
    assert last.activation == pytest.approx(final.best_scores.max())
    np.testing.assert_array_equal(last.image, final.images[final.best_index])


def test_stop_keeps_finished_conditions_and_drops_the_running_one(tiny, store):
    request = _request(tiny)
    finished = []

    def progress(done, total, message, preview=None):
        if "stored" in message:
            finished.append(done)

    run = run_live(request, store=store, progress=progress, should_stop=lambda: len(finished) >= 1,
                   first=Condition(4, "positive", 0.5))
    assert run.cancelled and [r.condition.key for r in run.results] == [(4, "positive", 0.5)]
    assert len(store) == 1 and load_condition(store, request.keys[1]) is not None
    again = run_live(request, store=store, first=Condition(4, "positive", 0.5))
    assert not again.cancelled and len(again.results) == 3 and len(store) == 3
    assert again.results[1].from_store


def test_one_restart_measures_without_an_empty_slice_warning(tiny):

    settings1 = VisualizeSettings(generations=1, restarts=1, popsize=4,
                                  generator_options=(("size", 32),))
    request = VisualizeRequest.for_unit(tiny, make_generator("fourier", size=32), 2, settings1,
                                        alphas=(0.5,))
    results = run_live(request, store=False).results
    metrics = Metrics.build(SweepSpec(models=("tiny_test",), ensemble=("tiny_test_b",),
                                      lpips=False, detector=None), "cpu", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows, _ = unit_rows(results, metrics, [str(i) for i in range(10)])
    # one control image has no other control image to be compared with: NaN, said so
    assert np.isnan(rows.loc[rows.sign == "control", "similarity"]).all()
    assert np.isfinite(rows.loc[rows.sign != "control", "similarity"]).all()


def test_expected_seconds_and_words():
    class R:
        images_per_condition = 2 * 10 * 20  # restarts x popsize x generations
    assert expected_seconds(R(), 21, 40.0) == pytest.approx(21 * 400 / 40)  # 210 s
    assert say_duration(210) == "about 4 min" and say_duration(42.4) == "about 42 s"
    assert say_duration(6000) == "about 1.7 h"


def test_rate_is_measured_once_then_a_real_run_replaces_it(tiny):
    request = _request(tiny)
    assert cached_rate(request, 8) is None
    measured = images_per_second(request, batch_size=8)
    assert measured > 0 and cached_rate(request, 8) == pytest.approx(measured)
    assert images_per_second(request, batch_size=8) == measured  # read back, not re-measured
    record_rate(request, images=1000, seconds=10.0, batch_size=8)  # a real run: 100 img/s
    assert cached_rate(request, 8) == pytest.approx(100.0)
    record_rate(request, images=10, seconds=1.0, batch_size=8)  # too short to trust: ignored
    assert cached_rate(request, 8) == pytest.approx(100.0)


def test_the_cpu_preview_is_maco_and_its_words_count_steps():
    from signseg_core.generators.catalog import list_generators
    from signseg_core.sweeps.preview import (
        CPU_PREVIEW,
        FOURIER_PREVIEW,
        GRADIENT_GENERATORS,
        describe_defaults,
        iterations,
    )

    # the names preview.py treats as gradient generators are the catalog's
    assert GRADIENT_GENERATORS == {g["name"] for g in list_generators()
                                   if g["method"] == "gradient"}
    assert CPU_PREVIEW.generator == "maco" and iterations(CPU_PREVIEW) == "steps"
    assert iterations(FOURIER_PREVIEW) == "generations"
    assert "1 restart × 175 steps of the maco generator" in describe_defaults()


def test_a_maco_run_reports_steps_not_generations(tiny):
    settings = VisualizeSettings(generator="maco", generations=2, restarts=1)
    request = VisualizeRequest.build(tiny, [Condition(4, "positive", 0.5)], settings)
    seen = []
    run_live(request, store=False, preview_every=1,
             progress=lambda done, total, message, preview=None: seen.append((message, preview)))
    previews = [p for _, p in seen if p is not None]
    assert previews and all(p.iteration == "step" for p in previews)
    assert any(m.endswith("step 2/2") for m, _ in seen)
    assert not any("generation" in m for m, _ in seen)
