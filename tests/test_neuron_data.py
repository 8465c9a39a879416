"""Neuron response files: all-or-nothing loading, errors naming the rows, cached features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from signseg_core.errors import SignsegError
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import load_image
from signseg_core.neurons.data import (
    NeuronDataError,
    NeuronDataset,
    dataset_features,
    image_set_digest,
    load_neuron_data,
)

N_IMAGES = 12
HEADER = "image,neuron,response,session,area,monkey\n"


def _smooth_image(rng, h, w):
    """A random smooth RGB image: a coarse grid of colours, bilinearly enlarged."""
    coarse = torch.from_numpy(rng.random((1, 3, 4, 4), dtype=np.float32))
    big = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear",
                                          align_corners=False)
    return (big[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture
def image_dir(tmp_path):
    """N_IMAGES PNGs of several sizes (one non-square, one greyscale) in tmp_path/img."""
    folder = tmp_path / "img"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        arr = _smooth_image(rng, 40 + 4 * (i % 3), 40 + 8 * (i % 2))
        im = Image.fromarray(arr).convert("L") if i == 5 else Image.fromarray(arr)
        im.save(folder / f"im{i:02d}.png")
    return folder


def _rows(neurons=("a", "b"), n=N_IMAGES, skip=()):
    """CSV rows: neuron j's response to image i is 10 j + i; (i, neuron) pairs in skip left out."""
    out = []
    for i in range(n):
        for j, neuron in enumerate(neurons):
            if (i, neuron) not in skip:
                out.append(f"im{i:02d}.png,{neuron},{10 * j + i},s{j},IT,C\n")
    return out


def _write(path, lines):
    path.write_text("".join(lines))
    return path


def test_csv_loads_in_first_appearance_order_with_nan_for_unshown(image_dir, tmp_path):
    lines = _rows(neurons=("a", "b"), skip={(3, "b")})
    lines[0], lines[2] = lines[2], lines[0]  # image 1 now appears first
    data = load_neuron_data(_write(tmp_path / "r.csv", [HEADER, *lines]), image_dir=image_dir)
    assert data.image_names[:2] == ("im01.png", "im00.png")
    assert data.neurons == ("a", "b")
    assert data.responses.shape == (N_IMAGES, 2)
    assert data.responses[0, 0] == 1.0 and data.responses[1, 1] == 10.0
    assert np.isnan(data.responses[3, 1]) and np.isnan(data.responses).sum() == 1
    assert data.sessions == ("s0", "s1") and data.areas == ("IT", "IT")
    assert data.monkeys == ("C", "C")
    assert all(p.parent == image_dir for p in data.images)
    table = data.neuron_table()
    assert table["n_images"].tolist() == [12, 11]
    with pytest.raises(ValueError):
        data.responses[0, 0] = 5.0  # read-only


def test_csv_without_metadata_and_image_dir_defaults_to_the_files_folder(image_dir):
    lines = ["Image , Neuron,RESPONSE\n", *[",".join(r.split(",")[:3]) + "\n" for r in _rows()]]
    data = load_neuron_data(_write(image_dir / "r.csv", lines))
    assert data.sessions == ("", "") and data.n_images == N_IMAGES


def test_npz_loads_with_nan_and_default_neuron_ids(image_dir, tmp_path):
    r = np.arange(N_IMAGES * 3, dtype=float).reshape(N_IMAGES, 3)
    r[2, 1] = np.nan
    names = np.array([f"im{i:02d}.png" for i in range(N_IMAGES)])
    np.savez(tmp_path / "r.npz", responses=r, images=names, sessions=np.array(["x", "x", "y"]))
    data = load_neuron_data(tmp_path / "r.npz", image_dir=image_dir)
    assert data.neurons == ("0", "1", "2") and data.sessions == ("x", "x", "y")
    np.testing.assert_array_equal(data.responses, r)


