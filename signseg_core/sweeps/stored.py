"""Stored sweep results read back without recomputing, and the command that computes the rest.

:func:`~signseg_core.sweeps.run.run_sweep` stores, per model and unit, the unit's conditions
(images) and its metric rows, keyed by everything that determines them. :func:`read_stored_sweep`
looks up those metric rows under the very keys ``run_sweep`` would use, for any set of models, and
says per model what is missing and why (weights not here, units not computed, only images stored).
It never runs an evolution or a metric. :func:`sweep_command` is the ``python -m signseg_core
sweep`` line that computes what is missing (results go to the store, tables to ``--out``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields

import pandas as pd

from signseg_core.conditions import DEFAULT_ALPHAS
from signseg_core.errors import SignsegError, UnknownNameError
from signseg_core.metrics.similarity import DEFAULT_ENSEMBLE
from signseg_core.models.imagenet import DEFAULT_UNITS
from signseg_core.models.registry import get_entry, load_model
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.paths import no_downloads
from signseg_core.store import ResultStore, default_store
from signseg_core.sweeps.measure import Metrics, read_unit_rows
from signseg_core.sweeps.run import SweepSpec

#: Coverage statuses: every unit stored, some, none, weights missing here, not a zoo name,
#: or the model or the metric setup failed to load.
STATUSES = ("complete", "partial", "not computed", "no weights", "unknown", "error")
_COVERAGE = ["model", "status", "units_found", "units_missing", "reason"]


@dataclass(frozen=True)
class StoredSweep:
    """Stored sweep results of several models.

    table : DataFrame, one row per image, the columns of ``run_sweep(...).table`` (empty when
        nothing is stored). coverage : DataFrame, one row per asked model: ``model``,
        ``status`` (one of :data:`STATUSES`), ``units_found``, ``units_missing`` (lists of
        unit indices) and ``reason`` (a sentence; empty when complete). statuses : the metric
        setup (``similarity``, ``lpips``, ``objectness``) the rows were looked up under.
    """

    table: pd.DataFrame
    coverage: pd.DataFrame
    statuses: Mapping[str, str]

    def __post_init__(self):
        if list(self.coverage.columns) != _COVERAGE:
            raise ValueError(f"coverage columns must be {_COVERAGE}; got "
                             f"{list(self.coverage.columns)}")
        bad = set(self.coverage.status) - set(STATUSES)
        if bad:
            raise ValueError(f"unknown coverage status {sorted(bad)}; choose from {STATUSES}")

    def models_with(self, *statuses: str) -> list[str]:
        """Models whose coverage status is one of ``statuses``, in the asked order."""
        return list(self.coverage[self.coverage.status.isin(statuses)].model)

    @property
    def found(self) -> list[str]:
        """Models with at least one stored unit."""
        return self.models_with("complete", "partial")

    @property
    def to_compute(self) -> list[str]:
        """Models whose weights are here but some units are not stored: the sweep's job."""
        return self.models_with("partial", "not computed")


def weights_problem(name: str) -> tuple[str, str] | None:
    """``(status, reason)`` when ``name`` is unknown or its weights are not here, else None."""
    try:
        source = get_entry(name).source()
    except UnknownNameError as exc:
        return "unknown", str(exc)
    if source.present:
        return None
    return "no weights", str(source.missing(name))




def read_stored_sweep(spec: SweepSpec, *, store: ResultStore | None = None, device="cpu",
                      loader: Callable[[str], object] | None = None,
                      metrics: Metrics | None = None) -> StoredSweep:
    """What :func:`~signseg_core.sweeps.run.run_sweep` would read back for ``spec``, computing
    nothing.

    Per model and unit, the metric rows stored under the exact key ``run_sweep`` uses (the
    unit's condition keys and the metric setup built as ``run_sweep`` builds it). A model whose
    weights are missing here is not loaded; its coverage names the file to put where.

    Parameters
    ----------
    spec : the sweep (models, units, signs, alphas, visualization and metric settings).
    store : the result store; default :func:`~signseg_core.store.default_store`.
    device : device of the metric setup (``Metrics.build``; it builds LPIPS and the detector
        when their weights are here).
    loader : ``name -> ZooModel`` (e.g. a cached loader); default ``load_model(name, device)``.
        Models are only read (fingerprints, device), never changed.
    metrics : the metric setup of ``spec`` when the caller already holds one (a dashboard's
        cached setup); default: built here, without downloading anything.

    Returns
    -------
    :class:`StoredSweep`; its coverage lists every model of ``spec.models`` once, in order.
    """
    store = store if store is not None else default_store()
    loader = loader or (lambda name: load_model(name, device=device))
    tables, coverage, generators = [], [], {}
    metrics_error = ""
    for name in dict.fromkeys(spec.models):
        problem = weights_problem(name)
        if problem is None and metrics is None and not metrics_error:
            try:
                with no_downloads():  # reading results must never start a download
                    metrics = Metrics.build(spec, device, {n: loader(n) for n in spec.ensemble})
            except (SignsegError, ValueError, OSError) as exc:
                metrics_error = f"cannot set up the similarity ensemble {spec.ensemble}: {exc}"
        if problem is None and metrics_error:
            problem = ("error", metrics_error)
        if problem is None:
            try:
                model = loader(name)
            except (SignsegError, ValueError, OSError) as exc:
                problem = ("error", f"cannot load {name}: {exc}")
        if problem is not None:
            coverage.append([name, problem[0], [], list(spec.units), problem[1]])
            continue
        gen_key = (spec.generator_names, str(model.device))
        if gen_key not in generators:
            generators[gen_key] = spec.generators_for(model)
        rows, found, images_only = _model_rows(model, generators[gen_key], spec, store, metrics)
        tables += rows
        coverage.append(_coverage_row(name, spec.units, found, images_only))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return StoredSweep(table, pd.DataFrame(coverage, columns=_COVERAGE),
                       dict(metrics.statuses) if metrics is not None else {})


