"""Tests of signseg_core.optimize.request: the one request noun and what it knows."""

import math

import pytest

from signseg_core.conditions import Condition
from signseg_core.generators.catalog import make_generator
from signseg_core.optimize.request import VisualizeRequest, unit_conditions
from signseg_core.optimize.settings import VisualizeSettings, condition_key
from signseg_core.optimize.visualize import run_request

SETTINGS = VisualizeSettings(generations=2, restarts=2, generator_options=(("size", 32),))


@pytest.fixture(scope="module")
def gen():
    return make_generator("fourier", size=32)


def test_unit_conditions_apply_the_control_rule_once():
    # the paper's grid: control + 2 signs x 10 strengths = 21, control first
    grid = unit_conditions(7)
    assert len(grid) == 21 and grid[0] == Condition(7, "positive", 0.0)
    assert [c.alpha for c in grid[1:11]] == [round(0.1 * i, 6) for i in range(1, 11)]
    assert {c.sign for c in grid[11:]} == {"negative"}
    # strengths without 0 still get the control; duplicates and order do not matter
    assert unit_conditions(3, signs=("negative",), alphas=(1.0, 0.5, 0.5)) == (
        Condition(3, "negative", 0.0), Condition(3, "negative", 0.5),
        Condition(3, "negative", 1.0))


def test_keys_are_condition_keys_in_order(tiny, gen):
    request = VisualizeRequest.for_unit(tiny, gen, 4, SETTINGS, alphas=(0.5,))
    assert request.conditions == unit_conditions(4, alphas=(0.5,))
    assert request.keys == tuple(condition_key(tiny, gen, c, SETTINGS) for c in request.conditions)
    assert [k.sign for k in request.keys] == ["control", "positive", "negative"]


def test_duplicates_and_a_second_control_are_dropped(tiny, gen):
    conds = [Condition(1, "positive", 0.0), Condition(1, "negative", 0.0),
             Condition(1, "positive", 0.5), Condition(1, "positive", 0.5)]
    request = VisualizeRequest(tiny, gen, tuple(conds), SETTINGS)
    assert request.conditions == (Condition(1, "positive", 0.0), Condition(1, "positive", 0.5))


def test_bad_requests_say_why(tiny, gen):
    with pytest.raises(ValueError, match="at least one condition"):
        VisualizeRequest(tiny, gen, (), SETTINGS)
    n = tiny.n_classes
    with pytest.raises(ValueError, match=f"0 to {n - 1}"):
        VisualizeRequest.for_unit(tiny, gen, n, SETTINGS)


def test_the_job_key_ignores_order_and_sees_every_setting(tiny, gen, store):
    a = VisualizeRequest.for_units(tiny, gen, [1, 2], SETTINGS, alphas=(0.5,))
    b = VisualizeRequest(tiny, gen, a.conditions[::-1], SETTINGS)
    assert a.job_key(store) == b.job_key(store)
    seed1 = VisualizeSettings(generations=2, restarts=2, seed=1, generator_options=(("size", 32),))
    assert VisualizeRequest(tiny, gen, a.conditions, seed1).job_key(store) != a.job_key(store)
    assert a.job_key(None) != a.job_key(store)  # a run that stores nothing is another job


def test_images_to_score_is_conditions_restarts_population_generations(tiny, gen):
    request = VisualizeRequest.for_unit(tiny, gen, 0, SETTINGS)
    popsize = 4 + math.floor(3 * math.log2(gen.dim))  # CMA-ES's default population
    assert request.popsize == popsize
    assert request.images_to_score == 21 * 2 * popsize * 2
    fixed = VisualizeSettings(generations=3, restarts=1, popsize=8)
    assert VisualizeRequest.for_unit(tiny, gen, 0, fixed).images_to_score == 21 * 1 * 8 * 3


def test_stored_and_missing_follow_the_store(tiny, gen, store):
    request = VisualizeRequest.for_unit(tiny, gen, 2, SETTINGS, signs=("positive",),
                                        alphas=(1.0,))
    assert request.stored(store) == {} and request.missing(store) == request.conditions
    results = run_request(request, store=store)
    stored = request.stored(store)
    assert set(stored) == {c.key for c in request.conditions}
    assert all(stored[r.condition.key].from_store for r in results)
    assert request.missing(store) == ()
