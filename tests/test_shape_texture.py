"""Shape vs texture under whole-readout ablation (Fig 16): the benchmark's 16-way mapping by hand
and against a float64 numpy reference, shape bias of known decisions, the cue-conflict layout and
its refusals, cached and resumed evaluation, a family with absent members."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from signseg_core.ablation import ablate_weights
from signseg_core.analyses.ablation_benchmarks import (
    AblationGrid,
    evaluate_in_chunks,
    family_members,
)
from signseg_core.analyses.shape_texture import shape_texture, shape_texture_family
from signseg_core.datasets.cue_conflict import (
    CATEGORIES,
    CATEGORY_INDICES,
    CueConflictImage,
    category_decisions,
    cue_conflict_images,
    parse_cue_conflict_name,
    shape_texture_counts,
)
from signseg_core.datasets.files import DatasetError, DatasetMissingError
from signseg_core.jobs import JobCancelled
from signseg_core.models.imagenet import class_names

# Texture of each synthetic image: the next category, and for "bird" the same (no conflict).
TEXTURE = {c: ("bird" if c == "bird" else CATEGORIES[(i + 1) % 16]) for i, c in enumerate(CATEGORIES)}


def make_cue_conflict(folder, per_category: int = 2, size: int = 12, seed: int = 0):
    """A cue-conflict folder in model-vs-human's layout: 16 shape folders of tiny PNGs named
    ``<shape><n>-<texture><n>.png``; returns the folder."""
    rng = np.random.default_rng(seed)
    for cat in CATEGORIES:
        (folder / cat).mkdir(parents=True)
        for n in range(1, per_category + 1):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / cat / f"{cat}{n}-{TEXTURE[cat]}{n}.png")
    return folder


def reference_decisions(logits: np.ndarray) -> np.ndarray:
    """model-vs-human's mapping, in float64 numpy: softmax, mean per category, flipped argsort."""
    x = logits.astype(np.float64)
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    means = np.stack([p[..., list(CATEGORY_INDICES[c])].mean(axis=-1) for c in CATEGORIES], -1)
    return np.flip(np.argsort(means, axis=-1, kind="stable"), axis=-1)[..., 0]


# -- the mapping ------------------------------------------------------------------------------

def test_category_indices_are_the_benchmarks():
    # SHA-256 of model-vs-human's HumanCategories.<category>_indices, read from its source
    text = json.dumps({k: list(v) for k, v in sorted(CATEGORY_INDICES.items())})
    assert hashlib.sha256(text.encode()).hexdigest() == \
        "38f860b2c576faa332251d0dc8147bb3f753fc8806f3a2048f2dc480cce0c63c"
    names = class_names()
    assert names[404] == "airliner" and names[385] == "Indian elephant"
    assert sum(len(v) for v in CATEGORY_INDICES.values()) == 207  # of 1000


def test_decisions_by_hand():
    logits = torch.zeros(4, 1000)
    logits[0, 404] = 5.0  # airliner: airplane
    # bear's mean probability: (e^3 + 3) / 4 = 5.77 (x the normaliser) < knife's e^2.5 = 12.18:
    # the mean, not the max, decides
    logits[1, 294], logits[1, 499] = 3.0, 2.5
    logits[2, 499], logits[2, 766] = 1.0, 1.0  # knife and oven tie: the later category (oven)
    # row 3: all equal, every category ties: the last one, truck (flipped argsort)
    got = [CATEGORIES[i] for i in category_decisions(logits).tolist()]
    assert got == ["airplane", "knife", "oven", "truck"]
    # Rows 0-2 agree with the reference; in row 3 which of the "tied" means is largest depends on
    # rounding (the float mean of 109 equal probabilities is not exactly one of them), so it is
    # the one place the two may differ, and the docstring says so.
    assert reference_decisions(logits[:3].numpy()).tolist() == \
        category_decisions(logits[:3]).tolist()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 3.0, 30.0, 300.0]))
def test_decisions_match_the_numpy_reference(seed, scale):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 1000, generator=g, dtype=torch.float64) * scale
    assert category_decisions(logits).tolist() == reference_decisions(logits.numpy()).tolist()


def test_shape_bias_of_known_decisions():
    images = [CueConflictImage(None, "airplane", "bicycle"), CueConflictImage(None, "bird", "bird"),
              CueConflictImage(None, "dog", "cat"), CueConflictImage(None, "car", "truck")]
    idx = CATEGORIES.index
    # condition 0: airplane (shape hit), bird (no conflict: neither), cat (texture), knife (none)
    # condition 1: bicycle (texture), bird, dog (shape), car (shape)
    decisions = np.array([[idx("airplane"), idx("bicycle")], [idx("bird"), idx("bird")],
                          [idx("cat"), idx("dog")], [idx("knife"), idx("car")]])
    counts = shape_texture_counts(decisions, images)
    assert counts["n_images"] == 4 and counts["n_conflict"] == 3
    assert counts["shape_hits"].tolist() == [1, 2] and counts["texture_hits"].tolist() == [1, 1]


