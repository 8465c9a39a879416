"""Weight dynamics vs Dale index (paper Fig 25): hand-worked similarities and convergence epochs,
a float64 numpy reference written from the paper's definitions, the statistics against scipy,
invariants, the two-checkpoints-in-memory limit, caching and resuming, and bad input."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from signseg_core.analyses.dynamics import (
    DynamicsKey,
    StepKey,
    convergence_epochs,
    cosine_similarity,
    dynamics_key,
    sender_vectors,
    weight_dynamics,
)
from signseg_core.analyses.dynamics_files import (
    DynamicsError,
    checkpoint_epochs,
    layer_plan,
    list_checkpoints,
    save_checkpoint_upload,
    write_demo_checkpoints,
)
from signseg_core.analyses.dynamics_stats import (
    bin_residuals,
    convergence_correlation,
    dale_bins,
    narrower_windows_test,
    spread_by_bin,
)
from signseg_core.cli.main import main
from signseg_core.errors import CheckpointError, UnsafeCheckpointError
from signseg_core.figures.dynamics_plots import (
    convergence_scatter_figure,
    similarity_curves_figure,
    spread_by_bin_figure,
)
from signseg_core.jobs import JobCancelled
from signseg_core.models.checkpoints import load_state_dict_file, save_state_dict
from signseg_core.models.registry import load_model

# One Linear layer fc.weight (out=2, in=2); channel j's outgoing weights are the column W[:, j].
#   channel 0: (1, 0) -> (1, 1) -> (0, 1) final
#       cos to final: 0, 1/sqrt(2) = 0.7071, 1. Reaches 0.9 only at the final epoch 3; reaches
#       0.7 at epoch 2.
#   channel 1: (6, -8) -> (4, 3) -> (3, -4) final
#       cos: (18 + 32) / (10 * 5) = 1, (12 - 12) / 25 = 0, 1. First reaches 0.9 at epoch 1,
#       dips, stays from epoch 3 on.
#   final Dale index (zeros count as neither sign): (0, 1) -> max(1/2, 0) = 0.5, none negative;
#   (3, -4) -> 0.5, half negative.
HAND = [torch.tensor([[1.0, 6.0], [0.0, -8.0]]), torch.tensor([[1.0, 4.0], [1.0, 3.0]]),
        torch.tensor([[0.0, 3.0], [1.0, -4.0]])]


def write_run(folder, weights, *, name="epoch_{}.pt", start=1, extra=None):
    """Checkpoints ``name.format(epoch)`` of ``{"fc.weight": w}`` (plus ``extra``) per weight."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, w in enumerate(weights):
        path = folder / name.format(start + k)
        state = {"fc.weight": w, **(extra or {})}
        if path.suffix == ".safetensors":
            save_state_dict(state, path)
        else:
            torch.save(state, path)
        paths.append(path)
    return paths


def random_run(folder, *, n=4, seed=0):
    """A conv (5 -> 6, 3x3) and a Linear (6 -> 4) layer over ``n`` seeded checkpoints that
    drift towards the final one: checkpoint k is the final weights plus noise of SD (n-1-k) *
    0.4 times a per-weight factor, so channels converge at different epochs."""
    g = torch.Generator().manual_seed(seed)
    final = {"conv.weight": torch.randn(6, 5, 3, 3, generator=g),
             "conv.bias": torch.randn(6, generator=g), "fc.weight": torch.randn(4, 6, generator=g)}
    spread = {k: torch.rand(v.shape, generator=g) * 2 for k, v in final.items()}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        state = {name: w + (n - 1 - k) * 0.4 * spread[name] * torch.randn(w.shape, generator=g)
                 for name, w in final.items()}
        paths.append(save_state_dict(state, folder / f"epoch_{k + 1}.safetensors"))
    return paths


def test_hand_worked_similarities_and_epochs(tmp_path):
    result = weight_dynamics(write_run(tmp_path / "run", HAND))
    np.testing.assert_allclose(result.similarity, [[0, 1 / math.sqrt(2), 1], [1, 0, 1]],
                               atol=1e-15)
    table = result.table
    assert list(table["layer"]) == ["fc", "fc"] and list(table["channel"]) == [0, 1]
    assert list(table["convergence_epoch"]) == [3, 1]
    assert list(table["settle_epoch"]) == [3, 3]
    assert list(table["dale_index"]) == [0.5, 0.5]
    assert list(table["frac_negative"]) == [0.0, 0.5]
    assert list(result.epochs) == [1, 2, 3] and result.epoch_source == "file names"
    lower = weight_dynamics(write_run(tmp_path / "run", HAND), threshold=0.7)
    assert list(lower.table["convergence_epoch"]) == [2, 1]


