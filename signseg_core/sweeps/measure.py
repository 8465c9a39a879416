"""What a sweep measures about one unit's preferred images, and where the rows are kept.

For one unit's conditions (of one generator, or of several pooled into each condition's image
set) :func:`unit_rows` gives one row per image: its activations and each metric against the
unit's control images (similarity over the held-out and the full ensemble, LPIPS, objectness,
spectral slope), and each condition's mean radial spectrum. The metric setup (:class:`Metrics`)
is built once per sweep; rows are stored under a :class:`MetricKey` of everything that made them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from signseg_core.metrics.objectness import objectness, objectness_detector
from signseg_core.metrics.perceptual import lpips_distances, lpips_metric
from signseg_core.metrics.similarity import ensemble_similarity
from signseg_core.metrics.spectra import radial_power_spectrum, spectral_slope
from signseg_core.models.checkpoints import state_fingerprint
from signseg_core.models.registry import load_model
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.results import ConditionResult
from signseg_core.store import CODE_VERSION, key_digest

METRICS_VERSION = "3"  # 2: LPIPS/detector keyed by weights; 3: held-out and full similarity


SLOPE_RANGE = (4.0, 48.0)  # cycles/image fitted for the spectral slope (224-px images)
#: ``similarity`` is the held-out ensemble's (without the optimised network), the headline;
#: ``similarity_full`` the whole ensemble's, which includes it.
METRIC_COLUMNS = ("activation", "intact_activation", "similarity", "similarity_full",
                  "lpips_similarity", "objectness", "spectral_slope")


@dataclass(frozen=True)
class MetricKey:
    conditions: tuple[str, ...]  # digests of the unit's condition keys
    ensemble: tuple[str, ...]  # fingerprints
    lpips: str  # "off", "unavailable" or the LPIPS network's weight fingerprint
    detector: str  # likewise for the detector
    version: str = METRICS_VERSION
    code_version: str = CODE_VERSION


@dataclass
class Metrics:
    """The metric models of a sweep, built once: ensemble, LPIPS, detector (or why not)."""

    ensemble: list[ZooModel]
    lpips: object | None
    detector: object | None
    statuses: dict[str, str]
    identities: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, spec, device, models_cache: dict) -> "Metrics":
        """The metric setup of ``spec`` (a :class:`~signseg_core.sweeps.run.SweepSpec`: its
        ensemble, lpips and detector) on ``device``; ensemble models are taken from (and added
        to) ``models_cache``. LPIPS and the detector are built where their weights are here."""
        statuses = {}
        ensemble = []
        for name in spec.ensemble:
            if name not in models_cache:
                models_cache[name] = load_model(name, device=device)
            ensemble.append(models_cache[name])
        statuses["similarity"] = ("ok: held-out = " + ", ".join(spec.ensemble) + " without the "
                                  "optimised network; full = all of them (penultimate "
                                  "activations)")
        lp = lpips_metric(device=device) if spec.lpips else None
        statuses["lpips"] = lp.status if lp is not None else "off"
        det = objectness_detector(spec.detector, device=device) if spec.detector else None
        statuses["objectness"] = det.status if det is not None else "off"
        lp = lp if lp is not None and lp.available else None
        det = det if det is not None and det.available else None
        identities = {"lpips": _identity(lp, spec.lpips),
                      "objectness": _identity(det, spec.detector)}
        return cls(ensemble, lp, det, statuses, identities)

    def key(self, results: Sequence[ConditionResult]) -> MetricKey:
        """The key of one unit's metric rows, from its results (in sweep order)."""
        return self.key_for([r.key for r in results])

    def key_for(self, condition_keys: Sequence) -> MetricKey:
        """:meth:`key` from the unit's condition keys alone (nothing needs loading)."""
        ids = self.identities or {"lpips": _identity(self.lpips, True),
                                  "objectness": _identity(self.detector, True)}
        return MetricKey(tuple(key_digest(k) for k in condition_keys),
                         tuple(m.fingerprint for m in self.ensemble),
                         ids["lpips"], ids["objectness"])


def status_kind(status: str) -> str:
    """The first word of a metric's status: ``"ok"``, ``"unavailable"``, ``"off"``, ``"random"``
    (the rest of a status is prose for people, which may hold paths)."""
    return status.split(":", 1)[0].strip().split(" ", 1)[0]


def _identity(metric, wanted) -> str:
    """What a metric's numbers depend on: its weights' fingerprint; never paths or messages
    (the same weights found under another TORCH_HOME, or missing for another reason, give the
    same key)."""
    if not wanted:
        return "off"
    if metric is None:
        return "unavailable"
    return state_fingerprint(metric.module)


def control_set(results: Sequence[ConditionResult]) -> tuple[np.ndarray, np.ndarray]:
    """The unit's control image set, pooled over generators, and which of all ``results``'
    images are those control images (``-1`` for the others, else the index in the pooled set).

    One control (alpha = 0) per generator: the paper's 20-image control set is 10 DeePSiM + 10
    BigGAN evolutions. ValueError when a generator has none or two.
    """
    controls = [r for r in results if r.key.sign == "control"]
    generators = [r.key.generator for r in results]
    if sorted(r.key.generator for r in controls) != sorted(dict.fromkeys(generators)):
        raise ValueError("a unit's results must hold exactly one control (alpha = 0) condition "
                         f"per generator; got {len(controls)} for generators "
                         f"{list(dict.fromkeys(generators))}")
    index, offset = [], 0
    for r in results:
        is_control = r.key.sign == "control"
        index.append(np.arange(offset, offset + len(r.images)) if is_control
                     else np.full(len(r.images), -1))
        offset += len(r.images) if is_control else 0
    return np.concatenate([r.images for r in controls]), np.concatenate(index)