BAD_CSV = [
    ("missing image", lambda: [HEADER, *_rows(), "nope.png,a,1,s0,IT,C\n"],
     ["image 'nope.png' (first on line 26) not found"]),
    ("duplicate row", lambda: [HEADER, *_rows(), "im03.png,a,9,s0,IT,C\n"],
     ["line 26: duplicate of line 8 (image 'im03.png', neuron 'a')"]),
    ("non-numeric", lambda: [HEADER, "im00.png,a,abc,s0,IT,C\n", *_rows()[1:]],
     ["line 2: response 'abc' is not a number"]),
    ("nan response", lambda: [HEADER, *_rows()[:3], "im01.png,b,nan,s1,IT,C\n", *_rows()[4:]],
     ["line 5: response is 'nan'"]),
    ("inf response", lambda: [HEADER, *_rows()[:3], "im01.png,b,-inf,s1,IT,C\n", *_rows()[4:]],
     ["line 5: response is '-inf'"]),
    ("too few images", lambda: [HEADER, *_rows(), *_rows(neurons=("z",), n=3)],
     ["neuron 'z' has responses to 3 images, fewer than min_images=10"]),
    ("missing column", lambda: ["image,neuron,rate\n", "im00.png,a,1\n"],
     ["line 1: missing column(s) ['response']"]),
    ("empty file", lambda: ["\n  \n"], ["the file is empty"]),
    ("header only", lambda: [HEADER], ["the file has a header but no data rows"]),
    ("field count", lambda: [HEADER, *_rows(), "im00.png,c,1\n"],
     ["line 26: 3 fields, but the header has 6"]),
    ("empty neuron", lambda: [HEADER, *_rows(), "im00.png,,1,s0,IT,C\n"],
     ["line 26: empty neuron"]),
    ("session conflict", lambda: [HEADER, *_rows()[:10], _rows()[10].replace(",s0,", ",s9,"),
                                  *_rows()[11:]],
     ["line 12: neuron 'a' has session 's9' here but 's0' on line 2"]),
]


@pytest.mark.parametrize("case", BAD_CSV, ids=[c[0] for c in BAD_CSV])
def test_each_bad_csv_names_its_problem(case, image_dir, tmp_path):
    _, lines, expected = case
    path = _write(tmp_path / "bad.csv", lines())
    with pytest.raises(NeuronDataError) as info:
        load_neuron_data(path, image_dir=image_dir)
    for text in expected:
        assert any(text in p for p in info.value.problems), info.value.problems
        assert text in str(info.value)
    assert str(path) in str(info.value)


def test_all_problems_are_collected_into_one_error(image_dir, tmp_path):
    lines = [HEADER, "im00.png,a,abc,s0,IT,C\n", *_rows()[1:], "ghost.png,b,1,s1,IT,C\n",
             "im04.png,b,7,s1,IT,C\n", "im05.png,b,inf,s1,IT,C\n"]
    with pytest.raises(NeuronDataError) as info:
        load_neuron_data(_write(tmp_path / "bad.csv", lines), image_dir=image_dir)
    err = info.value
    assert isinstance(err, SignsegError) and isinstance(err, ValueError)
    assert len(err.problems) == 5, err.problems  # line 28 has two problems
    assert err.problems[0].startswith("line 2: response 'abc'")
    assert err.problems[1].startswith("line 27: duplicate of line 11")
    assert err.problems[2].startswith("line 28: response is 'inf'")
    assert err.problems[3].startswith("line 28: duplicate of line 13")
    assert "image 'ghost.png' (first on line 26) not found" in err.problems[4]
    assert str(err).count("\n  - ") == 5


def test_unreadable_image_and_missing_folder(image_dir, tmp_path):
    (image_dir / "im07.png").write_bytes(b"not a png")
    path = _write(tmp_path / "r.csv", [HEADER, *_rows()])
    with pytest.raises(NeuronDataError, match=r"image 'im07.png' \(first on line 16\) is not an"):
        load_neuron_data(path, image_dir=image_dir)
    with pytest.raises(NeuronDataError, match="image folder not found"):
        load_neuron_data(path, image_dir=tmp_path / "nowhere")
    with pytest.raises(NeuronDataError, match="file not found"):
        load_neuron_data(tmp_path / "absent.csv", image_dir=image_dir)
    with pytest.raises(ValueError, match="use .csv or .npz"):
        load_neuron_data(_write(tmp_path / "r.txt", ["x"]), image_dir=image_dir)


def _npz(tmp_path, **arrays):
    np.savez(tmp_path / "r.npz", **arrays)
    return tmp_path / "r.npz"