def test_equal_to_the_threshold_counts_as_reached():
    sim = np.array([[0.5, 0.9, 1.0], [0.8999999, 0.95, 1.0]])
    first, settle = convergence_epochs(sim, np.array([1.0, 2.0, 3.0]), 0.9)
    assert list(first) == [2, 2] and list(settle) == [2, 2]
    first, _ = convergence_epochs(np.array([[1 - 1e-15, 1.0]]), np.array([0.0, 1.0]), 1.0)
    assert first[0] == 0  # float64 rounding of cos(w, w) is not a miss


def test_zero_final_weights_have_no_epoch_and_zero_current_weights_have_similarity_zero(tmp_path):
    weights = [torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [2.0, 0.0]])]
    result = weight_dynamics(write_run(tmp_path / "run", weights))
    # channel 0: zero at epoch 1, (1, 2) at the end -> s = 0; channel 1 ends all zero -> NaN
    assert result.similarity[0].tolist() == [0.0, 1.0]
    assert np.isnan(result.similarity[1]).all()
    assert result.table["convergence_epoch"].iloc[0] == 2
    assert np.isnan(result.table["convergence_epoch"].iloc[1])
    assert result.table["dale_index"].iloc[1] == 0.0
    assert convergence_correlation(result.table)["n_left_out"] == 1


def reference(states, *, layers):
    """The paper's definitions in float64 numpy, written independently of the engine: per layer
    and input channel j, cos of W[:, j] (every kernel entry) to the final's, and the Dale index
    max(p+, p-) of the spatially averaged outgoing weights, zeros neither sign."""
    sims, dale, neg = [], [], []
    for key in layers:
        final = states[-1][key].double().numpy()
        for j in range(final.shape[1]):
            f = final[:, j].ravel()
            sims.append([float(np.dot(s[key].double().numpy()[:, j].ravel(), f)
                               / np.linalg.norm(s[key].double().numpy()[:, j].ravel())
                               / np.linalg.norm(f)) for s in states])
            means = final[:, j].reshape(final.shape[0], -1).mean(axis=1)
            dale.append(max(np.mean(means > 0), np.mean(means < 0)))
            neg.append(np.mean(means < 0))
    return np.array(sims), np.array(dale), np.array(neg)


def test_matches_a_float64_numpy_reference(tmp_path):
    paths = random_run(tmp_path / "run", n=5)
    states = [load_state_dict_file(p) for p in paths]
    sims, dale, neg = reference(states, layers=["conv.weight", "fc.weight"])
    result = weight_dynamics(paths)
    assert list(result.table["layer"].unique()) == ["conv", "fc"]  # biases are not layers
    np.testing.assert_allclose(result.similarity, sims, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.table["dale_index"], dale)
    np.testing.assert_array_equal(result.table["frac_negative"], neg)
    first = [result.epochs[np.flatnonzero(row >= 0.9)[0]] for row in sims]
    np.testing.assert_array_equal(result.table["convergence_epoch"], first)


def test_grouped_sender_vectors_match_a_reference():
    w = torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    vectors = sender_vectors(w, groups=3)  # in = 6 channels, 2 per group, 2 outputs per group
    assert vectors.shape == (6, 2 * 9)
    for c in range(6):
        g, local = divmod(c, 2)
        expected = w[2 * g:2 * g + 2, local].reshape(-1)
        assert torch.equal(vectors[c], expected)


def test_layers_named_by_an_architecture():
    state = load_model("tiny_test").module.state_dict()
    layers = layer_plan(state, arch="tiny_test")
    assert [layer.key for layer in layers] == ["0.weight", "2.weight", "6.weight"]
    with pytest.raises(CheckpointError, match=r"x.pt does not fit the architecture tiny_test"):
        layer_plan({"fc.weight": torch.ones(2, 2)}, arch="tiny_test", source="x.pt")


