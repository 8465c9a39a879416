"""Ablation by cumulative magnitude: hand-worked rows, properties, batched readout, errors."""

import dataclasses
import math
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from signseg_core.ablation import ablate_weights, ablated_readout, score_conditions
from signseg_core.conditions import (
    DEFAULT_ALPHAS,
    Condition,
    condition_grid,
    parse_alphas,
    unique_conditions,
)

ROW = torch.tensor([4.0, -1.0, 3.0, 2.0, -5.0, 1.0])
# Positive weights 4 (i0), 3 (i2), 2 (i3), 1 (i5): total 10, cumulative fractions .4 .7 .9 1.
# Negative weights 5 (i4), 1 (i1): total 6, cumulative fractions 5/6, 1.
POSITIVE_CASES = [
    (0.0, [4, -1, 3, 2, -5, 1]),  # k = 0
    (0.4, [0, -1, 3, 2, -5, 1]),  # .4 >= .4 -> k = 1 (zero the 4)
    (0.5, [0, -1, 0, 2, -5, 1]),  # .4 < .5 <= .7 -> k = 2 (4 and 3)
    (0.7, [0, -1, 0, 2, -5, 1]),  # exactly .7 -> still k = 2
    (0.71, [0, -1, 0, 0, -5, 1]),  # .7 < .71 <= .9 -> k = 3
    (0.95, [0, -1, 0, 0, -5, 0]),  # k = 4
    (1.0, [0, -1, 0, 0, -5, 0]),  # every positive weight
]
NEGATIVE_CASES = [
    (0.5, [4, -1, 3, 2, 0, 1]),  # 5/6 >= .5 -> k = 1 (the -5)
    (0.9, [4, 0, 3, 2, 0, 1]),  # 5/6 < .9 -> k = 2
    (1.0, [4, 0, 3, 2, 0, 1]),
]


@pytest.mark.parametrize("alpha, expected", POSITIVE_CASES)
def test_positive_by_hand(alpha, expected):
    assert ablate_weights(ROW, "positive", alpha).tolist() == expected


@pytest.mark.parametrize("alpha, expected", NEGATIVE_CASES)
def test_negative_by_hand(alpha, expected):
    assert ablate_weights(ROW, "negative", alpha).tolist() == expected


def test_ties_break_by_index():
    # [2, 2, 1]: total 5; alpha .3 -> 2/5 >= .3, k = 1, the lower index goes first.
    assert ablate_weights(torch.tensor([2.0, 2.0, 1.0]), "positive", 0.3).tolist() == [0, 2, 1]
    assert ablate_weights(torch.tensor([-1.0, -2.0, -2.0]), "negative", 0.3).tolist() == [-1, 0, -2]


def test_rounding_does_not_change_k():
    # 0.3 / (0.3 + 0.1) is exactly .75 on paper, but 0.3 < .75 * 0.30000000000000004 in float64.
    row = torch.tensor([0.3, -0.5, 0.1], dtype=torch.float64)
    assert ablate_weights(row, "positive", 0.75).tolist() == [0.0, -0.5, 0.1]
    # 1e20 + 1 + 1 == 1e20 in float: the cumulative sum reaches the total after one weight, yet
    # alpha = 1 must still remove all three.
    big = torch.tensor([1e20, 1.0, 1.0], dtype=torch.float64)
    assert ablate_weights(big, "positive", 1.0).tolist() == [0.0, 0.0, 0.0]
    assert ablate_weights(big, "positive", 0.999).tolist() == [0.0, 1.0, 1.0]


def test_rows_without_that_sign_are_unchanged():
    for row in ([-1.0, -2.0], [0.0, 0.0], [0.0, -3.0]):
        t = torch.tensor(row)
        assert torch.equal(ablate_weights(t, "positive", 0.5), t)
        assert torch.equal(ablate_weights(t, "positive", 1.0), t)


def test_matrix_rows_are_independent_and_dtype_kept():
    m = torch.stack([ROW, torch.tensor([-1.0, -1.0, -1.0, 2.0, 0.0, 0.0])])
    assert ablate_weights(m, "positive", 0.5).tolist() == [
        [0, -1, 0, 2, -5, 1],
        [-1, -1, -1, 0, 0, 0],
    ]
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        out = ablate_weights(ROW.to(dtype), "positive", 0.5)
        assert out.dtype == dtype and out.tolist() == [0, -1, 0, 2, -5, 1]


