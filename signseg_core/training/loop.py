"""What each Ray Train worker runs: one data-parallel SGD loop, checkpointed every epoch.

Ray Train starts the workers and the process group (``TorchTrainer``); ``prepare_model`` wraps
the network in ``DistributedDataParallel`` when there are several, ``prepare_data_loader`` moves
batches to the worker's device. Each epoch ends with ``ray.train.report`` carrying rank 0's
checkpoint folder (model, optimizer, scheduler, epoch, metrics); ``ray.train.get_checkpoint``
hands the last one back when the run starts again, and the loop continues at the next epoch.
Shuffling and augmentation are seeded per (seed, epoch, rank), so a resumed run computes what an
uninterrupted one would.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn

from signseg_core.models.checkpoints import load_state_dict_file, save_state_dict
from signseg_core.training.activations import build_network, logits_of
from signseg_core.training.data import epoch_loader, image_dataset
from signseg_core.training.records import (
    METRICS_FILE,
    MODEL_FILE,
    STATE_FILE,
    epoch_name,
)
from signseg_core.training.recipe import Recipe, recipe_from_dict

#: Layers whose weights and biases FFCV's recipe keeps out of weight decay.
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
               nn.LayerNorm)


def optimizer_for(net: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """SGD with momentum; BatchNorm weights and biases without weight decay unless
    ``bn_weight_decay`` (FFCV's choice)."""
    norm = {id(p) for m in net.modules() if isinstance(m, NORM_LAYERS)
            for p in m.parameters(recurse=False)}
    params = list(net.parameters())
    groups = [{"params": [p for p in params if id(p) not in norm],
               "weight_decay": recipe.weight_decay},
              {"params": [p for p in params if id(p) in norm],
               "weight_decay": recipe.weight_decay if recipe.bn_weight_decay else 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=recipe.lr,
                           momentum=recipe.momentum)


def steps_in(loader, recipe: Recipe) -> int:
    n = len(loader)
    return n if recipe.max_steps_per_epoch is None else min(n, recipe.max_steps_per_epoch)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """Numbers of images whose label is the top-1 and among the top-5 (top-k, k = classes when
    fewer than 5)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == labels[:, None]
    return int(hit[:, 0].sum()), int(hit.any(dim=1).sum())


def summed(values: list[float], device) -> list[float]:
    """``values`` summed over the workers (themselves when there is one)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()
    return list(values)


def train_epoch(model, loader, optimizer, scheduler, loss_fn, recipe: Recipe, epoch: int):
    """One epoch of SGD; returns (sums of loss, top-1, top-5, images; step log; seconds)."""
    model.train()
    steps, totals, log = steps_in(loader, recipe), [0.0, 0.0, 0.0, 0.0], []
    start = time.perf_counter()
    for i, (images, labels) in enumerate(loader):
        if i >= steps:
            break
        optimizer.zero_grad(set_to_none=True)
        logits = logits_of(model(images))
        loss = loss_fn(logits, labels)
        loss.backward()
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        top1, top5 = topk_correct(logits.detach(), labels)
        n, value = len(labels), float(loss.detach())
        totals = [totals[0] + value * n, totals[1] + top1, totals[2] + top5, totals[3] + n]
        log.append({"epoch": epoch, "step": scheduler.last_epoch, "loss": value, "lr": lr})
    return totals, log, time.perf_counter() - start


@torch.no_grad()
def evaluate(model, loader, loss_fn, recipe: Recipe) -> list[float]:
    """Sums of loss, top-1, top-5 and images over (this worker's share of) the val folder."""
    model.eval()
    steps, totals = steps_in(loader, recipe), [0.0, 0.0, 0.0, 0.0]
    for i, (images, labels) in enumerate(loader):
        if i >= steps:
            break
        logits = logits_of(model(images))
        top1, top5 = topk_correct(logits, labels)
        n = len(labels)
        totals = [totals[0] + float(loss_fn(logits, labels)) * n, totals[1] + top1,
                  totals[2] + top5, totals[3] + n]
    return totals


def bare(model: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (or itself)."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(folder: Path, model, optimizer, scheduler, metrics: dict) -> None:
    save_state_dict(bare(model).state_dict(), folder / MODEL_FILE)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": metrics["epoch"]}, folder / STATE_FILE)
    (folder / METRICS_FILE).write_text(json.dumps(metrics))


def resume(model, optimizer, scheduler) -> int:
    """Restore the last reported checkpoint, if any; returns the epochs it had finished."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        state = load_state_dict_file(Path(folder) / MODEL_FILE, what="the resumed model")
        bare(model).load_state_dict(state)
        saved = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return int(saved["epoch"])


def epoch_metrics(epoch, train, val, seconds, lr, log) -> dict:
    """The epoch's record: means over the images every worker saw."""
    def ratio(a, b):
        return a / b if b else None
    return {"epoch": epoch, "train_loss": ratio(train[0], train[3]),
            "train_top1": ratio(train[1], train[3]), "train_top5": ratio(train[2], train[3]),
            "val_loss": ratio(val[0], val[3]), "val_top1": ratio(val[1], val[3]),
            "val_top5": ratio(val[2], val[3]), "images_per_s": ratio(train[3], seconds),
            "lr": lr, "seconds": seconds, "steps": len(log), "step_log": log}


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's per-worker function; ``config``: arch, activation, num_classes, data, has_val,
    recipe (a dict), threads (torch threads on a CPU worker; 0 leaves Ray's setting)."""
    recipe = recipe_from_dict(config["recipe"])
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    net = build_network(config["arch"], config["activation"], num_classes=config["num_classes"],
                        seed=recipe.seed)
    model = ray.train.torch.prepare_model(net)
    optimizer = optimizer_for(bare(model), recipe)
    train_set = image_dataset(Path(config["data"]), "train", recipe)
    val_set = image_dataset(Path(config["data"]), "val", recipe) if config["has_val"] else None
    steps = steps_in(epoch_loader(train_set, recipe, epoch=0, rank=rank, world_size=world,
                                  shuffle=True), recipe)
    factor = functools.partial(recipe.lr_factor, steps_per_epoch=max(steps, 1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    device = ray.train.torch.get_device()
    for epoch in range(resume(model, optimizer, scheduler) + 1, recipe.epochs + 1):
        loader = ray.train.torch.prepare_data_loader(epoch_loader(
            train_set, recipe, epoch=epoch, rank=rank, world_size=world, shuffle=True))
        lr = optimizer.param_groups[0]["lr"]
        train, log, seconds = train_epoch(model, loader, optimizer, scheduler, loss_fn, recipe,
                                          epoch)
        val = [0.0, 0.0, 0.0, 0.0]
        if val_set is not None:
            val = evaluate(model, ray.train.torch.prepare_data_loader(epoch_loader(
                val_set, recipe, epoch=epoch, rank=rank, world_size=world, shuffle=False)),
                loss_fn, recipe)
        train, val = summed(train, device), summed(val, device)
        metrics = epoch_metrics(epoch, train, val, seconds, lr, log)
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                save_checkpoint(Path(folder), model, optimizer, scheduler, metrics)
            checkpoint = ray.train.Checkpoint.from_directory(folder) if rank == 0 else None
            ray.train.report({k: v for k, v in metrics.items() if k != "step_log"},
                             checkpoint=checkpoint, checkpoint_dir_name=epoch_name(epoch))
