"""Sign statistics: hand-worked Dale indices, the exact untrained expectation, ratios, rankings."""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from scipy.stats import binom
from torch import nn

from signseg_core.signs import (
    compare_trained_untrained,
    dale_histogram_edges,
    dale_index,
    expected_untrained_dale_index,
    layer_summary,
    positive_negative_ratio,
    rank_channels,
    ratio_summary,
    readout_dale_vs_accuracy,
)

# Linear W[out=4, in=3]. Outgoing weights of input j are the column W[:, j]:
#   col 0: [1, 3, -5, 2]   3 positive, 1 negative -> D = 3/4
#   col 1: [-2, 4, 6, -7]  2 and 2                -> D = 1/2
#   col 2: [-1, -1, -2, -3] all negative           -> D = 1
W_HAND = torch.tensor([[1.0, -2.0, -1.0], [3.0, 4.0, -1.0], [-5.0, 6.0, -2.0], [2.0, -7.0, -3.0]])


def _linear(weight, bias=None):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _seeded(module, seed=0):
    """Overwrite a layer's weight with a seeded draw (tests never use the global RNG)."""
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        module.weight.copy_(torch.randn(module.weight.shape, generator=g))
    return module


def test_dale_index_hand_linear():
    assert torch.equal(dale_index(W_HAND), torch.tensor([0.75, 0.5, 1.0]))


def test_zeros_count_as_neither_sign():
    # cols: [0, 1, -1, 0] -> p+ = p- = 1/4 -> 0.25; [0, 2, 3, 4] -> 3/4; all zero -> 0.0
    w = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [-1.0, 3.0, 0.0], [0.0, 4.0, 0.0]])
    assert torch.equal(dale_index(w), torch.tensor([0.25, 0.75, 0.0]))


def test_conv_spatial_average_can_flip_the_sign():
    # One input channel, three 2x2 kernels. Raw entries: 6 of 12 positive (balanced), but the
    # spatial means are -0.75, -0.25, +0.5, so the channel sends 2 negatives and 1 positive.
    w = torch.tensor([[2.0, 2.0, 2.0, -9.0], [1.0, 1.0, 1.0, -4.0], [-1.0, -1.0, -1.0, 5.0]])
    w = w.reshape(3, 1, 2, 2)
    assert dale_index(w).tolist() == pytest.approx([2 / 3])
    table = rank_channels(w)
    assert table.loc[0, "sign"] == "negative"
    assert (table.loc[0, "n_positive"], table.loc[0, "n_negative"]) == (1, 2)


def test_grouped_conv_uses_each_groups_outputs_only():
    # Conv2d(4, 4, 1, groups=2): weight (4, 2, 1, 1); input c of group g sends to outputs of g.
    conv = nn.Conv2d(4, 4, 1, groups=2, bias=False)
    with torch.no_grad():
        w = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, 1.0]])
        conv.weight.copy_(w[..., None, None])
    # channel 0: W[0:2, 0] = [1, 1] -> 1; channel 1: [-1, 1] -> .5;
    # channel 2: W[2:4, 0] = [-1, -1] -> 1; channel 3: [-1, 1] -> .5
    assert dale_index(conv.weight, groups=2).tolist() == [1.0, 0.5, 1.0, 0.5]
    row = layer_summary({"g": conv}).iloc[0]
    assert (row.in_channels, row.n_outgoing, row.groups) == (4, 2, 2)
    assert "grouped" in row.note
    depthwise = _seeded(nn.Conv2d(3, 3, 3, groups=3))
    row = layer_summary({"dw": depthwise}).iloc[0]
    assert row.n_outgoing == 1 and row.mean_dale == 1.0 and "depthwise" in row.note


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dale_index_any_dtype(dtype):
    d = dale_index(W_HAND.to(dtype))
    assert d.is_floating_point() and d.tolist() == [0.75, 0.5, 1.0]
    assert dale_index(W_HAND.to(torch.int64)).tolist() == [0.75, 0.5, 1.0]


