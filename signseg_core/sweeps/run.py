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
* ``objectness``: the detector's highest box score (NaN when no detector is available); the
  default ``detector="auto"`` is the best COCO detector present, and the ``objectness`` status
  names the one that ran;
* ``spectral_slope``: log-log slope of the image's radial power spectrum.

Measuring one unit, and keeping its rows in the store under a key of the conditions and the
metric setup, is :mod:`signseg_core.sweeps.measure`'s.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS, check_alpha, check_sign
from signseg_core.generators.catalog import make_generator
from signseg_core.metrics.similarity import (
    DEFAULT_ENSEMBLE,
    heldout_problem,
)
from signseg_core.metrics.stats import mean_ci
from signseg_core.models.imagenet import DEFAULT_UNITS
from signseg_core.models.registry import load_model, model_eps, require_readout
from signseg_core.models.zoo import ZooModel
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.optimize.visualize import run_request
from signseg_core.paths import without_paths
from signseg_core.store import ResultStore, default_store
from signseg_core.sweeps.measure import METRIC_COLUMNS, Metrics, cached_unit_rows
from signseg_core.sweeps.tables import spearman_table


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep covers. Defaults: the paper's 11 units, alphas 0–1 by 0.1, both signs.

    ``generators`` pools several generators' evolutions into each condition's image set, as the
    paper does (10 DeePSiM + 10 BigGAN per condition: ``generators=("deepsim", "biggan")`` with
    ``settings.restarts = 10``); each generator's results are stored under their own keys and
    similarity is measured over the pooled set. Empty: ``settings.generator`` alone.
    """

    models: tuple[str, ...] = ("efficientnet_lite0",)
    units: tuple[int, ...] = DEFAULT_UNITS
    signs: tuple[str, ...] = SIGNS
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    settings: VisualizeSettings = field(default_factory=VisualizeSettings)
    ensemble: tuple[str, ...] = DEFAULT_ENSEMBLE
    lpips: bool = True
    detector: str | None = "auto"  # the best COCO detector present (objectness_detector)
    generators: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "generators", tuple(dict.fromkeys(self.generators)))
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
        # Ablation scores readout rows and similarity reads the readout's input: a conv trunk
        # (alexnet_conv) has neither, said here in one sentence, not deep inside a run.
        for name in dict.fromkeys(self.models + self.ensemble):
            require_readout(name)

    @property
    def generator_names(self) -> tuple[str, ...]:
        """The generators whose evolutions make each condition's image set, in order."""
        return self.generators or (self.settings.generator,)

    @property
    def image_set(self) -> str:
        """Each condition's image set in words: ``"deepsim 10 + biggan 10 (pooled)"`` or
        ``"fourier 5"`` (restarts per generator)."""
        parts = " + ".join(f"{g} {self.settings.restarts}" for g in self.generator_names)
        return parts + (" (pooled)" if len(self.generator_names) > 1 else "")

    def settings_for(self, generator: str) -> VisualizeSettings:
        """The settings of ``generator``'s evolutions: this sweep's, with that generator."""
        return dataclasses.replace(self.settings, generator=generator)

    def generators_for(self, model) -> dict:
        """Each of :attr:`generator_names` built on ``model``'s device, by name."""
        return {g: make_generator(g, device=model.device, **dict(self.settings.generator_options))
                for g in self.generator_names}

    def requests(self, model, generators: dict, unit: int) -> list[VisualizeRequest]:
        """One ``unit`` of ``model`` in this sweep: one request per generator (its control and
        every sign × strength), in the order the sweep visualizes and measures them."""
        return [VisualizeRequest.for_unit(model, generators[g], unit, self.settings_for(g),
                                          signs=self.signs, alphas=self.alphas)
                for g in self.generator_names]

    def unit_keys(self, model, generators: dict, unit: int) -> list:
        """The store keys of one unit's results, all generators, in :meth:`requests` order."""
        return [k for request in self.requests(model, generators, unit) for k in request.keys]


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
        generators = spec.generators_for(model)
        for unit in spec.units:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            results = [r for request in spec.requests(model, generators, unit)
                       for r in run_request(request, store=store, batch_size=batch_size,
                                            should_stop=should_stop)]
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
    # the spec, and what LPIPS's and the detector's numbers depend on (their weights'
    # fingerprints), so that another machine can tell whether it would measure the same
    statuses = {**metrics.statuses, "spec": json.dumps(dataclasses.asdict(spec), default=str),
                "identities": json.dumps(metrics.identities, sort_keys=True)}
    return SweepResult(table, spec_table, statuses, cancelled)
