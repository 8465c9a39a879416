"""Training data: a folder in torchvision's ImageFolder layout, checked before a run starts.

Layout (as ImageNet is usually unpacked for PyTorch)::

    ROOT/train/<class>/*.JPEG      one folder per class; the class index is the sorted position
    ROOT/val/<class>/*             optional; the same class folders

Class indices are the sorted folder names, as ``ImageFolder`` gives them: for ImageNet's 1000
WordNet ids (``n01440764`` ...) that is ImageNet's own index order, the one the zoo's class names
follow. ImageNet's official validation archive unpacks flat (50,000 files, labels in the devkit);
it must be sorted into ``val/<class>/`` first, and a flat ``val/`` is refused saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from signseg_core.models.zoo import IMAGENET_MEAN, IMAGENET_STD
from signseg_core.training.recipe import Recipe, TrainingSetupError

#: File endings ImageFolder reads (torchvision.datasets.folder.IMG_EXTENSIONS).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FolderLayout:
    """What :func:`scan_image_folder` found: class names (sorted) and image counts."""

    root: Path
    classes: tuple[str, ...]
    train_images: int
    val_images: int  # 0 when there is no val/ folder

    @property
    def has_val(self) -> bool:
        return self.val_images > 0


def _class_folders(split: Path) -> dict[str, int]:
    """Class folder name → number of image files in it (hidden folders skipped)."""
    out = {}
    for folder in sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[folder.name] = sum(1 for f in folder.rglob("*")
                               if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    return out


def _loose_images(split: Path) -> int:
    return sum(1 for f in split.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def scan_image_folder(root: str | Path) -> FolderLayout:
    """Check ``root`` is in ImageFolder layout (see the module's docstring); one
    :class:`TrainingSetupError` sentence naming the first thing wrong."""
    root = Path(root).expanduser()
    layout = "ROOT/train/<class>/<image> (and optionally ROOT/val/<class>/<image>)"
    if not root.is_dir():
        raise TrainingSetupError(f"the data folder {root} does not exist; it should be {layout}")
    train = root / "train"
    if not train.is_dir():
        raise TrainingSetupError(f"{root} has no train/ folder; the data must be laid out as "
                                 f"{layout}")
    counts = _class_folders(train)
    if not counts:
        raise TrainingSetupError(f"{train} holds no class folders; it should hold one folder of "
                                 "images per class (train/<class>/<image>)")
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise TrainingSetupError(f"class folder {train / empty[0]} holds no images (files ending "
                                 f"in {', '.join(IMAGE_SUFFIXES)})")
    if len(counts) < 2:
        raise TrainingSetupError(f"{train} holds one class folder ({next(iter(counts))}); a "
                                 "classifier needs at least two")
    val_images = 0
    val = root / "val"
    if val.is_dir():
        val_counts = _class_folders(val)
        if not val_counts and _loose_images(val):
            raise TrainingSetupError(
                f"{val} holds images directly, not class folders: sort them into "
                "val/<class>/ (for ImageNet, with the devkit's validation labels), or move val/ "
                "away to train without validation")
        if set(val_counts) != set(counts):
            odd = sorted(set(val_counts) ^ set(counts))
            raise TrainingSetupError(f"{val} and {train} hold different class folders "
                                     f"({', '.join(odd[:5])}, ...); they must be the same")
        val_images = sum(val_counts.values())
    return FolderLayout(root, tuple(counts), sum(counts.values()), val_images)


def train_transform(recipe: Recipe):
    """RandomResizedCrop(image_size) + horizontal flip + ImageNet normalisation."""
    from torchvision import transforms as T  # deferred: torchvision takes ~1 s to import

    return T.Compose([T.RandomResizedCrop(recipe.image_size), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def val_transform(recipe: Recipe):
    """Resize(val_resize) + CenterCrop(image_size) + ImageNet normalisation (256 → 224)."""
    from torchvision import transforms as T  # deferred: torchvision takes ~1 s to import

    return T.Compose([T.Resize(recipe.val_resize), T.CenterCrop(recipe.image_size),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def image_dataset(root: Path, split: str, recipe: Recipe) -> Dataset:
    from torchvision.datasets import ImageFolder  # deferred: torchvision takes ~1 s to import

    transform = train_transform(recipe) if split == "train" else val_transform(recipe)
    return ImageFolder(str(Path(root) / split), transform=transform)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one worker's shuffling and augmentation in one epoch: a function of
    (seed, epoch, rank) alone, so a resumed run draws what an uninterrupted one would."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def epoch_loader(dataset: Dataset, recipe: Recipe, *, epoch: int, rank: int, world_size: int,
                 shuffle: bool) -> DataLoader:
    """One epoch's loader of this worker's share: ``batch_size / world_size`` images a batch,
    shuffled (training) from :func:`epoch_seed`, the last partial batch dropped in training."""
    per_worker = recipe.batch_size // world_size
    seed = epoch_seed(recipe.seed, epoch, rank)
    generator = torch.Generator().manual_seed(seed)
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                     shuffle=shuffle, seed=recipe.seed, drop_last=shuffle)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=generator) if shuffle else None
    torch.manual_seed(seed)  # the augmentation's draws when loading in this process
    return DataLoader(dataset, batch_size=per_worker, sampler=sampler, shuffle=False,
                      num_workers=recipe.data_workers, generator=generator,
                      drop_last=shuffle and len(dataset) >= per_worker,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())
