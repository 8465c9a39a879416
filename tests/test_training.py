"""Training the ReLU/Tanh pair on Ray Train (issue 16, part 4).

A local Ray started here (``ray.init(num_cpus=2)``, no dashboard, its temp folder under the test's
tmp path) trains resnet18 at 32 px on a synthetic ImageFolder of three solid-colour classes:
twice into one folder (1 epoch, then ``--epochs 2``, which resumes) and once, at the same time,
2 epochs uninterrupted into another. The resumed run's weights equal the uninterrupted run's bit
for bit (one CPU worker, fixed seeds, shuffling and augmentation seeded per epoch, optimizer and
scheduler restored), the loss falls, and the zoo loads the epoch files. The rest are unit tests
of the activation swap, the recipe, the data checks and the refusals, which need no Ray.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from signseg_core.cli.main import build_parser, main
from signseg_core.cli.training_commands import recipe_from_args
from signseg_core.errors import SignsegError, UnknownNameError, WeightsNotFoundError
from signseg_core.ray_session import runtime_env as ray_runtime_env
from signseg_core.models.checkpoints import load_state_dict_file, save_state_dict, sha256_file
from signseg_core.models.registry import load_model, relu_to_tanh
from signseg_core.models.zoo import IMAGENET_MEAN, IMAGENET_STD
from signseg_core.training.activations import build_network, rectifiers_left
from signseg_core.training.data import scan_image_folder
from signseg_core.training.recipe import TORCHVISION_REFERENCE, Recipe, TrainingSetupError
from signseg_core.training.records import (
    epoch_file,
    epoch_files,
    natural_key,
    ray_checkpoints,
    read_epochs,
    read_steps,
    write_run,
)

ray = pytest.importorskip("ray")

#: Three Imagenette classes by WordNet id, each a solid colour (a task a few steps can learn).
COLOURS = {"n01440764": (220, 40, 40), "n02102040": (40, 200, 60), "n02979186": (40, 60, 220)}
COMMON = ["--image-size", "32", "--batch-size", "8", "--lr", "0.003", "--schedule", "step",
          "--label-smoothing", "0", "--data-workers", "0", "--num-classes", "1000"]


def make_image_folder(root: Path, *, per_class: int = 16, val: int = 2, size: int = 32) -> Path:
    """ROOT/train/<wnid>/i.png (and val/): noisy solid colours, seeded."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", val)):
        for wnid, rgb in COLOURS.items():
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                noise = rng.integers(-25, 26, (size, size, 3))
                pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        # Ray Train's optional helpers (preemption watcher, metrics), off to start faster here
        env.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        env.setenv("RAY_TRAIN_METRICS_ENABLED", "0")
        env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

        temp = tmp_path_factory.mktemp("r")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env=ray_runtime_env(), _temp_dir=str(temp))
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, local_ray):
    """Folder A: 1 epoch, then --epochs 2 (resumed); folder B: 2 epochs at once, trained at the
    same time as A's first epoch. Returns A, B, the data, A's epoch-1 file's (sha, mtime) after
    its first run, and the CLI's printed output of both runs."""
    from signseg_core.training.ray_train import TrainingRun, train

    base = tmp_path_factory.mktemp("train")
    data = make_image_folder(base / "data")
    a, b = base / "a", base / "b"
    args = ["train", "resnet18", "--data", str(data), *COMMON]
    recipe = recipe_from_args(build_parser().parse_args([*args, "--epochs", "2"]))
    reference = TrainingRun("resnet18", "relu", data, b, recipe=recipe, num_classes=1000)
    lines: list[str] = []
    thread = threading.Thread(target=train, args=(reference,), kwargs={"progress": lines.append})
    thread.start()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*args, "--out", str(a), "--epochs", "1"]) == 0
        first = epoch_file(a, 1)
        before = (sha256_file(first), first.stat().st_mtime_ns)
        assert main([*args, "--out", str(a), "--epochs", "2"]) == 0
    thread.join()
    assert (b / "epochs.csv").is_file(), "the uninterrupted run failed (see its log)"
    return {"a": a, "b": b, "data": data, "epoch1": before, "printed": printed.getvalue(),
            "lines": lines}


def test_the_loss_falls_on_a_learnable_task(runs):
    steps = read_steps(runs["b"])
    assert list(steps["step"]) == list(range(1, 13))  # 48 images / 8 = 6 steps x 2 epochs
    losses = steps["loss"].to_numpy()
    assert losses[-3:].mean() < 0.5 * losses[:3].mean(), losses