NAMES = np.array([f"im{i:02d}.png" for i in range(N_IMAGES)])


@pytest.mark.parametrize("arrays, expected", [
    (dict(images=NAMES), "missing array(s) ['responses']"),
    (dict(responses=np.ones((N_IMAGES, 2)), images=np.array(list(NAMES), dtype=object)),
     "object arrays"),
    (dict(responses=np.ones((N_IMAGES, 2)), images=NAMES[:-1]),
     "images has 11 entries but responses has n_images = 12"),
    (dict(responses=np.ones((N_IMAGES, 2)), images=np.array([*NAMES[:-1], "im00.png"])),
     "images[11] duplicates images[0] ('im00.png')"),
    (dict(responses=np.where(np.eye(N_IMAGES, 2, k=-4) > 0, np.inf, 1.0), images=NAMES),
     "responses[4, 0] (image 'im04.png', neuron '0') is inf"),
    (dict(responses=np.array([["a"] * 2] * N_IMAGES), images=NAMES), "must be real numbers"),
    (dict(responses=np.where(np.arange(N_IMAGES)[:, None] < 5, 1.0, np.nan) * np.ones(2),
          images=NAMES), "neuron '0' has responses to 5 images, fewer than min_images=10"),
])
def test_each_bad_npz_names_its_problem(arrays, expected, image_dir, tmp_path):
    with pytest.raises(NeuronDataError) as info:
        load_neuron_data(_npz(tmp_path, **arrays), image_dir=image_dir)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_dataset_validates_and_copies(tmp_path):
    r = np.zeros((2, 1))
    ds = NeuronDataset((tmp_path / "a", tmp_path / "b"), ("n",), r)
    r[0, 0] = 1.0
    assert ds.responses[0, 0] == 0.0 and ds.sessions == ("",)
    with pytest.raises(ValueError, match="shape"):
        NeuronDataset((tmp_path / "a",), ("n",), r)
    with pytest.raises(ValueError, match="appears twice"):
        NeuronDataset((tmp_path / "a", tmp_path / "a"), ("n",), r)
    with pytest.raises(ValueError, match="min_images"):
        load_neuron_data(tmp_path / "x.csv", min_images=0)


# -- features ----------------------------------------------------------------------------------

@pytest.fixture
def dataset(image_dir, tmp_path):
    return load_neuron_data(_write(tmp_path / "r.csv", [HEADER, *_rows()]), image_dir=image_dir)


def test_load_image_is_rgb_in_unit_range(image_dir):
    grey = load_image(image_dir / "im05.png")
    assert grey.shape == (3, 48, 48) and grey.dtype == torch.float32
    assert torch.equal(grey[0], grey[1]) and 0.0 <= float(grey.min()) <= float(grey.max()) <= 1.0


def test_features_equal_model_features_image_by_image(tiny, dataset):
    feats = dataset_features(tiny, dataset, batch_size=5, store=False)
    assert feats.shape == (N_IMAGES, tiny.n_features) and feats.dtype == np.float32
    with torch.inference_mode():
        expected = np.concatenate([tiny.features(load_image(p)[None]).numpy()
                                   for p in dataset.images])
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
    other = dataset_features(tiny, dataset, batch_size=N_IMAGES, store=False)
    np.testing.assert_allclose(feats, other, rtol=1e-5, atol=1e-6)


def test_features_are_computed_once_and_keyed_by_image_content(dataset, store, image_dir):
    model = load_model("tiny_test")
    calls = []
    first = dataset_features(model, dataset, batch_size=4, store=store,
                             progress=lambda d, t: calls.append((d, t)))
    assert calls == [(4, 12), (8, 12), (12, 12)] and len(store) == 1

    def boom(_):
        raise AssertionError("the trunk must not run on a cache hit")

    model.trunk = boom  # this model instance is the test's own
    calls.clear()
    second = dataset_features(model, dataset, store=store,
                              progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(first, second)
    assert calls == [(12, 12)]
    before = image_set_digest(dataset.images)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image_dir / "im03.png")
    assert image_set_digest(dataset.images) != before
    with pytest.raises(AssertionError, match="must not run"):
        dataset_features(model, dataset, store=store)
    assert image_set_digest(dataset.images[::-1]) != image_set_digest(dataset.images)
