"""The CenterNet port (signseg_core.metrics.centernet*) against the original TF.js graph.

Tier 1: hand-made tiny graphs and weight files, with values worked out on paper or by a direct
numpy loop of TensorFlow's definitions. Tier 3: the packaged model on the shipped sample images
against ``tests/data/centernet/reference.json``, which TF.js 4.22.0 computed in Node from the
original graph (README.md there says how); skipped when the model files are not fetched.

Tolerances: both sides run float32 with the same weights (fp16 in the file, widened exactly), so
they differ only by the order of float32 sums (about 6e-8 relative each, over up to 720-term
dot products and some 60 layers): measured at most 7e-7 on scores and 2.5e-4 px on boxes. The
tests allow 1e-5 on scores and heatmap values and 2e-3 px on boxes and edge distances.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from signseg_core.errors import CheckpointError
from signseg_core.metrics.centernet import (
    COCO_LABELS,
    NAME,
    decode_detections,
    network_input,
)
from signseg_core.metrics.centernet_graph import (
    TfjsGraph,
    decode_weights,
    load_graph_json,
    resize_bilinear,
    same_padding,
)
from signseg_core.metrics.objectness import (
    Detector,
    objectness,
    objectness_detector,
    packaged_centernet_detector,
)
from signseg_core.models.packaged import HUMAN

DATA = Path(__file__).resolve().parent / "data" / "centernet"
SCORE_TOL, PX_TOL = 1e-5, 2e-3
WITH_PERSON = ("avatar", "group", "portrait", "avatar224_resized", "group_resized")


# -- hand-made graphs ------------------------------------------------------------------------

def _attr(value) -> dict:
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, str):
        return {"s": base64.b64encode(value.encode()).decode()}
    if all(isinstance(v, str) for v in value):
        return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in value]}}
    return {"list": {"i": [str(v) for v in value]}}


def _node(name: str, op: str, inputs=(), **attrs) -> dict:
    return {"name": name, "op": op, "input": list(inputs),
            "attr": {k: _attr(v) for k, v in attrs.items()}}


def _pack(consts: dict[str, np.ndarray]) -> tuple[list[dict], bytes, list[dict]]:
    """Manifest specs, bytes and Const nodes of float32/int32 arrays stored plainly."""
    specs = [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype)} for n, a in consts.items()]
    data = b"".join(a.astype(a.dtype.newbyteorder("<")).tobytes() for a in consts.values())
    return specs, data, [_node(n, "Const") for n in consts]


def test_manifest_decoding_of_every_stored_kind():
    half = np.array([1.5, -2.0, 65504.0], "<f2").tobytes()  # IEEE half: 0x3E00, 0xC000, 0x7BFF
    specs = [
        {"name": "f", "shape": [2], "dtype": "float32"},
        {"name": "i", "shape": [], "dtype": "int32"},
        {"name": "h", "shape": [3], "dtype": "float32",
         "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        {"name": "u8", "shape": [3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "u16", "shape": [2], "dtype": "int32",
         "quantization": {"dtype": "uint16", "scale": 0.25, "min": 2.0}},
    ]
    data = (np.array([0.25, -7.0], "<f4").tobytes() + np.array(-3, "<i4").tobytes() + half
            + bytes([0, 1, 255]) + np.array([1, 6], "<u2").tobytes())
    got = decode_weights(specs, data)
    assert got["f"].tolist() == [0.25, -7.0] and got["f"].dtype == np.float32
    assert got["i"].shape == () and int(got["i"]) == -3 and got["i"].dtype == np.int32
    assert got["h"].tolist() == [1.5, -2.0, 65504.0] and got["h"].dtype == np.float32
    assert got["u8"].tolist() == [-1.0, -0.5, 126.5]  # q * scale + min
    assert got["u16"].tolist() == [2, 4] and got["u16"].dtype == np.int32  # 2.25 and 3.5 rounded
    with pytest.raises(CheckpointError, match="needs bytes"):
        decode_weights(specs, data[:-1])
    with pytest.raises(CheckpointError, match="describes"):
        decode_weights(specs, data + b"\0")
    with pytest.raises(CheckpointError, match="not supported"):
        decode_weights([{"name": "s", "shape": [1], "dtype": "string"}], b"")


def test_hard_swish_as_the_graph_spells_it():
    # MobileNetV3's h-swish in the graph: mul(1/6, x) * relu6(x + 3) (three Mul/Add/Relu6 nodes)
    specs, data, consts = _pack({"hs/mul_1/y": np.array(1 / 6, np.float32),
                                 "hs/add/y": np.array(3.0, np.float32)})
    nodes = [_node("x", "Placeholder"), *consts,
             _node("hs/mul", "Mul", ["hs/mul_1/y", "x"]),
             _node("hs/add", "Add", ["x", "hs/add/y"]),
             _node("hs/Relu6", "Relu6", ["hs/add"]),
             _node("hs/mul_1", "Mul", ["hs/mul", "hs/Relu6"])]
    graph = TfjsGraph(nodes, decode_weights(specs, data), ["hs/mul_1"])
    x = torch.tensor([-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 4.0]).view(1, 7, 1, 1)
    (y,) = graph(x)
    expected = [0.0, 0.0, -1 / 3, 0.0, 2 / 3, 3.0, 4.0]  # x * min(max(x + 3, 0), 6) / 6
    np.testing.assert_allclose(y.flatten().numpy(), expected, atol=1e-6)


def test_the_real_graph_stores_its_hard_swish_constants_as_fp16():
    if not HUMAN.present():
        pytest.skip(f"{NAME} files not fetched: run `python -m signseg_core fetch-weights "
                    "@vladmandic/human` (needs npm)")
    _, weights = load_graph_json(HUMAN.require("centernet.json", NAME))
    one_sixth = weights["tower_0/MobilenetV3/Conv/hard_swish/mul_1/y"]
    assert one_sixth == np.float32(np.float16(1 / 6)) == np.float32(0.1666259765625)
    assert weights["tower_0/MobilenetV3/Conv/hard_swish/add/y"] == 3.0


def _depthwise_reference(x, kernel, bias, stride):
    """TensorFlow's DepthwiseConv2dNative (SAME), + bias, ReLU, by loops: x (H, W, C), kernel
    (kh, kw, C, M) -> (H', W', C * M), output channel c * M + m."""
    (h, w, c), (kh, kw, _, m) = x.shape, kernel.shape
    oh, ow = -(-h // stride), -(-w // stride)
    pad_h, pad_w = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
    padded = np.zeros((h + pad_h, w + pad_w, c))
    padded[pad_h // 2:pad_h // 2 + h, pad_w // 2:pad_w // 2 + w] = x  # odd pixel after
    out = np.zeros((oh, ow, c * m))
    for i in range(oh):
        for j in range(ow):
            patch = padded[i * stride:i * stride + kh, j * stride:j * stride + kw]
            for ch in range(c):
                for k in range(m):
                    out[i, j, ch * m + k] = (patch[..., ch] * kernel[..., ch, k]).sum()
    return np.maximum(out + bias, 0.0)


def test_fused_depthwise_conv_with_multiplier_and_tensorflow_same_padding():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6, 2)).astype(np.float32)  # SAME, stride 2: pad 0 before, 1 after
    kernel = rng.normal(size=(3, 3, 2, 2)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    specs, data, consts = _pack({"k": kernel, "b": bias})
    nodes = [_node("x", "Placeholder"), *consts,
             _node("dw", "FusedDepthwiseConv2dNative", ["x", "k", "b"], padding="SAME",
                   strides=[1, 2, 2, 1], dilations=[1, 1, 1, 1], data_format="NHWC",
                   fused_ops=["BiasAdd", "Relu"])]
    (y,) = TfjsGraph(nodes, decode_weights(specs, data), ["dw"])(
        torch.from_numpy(x).permute(2, 0, 1)[None])
    np.testing.assert_allclose(y[0].permute(1, 2, 0).numpy(),
                               _depthwise_reference(x, kernel, bias, 2), atol=1e-5)


def test_squeeze_excite_mean_and_channel_concat_map_nhwc_axes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)  # NHWC
    specs, data, consts = _pack({"axes": np.array([1, 2], np.int32),
                                 "axis": np.array(-1, np.int32)})
    nodes = [_node("x", "Placeholder"), *consts,
             _node("se/Mean", "Mean", ["x", "axes"], keep_dims=True),
             _node("se/mul", "Mul", ["se/Mean", "x"]),
             _node("cat", "ConcatV2", ["x", "se/mul", "axis"])]
    (y,) = TfjsGraph(nodes, decode_weights(specs, data), ["cat"])(
        torch.from_numpy(x).permute(0, 3, 1, 2))
    expected = np.concatenate([x, x * x.mean(axis=(1, 2), keepdims=True)], axis=-1)
    np.testing.assert_allclose(y.permute(0, 2, 3, 1).numpy(), expected, atol=1e-6)


def test_unknown_ops_and_nodes_are_named():
    nodes = [_node("x", "Placeholder"), _node("y", "Softplus", ["x"])]
    with pytest.raises(CheckpointError, match="'Softplus'"):
        TfjsGraph(nodes, {}, ["y"])(torch.zeros(1, 1, 1, 1))
    with pytest.raises(CheckpointError, match="no node 'z'"):
        TfjsGraph(nodes, {}, ["z"])


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(512, 3, 2) == (0, 1)  # 256 outputs need 513 inputs
    assert same_padding(512, 5, 2) == (1, 2)
    assert same_padding(128, 3, 1) == (1, 1)
    assert same_padding(7, 3, 2) == (1, 1)


def test_bilinear_resize_in_tensorflows_three_modes():
    row = torch.tensor([0.0, 10.0]).view(1, 1, 1, 2)
    legacy = resize_bilinear(row, (1, 4))  # source = 0, 0.5, 1, 1.5 (clamped to the edge)
    assert legacy.flatten().tolist() == [0.0, 5.0, 10.0, 10.0]
    corners = resize_bilinear(row, (1, 4), align_corners=True)
    np.testing.assert_allclose(corners.flatten(), [0.0, 10 / 3, 20 / 3, 10.0], rtol=1e-6)
    half = resize_bilinear(row, (1, 4), half_pixel_centers=True)
    assert half.flatten().tolist() == [0.0, 2.5, 7.5, 10.0]
    image = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(  # half-pixel centres are torch's align_corners=False
        resize_bilinear(image, (12, 5), half_pixel_centers=True),
        torch.nn.functional.interpolate(image, (12, 5), mode="bilinear", align_corners=False))


def test_decoding_keeps_local_maxima_in_tensorflows_order():
    heat = torch.zeros(1, 2, 4, 4)
    heat[0, 1, 1, 2] = 0.9  # class 1 at y=1, x=2
    heat[0, 1, 1, 3] = 0.5  # its neighbour: not a peak
    heat[0, 0, 3, 0] = 0.7
    wh = torch.zeros(1, 4, 4, 4)
    wh[0, :, 1, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    det = decode_detections(heat, wh, k=3, stride=4)
    assert det.scores[0].tolist() == pytest.approx([0.9, 0.7, 0.0])
    assert det.classes[0, :2].tolist() == [1, 0]
    assert det.boxes[0, 0].tolist() == [8 - 1, 4 - 2, 8 + 3, 4 + 4]  # centre (8, 4) px
    assert det.boxes[0, 1].tolist() == [0.0, 12.0, 0.0, 12.0]


# -- against the original graph (TF.js in Node) ----------------------------------------------

@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((DATA / "reference.json").read_text())


@pytest.fixture(scope="module")
def centernet():
    if not HUMAN.present():
        pytest.skip(f"{NAME} files not fetched: run `python -m signseg_core fetch-weights "
                    "@vladmandic/human` (needs npm)")
    det = packaged_centernet_detector()
    assert det.available, det.status
    return det


def _png(name: str) -> np.ndarray:
    from signseg_core.figures.png import png_decode

    return png_decode((DATA / f"{name}.png").read_bytes()).copy()


def network_inputs() -> dict[str, torch.Tensor]:
    """Each reference entry's 512 x 512 input (1, 3, 512, 512) in [0, 255], made as the Node
    script made it: pixels repeated, grey, or resized by the code under test."""
    out = {}
    for name in ("avatar", "group", "portrait"):
        a = _png(name)
        rep = 512 // a.shape[0]
        out[name] = torch.from_numpy(a.repeat(rep, 0).repeat(rep, 1)).permute(2, 0, 1)[None]
    out["grey128"] = torch.full((1, 3, 512, 512), 128)
    as_unit = {"avatar224_resized": _png("avatar")[:224, :224], "group_resized": _png("group")}
    for name, a in as_unit.items():
        out[name] = network_input(torch.from_numpy(a).permute(2, 0, 1)[None] / 255.0)
    return {k: v.float() for k, v in out.items()}


@pytest.fixture(scope="module")
def ported(centernet):
    """name -> (input, heatmap, wh) of the torch port."""
    with torch.inference_mode():
        return {name: (x, *centernet.module(x)) for name, x in network_inputs().items()}


def test_inputs_are_what_the_reference_was_given(reference, ported):
    assert set(ported) == set(reference["images"])
    for name, (x, _, _) in ported.items():
        ref = reference["images"][name]
        probe = x[0].permute(1, 2, 0)[[0, 1, 100, 255, 256, 511]][:, [0, 1, 100, 255, 256, 511]]
        np.testing.assert_allclose(probe.numpy(), ref["input_probe"], atol=1e-3, err_msg=name)
        assert float(x.double().sum()) == pytest.approx(ref["input_sum"], rel=1e-6), name


def test_heads_match_the_original_graph(reference, ported):
    for name, (_, heat, wh) in ported.items():
        ref = reference["images"][name]
        np.testing.assert_allclose(heat.amax(dim=(0, 2, 3)), ref["class_max"], atol=SCORE_TOL,
                                   err_msg=name)
        pooled = torch.nn.functional.max_pool2d(heat.amax(1, keepdim=True), 8).flatten()
        np.testing.assert_allclose(pooled, ref["heatmap_pooled_max_8"], atol=SCORE_TOL)
        for top in ref["heatmap_top"]:
            y, x, c = top["y"], top["x"], top["cls"]
            assert float(heat[0, c, y, x]) == pytest.approx(top["value"], abs=SCORE_TOL), name
            np.testing.assert_allclose(wh[0, :, y, x], top["wh"], atol=PX_TOL)
        np.testing.assert_allclose(wh.mean(dim=(0, 2, 3)), ref["wh_channel_mean"], rtol=1e-5)


def test_detections_match_the_original_graph(reference, ported):
    for name, (_, heat, wh) in ported.items():
        ref = np.array(reference["images"][name]["detections"])  # x1, y1, x2, y2, score, class
        det = decode_detections(heat, wh)
        ours = np.concatenate([det.boxes[0], det.scores[0, :, None],
                               det.classes[0, :, None].float()], axis=1)
        np.testing.assert_allclose(ours[:len(ref), 4], ref[:, 4], atol=SCORE_TOL, err_msg=name)
        for row in ref:  # each reference box among ours (equal scores may come in any order)
            close = ((np.abs(ours[:, :4] - row[:4]).max(1) <= PX_TOL)
                     & (np.abs(ours[:, 4] - row[4]) <= SCORE_TOL) & (ours[:, 5] == row[5]))
            assert close.any(), (name, row)


def test_the_top_class_is_person_where_there_are_people(reference, ported):
    assert reference["labels"] == list(COCO_LABELS)
    for name in WITH_PERSON:
        _, heat, wh = ported[name]
        det = decode_detections(heat, wh, k=5)
        label, score = det.labels(0)[0]
        assert label == "person" and score > 0.4, (name, det.labels(0))
        assert reference["images"][name]["human"][0]["label"] == "person"
    grey = ported["grey128"][1]
    assert float(grey.max()) < 0.05  # a uniform image holds no object


def test_objectness_is_the_best_box_of_images_as_signseg_keeps_them(reference, centernet):
    avatar = _png("avatar")[:224, :224]  # uint8 (H, W, 3), a preferred image's size
    scores, status = objectness(avatar[None], centernet)
    best = reference["images"]["avatar224_resized"]["detections"][0][4]
    assert scores.shape == (1,) and scores.dtype == np.float64
    assert scores[0] == pytest.approx(best, abs=1e-4)  # uint8 / 255 * 255 adds ~1e-5 per input
    assert status.startswith(f"ok: {NAME}") and HUMAN.spec in status


# -- which detector objectness uses ------------------------------------------------------------

def test_auto_takes_the_centernet_when_torchvisions_weights_are_not_cached(
        centernet, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    det = objectness_detector("auto")
    assert isinstance(det, Detector) and det.available and det.name == NAME
    assert det.status.startswith(f"ok: {NAME}") and HUMAN.spec in det.status


def test_missing_centernet_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SIGNSEG_PACKAGES_DIR", str(tmp_path / "packages"))
    det = objectness_detector(NAME)
    assert not det.available and det.name == NAME
    assert "python -m signseg_core fetch-weights @vladmandic/human" in det.status
    assert "npm" in det.status and "\n" not in det.status
    assert np.isnan(objectness(torch.rand(2, 3, 8, 8), det)[0]).all()
    neither = objectness_detector("auto")
    assert not neither.available and "fetch-weights @vladmandic/human" in neither.status
    assert "fasterrcnn_mobilenet_v3_large_320_fpn" in neither.status
    with pytest.raises(ValueError, match="choose from"):
        objectness_detector("yolov7")
