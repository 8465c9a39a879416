import numpy as np
import pytest

from signseg_core.checks import check_int


def test_check_int_takes_python_and_numpy_ints_at_or_above_low():
    assert check_int("n", 3, low=1) == 3 and type(check_int("n", np.int64(3), low=1)) is int
    assert check_int("seed", 0, low=0) == 0


@pytest.mark.parametrize("value, low, says", [
    (0, 1, "n must be a positive int, got 0"),
    (True, 0, "n must be an int >= 0, got True"),
    (2.0, 0, "n must be an int >= 0, got 2.0"),
    (9, 10, "n must be an int >= 10, got 9"),
])
def test_check_int_refuses_with_the_name_and_the_value(value, low, says):
    with pytest.raises(ValueError, match=says):
        check_int("n", value, low=low)