def test_a_resumed_run_continues_and_equals_an_uninterrupted_one_bit_for_bit(runs):
    a, b = runs["a"], runs["b"]
    assert [p.name for p in epoch_files(a)] == ["epoch_01.pt", "epoch_02.pt"]
    first = epoch_file(a, 1)
    assert (sha256_file(first), first.stat().st_mtime_ns) == runs["epoch1"]  # untouched
    for epoch in (1, 2):
        resumed = load_state_dict_file(epoch_file(a, epoch))
        straight = load_state_dict_file(epoch_file(b, epoch))
        assert resumed.keys() == straight.keys()
        for name in resumed:
            assert torch.equal(resumed[name], straight[name]), (epoch, name)
    # the optimizer's momentum too: the resumed run restored it rather than starting afresh
    states = [torch.load(ray_checkpoints(x)[-1] / "train_state.pt", weights_only=True)
              for x in (a, b)]
    buffers = [[s["momentum_buffer"] for s in st["optimizer"]["state"].values()] for st in states]
    assert len(buffers[0]) == len(buffers[1]) > 0
    assert all(torch.equal(x, y) for x, y in zip(*buffers))
    assert states[0]["scheduler"]["last_epoch"] == states[1]["scheduler"]["last_epoch"] == 12


def test_records_and_progress_lines(runs):
    table = read_epochs(runs["a"])
    assert list(table["epoch"]) == [1, 2]
    for column in ("train_loss", "train_top1", "train_top5", "val_top1", "val_top5",
                   "images_per_s"):
        assert table[column].notna().all(), column
    assert ((0 <= table["train_top1"]) & (table["train_top1"] <= table["train_top5"])
            & (table["train_top5"] <= 1)).all()
    printed = runs["printed"]
    assert "epoch 1/1  loss" in printed and "epoch 2/2  loss" in printed
    assert "epoch 1/2" not in printed  # the second run continued at epoch 2
    assert "images/s" in printed and "val loss" in printed
    assert [line.split()[1] for line in runs["lines"] if line.startswith("epoch ")] == \
        ["1/2", "2/2"]


def test_the_zoo_loads_an_epoch_file_with_the_trained_logits(runs):
    path = epoch_file(runs["a"], 2)
    zoo = load_model("resnet18_relu", weights=path)
    net = build_network("resnet18", "relu", num_classes=1000)
    net.load_state_dict(load_state_dict_file(ray_checkpoints(runs["a"])[-1] / "model.safetensors"))
    net = net.eval().to(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(v)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    with torch.no_grad():
        torch.testing.assert_close(zoo(images), net((images - mean) / std), rtol=0, atol=1e-5)


def test_running_again_when_finished_does_nothing(runs, capsys):
    args = ["train", "resnet18", "--data", str(runs["data"]), *COMMON]
    assert main([*args, "--out", str(runs["b"]), "--epochs", "2"]) == 0
    assert "finished 2 epochs already" in capsys.readouterr().out


# -- no Ray below -----------------------------------------------------------------------------

def test_relu_to_tanh_leaves_no_rectifier_and_keeps_shapes():
    net = build_network("resnet18", "relu", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    shape = net(x).shape
    assert any(isinstance(m, nn.ReLU) for m in net.modules())
    relu_to_tanh(net)
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    assert rectifiers_left(net) == []  # resnet18's forward calls no functional relu either
    assert net(x).shape == shape == (2, 10)


def test_tanh_is_tanh_by_hand():
    net = relu_to_tanh(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU())))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.zero_()
        out = net(torch.tensor([[-1.0, 0.5]]))
    assert torch.allclose(out, torch.tensor([[-0.7615941559557649, 0.46211715726000974]]))


def test_tanh_is_refused_where_relu_would_remain():
    with pytest.raises(TrainingSetupError, match="densenet121 cannot be trained with Tanh.*relu"):
        build_network("densenet121", "tanh", num_classes=10)


def test_unknown_architecture_and_activation_are_one_sentence():
    with pytest.raises(UnknownNameError, match="unknown architecture 'resnet19'; choose from"):
        build_network("resnet19", "relu", num_classes=10)
    with pytest.raises(TrainingSetupError, match="unknown activation 'gelu'; choose from relu"):
        build_network("resnet18", "gelu", num_classes=10)


def test_recipe_defaults_presets_and_checks():
    r = Recipe()
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.weight_decay, r.label_smoothing) == \
        (16, 1024, 0.5, 0.9, 5e-5, 0.1)  # FFCV's rn18_16_epochs.yaml
    assert r.val_resize == 256 and Recipe(image_size=32).val_resize == 37
    assert math.isclose(r.lr_factor(0, 100), 1e-4)
    assert math.isclose(r.lr_factor(200, 100), 1.0)  # the peak, at epoch 2
    assert math.isclose(r.lr_factor(900, 100), 0.5)  # halfway down from 2 to 16
    step = Recipe(schedule="step")
    assert step.lr_factor(2999, 100) == 1.0 and math.isclose(step.lr_factor(3000, 100), 0.1)
    tv = recipe_from_args(build_parser().parse_args(
        ["train", "resnet18", "--data", "x", "--recipe", "torchvision", "--lr", "0.2"]))
    assert (tv.batch_size, tv.lr, tv.schedule, tv.weight_decay, tv.bn_weight_decay) == \
        (256, 0.2, "step", 1e-4, True)
    assert TORCHVISION_REFERENCE["lr"] == 0.1
    assert "epochs" not in r.identity() and "lr" in r.identity()
    for bad, match in (({"lr": 0}, "lr must be"), ({"schedule": "cosine"}, "unknown schedule"),
                       ({"batch_size": 0}, "batch_size must be a positive int"),
                       ({"image_size": 8}, "at least 16 px")):
        with pytest.raises(ValueError, match=match):
            Recipe(**bad)