# -- the layout -------------------------------------------------------------------------------

def test_parse_names():
    assert parse_cue_conflict_name("airplane1-bicycle2.png") == ("airplane", "bicycle")
    assert parse_cue_conflict_name("0001_s5n_dog10-bird2.png") == ("dog", "bird")
    for bad, words in (("airplane-bicycle.png", "does not parse"),
                       ("airplane1_bicycle2.png", "does not parse"),
                       ("airplane1-bicycle2.txt", "does not parse"),
                       ("zebra1-bicycle2.png", "the shape 'zebra'")):
        with pytest.raises(DatasetError, match=words) as info:
            parse_cue_conflict_name(bad)
        assert bad in str(info.value) and "\n" not in str(info.value)


def test_layout_and_fingerprint(tmp_path):
    folder = make_cue_conflict(tmp_path / "cue-conflict")
    images, fp = cue_conflict_images(tmp_path)  # the archive's parent folder works too
    assert len(images) == 32 and sum(not im.conflict for im in images) == 2
    assert images[0].path.name == "airplane1-bear1.png" and images[0].texture == "bear"
    assert cue_conflict_images(folder)[1] == fp
    (folder / "dog" / "dog1-elephant1.png").write_bytes(b"x")  # rewritten: a new fingerprint
    assert cue_conflict_images(folder)[1] != fp


@pytest.mark.parametrize("damage, words", [
    (lambda f: (f / "zebra").mkdir(), "is not a cue-conflict category folder"),
    (lambda f: [p.unlink() for p in (f / "oven").iterdir()] and (f / "oven").rmdir(),
     "lacks the cue-conflict category folder"),
    (lambda f: (f / "cat" / "notes.txt").write_text("x"), "notes.txt' does not parse"),
    (lambda f: (f / "cat" / "dog1-cat1.png").write_bytes(b"x"), "dog1-cat1.png names the shape"),
    (lambda f: (f / "stray.png").write_bytes(b"x"), "stray.png lies beside"),
])
def test_bad_layouts_are_one_sentence(tmp_path, damage, words):
    folder = make_cue_conflict(tmp_path / "cue-conflict", per_category=1)
    damage(folder)
    with pytest.raises(DatasetError, match=words) as info:
        cue_conflict_images(folder)
    assert "\n" not in str(info.value)


def test_missing_dataset_names_it_and_where(tmp_path):
    with pytest.raises(DatasetMissingError) as info:
        cue_conflict_images(tmp_path / "nowhere")
    text = str(info.value)
    assert text.startswith("cue-conflict images not found in ") and "nowhere" in text
    assert "model-vs-human/releases/download/v0.1/cue-conflict.tar.gz" in text


# -- evaluation -------------------------------------------------------------------------------

def test_table_matches_an_independent_reference(tiny, tmp_path, store):
    folder = make_cue_conflict(tmp_path / "cc")
    grid = AblationGrid(alphas=(0.0, 0.5, 1.0))
    table = shape_texture(tiny, folder, grid=grid, store=store, batch_size=5, chunk_size=7)
    assert len(table) == 6 and set(table.sign) == {"positive", "negative"}
    images, _ = cue_conflict_images(folder)
    batch = torch.stack([torch.from_numpy(np.array(Image.open(im.path).convert("RGB")))
                         .permute(2, 0, 1).float() / 255 for im in images])
    with torch.no_grad():
        features = tiny.features(batch).double()
    w, b = tiny.readout.weight.detach(), tiny.readout.bias.detach().double()
    for row in table.itertuples():
        ablated = ablate_weights(w, row.sign, row.alpha).double()  # the per-unit rule, row by row
        decisions = reference_decisions((features @ ablated.T + b).numpy())
        counts = shape_texture_counts(decisions[:, None], images)
        assert (row.shape_hits, row.texture_hits) == (counts["shape_hits"][0],
                                                      counts["texture_hits"][0])
        assert row.shape_accuracy == row.shape_hits / 32 and row.n_conflict == 30
        total = row.shape_hits + row.texture_hits
        assert (math.isnan(row.shape_bias) if total == 0 else row.shape_bias == row.shape_hits / total)
    control = table[table.control]
    assert len(control) == 2 and control.shape_hits.nunique() == 1


def test_same_table_whatever_the_batch_size(tiny, tmp_path):
    folder = make_cue_conflict(tmp_path / "cc")
    grid = AblationGrid(alphas=(0.0, 0.3))
    one = shape_texture(tiny, folder, grid=grid, batch_size=1, chunk_size=32)
    many = shape_texture(tiny, folder, grid=grid, batch_size=32, chunk_size=5)
    assert one.equals(many)


