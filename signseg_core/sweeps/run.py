"""Sweeps: models × units × signs × alphas × restarts → one tidy table of images and metrics.

For each model and each unit (the unit is the unit of work: its 21 conditions are visualized in
one batched call and stored, so an interrupted sweep resumes from the last finished unit), every
best image gets a row: model, unit, class name, sign, alpha, generator, restart, seed, the
ablated-objective activation, the intact unit's activation on the same image, and each metric
against the unit's control (alpha = 0) images:

* ``similarity``: mean cosine similarity of penultimate activations to the control images,
  averaged over the *held-out* readout ensemble: the ensemble without the optimised network
  (matched by name or weights), which could otherwise agree with its own preferred images
  merely because it made them (control rows: to the *other* control images);
* ``similarity_full``: the same over the whole ensemble, the optimised network included (the
  paper's own ensemble contained most of its visualised networks);
* ``lpips_similarity``: 1 − mean LPIPS to the control images (NaN when LPIPS is unavailable);
* ``objectness``: the detector's highest box score (NaN when no detector is available);
* ``spectral_slope``: log-log slope of the image's radial power spectrum.

Metric rows are cached in the store too, keyed by the conditions' keys and the metric setup.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS, check_alpha, check_sign
from signseg_core.generators.catalog import make_generator
from signseg_core.metrics.objectness import objectness, torchvision_detector
from signseg_core.metrics.perceptual import lpips_distances, lpips_metric
from signseg_core.metrics.similarity import (
    DEFAULT_ENSEMBLE,
    ensemble_similarity,
    heldout_problem,
)
from signseg_core.metrics.spectra import radial_power_spectrum, spectral_slope
from signseg_core.metrics.stats import mean_ci
from signseg_core.models.checkpoints import state_fingerprint
from signseg_core.models.imagenet import DEFAULT_UNITS
from signseg_core.models.registry import load_model, model_eps
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import ConditionResult
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import run_request
from signseg_core.store import CODE_VERSION, ResultStore, default_store, key_digest
from signseg_core.sweeps.tables import spearman_table

METRICS_VERSION = "3"  # 2: LPIPS/detector keyed by weights; 3: held-out and full similarity
SLOPE_RANGE = (4.0, 48.0)  # cycles/image fitted for the spectral slope (224-px images)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep covers. Defaults: the paper's 11 units, alphas 0–1 by 0.1, both signs."""

    models: tuple[str, ...] = ("efficientnet_lite0",)
    units: tuple[int, ...] = DEFAULT_UNITS
    signs: tuple[str, ...] = SIGNS
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    settings: VisualizeSettings = field(default_factory=VisualizeSettings)
    ensemble: tuple[str, ...] = DEFAULT_ENSEMBLE
    lpips: bool = True
    detector: str | None = "fasterrcnn_mobilenet_v3_large_320_fpn"

    def __post_init__(self):
        for name in ("models", "units", "signs", "alphas", "ensemble"):
            value = tuple(getattr(self, name))
            if not value:
                raise ValueError(f"{name} must not be empty")
            object.__setattr__(self, name, value)
        for sign in self.signs:
            check_sign(sign)
        for alpha in self.alphas:
            check_alpha(alpha)
        for model in self.models:  # a held-out ensemble that is empty is a mistake: say so now
            if set(self.ensemble) <= {model}:
                raise ValueError(heldout_problem(model, self.ensemble))

    def request(self, model, generator, unit: int) -> VisualizeRequest:
        """The request of one ``unit`` of ``model`` in this sweep: its control and every sign ×
        strength, in the order the sweep visualizes and measures them."""
        return VisualizeRequest.for_unit(model, generator, unit, self.settings, signs=self.signs,
                                         alphas=self.alphas)

    def generator_for(self, model):
        """The sweep's generator on ``model``'s device."""
        return make_generator(self.settings.generator, device=model.device,
                              **dict(self.settings.generator_options))


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
    def build(cls, spec: SweepSpec, device, models_cache: dict) -> "Metrics":
        """The metric setup of ``spec`` on ``device``; ensemble models are taken from (and added
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
        det = torchvision_detector(spec.detector, device=device) if spec.detector else None
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


def _identity(metric, wanted) -> str:
    """What a metric's numbers depend on: its weights' fingerprint; never paths or messages
    (the same weights found under another TORCH_HOME, or missing for another reason, give the
    same key)."""
    if not wanted:
        return "off"
    if metric is None:
        return "unavailable"
    return state_fingerprint(metric.module)


def unit_rows(results: Sequence[ConditionResult], metrics: Metrics,
              class_names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image rows and per-condition mean spectra for one unit's conditions."""
    controls = [r for r in results if r.key.sign == "control"]
    if len(controls) != 1:
        raise ValueError("a unit's results must hold exactly one control (alpha = 0) condition")
    control = controls[0].images
    images = np.concatenate([r.images for r in results])
    owner = np.repeat(np.arange(len(results)), [len(r.images) for r in results])
    restart = np.concatenate([np.arange(len(r.images)) for r in results])
    is_control = np.array([results[i].key.sign == "control" for i in owner])
    # pairs of a control image with itself are left out of its own similarity
    self_pair = np.zeros((len(control), len(images)), dtype=bool)
    self_pair[restart[is_control], np.flatnonzero(is_control)] = True

    def per_image(pairwise: np.ndarray) -> np.ndarray:
        return np.nanmean(np.where(self_pair, np.nan, pairwise), axis=0)

    similarity = ensemble_similarity(control, images, metrics.ensemble)
    optimised = results[0].key
    sim_full = per_image(similarity.pairwise)
    sim = per_image(similarity.held_out(optimised.model, optimised.model_fingerprint))
    lp = (1.0 - per_image(lpips_distances(control, images, metrics.lpips))
          if metrics.lpips is not None else np.full(len(images), np.nan))
    obj = (objectness(images, metrics.detector)[0] if metrics.detector is not None
           else np.full(len(images), np.nan))
    freqs, power = radial_power_spectrum(images)
    slope = spectral_slope(freqs, power, fmin=SLOPE_RANGE[0], fmax=min(SLOPE_RANGE[1], freqs[-1]))
    rows = []
    for i in range(len(images)):
        r = results[owner[i]]
        k = r.key
        rows.append({
            "model": k.model, "unit": k.unit, "class_name": class_names[k.unit],
            "sign": k.sign, "alpha": k.alpha, "generator": k.generator,
            "restart": int(restart[i]), "seed": k.seed, "generations": k.generations,
            "activation": float(r.best_scores[restart[i]]),
            "intact_activation": float(r.intact_scores[restart[i]]),
            "similarity": float(sim[i]), "similarity_full": float(sim_full[i]),
            "lpips_similarity": float(lp[i]),
            "objectness": float(obj[i]), "spectral_slope": float(np.atleast_1d(slope)[i]),
        })
    spectra = pd.DataFrame([
        {"model": r.key.model, "unit": r.key.unit, "sign": r.key.sign, "alpha": r.key.alpha,
         "freq": f, "power": p}
        for j, r in enumerate(results) for f, p in zip(freqs, power[owner == j].mean(0))])
    return pd.DataFrame(rows), spectra


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