def test_dale_index_rejects_bad_shapes():
    for bad in (torch.ones(3), torch.ones(2, 3, 4), torch.ones(1, 2, 3, 4, 5)):
        with pytest.raises(ValueError, match="dimensions"):
            dale_index(bad)
    with pytest.raises(ValueError, match="groups=3 does not divide"):
        dale_index(torch.ones(4, 2), groups=3)
    with pytest.raises(ValueError, match="groups"):
        dale_index(torch.ones(4, 2), groups=0)


def _brute_expected(n):
    return sum(math.comb(n, k) * max(k, n - k) for k in range(n + 1)) / (2**n * n)


def test_expected_untrained_small_n_by_hand():
    # n=2: K=0,1,2 w.p. 1/4,1/2,1/4, max = 2,1,2 -> 1.5/2; n=4: (4+12+12+12+4)/16/4 = 0.6875
    assert expected_untrained_dale_index(1) == 1.0
    assert expected_untrained_dale_index(2) == pytest.approx(0.75, abs=1e-12)
    assert expected_untrained_dale_index(3) == pytest.approx(0.75, abs=1e-12)
    assert expected_untrained_dale_index(4) == pytest.approx(0.6875, abs=1e-12)
    for n in range(1, 60):
        assert expected_untrained_dale_index(n) == pytest.approx(_brute_expected(n), abs=1e-12)


def test_expected_untrained_known_values():
    assert round(expected_untrained_dale_index(1000), 4) == 0.5126  # paper Table 3
    # Large n: E|K - n/2| ~ sqrt(n / (2 pi)), so D ~ 0.5 + 1 / sqrt(2 pi n).
    n = 1_000_000
    approx = 0.5 + 1 / math.sqrt(2 * math.pi * n)
    assert expected_untrained_dale_index(n) == pytest.approx(approx, rel=1e-6)
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(ValueError, match="positive int"):
            expected_untrained_dale_index(bad)


def test_expected_untrained_matches_sampling():
    rng = np.random.default_rng(0)
    n, trials = 10, 40_000
    positives = (rng.standard_normal((trials, n)) > 0).sum(1)
    d = np.maximum(positives, n - positives) / n
    assert abs(d.mean() - expected_untrained_dale_index(n)) < 4 * d.std() / math.sqrt(trials)


def test_untrained_readout_matches_expectation():
    # nn.Linear(512, 1000) default init (kaiming uniform, i.i.d. symmetric), drawn from a seeded
    # generator. Each of the 512 input channels has 1000 outgoing weights and the channels are
    # independent, so the mean DI has standard error sqrt(Var D / 512) ~ 0.0004; the paper's
    # range 0.5123-0.5130 is only ~ +-1 SE, so we assert 3 SE (seeds 0-9 give 0.5118-0.5133).
    n, channels = 1000, 512
    weight = torch.empty(n, channels)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=torch.Generator().manual_seed(0))
    k = np.arange(n + 1)
    d = np.maximum(k, n - k) / n
    mean = float((binom.pmf(k, n, 0.5) * d).sum())
    std = math.sqrt(float((binom.pmf(k, n, 0.5) * d**2).sum()) - mean**2)
    assert mean == pytest.approx(expected_untrained_dale_index(n), abs=1e-12)
    observed = dale_index(weight).double().mean().item()
    assert abs(observed - mean) < 3 * std / math.sqrt(channels)