def test_stored_chunks_are_not_recomputed_and_a_stopped_run_resumes(tiny, store):
    items = list(range(10))
    grid = AblationGrid(alphas=(0.0, 1.0))
    calls = []

    def decide(part, stack):
        calls.append(list(part))
        assert stack.shape == (3, 1000, tiny.n_features)
        return np.array([[i, i + 1, i + 2] for i in part])

    kw = dict(benchmark="test", dataset_fingerprint="fp", grid=grid, store=store, chunk_size=4)
    stops = iter([False, False, True])
    with pytest.raises(JobCancelled, match="8 of 10 items are stored"):
        evaluate_in_chunks(tiny, items, decide, should_stop=lambda: next(stops), **kw)
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7]]
    calls.clear()
    out = evaluate_in_chunks(tiny, items, decide, **kw)
    assert calls == [[8, 9]]  # only the chunk that was never stored
    assert out[:, 0].tolist() == items and out.dtype == np.int16
    calls.clear()
    evaluate_in_chunks(tiny, items, decide, **kw)
    assert calls == []  # a cache hit computes nothing
    evaluate_in_chunks(tiny, items, decide, **{**kw, "dataset_fingerprint": "other"})
    assert len(calls) == 3  # another dataset: another key


def test_unreadable_image_names_the_file_and_stores_no_part(tiny, tmp_path, store):
    folder = make_cue_conflict(tmp_path / "cc")
    (folder / "truck" / "truck2-airplane2.png").write_bytes(b"not a png")
    grid = AblationGrid(alphas=(0.0,))
    with pytest.raises(DatasetError, match=r"cannot read the image .*truck2-airplane2\.png"):
        shape_texture(tiny, folder, grid=grid, store=store, chunk_size=8)
    assert len(store) == 3  # the three whole chunks before the bad one; none of its part


def test_family_skips_absent_members_with_their_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_WEIGHTS_DIR", str(tmp_path / "weights"))
    folder = make_cue_conflict(tmp_path / "cc", per_category=1)
    table, skipped = shape_texture_family(
        ["tiny_test", "resnet50_robust_linf_4"], folder, grid=AblationGrid(alphas=(0.0, 1.0)))
    assert set(table.model) == {"tiny_test"} and len(table) == 4
    assert [s.name for s in skipped] == ["resnet50_robust_linf_4"]
    assert "missing" in skipped[0].reason and "\n" not in skipped[0].reason
    assert family_members("robust") == ["resnet50", "resnet50_robust_linf_0.5",
                                        "resnet50_robust_linf_1", "resnet50_robust_linf_2",
                                        "resnet50_robust_linf_4", "resnet50_robust_linf_8"]
    with pytest.raises(DatasetMissingError):  # the data is checked before any model loads
        shape_texture_family(["tiny_test"], tmp_path / "none")


# -- the command ------------------------------------------------------------------------------

def test_cli_writes_table_and_figure_and_refuses_in_one_sentence(tmp_path, capsys, monkeypatch):
    import pandas as pd

    from signseg_core.cli.main import main

    monkeypatch.setenv("SIGNSEG_WEIGHTS_DIR", str(tmp_path / "weights"))
    folder = make_cue_conflict(tmp_path / "cc", per_category=1)
    csv, html = tmp_path / "out" / "st.csv", tmp_path / "out" / "st.html"
    code = main(["shape-texture", "tiny_test", "resnet50_robust_linf_2", "--data", str(folder),
                 "--alphas", "0,0.5", "--sign", "negative", "--csv", str(csv),
                 "--out", str(html), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "skipped resnet50_robust_linf_2:" in out
    table = pd.read_csv(csv)
    assert table.sign.tolist() == ["negative", "negative"] and table.alpha.tolist() == [0, 0.5]
    assert html.read_text().count("shape bias") >= 1
    assert main(["shape-texture", "tiny_test", "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "cue-conflict images not found" in err and len(err.strip().splitlines()) == 1
    assert main(["shape-texture", "--data", str(folder)]) == 2
    assert "name at least one model" in capsys.readouterr().err


def test_figure_has_three_panels_per_sign_curves():
    import pandas as pd

    from signseg_core.figures.benchmark_plots import shape_texture_figure

    rows = [{"model": "m", "sign": s, "alpha": a, "shape_accuracy": 0.2, "texture_accuracy": 0.3,
             "shape_bias": 0.4} for s in ("positive", "negative") for a in (0.0, 0.5, 1.0)]
    fig = shape_texture_figure(pd.DataFrame(rows))
    assert [a.text for a in fig.layout.annotations] == [
        "shape accuracy", "texture accuracy", "shape bias"]
    curves = [t for t in fig.data if t.name]
    assert len(curves) == 6 and {t.line.color for t in curves} == {"#d62728", "#1f77b4"}
    assert list(curves[0].x) == [0.0, 0.5, 1.0]


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path, capsys):
    from signseg_core.cli.main import main

    folder = make_cue_conflict(tmp_path / "cc", per_category=1)
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, bad)
    assert main(["shape-texture", "tiny_test", "--weights", str(bad), "--data", str(folder),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "other.pth" in err or "tiny_test" in err
    assert len(err.splitlines()) == 1
