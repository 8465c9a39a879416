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
import pandas as pd
import torch

from signseg_core.models.registry import load_model
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.results import ConditionResult, load_condition, save_condition, to_uint8
from signseg_core.optimize.settings import ConditionKey, VisualizeSettings
from signseg_core.paths import no_downloads
from signseg_core.store import ResultStore, default_store
from signseg_core.sweeps.measure import (
    METRIC_COLUMNS,
    Metrics,
    read_unit_rows,
    status_kind,
    write_unit_rows,
)
from signseg_core.sweeps.run import SweepSpec

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
        save_condition(store, result)
        out.append(result)
    return out


def spec_from_status(status: dict):
    """The :class:`~signseg_core.sweeps.run.SweepSpec` that ``SweepResult.save`` wrote to
    ``<stem>_status.json`` (its ``"spec"`` entry)."""
    try:
        spec = json.loads(status["spec"])
        settings = dict(spec.pop("settings"))
        settings["generator_options"] = tuple(tuple(kv) for kv in settings["generator_options"])
        return SweepSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()},
                         settings=VisualizeSettings(**settings))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the status file holds no readable sweep spec ({exc})") from exc


def import_sweep_rows(table_path: str | Path, *, store: ResultStore | None = None,
                      device="cpu") -> list[str]:
    """Put a saved sweep's metric rows into the store, so that pages show them without measuring.

    ``table_path`` is the per-image table ``SweepResult.save`` wrote (``<stem>.parquet``); its
    ``<stem>_spectra.parquet`` and ``<stem>_status.json`` lie beside it. For each unit whose
    images are in the store (import its bundle first), the unit's rows are checked against the
    stored results (every image's activation must be the stored best score) and written under the
    key a sweep here would look them up by. A metric measured there but not here, or here but not
    there, makes the whole import refuse: rows are never filed under a setup that did not make
    them.

    Returns
    -------
    One line per unit: imported, already there, or why not.
    """

    table_path = Path(table_path)
    stem = table_path.with_suffix("")
    status = json.loads(Path(f"{stem}_status.json").read_text())
    table = _read_current_table(table_path)
    spectra = pd.read_parquet(f"{stem}_spectra.parquet")
    spec = spec_from_status(status)
    store = store or default_store()
    models: dict = {}
    with no_downloads():
        metrics = Metrics.build(spec, device, models)
    made_with = json.loads(status.get("identities", "{}"))  # weights' fingerprints, if recorded
    for name in ("lpips", "objectness"):
        there, here = status_kind(status.get(name, "off")), status_kind(metrics.statuses[name])
        measured = there == "ok" or here == "ok"
        if measured and (there != here or made_with.get(name) != metrics.identities[name]):
            raise ValueError(
                f"{name} was {status.get(name)!r} where the table was made and is "
                f"{metrics.statuses[name]!r} here, and the rows do not record the same weights: "
                "they cannot be shown to come from this setup; measure here instead "
                "(python -m signseg_core sweep ...)")
    lines = []
    for model_name in spec.models:
        model = models.get(model_name) or load_model(model_name, device=device)
        generators = spec.generators_for(model)
        for unit in spec.units:
            results = [load_condition(store, k) for k in spec.unit_keys(model, generators, unit)]
            where = f"{model_name} unit {unit}"
            if any(r is None for r in results):
                lines.append(f"{where}: images not in the store (import its bundle first)")
                continue
            key = metrics.key(results)
            if read_unit_rows(store, key) is not None:
                lines.append(f"{where}: already in the store")
                continue
            rows = _rows_in_result_order(table, model_name, unit, results)
            if rows is None:
                lines.append(f"{where}: the table's rows do not match the stored images")
                continue
            unit_spectra = spectra[(spectra.model == model_name) & (spectra.unit == unit)]
            write_unit_rows(store, key, rows, unit_spectra.reset_index(drop=True))
            lines.append(f"{where}: imported {len(rows)} rows")
    return lines


def _read_current_table(table_path: Path) -> pd.DataFrame:
    """A saved sweep table that has every metric column of today's sweep; a table saved before
    one existed (the held-out similarity, the pooled image set) means other things by its rows:
    ValueError."""
    table = pd.read_parquet(table_path)
    lacking = [c for c in ("image_set", *METRIC_COLUMNS) if c not in table.columns]
    if lacking:
        raise ValueError(f"{table_path.name} has no {', '.join(lacking)} column: it was saved by "
                         "an older signseg and its rows cannot be filed under today's metric "
                         "setup; measure here instead (python -m signseg_core sweep ...)")
    return table


def _rows_in_result_order(table, model_name: str, unit: int, results):
    """The table's rows of one unit in the order a sweep writes them, or None if they do not
    belong to ``results`` (other images or another count)."""
    mine = table[(table.model == model_name) & (table.unit == unit)]
    parts = []
    for r in results:
        k = r.key
        part = mine[(mine.sign == k.sign) & np.isclose(mine.alpha, k.alpha)
                    & (mine.generator == k.generator)].sort_values("restart")
        if len(part) != len(r.best_scores) or not np.allclose(
                part.activation.to_numpy(), r.best_scores, rtol=1e-9, atol=0):
            return None
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
