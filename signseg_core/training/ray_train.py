"""Training on Ray Train: the driver's side (checks, the trainer, progress, the out folder).

:func:`train` checks everything a run needs before it writes anything (the data's layout, the
architecture and activation, the out folder's earlier run), then runs
:func:`~signseg_core.training.loop.train_loop_per_worker` under ``ray.train.torch.TorchTrainer``:
``ScalingConfig(num_workers=N, use_gpu=...)`` data-parallel workers, checkpoints in
``RunConfig(storage_path=OUT/ray, name="run")``. Ray Train v2 (the default of the installed Ray;
``RAY_TRAIN_V2_ENABLED=0`` selects v1, which this module refuses) keeps a snapshot of the
checkpoints reported under that name, so a second ``train`` with the same out folder gets the
last one from ``ray.train.get_checkpoint()`` and continues at the next epoch.

Each reported checkpoint is published into the out folder (:mod:`~.records`: the epoch's bare
state dict and its records) by a ``UserCallback`` on Ray Train's controller, which Ray places on
the driver's node; the driver prints each epoch's line as it appears and publishes every
checkpoint again at the start and the end (a run killed between a checkpoint and its
publication loses nothing). On a cluster, OUT must be on storage every node sees (NFS), as Ray
Train's ``storage_path`` must, and so must the data folder.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import ray
import ray.train
from ray.train.torch import TorchTrainer

from signseg_core import ray_session
from signseg_core.errors import SignsegError
from signseg_core.training.activations import build_network, check_activation, check_arch
from signseg_core.training.data import FolderLayout, scan_image_folder
from signseg_core.training.loop import train_loop_per_worker
from signseg_core.training.recipe import Recipe, TrainingSetupError
from signseg_core.training.records import (
    RAY_DIR,
    RAY_RUN_NAME,
    check_same_run,
    publish_all,
    publish_epoch,
    read_epochs,
    write_run,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRun:
    """One run: ``arch`` (a torchvision classifier) with ``activation``, trained on the
    ImageFolder ``data`` into ``out`` by ``recipe``; ``num_classes`` outputs (None: one per class
    folder; 1000 keeps an ImageNet head when training on a subset); ``workers`` data-parallel Ray
    Train workers, each with one GPU when ``gpu`` and ``cpus_per_worker`` CPUs (its torch threads
    on a CPU worker); the last ``keep_checkpoints`` Ray checkpoints kept (epoch files: all)."""

    arch: str
    activation: str
    data: Path
    out: Path
    recipe: Recipe = Recipe()
    num_classes: int | None = None
    workers: int = 1
    gpu: bool = False
    cpus_per_worker: int = 1
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for name in ("workers", "cpus_per_worker", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainingSetupError(f"{name} must be a positive int, got {value!r}")
        if self.num_classes is not None and (not isinstance(self.num_classes, int)
                                             or self.num_classes < 2):
            raise TrainingSetupError(f"num_classes must be an int >= 2, got {self.num_classes!r}")
        if self.recipe.batch_size % self.workers:
            raise TrainingSetupError(
                f"the batch size {self.recipe.batch_size} does not split evenly between "
                f"{self.workers} workers; choose a multiple of {self.workers}")


def check_run(run: TrainingRun) -> tuple[dict, FolderLayout]:
    """Everything :func:`train` checks before writing: returns the record ``run.json`` holds
    and the data's layout, or raises one sentence (``SignsegError``)."""
    check_arch(run.arch)
    check_activation(run.activation)
    layout = scan_image_folder(run.data)
    classes = run.num_classes or len(layout.classes)
    if classes < len(layout.classes):
        raise TrainingSetupError(f"num_classes {classes} is fewer than the {len(layout.classes)} "
                                 f"class folders in {Path(run.data) / 'train'}")
    build_network(run.arch, run.activation, num_classes=classes)  # refuses a Tanh that rectifies
    info = {"arch": run.arch, "activation": run.activation, "num_classes": classes,
            "classes": list(layout.classes), "recipe": run.recipe.identity()}
    if Path(run.out).exists() and not Path(run.out).is_dir():
        raise TrainingSetupError(f"--out {run.out} is a file; it must be a folder")
    check_same_run(run.out, info)
    return info, layout


class EpochPublisher(ray.train.UserCallback if hasattr(ray.train, "UserCallback") else object):
    """Ray Train v2 callback (run on the controller, on the driver's node): publish each
    reported checkpoint into the out folder as it is reported."""

    def __init__(self, out: Path):
        self.out = Path(out)

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if checkpoint is None:
            return
        try:
            with checkpoint.as_directory() as folder:
                publish_epoch(self.out, folder)
        except Exception:  # the driver publishes again at the end, and raises there
            logger.exception("publishing a checkpoint into %s failed", self.out)


