"""``train``: a torchvision classifier with ReLU or Tanh on Ray Train (paper section 4.3).

The parser is built here; the body (:func:`cmd_train`) is loaded when the command runs, so
``python -m signseg_core --help`` imports neither Ray nor torchvision.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from signseg_core import paths
from signseg_core.cli.options import command
from signseg_core.training.recipe import ACTIVATIONS, SCHEDULES, TORCHVISION_REFERENCE, Recipe

#: Recipe presets: FFCV's ResNet-18 16-epoch configuration (the default) and torchvision's.
PRESETS = {"ffcv": {}, "torchvision": TORCHVISION_REFERENCE}
#: Recipe fields the command line sets, by their option's dest.
RECIPE_OPTIONS = tuple(f.name for f in dataclasses.fields(Recipe))


def add_training_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to ``sub``."""
    d = Recipe()
    p = sub.add_parser(
        "train", help="train a torchvision classifier with ReLU or Tanh on Ray Train (paper 4.3)",
        description="Train ARCH on an ImageFolder (DATA/train/<class>/*, optional DATA/val/) "
                    "with Ray Train, one checkpoint per epoch in OUT; run it again with the same "
                    "OUT to continue. Recipe defaults: FFCV's ResNet-18 16-epoch configuration "
                    "(the paper's library); --recipe torchvision for torchvision's reference.")
    p.add_argument("arch", help="a torchvision classification architecture, e.g. resnet18")
    p.add_argument("--activation", default="relu",
                   help=f"{' or '.join(ACTIVATIONS)}: tanh replaces every nn.ReLU by nn.Tanh")
    p.add_argument("--data", required=True, help="ImageFolder root holding train/ (and val/)")
    p.add_argument("--out", default=None,
                   help="run folder (default: <cache>/training/ARCH_ACTIVATION)")
    p.add_argument("--recipe", choices=tuple(PRESETS), default="ffcv",
                   help="defaults of the options below: ffcv (lr 0.5 at batch 1024, cyclic, "
                        "wd 5e-5 not on BatchNorm, label smoothing 0.1) or torchvision (lr 0.1 "
                        "at batch 256, x0.1 every 30 epochs, wd 1e-4, no smoothing)")
    p.add_argument("--epochs", type=int, default=None, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per step across all workers (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate ({d.lr})")
    p.add_argument("--momentum", type=float, default=None, help=f"SGD momentum ({d.momentum})")
    p.add_argument("--weight-decay", type=float, default=None, help=f"({d.weight_decay:g})")
    p.add_argument("--bn-weight-decay", action="store_const", const=True, default=None,
                   help="also decay BatchNorm weights and biases (torchvision does)")
    p.add_argument("--label-smoothing", type=float, default=None, help=f"({d.label_smoothing})")
    p.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="cyclic: up to --lr at --lr-peak-epoch, then down to 0 at the last epoch; "
                        "step: x--gamma every --step-epochs")
    p.add_argument("--lr-peak-epoch", type=float, default=None, help=f"({d.lr_peak_epoch:g})")
    p.add_argument("--step-epochs", type=int, default=None, help=f"({d.step_epochs})")
    p.add_argument("--gamma", type=float, default=None, help=f"({d.gamma})")
    p.add_argument("--image-size", type=int, default=None,
                   help=f"training crop (default {d.image_size}; validation resizes to "
                        "size*256/224 and centre-crops it)")
    p.add_argument("--max-steps-per-epoch", type=int, default=None,
                   help="stop each epoch after this many batches (tests, smoke runs)")
    p.add_argument("--seed", type=int, default=None, help=f"({d.seed})")
    p.add_argument("--data-workers", type=int, default=None,
                   help=f"DataLoader processes per training worker ({d.data_workers})")
    p.add_argument("--num-classes", type=int, default=None,
                   help="outputs of the network (default: one per class folder; 1000 keeps an "
                        "ImageNet head, which the zoo needs)")
    p.add_argument("--workers", type=int, default=1, help="data-parallel Ray Train workers")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker")
    p.add_argument("--cpus-per-worker", type=int, default=1,
                   help="CPUs Ray reserves per worker (its torch threads on a CPU)")
    p.add_argument("--keep-checkpoints", type=int, default=2,
                   help="Ray checkpoints kept (model + optimizer); epoch files are all kept")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: $RAY_ADDRESS, else a new local Ray)")
    p.set_defaults(func=command("training_commands", "cmd_train"))


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The preset ``--recipe`` with every option given on the command line over it."""
    values = dict(PRESETS[args.recipe])
    values.update({name: getattr(args, name) for name in RECIPE_OPTIONS
                   if getattr(args, name, None) is not None})
    return Recipe(**values)


def default_out(arch: str, activation: str) -> Path:
    """``<cache>/training/ARCH_ACTIVATION``: where the dashboard's Training page looks."""
    return paths.cache_dir() / "training" / f"{arch}_{activation}"


def cmd_train(args: argparse.Namespace) -> int:
    from signseg_core.training.ray_train import TrainingRun, train  # deferred: imports Ray

    out = Path(args.out) if args.out else default_out(args.arch, args.activation)
    run = TrainingRun(args.arch, args.activation, Path(args.data), out,
                      recipe=recipe_from_args(args), num_classes=args.num_classes,
                      workers=args.workers, gpu=args.gpu, cpus_per_worker=args.cpus_per_worker,
                      keep_checkpoints=args.keep_checkpoints)
    records = train(run, address=args.address, progress=lambda line: print(line, flush=True))
    last = int(records["epoch"].max()) if len(records) else 0
    print(f"{last} epochs in {out}: records in epochs.csv, epoch files in "
          f"{out / 'epochs'} (e.g. epoch_{last:02d}.pt)")
    return 0