def test_positive_negative_ratio_by_hand():
    w = torch.tensor([[1.0, -2.0, 3.0], [-1.0, -3.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    r = positive_negative_ratio(w)  # 4/2, 2/4, 2/0, 0/0
    assert r[:3].tolist() == [2.0, 0.5, math.inf] and math.isnan(r[3].item())
    mean, std = ratio_summary(w[:2])
    assert (mean, std) == pytest.approx((1.25, 0.75))
    conv = torch.tensor([[1.0, -1.0], [2.0, -1.0]]).reshape(2, 1, 1, 2)
    assert positive_negative_ratio(conv).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError):
        positive_negative_ratio(torch.ones(3))


def test_random_ratio_is_near_one():
    weight = torch.empty(1000, 512)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=torch.Generator().manual_seed(1))
    mean, std = ratio_summary(weight)
    assert abs(mean - 1.0) < 0.02 and 0.05 < std < 0.2


def test_rank_channels_order_and_ties():
    # Append col 3 = [1, 1, 1, -1]: score (p+ - p-) 2/4 like col 0; tie -> lower index first.
    w = torch.cat([W_HAND, torch.tensor([[1.0], [1.0], [1.0], [-1.0]])], dim=1)
    table = rank_channels(w)
    assert table["channel"].tolist() == [0, 3, 1, 2]
    assert table["sign"].tolist() == ["positive", "positive", "balanced", "negative"]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert table["frac_positive"].tolist() == [0.75, 0.75, 0.5, 0.0]
    assert table["frac_negative"].tolist() == [0.25, 0.25, 0.5, 1.0]
    assert table["dale_index"].tolist() == [0.75, 0.75, 0.5, 1.0]


def test_layer_summary_hand_linear():
    layers = OrderedDict(conv=_seeded(nn.Conv2d(3, 8, 3)), fc=_linear(W_HAND))
    table = layer_summary(layers, bins=2)
    assert table["layer"].tolist() == ["conv", "fc"]
    assert table["kind"].tolist() == ["conv", "linear"]
    fc = table.iloc[1]
    assert (fc.in_channels, fc.out_channels, fc.n_outgoing, fc.groups) == (3, 4, 4, 1)
    # D = [.75, .5, 1]; bins [.5, .75) [.75, 1] -> [1, 2]
    assert fc["hist"] == [1, 2] and fc.n_below_half == 0
    assert fc.mean_dale == pytest.approx(0.75)
    assert fc.std_dale == pytest.approx(math.sqrt(2 * 0.25**2 / 3))
    assert fc.expected_untrained == pytest.approx(_brute_expected(4))
    conv = table.iloc[0]
    assert conv.n_outgoing == 8 and sum(conv["hist"]) + conv.n_below_half == 3
    assert conv.mean_dale == pytest.approx(dale_index(layers["conv"].weight).mean().item())
    assert dale_histogram_edges(bins=2).tolist() == [0.5, 0.75, 1.0]


def test_layer_summary_errors():
    with pytest.raises(ValueError, match="'bn' is a BatchNorm2d"):
        layer_summary({"bn": nn.BatchNorm2d(3)})
    with pytest.raises(ValueError, match="bins"):
        layer_summary({"fc": _linear(W_HAND)}, bins=0)
    assert len(layer_summary({})) == 0


def test_compare_trained_untrained():
    trained = OrderedDict(a=_linear(W_HAND), b=_linear(torch.ones(2, 2)))
    untrained = OrderedDict(b=_linear(torch.tensor([[1.0, 1.0], [-1.0, 1.0]])), a=_linear(-W_HAND))
    table = compare_trained_untrained(trained, untrained)
    assert table["layer"].tolist() == ["a", "b"]
    # a: sign flip keeps D (0.75 both); b: trained D = [1, 1], untrained [.5, 1] -> .75
    assert table["trained_dale"].tolist() == pytest.approx([0.75, 1.0])
    assert table["untrained_dale"].tolist() == pytest.approx([0.75, 0.75])
    assert table["delta_dale"].tolist() == pytest.approx([0.0, 0.25])
    with pytest.raises(ValueError, match="different layers"):
        compare_trained_untrained(trained, {"a": _linear(W_HAND)})
    with pytest.raises(ValueError, match="shape"):
        compare_trained_untrained({"a": _linear(W_HAND)}, {"a": _linear(torch.ones(2, 2))})


def test_readout_dale_vs_accuracy():
    rows = [("hand", W_HAND, 56.5), ("ones", torch.ones(3, 2), 80.0)]
    table = readout_dale_vs_accuracy(iter(rows))
    assert table.columns.tolist() == ["model", "mean_dale", "top1"]
    assert table["model"].tolist() == ["hand", "ones"]
    assert table["mean_dale"].tolist() == pytest.approx([0.75, 1.0])
    assert table["top1"].tolist() == [56.5, 80.0]


def test_dale_index_does_not_touch_input():
    layer = _linear(W_HAND)
    before = layer.weight.detach().clone()
    d = dale_index(layer.weight)
    assert not d.requires_grad and torch.equal(layer.weight.detach(), before)
    # A 1x1 conv weight gives the same indices as the Linear weight it reshapes.
    assert torch.equal(dale_index(W_HAND.reshape(4, 3, 1, 1)), dale_index(W_HAND))
