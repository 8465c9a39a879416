"""Bundles move results between machines: images are regenerated, keys must match."""

from __future__ import annotations

import numpy as np
import pytest

from signseg_core.cli.main import main
from signseg_core.conditions import condition_grid
from signseg_core.generators.catalog import make_generator
from signseg_core.models.registry import load_model
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import load_condition
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import visualize
from signseg_core.store import ResultStore, default_store
from signseg_core.sweeps.bundle import export_bundle, import_bundle

SETTINGS = VisualizeSettings(generations=3, restarts=2, generator_options=(("size", 32),))


def test_round_trip_through_a_bundle_fills_the_store(tmp_path):
    model = load_model("tiny_test")
    gen = make_generator("fourier", size=32)
    conds = condition_grid([1, 2], alphas=(0.0, 0.5))
    made = visualize(model, conds, settings=SETTINGS, generator=gen, store=False)
    path = export_bundle(made, tmp_path / "sweep.npz")
    code_bytes = sum(r.best_codes.nbytes + r.final_means.nbytes for r in made)
    assert path.stat().st_size < code_bytes + 20_000  # codes and scores, no images
    store = ResultStore(tmp_path / "store")
    imported = import_bundle(path, model, gen, store=store, rescore=True)
    assert len(store) == len(made) == len(imported)
    for a, b in zip(made, imported):
        assert a.key == b.key
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_allclose(a.intact_scores, b.intact_scores, rtol=1e-6)
        np.testing.assert_array_equal(a.max_per_gen, b.max_per_gen)
    again = visualize(model, conds, settings=SETTINGS, generator=gen, store=store)
    assert all(r.from_store for r in again)


def test_a_bundle_from_another_model_is_refused(tmp_path):
    model = load_model("tiny_test")
    gen = make_generator("fourier", size=32)
    made = visualize(model, condition_grid([1], alphas=(0.5,)), settings=SETTINGS, generator=gen,
                     store=False)
    path = export_bundle(made, tmp_path / "b.npz")
    other = load_model("tiny_test", untrained=True, seed=3)
    with pytest.raises(ValueError, match="was made with tiny_test"):
        import_bundle(path, other, gen, store=ResultStore(tmp_path / "s"))
    with pytest.raises(ValueError, match="generator"):
        import_bundle(path, model, make_generator("fourier", size=48),
                      store=ResultStore(tmp_path / "s"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a signseg bundle"):
        import_bundle(tmp_path / "junk.npz", model, gen, store=ResultStore(tmp_path / "s"))


def test_importing_twice_reads_the_store(tmp_path, monkeypatch):
    model = load_model("tiny_test")
    gen = make_generator("fourier", size=32)
    made = visualize(model, condition_grid([3], alphas=(0.5,)), settings=SETTINGS, generator=gen,
                     store=False)
    path = export_bundle(made, tmp_path / "b.npz")
    store = ResultStore(tmp_path / "s")
    import_bundle(path, model, gen, store=store)
    calls = []
    monkeypatch.setattr(gen, "forward", lambda codes: calls.append(1))
    again = import_bundle(path, model, gen, store=store)
    assert not calls and all(r.from_store for r in again)


def test_import_keeps_the_bundles_intact_scores_unless_asked(tmp_path):
    model = load_model("tiny_test")
    gen = make_generator("fourier", size=32)
    made = visualize(model, condition_grid([4], alphas=(1.0,)), settings=SETTINGS, generator=gen,
                     store=False)
    made[0].intact_scores[:] = 123.0  # as if scored elsewhere
    path = export_bundle(made, tmp_path / "b.npz")
    kept = import_bundle(path, model, gen, store=ResultStore(tmp_path / "a"))
    assert (kept[0].intact_scores == 123.0).all()
    redone = import_bundle(path, model, gen, store=ResultStore(tmp_path / "b"), rescore=True)
    assert not (redone[0].intact_scores == 123.0).any()


def test_visualize_writes_a_bundle_that_fills_another_store(tmp_path, monkeypatch, capsys):
    # what scripts/remote_sweep.py did, now the CLI: visualize on the fast machine with --bundle,
    # import-bundle at home; the second store then holds the first one's results, bit for bit
    args = ["visualize", "tiny_test", "--unit", "1", "2", "--alphas", "0,0.5",
            "--generations", "3", "--restarts", "2", "--generator-option", "size=32",
            "--quiet", "--bundle", str(tmp_path / "out" / "b.npz")]
    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "away"))
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "bundle: 6 conditions" in said  # 2 units x (control + 2 signs x alpha 0.5)
    assert "import-bundle b.npz --model tiny_test --generator fourier " \
           "--generator-option size=32" in said
    away = [r for r in VisualizeRequest.for_units(
        load_model("tiny_test"), make_generator("fourier", size=32), [1, 2],
        VisualizeSettings(generations=3, restarts=2, generator_options=(("size", 32),)),
        alphas=(0.0, 0.5)).stored(default_store()).values()]
    assert len(away) == 3 * 2

    monkeypatch.setenv("SIGNSEG_CACHE_DIR", str(tmp_path / "home"))
    assert main(["import-bundle", str(tmp_path / "out" / "b.npz"), "--model", "tiny_test",
                 "--generator-option", "size=32"]) == 0
    home = ResultStore()
    assert len(home) == 6
    for result in away:
        there = load_condition(home, result.key)
        np.testing.assert_array_equal(there.best_codes, result.best_codes)
        np.testing.assert_array_equal(there.images, result.images)