def test_a_head_of_another_number_of_classes_still_fits_its_architecture():
    # `train resnet18` on a 3-class folder writes a (3, 512) fc: still resnet18's layers
    state = torchvision.models.resnet18(num_classes=3).state_dict()
    layers = layer_plan(state, arch="resnet18")
    assert layers[-1].key == "fc.weight" and len(layers) == 21  # 20 convs + the head
    state["layer1.0.conv1.weight"] = torch.ones(64, 64, 1, 1)  # another shape inside: refused
    with pytest.raises(CheckpointError, match=r"layer1.0.conv1.weight \(64, 64, 1, 1\)"):
        layer_plan(state, arch="resnet18", source="x.pt")
    state = torchvision.models.resnet18(num_classes=3).state_dict()
    state["fc.weight"] = torch.ones(3, 256)  # the head's inputs must still match
    with pytest.raises(CheckpointError, match=r"fc.weight \(3, 256\) vs \(1000, 512\)"):
        layer_plan(state, arch="resnet18", source="x.pt")


def test_a_run_named_by_an_architecture(tmp_path):
    final = load_model("tiny_test").module.state_dict()
    g = torch.Generator().manual_seed(0)
    early = {k: v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v
             for k, v in final.items()}
    paths = [save_state_dict(early, tmp_path / "epoch_1.safetensors"),
             save_state_dict(final, tmp_path / "epoch_2.safetensors")]
    result = weight_dynamics(paths, arch="tiny_test")
    assert result.table.groupby("layer", sort=False).size().to_dict() == {"0": 3, "2": 8, "6": 16}
    assert dynamics_key(paths, threshold=0.9, arch="tiny_test") != dynamics_key(paths,
                                                                             threshold=0.9)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.01, 100.0), st.floats(0.01, 100.0))
def test_scaling_a_checkpoint_leaves_similarity_unchanged(seed, c, d):
    # float64 weights: scaling float32 ones would round them (1e-7), which is the data's change
    g = torch.Generator().manual_seed(seed)
    w, f = (torch.randn(7, 5, 3, 3, generator=g, dtype=torch.float64) for _ in range(2))
    base = cosine_similarity(sender_vectors(w), sender_vectors(f))
    scaled = cosine_similarity(sender_vectors(c * w), sender_vectors(d * f))
    np.testing.assert_allclose(scaled, base, rtol=0, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 9), st.floats(0.05, 1.0))
def test_final_similarity_is_one_and_convergence_is_at_most_the_last_epoch(seed, n, threshold):
    rng = np.random.default_rng(seed)
    sim = np.column_stack([rng.uniform(-1, 1, (6, n - 1)), np.ones(6)])
    epochs = np.cumsum(rng.integers(1, 4, n)).astype(float)
    first, settle = convergence_epochs(sim, epochs, threshold)
    assert (first <= epochs[-1]).all() and (first <= settle).all()
    assert set(first) <= set(epochs)


def test_the_run_has_similarity_one_at_the_end(tmp_path):
    result = weight_dynamics(random_run(tmp_path / "run", n=3))
    assert (result.similarity[:, -1] == 1.0).all()
    assert (result.table["convergence_epoch"] <= result.epochs[-1]).all()


class CountingLoader:
    """Reads like the engine's loader and watches every tensor it hands out: a checkpoint is in
    memory while any of its tensors is alive. Fails if a third would be read."""

    def __init__(self):
        self.live: dict[str, int] = {}
        self.loads: list[str] = []
        self.most = 0

    def __call__(self, path):
        in_memory = [name for name, n in self.live.items() if n > 0]
        assert len(in_memory) <= 1, f"reading {path.name} while {in_memory} are in memory"
        state = {k: v.clone() for k, v in load_state_dict_file(path).items()}
        self.loads.append(path.name)
        self.live[path.name] = len(state)
        for tensor in state.values():
            weakref.finalize(tensor, self.release, path.name)
        self.most = max(self.most, len(in_memory) + 1)
        return state

    def release(self, name):
        self.live[name] -= 1