def _model_rows(model, generators: dict, spec: SweepSpec, store: ResultStore,
                metrics: Metrics):
    """One model's stored metric rows per unit, the units found, and the units whose images
    (but not metric rows) are stored."""
    tables, found, images_only = [], [], []
    for unit in spec.units:
        keys = spec.unit_keys(model, generators, unit)
        got = read_unit_rows(store, metrics.key_for(keys))
        if got is not None:
            tables.append(got[0])
            found.append(unit)
        elif all(k in store for k in keys):
            images_only.append(unit)
    return tables, found, images_only


def _coverage_row(name: str, units: Sequence[int], found: list, images_only: list) -> list:
    missing = [u for u in units if u not in found]
    if not missing:
        return [name, "complete", found, [], ""]
    reason = f"no stored results at these settings for unit(s) {missing}"
    if images_only:
        reason += (f"; the images of unit(s) {images_only} are stored but not their metrics "
                   "at this metric setup (the sweep command reads the images back and computes "
                   "only the metrics)")
    return [name, "partial" if found else "not computed", found, missing, reason]


_CLI_SETTINGS = {"generator", "generations", "restarts", "seed", "precision",
                 "generator_options", "covariance"}


def _settings_args(settings: VisualizeSettings, command: str) -> list[str]:
    """The evolution options ``visualize`` and ``sweep`` share, for ``settings``."""
    default = VisualizeSettings()
    odd = [f.name for f in fields(VisualizeSettings) if f.name not in _CLI_SETTINGS
           and getattr(settings, f.name) != getattr(default, f.name)]
    if odd:
        raise ValueError(f"the {command} command cannot set {odd}; call the engine from Python")
    s = settings
    args = ["--generator", s.generator, "--generations", str(s.generations),
            "--restarts", str(s.restarts), "--seed", str(s.seed)]
    args += [x for k, v in s.generator_options for x in ("--generator-option", f"{k}={v}")]
    args += ["--covariance", s.covariance] if s.covariance != default.covariance else []
    return args + (["--precision", s.precision] if s.precision != default.precision else [])


def visualize_command(model: str, units: Sequence[int], settings: VisualizeSettings, *,
                      device: str = "cpu") -> str:
    """The ``python -m signseg_core visualize ...`` line storing ``units``' 21 conditions
    (control + both signs x alpha 0.1..1) under ``settings``."""
    parts = ["python", "-m", "signseg_core", "visualize", model, "--unit", *map(str, units),
             *_settings_args(settings, "visualize")]
    return shlex.join(parts + (["--device", device] if device != "cpu" else []))


def sweep_command(spec: SweepSpec, models: Sequence[str] | None = None, *,
                  out: str = "sweep_out", device: str = "cpu") -> str:
    """The ``python -m signseg_core sweep ...`` line that computes ``spec`` for ``models``
    (default all of ``spec.models``); options at the CLI's defaults are left out.

    Raises ``ValueError`` when ``spec.settings`` sets something the CLI cannot (popsize, ...).
    """
    parts = ["python", "-m", "signseg_core", "sweep", "--models", *(models or spec.models)]
    if tuple(spec.units) != DEFAULT_UNITS:
        parts += ["--units", *map(str, spec.units)]
    if set(spec.signs) != {"positive", "negative"}:
        parts += ["--sign", spec.signs[0]]
    if set(spec.alphas) | {0.0} != set(DEFAULT_ALPHAS):
        parts += ["--alphas", ",".join(f"{a:g}" for a in spec.alphas)]
    parts += _settings_args(spec.settings, "sweep")
    if spec.generators:
        parts += ["--generators", ",".join(spec.generators)]
    if tuple(spec.ensemble) != DEFAULT_ENSEMBLE:
        parts += ["--ensemble", *spec.ensemble]
    if not spec.lpips:
        parts.append("--no-lpips")
    if spec.detector != SweepSpec().detector:
        parts += ["--detector", spec.detector or "none"]
    if device != "cpu":
        parts += ["--device", device]
    return shlex.join([*parts, "--out", out])