def connect(address: str | None = None):
    """The ``ray`` module, joined to ``address`` (or ``$RAY_ADDRESS``, or a new local Ray)
    unless this process already joined one; Ray Train v2 required."""
    if not hasattr(ray.train, "UserCallback"):
        raise SignsegError(f"training needs Ray Train v2 (Ray {ray.__version__} has it): unset "
                           "RAY_TRAIN_V2_ENABLED or set it to 1")
    return ray_session.connect(address)


def epoch_line(row: pd.Series, epochs: int) -> str:
    """One progress line: ``epoch 3/16  loss 2.345  top-1 41.2%  top-5 66.0%  val ...``."""
    def pct(v):
        return "-" if pd.isna(v) else f"{100 * v:.1f}%"
    line = (f"epoch {int(row['epoch'])}/{epochs}  loss {row['train_loss']:.4f}  "
            f"top-1 {pct(row['train_top1'])}  top-5 {pct(row['train_top5'])}")
    if not pd.isna(row.get("val_top1")):
        line += (f"  val loss {row['val_loss']:.4f} top-1 {pct(row['val_top1'])} "
                 f"top-5 {pct(row['val_top5'])}")
    return line + f"  {row['images_per_s']:.0f} images/s  {row['seconds']:.0f} s"


def watch(out: Path, epochs: int, progress: Callable[[str], None], stop: threading.Event,
          shown: set) -> None:
    """Print each epoch's line once, as its record appears (polls every half second)."""
    while True:
        finished = stop.wait(0.5)
        try:
            table = read_epochs(out)
        except Exception:  # a record being replaced: read it next time
            table = None
        for _, row in (table.iterrows() if table is not None else ()):
            if int(row["epoch"]) not in shown:
                shown.add(int(row["epoch"]))
                progress(epoch_line(row, epochs))
        if finished:
            return


def trainer_for(run: TrainingRun, info: dict, layout: FolderLayout) -> TorchTrainer:
    out = Path(run.out).resolve()
    config = {"arch": run.arch, "activation": run.activation, "num_classes": info["num_classes"],
              "data": str(Path(run.data).resolve()), "has_val": layout.has_val,
              "recipe": dataclasses.asdict(run.recipe),
              "threads": 0 if run.gpu else run.cpus_per_worker}
    return TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=run.workers, use_gpu=run.gpu,
            resources_per_worker={"CPU": run.cpus_per_worker, **({"GPU": 1} if run.gpu else {})}),
        run_config=ray.train.RunConfig(
            name=RAY_RUN_NAME, storage_path=str(out / RAY_DIR),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=run.keep_checkpoints),
            callbacks=[EpochPublisher(out)]))  # workers inherit the job's runtime_env (connect)


def worker_failure(exc: BaseException) -> BaseException:
    """A worker's user error (an engine sentence, an unreadable image) as one sentence; any
    other failure as it is."""
    failures = getattr(exc, "worker_failures", None) or {}
    for rank, failure in sorted(failures.items()):
        if isinstance(failure, (SignsegError, OSError)):
            return SignsegError(f"training stopped on worker {rank}: {failure}")
    return exc


def train(run: TrainingRun, *, address: str | None = None,
          progress: Callable[[str], None] = print) -> pd.DataFrame:
    """Train ``run`` up to ``run.recipe.epochs`` epochs (continuing the out folder's run, if
    any) on Ray Train; returns the per-epoch records. ``progress`` gets one line per epoch."""
    info, layout = check_run(run)
    out = Path(run.out)
    write_run(out, info)
    publish_all(out)
    done = read_epochs(out)
    last = int(done["epoch"].max()) if len(done) else 0
    epochs = run.recipe.epochs
    if last >= epochs:
        progress(f"{out} has finished {last} epochs already (asked: {epochs}); nothing to do")
        return done
    progress(f"training {run.arch} with {run.activation} on {layout.train_images} images of "
             f"{len(layout.classes)} classes{' (+ val)' if layout.has_val else ''}: epochs "
             f"{last + 1}-{epochs}, {run.workers} worker(s) on {'GPU' if run.gpu else 'CPU'}; "
             f"epoch files in {out / 'epochs'}")
    connect(address)
    stop, shown = threading.Event(), set(done["epoch"].astype(int))
    watcher = threading.Thread(target=watch, args=(out, epochs, progress, stop, shown),
                               daemon=True)
    watcher.start()
    try:
        trainer_for(run, info, layout).fit()
    except ray.train.TrainingFailedError as exc:
        raise worker_failure(exc) from exc
    finally:
        publish_all(out)
        stop.set()
        watcher.join()
    return read_epochs(out)