def test_never_more_than_two_checkpoints_in_memory(tmp_path):
    paths = random_run(tmp_path / "run", n=6)
    loader = CountingLoader()
    result = weight_dynamics(paths, loader=loader)
    assert loader.loads[0] == "epoch_6.safetensors"  # the final one first
    assert sorted(loader.loads) == sorted(p.name for p in paths)  # each read once
    assert loader.most == 2
    np.testing.assert_array_equal(result.similarity, weight_dynamics(paths).similarity)


def test_cached_run_reads_nothing_and_an_interrupted_run_resumes(tmp_path, store):
    paths = random_run(tmp_path / "run", n=6)
    calls = []

    def stop_after_two():
        calls.append(1)
        return len(calls) > 3  # polled at the start and before each step: two steps run

    with pytest.raises(JobCancelled):
        weight_dynamics(paths, store=store, should_stop=stop_after_two)
    key = dynamics_key(paths, threshold=0.9)
    assert key not in store  # nothing half-stored: only whole steps are
    assert len(store) == 3  # the final checkpoint's channels and two steps
    loader = CountingLoader()
    resumed = weight_dynamics(paths, store=store, loader=loader)
    assert loader.loads == ["epoch_6.safetensors", "epoch_3.safetensors",
                            "epoch_4.safetensors", "epoch_5.safetensors"]
    fresh = weight_dynamics(paths)
    np.testing.assert_array_equal(resumed.similarity, fresh.similarity)
    pd.testing.assert_frame_equal(resumed.table, fresh.table)
    again = CountingLoader()
    assert weight_dynamics(paths, store=store, loader=again).table.equals(fresh.table)
    assert again.loads == []
    other = CountingLoader()  # another threshold: steps reused, the result recomputed
    lower = weight_dynamics(paths, store=store, loader=other, threshold=0.5)
    assert other.loads == [] and (lower.table["convergence_epoch"]
                                  <= fresh.table["convergence_epoch"]).all()


def test_keys_follow_the_files(tmp_path):
    paths = random_run(tmp_path / "run", n=3)
    key = dynamics_key(paths, threshold=0.9)
    assert isinstance(key, DynamicsKey) and key == dynamics_key(paths, threshold=0.9000000001)
    torch.save({"x": torch.ones(1)}, tmp_path / "other.pt")
    save_state_dict({"conv.weight": torch.ones(6, 5, 3, 3), "conv.bias": torch.ones(6),
                     "fc.weight": torch.ones(4, 6)}, paths[1])
    assert dynamics_key(paths, threshold=0.9) != key
    assert StepKey(key.checkpoints[-1], key.checkpoints[0], "") != StepKey(
        key.checkpoints[-1], key.checkpoints[0], "resnet18")


def test_folder_order_is_natural_and_epochs_come_from_names(tmp_path):
    for e in (10, 2, 1, 16, 3):
        torch.save({"fc.weight": torch.randn(2, 2)}, tmp_path / f"epoch_{e}.pt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt", "epoch_10.pt", "epoch_16.pt"]
    assert list(weight_dynamics(tmp_path).epochs) == [1, 2, 3, 10, 16]
    plain = [tmp_path / "epoch_1.pt", tmp_path / "epoch_2.pt"]
    (tmp_path / "a.pt").write_bytes(plain[0].read_bytes())
    epochs, source = checkpoint_epochs([tmp_path / "a.pt", plain[1]])
    assert list(epochs) == [1, 2] and source == "positions"


def test_wrapped_state_dicts_and_safetensors_are_read(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {"fc.weight": HAND[0]}, "epoch": 1}, run / "epoch_1.pt")
    torch.save({"state_dict": {"fc.weight": HAND[1]}, "optimizer": {}}, run / "epoch_2.pth")
    save_state_dict({"fc.weight": HAND[2]}, run / "epoch_3.safetensors")
    assert list(weight_dynamics(run).table["convergence_epoch"]) == [3, 1]


