"""scripts/generator_quality.py: hand-worked ranks and shares, crops, curves, sheet, tiny run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import load_script


@pytest.fixture(scope="module")
def gq():
    return load_script("generator_quality")


LOGITS = torch.tensor([[5.0, 1.0, 3.0, 0.0],   # target 0: rank 0
                       [5.0, 1.0, 3.0, 0.0],   # target 2: rank 1
                       [0.0, 2.0, 2.0, 9.0],   # target 1: tie with class 2 is not "above"
                       [4.0, 3.0, 2.0, 1.0]])  # target 3: rank 3


def test_target_ranks_count_classes_strictly_above(gq):
    assert gq.target_ranks(LOGITS, [0, 2, 1, 3]).tolist() == [0, 1, 1, 3]


def test_recognition_shares_and_probability_by_hand(gq):
    rec = gq.recognition(LOGITS[:2], [0, 2])
    assert rec["top1"] == 0.5 and rec["top5"] == 1.0
    p = torch.tensor([5.0, 1.0, 3.0, 0.0]).softmax(0)
    assert rec["mean_target_prob"] == pytest.approx(float(p[0] + p[2]) / 2)
    assert gq.recognition(LOGITS, [0, 2, 1, 3])["top1"] == 0.25


def test_target_ranks_rejects_mismatched_targets(gq):
    with pytest.raises(ValueError, match="N targets"):
        gq.target_ranks(LOGITS, [0, 1])


def test_natural_logit_stats_by_hand(gq):
    stats = gq.natural_logit_stats(LOGITS, [0, 3])
    assert stats["per_unit"][0] == {"mean": 3.5, "max": 5.0}
    assert stats["per_unit"][3] == {"mean": 2.5, "max": 9.0}
    assert stats["mean_of_unit_means"] == 3.0 and stats["mean_of_unit_maxes"] == 7.0
    assert stats["top1_logit_mean"] == pytest.approx((5 + 5 + 9 + 4) / 4)
    assert stats["top1_logit_max"] == 9.0 and stats["n_images"] == 4
    more = gq.natural_logit_stats(LOGITS, [0, 3], extra_units=[3, 1])
    assert list(more["per_unit"]) == [0, 3, 1] and more["per_unit"][1] == {"mean": 1.75, "max": 3.0}
    assert more["mean_of_unit_means"] == 3.0  # extra units are listed, not averaged


def test_natural_crops_are_seeded_in_range_and_come_from_the_photo(gq):
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[..., 0] = 255  # pure red: every crop, any size or flip, stays pure red
    other = np.full((50, 50, 3), 128, np.uint8)
    a = gq.natural_crops([photo, other], 5, seed=3, size=16)
    assert a.shape == (5, 3, 16, 16)
    assert torch.equal(a, gq.natural_crops([photo, other], 5, seed=3, size=16))
    assert not torch.equal(a, gq.natural_crops([photo, other], 5, seed=4, size=16))
    assert torch.allclose(a[0, 0], torch.ones(16, 16)) and a[0, 1:].abs().max() < 1e-6
    assert torch.allclose(a[1], torch.full((3, 16, 16), 128 / 255), atol=1e-6)
    with pytest.raises(ValueError, match="min_frac"):
        gq.natural_crops([photo], 2, min_frac=0.0)


def test_best_so_far_curves_take_running_max_then_means(gq):
    r1 = SimpleNamespace(max_per_gen=np.array([[1.0, 4.0], [3.0, np.nan], [2.0, 5.0]]))
    r2 = SimpleNamespace(max_per_gen=np.array([[0.0, 0.0], [1.0, 2.0], [1.0, 1.0]]))
    curves = gq.best_so_far_curves([r1, r2])
    # r1 best so far: [[1,4],[3,4],[3,5]]; r2: [[0,0],[1,2],[1,2]]
    assert curves["best_over_restarts"] == [2.0, 3.0, 3.5]
    assert curves["per_restart"] == [1.25, 2.5, 2.75]


def test_contact_sheet_lays_out_tiles_and_rejects_missing_captions(gq):
    ims = [np.full((8, 8, 3), v, np.uint8) for v in (0, 100, 200)]
    sheet = gq.contact_sheet(ims, [["a", "b"]] * 3, columns=2, tile=20, line_height=10)
    assert sheet.size == (2 * 28, 2 * (20 + 4 + 2 * 10 + 4))
    assert sheet.getpixel((4 + 28 + 5, 4 + 5)) == (100, 100, 100)  # second tile, first row
    with pytest.raises(ValueError, match="captions"):
        gq.contact_sheet(ims, [["a"]])


def test_tiny_run_judges_every_restart_and_serialises(gq):
    from signseg_core.models.registry import load_model

    model, heldout = load_model("tiny_test"), load_model("tiny_test", seed=1)
    results, wall = gq.run_generator(model, "fourier", [3, 7], generations=3, restarts=2,
                                     options={"size": 32})
    assert [r.key.unit for r in results] == [3, 7] and wall > 0
    judged = gq.judge(results, {"opt": model, "held": heldout}, model.class_names)
    assert len(judged["recognition"]["held"]["ranks"]) == 4
    row = judged["per_unit"][1]
    # The optimised model's logit on the saved uint8 image is the evolved score, up to rounding.
    assert np.allclose(row["opt_target_logit"], results[1].intact_scores, atol=0.05)
    assert row["opt_rank"] == gq.target_ranks(
        model(torch.from_numpy(results[1].images).permute(0, 3, 1, 2).float() / 255),
        [7, 7]).tolist()
    record = gq.summarize(results, judged, wall_s=wall, optimised="opt",
                          settings={"popsize": 35})
    assert record["images_scored"] == 3 * 2 * 2 * 35
    assert record["curve"]["best_over_restarts"][-1] == pytest.approx(
        np.mean([r.best_scores.max() for r in results]))
    assert record["mean_best_logit"] == pytest.approx(
        np.mean([r.intact_scores.max() for r in results]), abs=1e-9)
    json.dumps(record)  # plain types only
    caption = gq.sheet_caption(row, "opt", ["held"])
    assert caption[0].startswith("7 ") and f"#{row['held_rank'][row['best_restart']] + 1}" in \
        caption[2]