def test_parameter_input_is_not_edited():
    layer = torch.nn.Linear(6, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(ROW)
    out = ablate_weights(layer.weight, "negative", 1.0)
    assert not out.requires_grad
    assert layer.weight.detach()[0].tolist() == ROW.tolist()


@pytest.mark.parametrize("alpha", [-0.1, 1.1, math.nan, math.inf, "0.5", True, None])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        ablate_weights(ROW, "positive", alpha)
    with pytest.raises(ValueError, match="alpha"):
        Condition(0, "positive", alpha)


def test_bad_sign_shape_and_values():
    with pytest.raises(ValueError, match=r"unknown sign 'pos'.*'positive', 'negative'"):
        ablate_weights(ROW, "pos", 0.5)
    with pytest.raises(ValueError, match="shape"):
        ablate_weights(torch.ones(2, 3, 4), "positive", 0.5)
    with pytest.raises(ValueError, match="floating-point"):
        ablate_weights(torch.ones(3, dtype=torch.int64), "positive", 0.5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ablate_weights(torch.tensor([1.0, math.nan]), "positive", 0.5)
    with pytest.raises(ValueError, match="unit"):
        Condition(-1, "positive", 0.5)
    with pytest.raises(ValueError, match="sign"):
        Condition(0, "neg", 0.5)


# ---- properties ---------------------------------------------------------------------------

values = st.one_of(
    st.floats(-100, 100, width=32, allow_subnormal=False),
    st.sampled_from([-2.0, -1.0, 0.0, 1.0, 2.0]),  # plenty of ties and zeros
)
rows = st.lists(values, min_size=1, max_size=24).map(lambda v: torch.tensor(v, dtype=torch.float32))
alphas = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
signs = st.sampled_from(["positive", "negative"])


def _zeroed(row, out, sign):
    of_sign = row > 0 if sign == "positive" else row < 0
    return of_sign & (out == 0), of_sign


@settings(max_examples=300, deadline=None)
@given(row=rows, sign=signs, alpha=alphas)
def test_rule_properties(row, sign, alpha):
    before = row.clone()
    out = ablate_weights(row, sign, alpha)
    assert torch.equal(row, before)
    assert out.untyped_storage().data_ptr() != row.untyped_storage().data_ptr()
    zeroed, of_sign = _zeroed(row, out, sign)
    # Only weights of that sign change, and they only become zero.
    assert torch.equal(out[~zeroed], row[~zeroed])
    mags = row.abs().double()
    total = math.fsum(mags[of_sign].tolist())
    removed = sorted(
        ((m, i) for i, m in enumerate(mags.tolist()) if zeroed[i]), key=lambda t: (-t[0], t[1])
    )
    survivors = [(m, i) for i, m in enumerate(mags.tolist()) if of_sign[i] and not zeroed[i]]
    # The zeroed ones are the first in (decreasing |w|, increasing index) order.
    for m_s, i_s in survivors:
        for m_z, i_z in removed:
            assert m_z > m_s or (m_z == m_s and i_z < i_s)
    if alpha == 0 or total == 0:
        assert not zeroed.any()
        return
    if alpha == 1:
        assert torch.equal(zeroed, of_sign)
        return
    fractions = [math.fsum(m for m, _ in removed[:j]) / total for j in range(len(removed) + 1)]
    assert fractions[-1] >= alpha - 2e-9  # enough removed ...
    assert fractions[-2] < alpha  # ... and k is the smallest such


@settings(max_examples=150, deadline=None)
@given(row=rows, sign=signs, a1=alphas, a2=alphas)
def test_monotone_in_alpha(row, sign, a1, a2):
    lo, hi = sorted((a1, a2))
    z_lo, _ = _zeroed(row, ablate_weights(row, sign, lo), sign)
    z_hi, _ = _zeroed(row, ablate_weights(row, sign, hi), sign)
    assert not (z_lo & ~z_hi).any()


@settings(max_examples=100, deadline=None)
@given(row=rows, sign=signs)
def test_alpha_zero_identity_alpha_one_kills_the_sign(row, sign):
    assert torch.equal(ablate_weights(row, sign, 0.0), row)
    out = ablate_weights(row, sign, 1.0)
    assert not (out > 0 if sign == "positive" else out < 0).any()


matrices = st.integers(1, 5).flatmap(
    lambda n_in: st.lists(
        st.lists(values, min_size=n_in, max_size=n_in), min_size=1, max_size=6
    ).map(lambda v: torch.tensor(v, dtype=torch.float32))
)


@settings(max_examples=100, deadline=None)
@given(m=matrices, sign=signs, alpha=alphas)
def test_matrix_equals_row_by_row(m, sign, alpha):
    expected = torch.stack([ablate_weights(r, sign, alpha) for r in m])
    assert torch.equal(ablate_weights(m, sign, alpha), expected)


@settings(max_examples=100, deadline=None)
@given(m=matrices, data=st.data())
def test_batched_readout_equals_per_condition(m, data):
    conds = data.draw(
        st.lists(st.builds(Condition, st.integers(0, m.shape[0] - 1), signs, alphas), max_size=12)
    )
    bias = torch.arange(m.shape[0], dtype=torch.float32)
    before = m.clone()
    out_rows, out_biases = ablated_readout(m, bias, conds)
    assert torch.equal(m, before)
    assert out_rows.shape == (len(conds), m.shape[1]) and out_biases.shape == (len(conds),)
    for c, row, b in zip(conds, out_rows, out_biases):
        assert torch.equal(row, ablate_weights(m[c.unit], c.sign, c.alpha))
        assert b.item() == c.unit


# ---- conditions and batched scoring --------------------------------------------------------


def test_condition_rounding_key_and_frozen():
    assert Condition(3, "positive", 0.1 + 0.2) == Condition(3, "positive", 0.3)
    assert hash(Condition(3, "positive", 0.1 + 0.2)) == hash(Condition(3, "positive", 0.3))
    pos0, neg0 = Condition(3, "positive", 0), Condition(3, "negative", 0.0)
    assert pos0.is_control and neg0.is_control and pos0.key == neg0.key == (3, "control", 0.0)
    assert Condition(3, "negative", 0.5).key == (3, "negative", 0.5)
    assert [pos0.label, Condition(1, "negative", 1).label] == ["control", "neg 1"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pos0.alpha = 0.5


def test_condition_grid():
    assert DEFAULT_ALPHAS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    grid = condition_grid(range(11))
    assert len(grid) == 11 * 21 and len({c.key for c in grid}) == 11 * 21
    assert grid[0] == Condition(0, "positive", 0.0) and grid[11] == Condition(0, "negative", 0.1)
    full = condition_grid([0, 5], alphas=(0.0, 1.0), dedupe_controls=False)
    assert [(c.unit, c.sign, c.alpha) for c in full] == [
        (0, "positive", 0.0), (0, "positive", 1.0), (0, "negative", 0.0), (0, "negative", 1.0),
        (5, "positive", 0.0), (5, "positive", 1.0), (5, "negative", 0.0), (5, "negative", 1.0),
    ]
    assert len(unique_conditions(full)) == 6


def test_ablated_readout_errors_and_no_bias():
    weight = torch.ones(1000, 4)
    with pytest.raises(ValueError, match=r"unit 1000 is out of range.*1000 units.*0\.\.999"):
        ablated_readout(weight, None, [Condition(1000, "positive", 0.5)])
    with pytest.raises(ValueError, match="bias must have shape"):
        ablated_readout(weight, torch.ones(3), [Condition(0, "positive", 0.5)])
    with pytest.raises(ValueError, match="units, in"):
        ablated_readout(torch.ones(4), None, [])
    rows, biases = ablated_readout(weight, None, [Condition(2, "positive", 1.0)])
    assert rows.tolist() == [[0, 0, 0, 0]] and biases.tolist() == [0.0]
    rows, biases = ablated_readout(weight, None, [])
    assert rows.shape == (0, 4) and biases.shape == (0,)


def test_score_conditions_by_hand_and_batch_size_independent():
    weight = torch.stack([ROW, -ROW])
    bias = torch.tensor([0.5, -0.5])
    conds = [Condition(0, "positive", 0), Condition(0, "positive", 0.5)]
    conds.append(Condition(1, "negative", 1))
    rows, biases = ablated_readout(weight, bias, conds)
    ones = torch.ones(1, 6)
    # sums: intact 4 + .5; positive .5 -> (-1+2-5+1) + .5 = -2.5; -ROW without negatives: 6 - .5
    assert score_conditions(ones, rows, biases).tolist() == [[4.5, -2.5, 5.5]]
    features = torch.randn(7, 6, generator=torch.Generator().manual_seed(0))
    batched = score_conditions(features, rows, biases)
    single = torch.cat([score_conditions(f[None], rows, biases) for f in features])
    torch.testing.assert_close(batched, single)
    with pytest.raises(ValueError, match="share 'in'"):
        score_conditions(torch.ones(2, 5), rows, biases)


def test_full_sweep_is_fast():
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(1000, 4096, generator=g), torch.randn(1000, generator=g)
    conds = condition_grid([0, 217, 482, 491, 497, 566, 569, 571, 574, 701, 373])
    start = time.perf_counter()
    rows, biases = ablated_readout(weight, bias, conds)
    assert time.perf_counter() - start < 2.0
    assert rows.shape == (231, 4096)
    for i in (0, 57, 230):  # spot-check against the one-row function
        c = conds[i]
        assert torch.equal(rows[i], ablate_weights(weight[c.unit], c.sign, c.alpha))


# -- parse_alphas: the one parser of ablation strengths (CLI, dashboard, stored sweeps) ----------

@pytest.mark.parametrize("text, expected", [
    # 0:1:0.1 -> 11 values; 0.30000000000000004 etc. are rounded to 6 decimals
    ("0:1:0.1", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)),
    ("0:1:0.25", (0.0, 0.25, 0.5, 0.75, 1.0)),
    ("0.5:0.5:0.1", (0.5,)),                     # a range of one
    ("0, 0.5 ,1", (0.0, 0.5, 1.0)),              # spaces are fine
    ("1,0.5,1", (1.0, 0.5)),                     # duplicates keep their first place
])
def test_parse_alphas_worked_cases(text, expected):
    assert parse_alphas(text) == expected


def test_parse_alphas_default_grid_is_the_papers():
    assert parse_alphas("0:1:0.1") == DEFAULT_ALPHAS


@pytest.mark.parametrize("text, words", [
    ("", "0:1:0.1"),
    ("a,b", "0:1:0.1"),
    ("0:1", "0:1:0.1"),                 # two fields
    ("1:0:0.1", "rise"),                # falling range
    ("0:1:0", "rise"),                  # zero step
    ("0:1:-0.1", "rise"),
    ("0:1:nan", "finite"),              # refused before any arithmetic
    ("0:1:1e-8", "more than 1001"),     # 1e8 values: refused before any allocation
    ("0:inf:0.1", "finite"),
    ("0,1.5", "[0, 1]"),                # out of range
    ("-0.1", "[0, 1]"),
    ("nan", "[0, 1]"),
])
def test_parse_alphas_refuses_with_one_sentence(text, words):
    with pytest.raises(ValueError) as info:
        parse_alphas(text)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@given(start=st.integers(0, 10), stop=st.integers(0, 10), step=st.integers(1, 10))
def test_parse_alphas_range_matches_an_integer_grid(start, stop, step):
    # start:stop:step in tenths is exactly the integer range in tenths, scaled
    if stop < start:
        start, stop = stop, start
    got = parse_alphas(f"{start / 10}:{stop / 10}:{step / 10}")
    n = (stop - start) // step          # a step that does not divide the range stops short
    expected = tuple(round((start + i * step) / 10, 6) for i in range(n + 1))
    assert got == expected
    assert all(0.0 <= a <= 1.0 for a in got)


# -- whole-readout ablation (paper Figs 16, 17): every unit at once, the same rule ----------------

from signseg_core.ablation import (  # noqa: E402
    score_whole_readout,
    whole_readout_ablation,
    whole_readout_conditions,
)

WHOLE = torch.stack([ROW, torch.tensor([-1.0, -1.0, -1.0, 2.0, 0.0, 0.0])])


def test_whole_readout_conditions_grid():
    assert whole_readout_conditions((0.0, 0.5, 1.0)) == (
        ("control", 0.0), ("positive", 0.5), ("positive", 1.0),
        ("negative", 0.5), ("negative", 1.0))
    assert len(whole_readout_conditions(DEFAULT_ALPHAS)) == 21
    # no control unless 0 is asked; duplicates and rounding like a Condition
    assert whole_readout_conditions((0.1 + 0.2, 0.3), ("negative",)) == (("negative", 0.3),)
    with pytest.raises(ValueError, match="sign"):
        whole_readout_conditions((0.5,), ("pos",))
    with pytest.raises(ValueError, match="alpha"):
        whole_readout_conditions((1.5,))


def test_whole_readout_by_hand():
    conds = whole_readout_conditions((0.0, 0.5))
    stack = whole_readout_ablation(WHOLE, conds)
    assert stack.shape == (3, 2, 6)
    # row 1 positive: only the 2 (k = 1); negative .5: three tied -1s, 1/3 < .5 <= 2/3 -> k = 2,
    # the lower indices first.
    assert stack[1].tolist() == [[0, -1, 0, 2, -5, 1], [-1, -1, -1, 0, 0, 0]]
    assert stack[2].tolist() == [[4, -1, 3, 2, 0, 1], [0, 0, -1, 2, 0, 0]]
    logits = score_whole_readout(torch.ones(1, 6), stack, torch.tensor([0.5, -0.5]))
    # control: sums 4 and -1; positive .5: -3 and -3; negative .5: 9 and 1 (plus the biases)
    assert logits.tolist() == [[[4.5, -1.5], [-2.5, -3.5], [9.5, 0.5]]]
    with pytest.raises(ValueError, match="share 'in'"):
        score_whole_readout(torch.ones(1, 5), stack, None)
    with pytest.raises(ValueError, match="bias must have shape"):
        score_whole_readout(torch.ones(1, 6), stack, torch.ones(3))


@settings(max_examples=100, deadline=None)
@given(m=matrices, alpha=alphas, sign=signs)
def test_whole_readout_row_is_the_per_unit_rule(m, alpha, sign):
    before = m.clone()
    stack = whole_readout_ablation(m, [(sign, alpha), ("control", 0.0)])
    assert torch.equal(m, before)  # the shared weight is only read
    for u in range(m.shape[0]):
        assert torch.equal(stack[0, u], ablate_weights(m[u], sign, alpha))
    assert torch.equal(stack[1], m)


@settings(max_examples=60, deadline=None)
@given(m=matrices, data=st.data())
def test_whole_readout_invariants(m, data):
    n_in = m.shape[1]
    features = torch.tensor(data.draw(st.lists(
        st.lists(st.floats(-10, 10, width=32), min_size=n_in, max_size=n_in),
        min_size=1, max_size=4)), dtype=torch.float32)
    bias = torch.arange(m.shape[0], dtype=torch.float32)
    conds = [("positive", 0.0), ("negative", 0.0), ("positive", 1.0), ("negative", 1.0)]
    stack = whole_readout_ablation(m, conds)
    logits = score_whole_readout(features, stack, bias)
    intact = torch.nn.functional.linear(features.double(), m.double(), bias.double())
    # alpha = 0 leaves the logits unchanged, whichever sign
    torch.testing.assert_close(logits[:, 0].double(), intact, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(logits[:, 1].double(), intact, rtol=1e-5, atol=1e-4)
    # alpha = 1 removes every weight of the sign, and the two signs partition the weights
    assert not (stack[2] > 0).any() and not (stack[3] < 0).any()
    assert torch.equal(stack[2] + stack[3], m)
    # the same logits one image at a time (no batch-size dependence beyond rounding)
    single = torch.cat([score_whole_readout(f[None], stack, bias) for f in features])
    torch.testing.assert_close(single, logits)


def test_whole_readout_matches_ablated_readout_on_a_real_size():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(50, 64, generator=g)
    conds = whole_readout_conditions(DEFAULT_ALPHAS)
    stack = whole_readout_ablation(weight, conds)
    per_unit = [Condition(u, "positive" if s == "control" else s, a)
                for s, a in conds for u in range(50)]
    rows, _ = ablated_readout(weight, None, per_unit)
    assert torch.equal(stack.reshape(-1, 64), rows)
