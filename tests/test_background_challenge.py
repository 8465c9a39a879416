"""ImageNet-9 and the backgrounds challenge under whole-readout ablation (Fig 17): the 1000 → 9
mapping against the publisher's file, accuracy / BG-gap / challenge against an independent
reference on a synthetic release, the layout's refusals, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from signseg_core.ablation import ablate_weights
from signseg_core.analyses.ablation_benchmarks import AblationGrid
from signseg_core.analyses.background_challenge import backgrounds, backgrounds_family
from signseg_core.datasets.backgrounds import (
    CLASS_FOLDERS,
    IN9_RANGES,
    in9_decisions,
    in_to_in9,
    mapping_digest,
    variant_images,
)
from signseg_core.datasets.files import DatasetError, DatasetMissingError

SIZE = 10


def make_release(root, variants=("original", "mixed_same", "mixed_rand", "only_bg_t"),
                 per_class: int = 1, seed: int = 0, masks: bool = True):
    """A ``bg_challenge`` folder in MadryLab's layout: ``<variant>/val/<class>/<name>.JPEG`` for
    each variant, ``fg_mask/val/<class>/<name>.npy`` for the originals; returns ``root``."""
    rng = np.random.default_rng(seed)
    for variant in variants:
        for folder in CLASS_FOLDERS:
            d = root / "bg_challenge" / variant / "val" / folder
            d.mkdir(parents=True)
            for n in range(per_class):
                pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"n0_{n}.JPEG", quality=95)
    if masks:
        for folder in CLASS_FOLDERS:
            d = root / "bg_challenge" / "fg_mask" / "val" / folder
            d.mkdir(parents=True)
            for n in range(per_class):
                np.save(d / f"n0_{n}.npy", rng.integers(0, 2, (SIZE, SIZE)).astype(np.uint8))
    return root


def test_mapping_is_the_publishers():
    # SHA-256 of in_to_in9.json's 1000 labels in index order (MadryLab/backgrounds_challenge)
    assert mapping_digest() == "93680c6e3280de80f95d8339435523069593acb5ec048a82af0ba43a58b9252f"
    table = in_to_in9()
    assert np.bincount(table + 1).tolist() == [630, 116, 52, 42, 36, 35, 27, 26, 20, 16]
    assert table[0] == 8 and table[151] == 0 and table[171] == -1 and table[300] == 5
    assert sum(hi - lo + 1 for r in IN9_RANGES.values() for lo, hi in r) == 370


def test_decisions_by_hand():
    logits = torch.zeros(3, 1000)
    logits[0, 207] = 1.0  # golden retriever: dog (0)
    logits[1, 500] = 1.0  # cliff dwelling: none of the nine (-1)
    logits[2, 1], logits[2, 389] = 2.0, 2.0  # a tie between two fish: fish (8) either way
    assert in9_decisions(logits).tolist() == [0, -1, 8]


def reference(model, root, variant, w):
    """Float64 accuracy of ``variant`` with readout weight ``w``, by the benchmark's loop."""
    items, _ = variant_images(root, variant)
    correct = 0
    for path, label in items:
        x = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        with torch.no_grad():
            f = model.features(x[None].float() / 255).double()
        pred = int((f @ w.double().T + model.readout.bias.double()).argmax())
        correct += int(in_to_in9()[pred] == label)
    return correct / len(items)


def challenge_reference(model, root, w):
    """The repository's challenge loop in float64: a foreground is correct when no background
    fools it."""
    fg_root, bgs = root / "fg_mask" / "val", variant_images(root, "only_bg_t")[0]
    back = [np.array(Image.open(p).convert("RGB")) / 255.0 for p, _ in bgs]
    survived = []
    for label, folder in enumerate(CLASS_FOLDERS):
        for mask_path in sorted((fg_root / folder).iterdir()):
            m = np.load(mask_path)[..., None].astype(np.float64)
            fg = np.array(Image.open(root / "original" / "val" / folder /
                                     mask_path.name.replace("npy", "JPEG")).convert("RGB")) / 255.0
            ok = True
            for bg in back:
                x = torch.from_numpy(bg * (1 - m) + m * fg).permute(2, 0, 1)[None].float()
                with torch.no_grad():
                    f = model.features(x).double()
                pred = int((f @ w.double().T + model.readout.bias.double()).argmax())
                ok &= in_to_in9()[pred] == label
            survived.append(ok)
    return float(np.mean(survived))


def test_accuracy_gap_and_challenge_match_the_reference(tiny, tmp_path, store):
    root = make_release(tmp_path)
    grid = AblationGrid(alphas=(0.0, 1.0))
    table = backgrounds(tiny, tmp_path, variants=("original", "mixed_same", "mixed_rand"),
                        challenge=True, grid=grid, store=store, batch_size=4, chunk_size=5,
                        challenge_chunk=4)
    assert set(table.measure) == {"original", "mixed_same", "mixed_rand", "bg_gap", "challenge"}
    release, w = root / "bg_challenge", tiny.readout.weight.detach()
    for sign in ("positive", "negative"):
        ablated = ablate_weights(w, sign, 1.0)
        rows = table[(table.sign == sign) & (table.alpha == 1.0)].set_index("measure")
        for variant in ("original", "mixed_same", "mixed_rand"):
            assert rows.value[variant] == pytest.approx(reference(tiny, release, variant, ablated))
            assert rows.n[variant] == 9
        assert rows.value["bg_gap"] == pytest.approx(rows.value["mixed_same"]
                                                     - rows.value["mixed_rand"])
        assert rows.value["challenge"] == pytest.approx(challenge_reference(tiny, release, ablated))
    control = table[table.control].set_index(["sign", "measure"]).value
    assert control["positive"].equals(control["negative"])
    assert control["positive"]["original"] == pytest.approx(reference(tiny, release, "original", w))
    # stored: a second run computes nothing and gives the same table
    n = len(store)
    again = backgrounds(tiny, tmp_path, variants=("original", "mixed_same", "mixed_rand"),
                        challenge=True, grid=grid, store=store, batch_size=9, chunk_size=5,
                        challenge_chunk=4)
    assert len(store) == n and again.equals(table)