def unit_rows(results: Sequence[ConditionResult], metrics: Metrics,
              class_names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image rows and per-condition mean spectra for one unit's conditions (of one generator,
    or of several pooled: each condition's set is then all generators' images)."""
    control, in_control = control_set(results)
    images = np.concatenate([r.images for r in results])
    owner = np.repeat(np.arange(len(results)), [len(r.images) for r in results])
    restart = np.concatenate([np.arange(len(r.images)) for r in results])
    # pairs of a control image with itself are left out of its own similarity
    self_pair = np.zeros((len(control), len(images)), dtype=bool)
    self_pair[in_control[in_control >= 0], np.flatnonzero(in_control >= 0)] = True

    def per_image(pairwise: np.ndarray) -> np.ndarray:
        # Mean over the finite pairs; NaN where there is none (one restart: a control image has
        # no other control image to be compared with), without numpy's empty-slice warning.
        kept = np.where(self_pair, np.nan, pairwise)
        count = np.isfinite(kept).sum(0)
        total = np.where(np.isfinite(kept), kept, 0.0).sum(0)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    similarity = ensemble_similarity(control, images, metrics.ensemble)
    optimised = results[0].key
    measured = {
        "similarity": per_image(similarity.held_out(optimised.model,
                                                    optimised.model_fingerprint)),
        "similarity_full": per_image(similarity.pairwise),
        "lpips_similarity": (1.0 - per_image(lpips_distances(control, images, metrics.lpips))
                             if metrics.lpips is not None else np.full(len(images), np.nan)),
        "objectness": (objectness(images, metrics.detector)[0] if metrics.detector is not None
                       else np.full(len(images), np.nan)),
    }
    freqs, power = radial_power_spectrum(images)
    measured["spectral_slope"] = np.atleast_1d(spectral_slope(
        freqs, power, fmin=SLOPE_RANGE[0], fmax=min(SLOPE_RANGE[1], freqs[-1])))
    image_set = "+".join(dict.fromkeys(r.key.generator for r in results))
    rows = []
    for i in range(len(images)):
        r = results[owner[i]]
        k = r.key
        rows.append({
            "model": k.model, "unit": k.unit, "class_name": class_names[k.unit],
            "sign": k.sign, "alpha": k.alpha, "generator": k.generator, "image_set": image_set,
            "restart": int(restart[i]), "seed": k.seed, "generations": k.generations,
            "activation": float(r.best_scores[restart[i]]),
            "intact_activation": float(r.intact_scores[restart[i]]),
            **{name: float(values[i]) for name, values in measured.items()},
        })
    return pd.DataFrame(rows), _mean_spectra(results, owner, freqs, power)


def _mean_spectra(results, owner, freqs, power) -> pd.DataFrame:
    """Each condition's mean radial spectrum over its images (pooled over generators)."""
    rows = {}
    for j, r in enumerate(results):
        k = (r.key.model, r.key.unit, r.key.sign, r.key.alpha)
        rows.setdefault(k, []).append(power[owner == j])
    return pd.DataFrame([
        {"model": m, "unit": u, "sign": s, "alpha": a, "freq": f, "power": p}
        for (m, u, s, a), parts in rows.items()
        for f, p in zip(freqs, np.concatenate(parts).mean(0))])


def read_unit_rows(store, key: MetricKey) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """One unit's stored ``(rows, spectra)`` under ``key``; None when absent or unreadable (an
    unreadable entry is deleted, to be measured again, as :func:`load_condition` does)."""
    got = store.get(key) if store is not None else None
    if got is None:
        return None
    try:
        meta = got[1]
        rows = pd.DataFrame(json.loads(meta["rows"])).astype(
            {c: float for c in (*METRIC_COLUMNS, "alpha")})
        return rows, pd.DataFrame(json.loads(meta["spectra"]))
    except (KeyError, ValueError, TypeError):
        store.delete(key)
        return None


def write_unit_rows(store, key: MetricKey, rows: pd.DataFrame, spectra: pd.DataFrame) -> None:
    """Store one unit's metric rows and mean spectra (JSON, full float precision) under ``key``."""
    store.put(key, {}, meta={
        name: frame.to_json(orient="records", double_precision=15)
        for name, frame in (("rows", rows), ("spectra", spectra))})


def cached_unit_rows(store, results, metrics, class_names):
    """One unit's metric rows and spectra: read from ``store`` under ``metrics.key(results)``, or
    measured (:func:`unit_rows`) and written there (``store=None``: measured, not stored)."""
    key = metrics.key(results)
    got = read_unit_rows(store, key)
    if got is not None:
        return got
    rows, spectra = unit_rows(results, metrics, class_names)
    if store is not None:
        write_unit_rows(store, key, rows, spectra)
    return rows, spectra