@dataclass
class SweepResult:
    table: pd.DataFrame  # one row per image
    spectra: pd.DataFrame  # mean radial spectrum per condition
    statuses: dict[str, str]
    cancelled: bool = False

    def summary(self) -> pd.DataFrame:
        return summarize(self.table)

    def save(self, out_dir: str | Path, stem: str = "sweep") -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, frame, csv in ((stem, self.table, True),
                                 (f"{stem}_summary", self.summary(), True),
                                 (f"{stem}_spectra", self.spectra, False)):  # long: Parquet only
            if csv:
                frame.to_csv(out / f"{name}.csv", index=False)
                paths.append(out / f"{name}.csv")
            frame.to_parquet(out / f"{name}.parquet", index=False)
            paths.append(out / f"{name}.parquet")
        portable = {name: without_paths(s) for name, s in self.statuses.items()}
        (out / f"{stem}_status.json").write_text(json.dumps(portable, indent=2))
        paths.append(out / f"{stem}_status.json")
        models = self.table.get("model", pd.Series(dtype=str))
        family = {m for m in models if model_eps(m) is not None}
        if len(family) >= 3:  # Table 1 needs a family of ResNet50s of different robustness
            spearman_table(self.table).to_csv(out / f"{stem}_robustness.csv", index=False)
            paths.append(out / f"{stem}_robustness.csv")
        return paths