@pytest.mark.parametrize("case, message", [
    ("empty", r"holds no checkpoint files"),
    ("one", r"at least two checkpoints .* holds only epoch_1.pt"),
    ("garbage", r"epoch_2.pt could not be read: the file looks truncated or corrupt"),
    ("other_arch", r"epoch_2.pt is not a checkpoint of the same network as the final "
                   r"epoch_3.pt"),
    ("no_number", r"final.pt carries no epoch number"),
    ("same_epoch", r"epoch_1.pt \(epoch 1\) and epoch_1.safetensors \(epoch 1\) carry the same"),
])
def test_bad_folders_are_one_sentence_naming_the_file(tmp_path, case, message):
    run = tmp_path / "run"
    run.mkdir()
    if case in ("one", "garbage", "other_arch", "no_number", "same_epoch"):
        write_run(run, HAND[:1 if case == "one" else 3])
    if case == "garbage":  # a torch file cut in half
        whole = (run / "epoch_2.pt").read_bytes()
        (run / "epoch_2.pt").write_bytes(whole[:len(whole) // 2])
    if case == "other_arch":
        torch.save({"fc.weight": torch.ones(3, 2)}, run / "epoch_2.pt")
    if case == "no_number":
        torch.save({"fc.weight": HAND[2]}, run / "final.pt")
    if case == "same_epoch":
        save_state_dict({"fc.weight": HAND[0]}, run / "epoch_1.safetensors")
    with pytest.raises((DynamicsError, CheckpointError), match=message) as info:
        weight_dynamics(run)
    assert "\n" not in str(info.value)


def test_lists_out_of_order_twice_or_unsafe_are_refused(tmp_path):
    paths = write_run(tmp_path / "run", HAND)
    with pytest.raises(DynamicsError, match=r"epoch_3.pt \(epoch 3\) and epoch_2.pt .* out of"):
        weight_dynamics([paths[0], paths[2], paths[1]])
    with pytest.raises(DynamicsError, match="listed twice"):
        weight_dynamics([paths[0], paths[0], paths[2]])
    with pytest.raises(DynamicsError, match="does not exist"):
        weight_dynamics([paths[0], tmp_path / "nope.pt"])

    class Runs:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"fc.weight": HAND[1], "extra": Runs()}, paths[1])
    with pytest.raises(UnsafeCheckpointError, match="epoch_2.pt"):
        weight_dynamics(paths)
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\]"):
        weight_dynamics(paths, threshold=0)


def planted(n=600, *, narrow: bool, seed=0):
    """Dale indices in [0.5, 1]; epochs spread ~6 wide at D = 0.5, ~1 at D = 1 when narrow."""
    rng = np.random.default_rng(seed)
    dale = rng.uniform(0.5, 1.0, n)
    width = 6 - 10 * (dale - 0.5) if narrow else np.full(n, 3.5)
    epochs = np.round(8 + rng.uniform(-1, 1, n) * width)
    return pd.DataFrame({"dale_index": dale, "convergence_epoch": epochs,
                         "frac_negative": rng.uniform(0, 1, n), "layer": "l",
                         "channel": np.arange(n)})


def test_statistics_agree_with_scipy_and_find_a_planted_narrowing():
    table = planted(narrow=True)
    corr = convergence_correlation(table)
    assert corr["spearman_rho"] == pytest.approx(
        stats.spearmanr(table.dale_index, table.convergence_epoch).statistic, abs=1e-12)
    assert corr["pearson_p"] == pytest.approx(
        stats.pearsonr(table.dale_index, table.convergence_epoch).pvalue, rel=1e-9)
    test = narrower_windows_test(table, bins=4, permutations=499, seed=3)
    edges, index = dale_bins(table.dale_index.to_numpy(), bins=4)
    groups = [table.convergence_epoch.to_numpy()[index == b] for b in range(4)]
    assert test["brown_forsythe_p"] == pytest.approx(
        stats.levene(*groups, center="median").pvalue, rel=1e-9)
    residuals = bin_residuals(table.convergence_epoch.to_numpy(), index, 4)[0]
    assert test["rho"] == pytest.approx(
        stats.spearmanr(residuals, table.dale_index).statistic, abs=1e-12)
    assert test["rho"] < -0.3 and test["permutation_p"] == 1 / 500  # the smallest possible
    assert test == narrower_windows_test(table, bins=4, permutations=499, seed=3)
    null = narrower_windows_test(planted(narrow=False, seed=1), bins=4, permutations=499)
    assert null["permutation_p"] > 0.05 and null["brown_forsythe_p"] > 0.01


