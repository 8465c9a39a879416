"""A training run's out folder: what it is, its per-epoch records, and its epoch files.

::

    OUT/run.json                       the run: architecture, activation, classes, recipe
    OUT/epochs.csv                     one row per epoch: loss, top-1/top-5 (train, val), images/s
    OUT/steps.csv                      one row per optimiser step: loss, learning rate
    OUT/epochs/epoch_01.pt ...         each epoch's bare model state dict (torch.save of tensors;
                                       what the zoo and the weight-dynamics analysis read)
    OUT/ray/<run>/epoch_01/ ...        Ray Train's checkpoints (model, optimizer, scheduler), the
                                       ones a second invocation resumes from

Every file appears whole (written beside and renamed). An epoch file, once written, is never
written again. Nothing here imports Ray: the dashboard reads records through this module.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import torch

from signseg_core.models.checkpoints import load_state_dict_file, save_state_dict
from signseg_core.training.recipe import TrainingSetupError

RUN_FILE = "run.json"
EPOCHS_CSV = "epochs.csv"
STEPS_CSV = "steps.csv"
EPOCH_DIR = "epochs"
RAY_DIR = "ray"
RAY_RUN_NAME = "run"
#: Files a training checkpoint folder holds (written by the worker, read on resume).
MODEL_FILE, STATE_FILE, METRICS_FILE = "model.safetensors", "train_state.pt", "metrics.json"
EPOCH_COLUMNS = ("epoch", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1",
                 "val_top5", "images_per_s", "lr", "seconds", "steps")


def epoch_name(epoch: int) -> str:
    return f"epoch_{epoch:02d}"


def epoch_file(out: str | Path, epoch: int) -> Path:
    """``OUT/epochs/epoch_NN.pt``: epoch ``epoch``'s (1-based) bare model state dict."""
    return Path(out) / EPOCH_DIR / f"{epoch_name(epoch)}.pt"


def natural_key(path: str | Path) -> list:
    """Sort key that orders ``epoch_2`` before ``epoch_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", Path(path).name)]


def epoch_files(out: str | Path) -> list[Path]:
    """The run's epoch files in natural order."""
    folder = Path(out) / EPOCH_DIR
    return sorted(folder.glob("epoch_*.pt"), key=natural_key) if folder.is_dir() else []


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    part.write_text(text)
    os.replace(part, path)


def read_run(out: str | Path) -> dict | None:
    """The run's ``run.json``, or None when the folder holds no run."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainingSetupError(f"{path} cannot be read ({type(exc).__name__}); it is not a "
                                 "training run's record: use another --out folder") from exc
    if not isinstance(run, dict):
        raise TrainingSetupError(f"{path} is not a training run's record; use another --out")
    return run


def check_same_run(out: str | Path, run: dict) -> None:
    """Refuse, in one sentence, when ``out`` holds a run other than ``run`` (architecture,
    activation, classes or recipe differ; ``epochs`` may grow), or Ray checkpoints without a
    ``run.json``."""
    out = Path(out)
    old = read_run(out)
    if old is None:
        if (out / RAY_DIR).exists() or epoch_files(out):
            raise TrainingSetupError(f"{out} holds checkpoints but no {RUN_FILE}, so whose they "
                                     "are is unknown: use another --out folder")
        return
    for key in ("arch", "activation", "num_classes", "classes"):
        if old.get(key) != run.get(key):
            shown = (lambda v: f"{len(v)} classes" if isinstance(v, list) else repr(v))
            raise TrainingSetupError(
                f"{out} holds another run's checkpoints ({key} {shown(old.get(key))}, not "
                f"{shown(run.get(key))}): use another --out folder, or the same settings to "
                "continue it")
    differ = sorted(k for k in set(old.get("recipe", {})) | set(run["recipe"])
                    if old.get("recipe", {}).get(k) != run["recipe"].get(k))
    if differ:
        k = differ[0]
        raise TrainingSetupError(
            f"{out} holds a run trained with {k} = {old.get('recipe', {}).get(k)!r}, not "
            f"{run['recipe'].get(k)!r}: use another --out folder, or the same recipe to continue "
            "it (only --epochs may change)")


def write_run(out: str | Path, run: dict) -> None:
    write_text_atomic(Path(out) / RUN_FILE, json.dumps(run, indent=1, sort_keys=True))


def read_epochs(out: str | Path) -> pd.DataFrame:
    """The run's per-epoch records (empty with :data:`EPOCH_COLUMNS` when none yet)."""
    path = Path(out) / EPOCHS_CSV
    if not path.is_file():
        return pd.DataFrame(columns=list(EPOCH_COLUMNS))
    return pd.read_csv(path)


def read_steps(out: str | Path) -> pd.DataFrame:
    path = Path(out) / STEPS_CSV
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(
        columns=["epoch", "step", "loss", "lr"])


def _upsert(path: Path, rows: pd.DataFrame, key: str) -> None:
    """Replace ``rows``' ``key`` values in the CSV at ``path`` with ``rows`` (sorted)."""
    old = pd.read_csv(path) if path.is_file() else rows.iloc[0:0]
    new = pd.concat([old[~old[key].isin(rows[key])], rows], ignore_index=True)
    sort = [c for c in ("epoch", "step") if c in new.columns]
    write_text_atomic(path, new.sort_values(sort).to_csv(index=False))


def publish_epoch(out: str | Path, checkpoint_dir: str | Path) -> int:
    """Copy one Ray checkpoint's model into ``OUT/epochs/epoch_NN.pt`` (unless that file is
    already there) and its metrics into ``epochs.csv`` and ``steps.csv``. Idempotent: the
    driver calls it for every checkpoint on start and at the end, the controller as each
    epoch is reported. Returns the epoch."""
    out, folder = Path(out), Path(checkpoint_dir)
    metrics = json.loads((folder / METRICS_FILE).read_text())
    epoch = int(metrics["epoch"])
    target = epoch_file(out, epoch)
    if not target.is_file():
        state = load_state_dict_file(folder / MODEL_FILE, what=f"epoch {epoch}'s model")
        save_state_dict(state, target)
    row = {k: metrics.get(k) for k in EPOCH_COLUMNS}
    _upsert(out / EPOCHS_CSV, pd.DataFrame([row], columns=list(EPOCH_COLUMNS)), "epoch")
    steps = pd.DataFrame(metrics.get("step_log", []), columns=["epoch", "step", "loss", "lr"])
    if len(steps):
        _upsert(out / STEPS_CSV, steps, "step")
    return epoch


def ray_checkpoints(out: str | Path) -> list[Path]:
    """The Ray checkpoint folders the run holds, oldest epoch first."""
    folder = Path(out) / RAY_DIR / RAY_RUN_NAME
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("epoch_*") if (p / METRICS_FILE).is_file()),
                  key=natural_key)


def publish_all(out: str | Path) -> list[int]:
    """:func:`publish_epoch` for every Ray checkpoint in ``out``; the epochs published."""
    return [publish_epoch(out, folder) for folder in ray_checkpoints(out)]


def training_runs(root: str | Path) -> list[Path]:
    """Folders under ``root`` (itself, its children and grandchildren) that hold a run."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p.parent for pattern in (RUN_FILE, f"*/{RUN_FILE}", f"*/*/{RUN_FILE}")
             for p in root.glob(pattern)]
    return sorted(set(found))


def load_epoch_state(out: str | Path, epoch: int) -> dict[str, torch.Tensor]:
    """Epoch ``epoch``'s bare state dict, read safely."""
    return load_state_dict_file(epoch_file(out, epoch), what=f"epoch {epoch} of {out}")