#: ``similarity`` is the held-out ensemble's (without the optimised network), the headline;
#: ``similarity_full`` the whole ensemble's, which includes it.
METRIC_COLUMNS = ("activation", "intact_activation", "similarity", "similarity_full",
                  "lpips_similarity", "objectness", "spectral_slope")


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s()/]+/)+([^\s()/]+)")


def without_paths(text: str) -> str:
    """``text`` with every absolute path of this machine cut to its file name, for files that
    travel (``"missing (/home/x/.cache/alexnet.pth)"`` → ``"missing (alexnet.pth)"``); URLs are
    left alone."""
    return _ABSOLUTE_PATH.sub(r"\1", text)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, sign, alpha): each metric's mean over units (each unit = mean of its images)
    with a 95% t-interval over units, as the paper's figures show it.

    The control rows (alpha = 0) are repeated under both signs so each curve starts there. Metric
    columns the table lacks (a table saved before they existed) are left out.
    """
    columns = [c for c in METRIC_COLUMNS if c in table.columns]
    ctrl = table[table.sign == "control"]
    both = pd.concat([table[table.sign != "control"]]
                     + [ctrl.assign(sign=s) for s in ("positive", "negative")])
    per_unit = both.groupby(["model", "sign", "alpha", "unit"])[columns].mean()
    rows = []
    for (model, sign, alpha), group in per_unit.groupby(level=[0, 1, 2]):
        row = {"model": model, "sign": sign, "alpha": alpha, "n_units": len(group)}
        for col in columns:
            mean, low, high = mean_ci(group[col].to_numpy())
            row.update({col: mean, f"{col}_ci_low": low, f"{col}_ci_high": high})
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["model", "sign", "alpha"], ignore_index=True)


def run_sweep(spec: SweepSpec = SweepSpec(), *, device="cpu", store: ResultStore | None = None,
              batch_size: int | None = None, progress: Callable[[str], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> SweepResult:
    """Run (or read back) every condition of ``spec`` and measure every image."""
    store = store if store is not None else default_store()
    models_cache: dict[str, ZooModel] = {}
    metrics = Metrics.build(spec, device, models_cache)
    tables, spectra = [], []
    cancelled = False
    for name in spec.models:
        model = models_cache.get(name) or load_model(name, device=device)
        generator = spec.generator_for(model)
        for unit in spec.units:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            results = run_request(spec.request(model, generator, unit), store=store,
                                  batch_size=batch_size, should_stop=should_stop)
            if any(r.cancelled for r in results):
                cancelled = True
                break
            rows, spec_rows = cached_unit_rows(store, results, metrics, model.class_names)
            tables.append(rows)
            spectra.append(spec_rows)
            if progress is not None:
                progress(f"{name} unit {unit}: {len(rows)} images")
        if cancelled:
            break
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    spec_table = pd.concat(spectra, ignore_index=True) if spectra else pd.DataFrame()
    statuses = {**metrics.statuses, "spec": json.dumps(dataclasses.asdict(spec), default=str)}
    return SweepResult(table, spec_table, statuses, cancelled)

