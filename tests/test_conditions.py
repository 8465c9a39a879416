"""Tests of signseg_core.conditions: the one place where units, signs and strengths are parsed."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signseg_core.conditions import (
    DEFAULT_ALPHAS,
    check_unit,
    parse_alpha,
    parse_sign,
    parse_unit,
    parse_units,
)


@pytest.mark.parametrize("value, n, expected", [
    (0, 1000, 0), (999, 1000, 999), (np.int64(373), 1000, 373), (373.0, 1000, 373), (5, None, 5),
])
def test_check_unit_accepts_integer_indices(value, n, expected):
    got = check_unit(value, n)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value, n, words", [
    (1000, 1000, "0 to 999"), (-1, 1000, "out of range"), (-1, None, "out of range"),
    (True, 1000, "integer"), (3.5, 1000, "integer"), ("5", 1000, "integer"),
])
def test_check_unit_refuses(value, n, words):
    with pytest.raises(ValueError, match=words):
        check_unit(value, n)


def test_parse_unit_and_units():
    assert parse_unit(" 373 ", 1000) == 373
    assert parse_units("0 217, 373 0", 1000) == (0, 217, 373)  # duplicates dropped, order kept
    with pytest.raises(ValueError, match="from 0 to 999"):
        parse_unit("macaque", 1000)
    with pytest.raises(ValueError, match="at least one unit"):
        parse_units(" , ")
    with pytest.raises(ValueError, match="0 to 9"):
        parse_units("1 2 10", 10)


def test_parse_sign():
    assert parse_sign(" negative") == "negative"
    with pytest.raises(ValueError, match=r"choose from \['positive', 'negative'\]"):
        parse_sign("both")


def test_parse_alpha():
    assert parse_alpha("0.30000000000000004") == 0.3     # rounded like a Condition
    assert parse_alpha("1", choices=DEFAULT_ALPHAS) == 1.0
    with pytest.raises(ValueError, match="one of"):
        parse_alpha("0.25", choices=DEFAULT_ALPHAS)
    for bad in ("x", "nan", "1.5", "-0.1"):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            parse_alpha(bad)


@given(st.lists(st.integers(0, 999), min_size=1, max_size=20))
def test_parse_units_round_trips_any_list(units):
    text = ", ".join(map(str, units))
    assert parse_units(text, 1000) == tuple(dict.fromkeys(units))
