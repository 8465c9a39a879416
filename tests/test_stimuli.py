"""Tests of signseg_core.stimuli.diverse: diverseSet from a folder of generated PNGs, selection
files and contact sheets of exact shape and content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from signseg_core.stimuli.diverse import (
    DiverseSetSelection,
    contact_sheet,
    copy_selection,
    diverse_set_from_folder,
    read_selection,
    write_selection,
)


def _write_pngs(folder, n, *, seed=0, size=40, prefix="img"):
    """``n`` distinct PNGs: random blocky patterns of varied colour and scale."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cells = int(rng.integers(2, 9))
        small = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.Resampling.NEAREST)
        im.save(folder / f"{prefix}_{i:02d}.png")
    return folder


@pytest.fixture
def pngs(tmp_path):
    return _write_pngs(tmp_path / "space", 12)


def test_diverse_set_from_folder_picks_k_distinct_files_deterministically(tiny, pngs):
    calls = []
    sel = diverse_set_from_folder(tiny, pngs, k=4, seed=0, batch_size=5,
                                  progress=lambda d, t, m="": calls.append((d, t)))
    assert isinstance(sel, DiverseSetSelection) and sel.k == 4
    assert len(set(sel.paths)) == 4 and all(p.parent == pngs for p in sel.paths)
    assert sorted(pngs.iterdir())[sel.indices[0]] == sel.paths[0]
    # 12 images span at most 11 dimensions: PCA keeps 11 components and all the variance
    assert sel.n_components == 11 and sel.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert (sel.n_candidates, sel.n_space, sel.seed) == (12, 12, 0)
    assert calls == [(1, 2), (2, 2)]
    again = diverse_set_from_folder(tiny, pngs, k=4, seed=0)  # batch size does not matter
    assert again.paths == sel.paths


def test_fewer_components_and_k_limits(tiny, pngs):
    sel = diverse_set_from_folder(tiny, pngs, k=12, n_components=3)
    assert sel.n_components == 3 and 0 < sel.explained_variance < 1
    assert sorted(sel.paths) == sorted(pngs.iterdir())  # k = N takes every image once
    with pytest.raises(ValueError, match="holds only 12"):
        diverse_set_from_folder(tiny, pngs, k=13)
    with pytest.raises(ValueError, match="k must be"):
        diverse_set_from_folder(tiny, pngs, k=0)
    with pytest.raises(FileNotFoundError):
        diverse_set_from_folder(tiny, pngs / "missing", k=2)


def test_pool_folder_supplies_the_candidates(tiny, pngs, tmp_path):
    pool = _write_pngs(tmp_path / "pool", 6, seed=5, size=48, prefix="pool")
    calls = []
    sel = diverse_set_from_folder(tiny, pngs, k=3, pool_folder=pool,
                                  progress=lambda d, t, m="": calls.append((d, t)))
    assert all(p.parent == pool for p in sel.paths) and len(set(sel.paths)) == 3
    assert (sel.n_candidates, sel.n_space) == (6, 12) and [t for _, t in calls] == [3, 3, 3]
    with pytest.raises(ValueError, match="holds only 6"):
        diverse_set_from_folder(tiny, pngs, k=7, pool_folder=pool)


def test_write_read_and_copy_selection(tiny, pngs, tmp_path):
    sel = diverse_set_from_folder(tiny, pngs, k=3)
    out = write_selection(sel, tmp_path / "out" / "sel.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "rank,path" and len(lines) == 4 and lines[1].startswith("0,")
    assert read_selection(out) == list(sel.paths)
    rel = write_selection(sel.paths, tmp_path / "rel.csv", root=pngs)
    assert rel.read_text().splitlines()[1] == f"0,{sel.paths[0].name}"
    assert read_selection(rel, root=pngs) == list(sel.paths)
    with pytest.raises(ValueError, match="under root"):
        write_selection(sel, tmp_path / "x.csv", root=tmp_path / "elsewhere")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a selection CSV"):
        read_selection(tmp_path / "bad.csv")
    copied = copy_selection(sel, tmp_path / "stimuli")
    assert [p.name for p in copied] == [f"{i:03d}_{p.name}" for i, p in enumerate(sel.paths)]
    assert all(c.read_bytes() == p.read_bytes() for c, p in zip(copied, sel.paths))


def test_contact_sheet_exact_shape_and_tiles(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (200, 100, 50)]
    paths = []
    for i, c in enumerate(colours):
        Image.new("RGB", (30 + 10 * i, 30), c).save(tmp_path / f"c{i}.png")
        paths.append(tmp_path / f"c{i}.png")
    sheet = contact_sheet(paths, columns=3, tile=16, pad=2)
    assert sheet.shape == (2 * 16 + 3 * 2, 3 * 16 + 4 * 2, 3) and sheet.dtype == np.uint8
    for i, c in enumerate(colours):  # uniform images resize exactly
        r, col = divmod(i, 3)
        y, x = 2 + r * 18, 2 + col * 18
        assert np.all(sheet[y:y + 16, x:x + 16] == c)
    assert np.all(sheet[0] == 255) and np.all(sheet[-1] == 255)  # padding is background
    assert np.all(sheet[20:36, 38:54] == 255)  # the empty sixth cell
    labelled = contact_sheet(paths, columns=3, tile=16, pad=2, labels=True, label_px=10)
    assert labelled.shape == (2 * 26 + 3 * 2, 56, 3)
    assert (labelled[18:28, 2:18] < 255).any()  # a caption was drawn under the first tile


def test_contact_sheet_from_tensors_and_arrays():
    batch = torch.stack([torch.full((3, 8, 12), v) for v in (0.0, 1.0)])
    sheet = contact_sheet(batch, columns=4, tile=8, pad=0)
    assert sheet.shape == (8, 32, 3)
    assert np.all(sheet[:, :8] == 0) and np.all(sheet[:, 8:16] == 255)
    assert np.all(sheet[:, 16:] == 255)  # background fills the unused columns
    mixed = contact_sheet([np.zeros((10, 10, 3), np.uint8), torch.rand(3, 9, 9)], columns=1,
                          tile=8, labels=["a", "b"], label_px=6, pad=1)
    assert mixed.shape == (2 * 14 + 3, 10, 3)
    with pytest.raises(ValueError, match="no images"):
        contact_sheet([], columns=2)
    with pytest.raises(ValueError, match="labels"):
        contact_sheet(batch, columns=2, tile=8, labels=["only one"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        contact_sheet([torch.full((3, 8, 8), 2.0)], columns=1, tile=8)
    with pytest.raises(ValueError, match="columns >= 1"):
        contact_sheet(batch, columns=0)
    with pytest.raises(TypeError):
        contact_sheet("one.png", columns=1)