def test_layout_refusals(tmp_path, tiny):
    with pytest.raises(DatasetMissingError) as info:
        backgrounds(tiny, tmp_path, variants=("original",))
    text = str(info.value)
    assert "ImageNet-9 'original' images not found" in text
    assert "backgrounds_challenge/releases/download/data/backgrounds_challenge_data.tar.gz" in text
    root = make_release(tmp_path / "a", variants=("original",), masks=False)
    val = root / "bg_challenge" / "original" / "val"
    (val / "09_plant").mkdir()
    with pytest.raises(DatasetError, match="unexpected folder .*09_plant"):
        backgrounds(tiny, root, variants=("original",))
    (val / "09_plant").rmdir()
    (val / "08_fish" / "n0_0.JPEG").rename(val / "08_fish" / "n0_0.txt")
    with pytest.raises(DatasetError, match=r"n0_0\.txt is not an image file"):
        backgrounds(tiny, root, variants=("original",))
    (val / "08_fish" / "n0_0.txt").write_bytes(b"")
    (val / "08_fish" / "n0_0.txt").rename(val / "08_fish" / "n0_0.JPEG")
    with pytest.raises(DatasetError, match=r"cannot read the image .*n0_0\.JPEG"):
        backgrounds(tiny, root, variants=("original",))
    with pytest.raises(ValueError, match="unknown ImageNet-9 variant 'mixed'"):
        backgrounds(tiny, root, variants=("mixed",))
    with pytest.raises(DatasetMissingError, match="'fg_mask'"):
        backgrounds(tiny, root, variants=("original",), challenge=True)


def test_challenge_refusals(tmp_path, tiny):
    root = make_release(tmp_path)
    masks = root / "bg_challenge" / "fg_mask" / "val" / "03_reptile"
    np.save(masks / "n0_0.npy", np.full((SIZE, SIZE), 2, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"n0_0\.npy holds values other than 0 and 1"):
        backgrounds(tiny, root, variants=(), challenge=True, grid=AblationGrid(alphas=(0.0,)))
    np.save(masks / "n0_0.npy", np.zeros((SIZE, SIZE + 1), dtype=np.uint8))
    with pytest.raises(DatasetError, match="has shape"):
        backgrounds(tiny, root, variants=(), challenge=True, grid=AblationGrid(alphas=(0.0,)))
    np.save(masks / "n0_9.npy", np.zeros((SIZE, SIZE), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"n0_9\.npy has no original image"):
        backgrounds(tiny, root, variants=(), challenge=True)


def test_family_and_missing_members(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_WEIGHTS_DIR", str(tmp_path / "weights"))
    make_release(tmp_path, variants=("mixed_same", "mixed_rand"), masks=False)
    table, skipped = backgrounds_family(
        ["tiny_test", "tiny_test_b", "resnet50_robust_linf_8"], tmp_path,
        variants=("mixed_same", "mixed_rand"), grid=AblationGrid(alphas=(0.0, 0.5)))
    assert set(table.model) == {"tiny_test", "tiny_test_b"}
    assert len(table) == 2 * 4 * 3  # models x curve points x (2 variants + bg_gap)
    assert [s.name for s in skipped] == ["resnet50_robust_linf_8"]


def test_figure_draws_chance_and_every_measure():
    import pandas as pd

    from signseg_core.figures.benchmark_plots import backgrounds_figure

    rows = [{"model": m, "measure": meas, "sign": s, "alpha": a, "control": a == 0, "n": 9,
             "correct": 1, "value": v}
            for m in ("a", "b") for meas, v in (("original", 0.9), ("mixed_rand", 0.5),
                                                ("bg_gap", 0.1), ("challenge", 0.2))
            for s in ("positive", "negative") for a in (0.0, 1.0)]
    fig = backgrounds_figure(pd.DataFrame(rows))
    chance = [t for t in fig.data if t.name and t.name.startswith("chance")]
    assert len(chance) == 3 and all(list(t.y) == [1 / 9, 1 / 9] for t in chance)  # not on bg_gap
    curves = [t for t in fig.data if t.name and "·" in t.name]
    assert len(curves) == 4 * 2 * 2  # measures x models x signs
    assert [a.text for a in fig.layout.annotations][:4] == [
        "Original", "Mixed-Rand", "BG-gap (Mixed-Same − Mixed-Rand)",
        "challenge accuracy (every background)"]


def test_cli_backgrounds(tmp_path, capsys):
    import pandas as pd

    from signseg_core.cli.main import main

    make_release(tmp_path, variants=("mixed_same", "mixed_rand"), masks=False)
    csv = tmp_path / "bg.csv"
    assert main(["backgrounds", "tiny_test", "--data", str(tmp_path), "--variants", "mixed_same",
                 "mixed_rand", "--alphas", "0,1", "--csv", str(csv), "--quiet"]) == 0
    table = pd.read_csv(csv)
    assert set(table.measure) == {"mixed_same", "mixed_rand", "bg_gap"} and len(table) == 12
    assert "bg_gap" in capsys.readouterr().out
    assert main(["backgrounds", "tiny_test", "--data", str(tmp_path), "--quiet"]) == 2
    assert "ImageNet-9 'original' images not found" in capsys.readouterr().err
