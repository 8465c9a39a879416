"""Move visualization results between machines without their images.

A bundle is one ``.npz`` holding, per condition, the store key and the arrays (best codes, scores,
trajectories): a few KB per condition instead of the PNGs. Importing regenerates each image from
its best code with the same generator (deterministic), rescores the intact unit on it, and writes
the entry to the local store, so a sweep computed on a GPU machine is read back here as if it had
run here. Images regenerated on another device can differ from the originals by float rounding
(measured: ~2e-7 for the Fourier generator), i.e. at most one grey level after uint8 rounding.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .store import ResultStore, default_store
from .visualize import ConditionKey, ConditionResult, _save, load_condition, to_uint8
from .zoo import ZooModel

_ARRAYS = ("best_scores", "intact_scores", "max_per_gen", "mean_per_gen", "best_codes",
           "final_means")


def export_bundle(results: Sequence[ConditionResult], path: str | Path) -> Path:
    """Write ``results`` (without images) to one ``.npz`` file."""
    path = Path(path)
    payload = {"keys": np.frombuffer(json.dumps(
        [dataclasses.asdict(r.key) for r in results]).encode(), dtype=np.uint8)}
    for i, r in enumerate(results):
        if r.cancelled:
            raise ValueError(f"condition {r.key.unit}/{r.key.sign}/{r.key.alpha} was cancelled")
        for name in _ARRAYS:
            payload[f"{i}__{name}"] = np.asarray(getattr(r, name))
    buf = io.BytesIO()
    np.savez_compressed(buf, **payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def import_bundle(path: str | Path, model: ZooModel, generator, *,
                  store: ResultStore | None = None, batch_size: int = 32,
                  rescore: bool = False) -> list[ConditionResult]:
    """Regenerate the images of a bundle and put every condition in the store.

    Conditions already in the store are read from it, not regenerated. ``rescore=True`` also
    recomputes the intact unit's logit on each regenerated image here (one backbone pass per
    image: minutes on a CPU for a whole sweep); by default the bundle's own values are kept.

    ``model`` and ``generator`` must be the ones the bundle was made with: their fingerprints are
    checked against the keys, and a mismatch is an error (the results would be someone else's).
    """
    store = store or default_store()
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            files = {k: npz[k] for k in npz.files}
        keys = [ConditionKey(**k) for k in json.loads(bytes(files.pop("keys")).decode())]
    except Exception as exc:
        raise ValueError(f"{path} is not a signseg bundle ({type(exc).__name__}: {exc})") from exc
    out = []
    for i, key in enumerate(keys):
        if key.model_fingerprint != model.fingerprint or key.model != model.name:
            raise ValueError(f"bundle condition {i} was made with {key.model} "
                             f"({key.model_fingerprint[:12]}), not {model.name} "
                             f"({model.fingerprint[:12]})")
        if key.generator_fingerprint != generator.fingerprint:
            raise ValueError(f"bundle condition {i} was made with generator "
                             f"{key.generator_fingerprint}, not {generator.fingerprint}")
        known = load_condition(store, key)
        if known is not None:  # already here: nothing to regenerate
            out.append(known)
            continue
        arrays = {name: files[f"{i}__{name}"] for name in _ARRAYS}
        codes = torch.from_numpy(arrays["best_codes"]).to(model.device)
        images, intact = [], []
        with torch.inference_mode():
            for start in range(0, len(codes), batch_size):
                imgs = generator(codes[start:start + batch_size]).float()
                if rescore:
                    intact.append(model(imgs.clamp(0, 1))[:, key.unit].double().cpu().numpy())
                images.append(to_uint8(imgs))
        if rescore:
            arrays["intact_scores"] = np.concatenate(intact)
        result = ConditionResult(key, np.concatenate(images), **arrays)
        _save(store, result)
        out.append(result)
    return out