def test_bins_and_spread_table():
    edges, index = dale_bins(np.array([0.5, 0.6, 0.75, 1.0]), bins=2)
    assert list(edges) == [0.5, 0.75, 1.0] and list(index) == [0, 0, 1, 1]  # edge goes up
    table = pd.DataFrame({"dale_index": [0.5, 0.6, 0.75, 1.0, 0.4],
                          "convergence_epoch": [1.0, 5.0, 2.0, 2.0, 9.0]})
    spread = spread_by_bin(table, bins=2)  # D = 0.4 (exact zeros) is left out
    assert list(spread["n"]) == [2, 2] and list(spread["range"]) == [4.0, 0.0]
    assert spread["sd"].iloc[0] == pytest.approx(np.std([1, 5], ddof=1))
    tiny = narrower_windows_test(table.iloc[:2], bins=2, permutations=9)
    assert math.isnan(tiny["rho"]) and math.isnan(tiny["permutation_p"])


def test_figures_carry_the_numbers(tmp_path):
    result = weight_dynamics(random_run(tmp_path / "run", n=4))
    corr = convergence_correlation(result.table)
    scatter = convergence_scatter_figure(result.table, corr)
    assert len(scatter.data[0].x) == len(result.table)
    assert f"{corr['spearman_rho']:.2f}" in scatter.layout.title.text
    edges, index = dale_bins(result.table["dale_index"].to_numpy(), bins=3)
    test = narrower_windows_test(result.table, bins=3, permutations=19)
    boxes = spread_by_bin_figure(result.table, edges, index, test)
    assert sum(len(t.y) for t in boxes.data) == len(result.table)
    curves = similarity_curves_figure(result.similarity, result.epochs,
                                      result.channel_labels(), [0, 7], threshold=0.9)
    assert [t.name for t in curves.data] == ["conv[0]", "fc[2]", "threshold"]  # 5 conv senders
    assert list(curves.data[1].y) == list(result.similarity[7])


def test_demo_and_uploads(tmp_path):
    folder = write_demo_checkpoints(tmp_path / "demo", epochs=2)
    assert [p.name for p in list_checkpoints(folder)] == [
        "epoch_0.safetensors", "epoch_1.safetensors", "epoch_2.safetensors"]
    stamp = (folder / "epoch_2.safetensors").stat().st_mtime_ns
    assert write_demo_checkpoints(tmp_path / "demo", epochs=2) == folder
    assert (folder / "epoch_2.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained
    assert len(weight_dynamics(folder).table) == 3 + 16 + 32 + 32
    files = [(f"dir/{p.name}", p.read_bytes()) for p in list_checkpoints(folder)]
    saved = save_checkpoint_upload(files, root=tmp_path / "up")
    assert sorted(p.name for p in saved.iterdir()) == sorted(p.name for p in folder.iterdir())
    assert save_checkpoint_upload(files, root=tmp_path / "up") == saved
    for bad, message in ([("x.txt", b"1")], "not a checkpoint file"), (
            [("a/e_1.pt", b"1"), ("b/e_1.pt", b"2")], "uploaded twice"), (
            [(".e_1.pt", b"1")], "not a checkpoint file"), ([], "no checkpoints"):
        with pytest.raises(DynamicsError, match=message):
            save_checkpoint_upload(bad, root=tmp_path / "up")
    with pytest.raises(DynamicsError, match="more than 10 bytes"):
        save_checkpoint_upload(files, root=tmp_path / "up", max_bytes=10)


def test_cli_prints_the_statistics_and_writes_the_csv(tmp_path, capsys):
    paths = write_run(tmp_path / "run", HAND)
    out_csv = tmp_path / "channels.csv"
    assert main(["weight-dynamics", "--folder", str(tmp_path / "run"), "--csv", str(out_csv),
                 "--quiet", "--permutations", "9"]) == 0
    out = capsys.readouterr().out
    assert "3 checkpoints (epoch_1.pt … epoch_3.pt), epochs 1–3 from file names" in out
    assert "2 channels in 1 layers" in out
    written = pd.read_csv(out_csv)
    assert list(written["convergence_epoch"]) == [3, 1]
    assert written["similarity_epoch_2"].tolist() == pytest.approx([1 / math.sqrt(2), 0.0])
    assert main(["weight-dynamics", str(paths[0]), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weight dynamics need at least two checkpoints")
    assert err.count("\n") == 1
    assert main(["weight-dynamics", "--quiet"]) == 2
    assert "exactly one of them" in capsys.readouterr().err