@pytest.mark.parametrize("layout, match", [
    ("missing", "does not exist"),
    ("no_train", "has no train/ folder"),
    ("flat_train", "holds no class folders"),
    ("empty_class", "holds no images"),
    ("one_class", "holds one class folder"),
    ("flat_val", "holds images directly, not class folders"),
    ("other_val", "hold different class folders"),
])
def test_a_folder_not_in_imagefolder_layout_is_one_sentence(tmp_path, layout, match):
    root = tmp_path / "data"
    png = Image.new("RGB", (4, 4))
    if layout != "missing":
        (root / "other").mkdir(parents=True)
    if layout in ("flat_train", "empty_class", "one_class", "flat_val", "other_val"):
        (root / "train").mkdir()
    if layout == "flat_train":
        png.save(root / "train" / "a.png")
    for name in ("a", "b"):
        if layout in ("empty_class", "flat_val", "other_val") or (layout, name) == ("one_class",
                                                                                     "a"):
            (root / "train" / name).mkdir()
            if not (layout == "empty_class" and name == "b"):
                png.save(root / "train" / name / "0.png")
    if layout in ("flat_val", "other_val"):
        (root / "val").mkdir()
        if layout == "flat_val":
            png.save(root / "val" / "0.png")
        else:
            (root / "val" / "c").mkdir()
            png.save(root / "val" / "c" / "0.png")
    with pytest.raises(TrainingSetupError, match=match):
        scan_image_folder(root)


def test_a_good_folder_is_scanned(tmp_path):
    layout = scan_image_folder(make_image_folder(tmp_path, per_class=2, val=1, size=8))
    assert layout.classes == tuple(sorted(COLOURS)) and layout.train_images == 6
    assert layout.has_val and layout.val_images == 3


def test_an_out_folder_of_another_run_is_refused_and_left_alone(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=2, val=0, size=8)
    out = tmp_path / "out"
    write_run(out, {"arch": "resnet18", "activation": "tanh", "num_classes": 1000,
                    "classes": sorted(COLOURS), "recipe": Recipe().identity()})
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*"))
    code = main(["train", "resnet18", "--activation", "relu", "--data", str(data),
                 "--out", str(out), "--num-classes", "1000"])
    err = capsys.readouterr().err
    assert code == 2 and "holds another run's checkpoints (activation 'tanh', not 'relu')" in err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*")) == before
    code = main(["train", "resnet18", "--activation", "tanh", "--data", str(data),
                 "--out", str(out), "--num-classes", "1000", "--lr", "0.1"])
    assert code == 2 and "trained with lr = 0.5, not 0.1" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["train", "resnet18", "--activation", "sigmoid"], "unknown activation 'sigmoid'"),
    (["train", "resnet19"], "unknown architecture 'resnet19'"),
    (["train", "resnet18", "--num-classes", "2"], "num_classes 2 is fewer than the 3"),
    (["train", "resnet18", "--workers", "3"], "does not split evenly between 3 workers"),
])
def test_bad_arguments_are_one_sentence_and_write_nothing(tmp_path, capsys, argv, match):
    data = make_image_folder(tmp_path / "data", per_class=1, val=0, size=8)
    out = tmp_path / "out"
    assert main([*argv, "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_zoo_names_the_trained_pair_and_where_their_files_go(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGNSEG_WEIGHTS_DIR", str(tmp_path / "w"))
    for activation in ("relu", "tanh"):
        with pytest.raises(WeightsNotFoundError, match=f"put resnet18_{activation}.pth at .*"
                           f"--activation {activation}.*epoch_16.pt"):
            load_model(f"resnet18_{activation}")
    net = build_network("resnet18", "tanh", num_classes=1000, seed=3).eval()
    path = save_state_dict(net.state_dict(), tmp_path / "w" / "resnet18_tanh.pth")
    zoo = load_model("resnet18_tanh")
    assert zoo.weights_source == str(path)
    x = torch.rand(1, 3, 224, 224)
    mean, std = (torch.tensor(v)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    with torch.no_grad():
        torch.testing.assert_close(zoo(x), net((x - mean) / std), rtol=0, atol=1e-5)
    assert load_model("vgg11_relu", untrained=True).arch == "vgg11"


def test_epoch_files_sort_naturally():
    names = ["epoch_10.pt", "epoch_2.pt", "epoch_1.pt"]
    assert sorted(names, key=natural_key) == ["epoch_1.pt", "epoch_2.pt", "epoch_10.pt"]


def test_a_worker_failure_is_one_sentence_for_user_errors_only():
    from signseg_core.training.ray_train import worker_failure

    class Failed(Exception):
        def __init__(self, failures):
            self.worker_failures = failures

    user = worker_failure(Failed({0: OSError("cannot identify image file 'x.png'")}))
    assert isinstance(user, SignsegError) and "worker 0: cannot identify image" in str(user)
    bug = Failed({0: ZeroDivisionError("x")})
    assert worker_failure(bug) is bug
