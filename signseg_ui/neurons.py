"""UI helpers of the Neuron models page (paper §4.6, A.1, A.4): the chosen dataset, cached fits,
the neuron model's ablation job, and cached lasso, diverseSet and localization results. The
page's sections, which draw these, are :mod:`signseg_ui.neuron_page`'s.

The dataset chosen is kept in ``st.session_state["neurons_data"]`` as ``(responses file, image
folder or "")``, server paths of the demo, of an upload's own folder
(:func:`~signseg_core.neurons.uploads.save_upload`) or, when the operator turned server paths on
(:mod:`signseg_ui.serving`), of a file under a data root, which alone goes into the URL as
``?data=<responses file>``. Visitors see the dataset by name only
(``st.session_state["neurons_data_name"]``). Cached results are keyed by the files'
:func:`data_signature` (paths, sizes, modification times), so editing a file refits.
Streamlit glue only: every computation is :mod:`signseg_core.neurons.study` and friends.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from signseg_core.conditions import DEFAULT_ALPHAS, SIGNS
from signseg_core.neurons.data import NeuronDataError, load_image, load_neuron_data
from signseg_core.neurons.demo import write_demo_dataset
from signseg_core.neurons.fitting import PAPER_MIN_SD_RATIO
from signseg_core.neurons.localize import background_clearing_effect
from signseg_core.neurons.population import model_population_table
from signseg_core.neurons.study import (
    NeuronStudy,
    fit_study,
    lasso_table,
    localize_and_clear,
    neuron_readout_model,
)
from signseg_core.neurons.uploads import UploadError, save_upload
from signseg_core.optimize.request import VisualizeRequest
from signseg_core.optimize.results import ConditionResult
from signseg_core.optimize.settings import VisualizeSettings
from signseg_core.paths import cache_dir
from signseg_core.stimuli.diverse import contact_sheet, diverse_set_from_folder
from signseg_core.store import key_digest

from .cached_models import cached_generator, cached_model
from .device import current_device
from .error_display import error_message
from .serving import server_path, server_paths_enabled, shown_path

SESSION_DATA = "neurons_data"
#: ``st.session_state`` key of the dataset's name as visitors see it.
SESSION_NAME = "neurons_data_name"
QUERY_DATA = "data"
#: Options of the demo dataset (:func:`~signseg_core.neurons.demo.write_demo_dataset`).
DEMO_OPTIONS: dict = {"model_name": "efficientnet_lite0"}
DEMO_DIR = "neuron_demo"
#: Ablation defaults: 5 conditions × 3 restarts × 8 codes × 15 generations = 1800 images,
#: 47 s of EfficientNet-Lite0 on the 2-core development CPU (docs/benchmarks.md).
ABLATION_DEFAULTS = VisualizeSettings(generator="fourier", generations=15, restarts=3, popsize=8,
                                      seed=0)
ALPHA_GRIDS = {"quick": (0.0, 0.5, 1.0), "paper": DEFAULT_ALPHAS}
ALPHA_GRID_LABELS = {"quick": "α = 0, 0.5, 1", "paper": "α = 0 to 1 by 0.1 (the paper's)"}
#: Labels of the fits table's r² columns: which r² each is.
R2_COLUMNS = {
    f"r2_{split}{kind}": st.column_config.NumberColumn(f"{split} r² ({what})", help=text)
    for split in ("train", "test")
    for kind, what, text in (
        ("", "determination", "Coefficient of determination 1 − SS_res/SS_tot (can be < 0)."),
        ("_pearson", "squared Pearson", "Squared correlation of recorded and predicted."))}


# -- the dataset -------------------------------------------------------------------------------

def demo_dataset(progress=None) -> Path:
    """``responses.csv`` of the demo dataset in ``cache_dir() / "neuron_demo"``, written once.

    Written into a temporary sibling folder and renamed, so a half-written demo is never used;
    a concurrent writer's finished folder wins.
    """
    final = cache_dir() / DEMO_DIR
    csv = final / "responses.csv"
    if csv.is_file() and (final / "planted_weights.npz").is_file():
        return csv
    tmp = cache_dir() / f".{DEMO_DIR}-{uuid.uuid4().hex[:8]}"
    try:
        write_demo_dataset(tmp, progress=progress, **DEMO_OPTIONS)
        if final.exists() and not csv.is_file():
            shutil.rmtree(final)  # an incomplete leftover
        try:
            os.replace(tmp, final)
        except OSError:  # another session finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return csv


def _stat(path) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


@st.cache_data(show_spinner="Reading the responses…", max_entries=8)
def _dataset(path: str, image_dir: str, file_key: str):
    return load_neuron_data(path, image_dir=image_dir or None)


def load_dataset(path: str, image_dir: str = ""):
    """:func:`~signseg_core.neurons.data.load_neuron_data`, cached until the responses file
    changes; raises :class:`NeuronDataError` listing every problem."""
    folder = str(Path(image_dir).expanduser().resolve()) if image_dir else ""
    return _dataset(path, image_dir, key_digest([_stat(Path(path).expanduser().resolve()),
                                                 folder]))


def data_signature(path: str, image_dir: str = "") -> str:
    """A digest of the responses file's and the dataset's images' paths, sizes and modification
    times (loads the dataset: raises :class:`NeuronDataError` when it cannot)."""
    dataset = load_dataset(path, image_dir)
    return key_digest([_stat(Path(path).expanduser().resolve()), image_dir]
                      + [_stat(p) for p in dataset.images])


def folder_signature(folder: str) -> str:
    """A digest of the paths, sizes and modification times of the files directly in ``folder``."""
    with os.scandir(folder) as entries:
        return key_digest([_stat(e.path) for e in sorted(entries, key=lambda e: e.name)
                           if e.is_file()])


def problems_markdown(exc: NeuronDataError, *, name: str | None = None,
                      hidden: dict[str, str] | None = None) -> str:
    """The error as Markdown: what failed (``name``, default the file), then one bullet per
    problem, with each server path in ``hidden`` replaced by its words."""
    shown = exc.problems[:25]
    more = len(exc.problems) - len(shown)
    lines = [f"- {p}" for p in shown] + ([f"- … and {more} more"] if more > 0 else [])
    n = len(exc.problems)
    text = (f"Cannot load {name or exc.source}: {n} problem{'s' * (n != 1)}\n\n"
            + "\n".join(lines))
    for path, words in sorted((hidden or {}).items(), key=lambda kv: -len(kv[0])):
        text = text.replace(path, words)
    return text


def choose_data(path: str, image_dir: str = "", *, name: str | None = None,
                link: bool = False) -> str | None:
    """Load the dataset at ``path`` (a server path the dashboard checked or wrote itself: the
    demo's, an upload's, or one under a data root); on success remember it as ``name`` (default:
    the file's name), in the URL too when ``link``, and return None; else forget the previous
    choice and return the error message (nothing is half-loaded; server paths are shown by name
    only unless server paths are on)."""
    path, image_dir = str(path).strip(), str(image_dir).strip()
    name = name or shown_path(path)
    folder = image_dir or str(Path(path).parent)
    hidden = {} if server_paths_enabled() else {path: name, folder: "the image folder"}
    try:
        load_dataset(path, image_dir)
    except NeuronDataError as exc:
        message = problems_markdown(exc, name=name, hidden=hidden)
    except Exception as exc:  # the UI layer turns engine errors into messages
        message = problems_markdown(NeuronDataError(path, [error_message(exc)]), name=name,
                                    hidden=hidden)
    else:
        st.session_state[SESSION_DATA] = (path, image_dir)
        st.session_state[SESSION_NAME] = name
        if link:
            st.query_params[QUERY_DATA] = path
        else:
            st.query_params.pop(QUERY_DATA, None)
        return None
    st.session_state.pop(SESSION_DATA, None)
    st.query_params.pop(QUERY_DATA, None)
    return message


def choose_upload(responses, images) -> str | None:
    """Write the uploaded responses file and images (Streamlit ``UploadedFile`` objects) into an
    upload folder of the server's own and load them as :func:`choose_data` does; None on
    success, else the error message. The images may unpack to 4x ``server.maxUploadSize``."""
    budget = 4 * int(st.get_option("server.maxUploadSize")) << 20
    try:
        path, folder = save_upload((responses.name, responses.getvalue()),
                                   [(f.name, f.getvalue()) for f in images], max_bytes=budget)
    except UploadError as exc:
        st.session_state.pop(SESSION_DATA, None)
        return f"Cannot use the upload: {exc}"
    return choose_data(str(path), str(folder), name=responses.name)


def choose_server_data(path: str, image_dir: str = "") -> str | None:
    """Load a responses file (and image folder) on the server, each checked to lie under a data
    root (:func:`~signseg_ui.serving.server_path`), as :func:`choose_data` does, with a link."""
    try:
        resolved = server_path(path, what="responses file")
        folder = server_path(image_dir, what="image folder") if image_dir.strip() else ""
    except ValueError as exc:
        st.session_state.pop(SESSION_DATA, None)
        st.query_params.pop(QUERY_DATA, None)
        return f"Cannot load {str(path).strip()!r}: {exc}"
    return choose_data(str(resolved), str(folder), link=True)


def dataset_name() -> str:
    """The dataset in use as visitors see it (a file name, or "the demo dataset")."""
    chosen = st.session_state.get(SESSION_DATA)
    return st.session_state.get(SESSION_NAME) or (shown_path(chosen[0]) if chosen else "")


# -- fits --------------------------------------------------------------------------------------

@st.cache_data(show_spinner="Computing features and fitting one PLS model per neuron…",
               max_entries=8)
def _study(model_name: str, device: str, path: str, image_dir: str, signature: str,
           min_sd_ratio: float):
    return fit_study(cached_model(model_name, device), load_dataset(path, image_dir),
                     min_sd_ratio=min_sd_ratio)


def cached_study(model_name: str, path: str, image_dir: str = "", *,
                 min_sd_ratio: float = PAPER_MIN_SD_RATIO) -> NeuronStudy:
    """:func:`~signseg_core.neurons.study.fit_study` of the dataset on ``model_name``'s features,
    cached per ``min_sd_ratio`` (the features themselves are shared through the store)."""
    return _study(model_name, current_device(), path, image_dir,
                  data_signature(path, image_dir), float(min_sd_ratio))


def default_neuron(study: NeuronStudy) -> str:
    """The best-fitted neuron of all (highest test r² among the best per session)."""
    best = study.best
    return str(best.loc[best["r2_test"].idxmax(), "neuron"]) if len(best) else study.neurons[0]


def neuron_label(study: NeuronStudy, neuron: str) -> str:
    """``"n06 · session s1 · test r² 0.78 ★"`` (★: best of its session)."""
    row = study.table.iloc[study.index(neuron)]
    star = " ★" if neuron in study.best_neurons else ""
    session = f" · session {row['session']}" if row["session"] else ""
    return f"{neuron}{session} · test r² {row['r2_test']:.2f}{star}"


@st.cache_resource(show_spinner=False, max_entries=16)
def _readout(model_name: str, device: str, path: str, image_dir: str, signature: str,
             min_sd_ratio: float, neuron: str):
    study = _study(model_name, device, path, image_dir, signature, min_sd_ratio)
    return neuron_readout_model(cached_model(model_name, device), study, [neuron])


def readout_model(model_name: str, path: str, image_dir: str, neuron: str, *,
                  min_sd_ratio: float = PAPER_MIN_SD_RATIO):
    """The neuron model as a one-unit ZooModel (shared, read-only)."""
    return _readout(model_name, current_device(), path, image_dir,
                    data_signature(path, image_dir), float(min_sd_ratio), neuron)


@st.cache_data(show_spinner="Fitting lasso models (5 penalties × 5 folds × 2 constraints)…",
               max_entries=32)
def _lasso(model_name: str, device: str, path: str, image_dir: str, signature: str,
           min_sd_ratio: float, neuron: str) -> pd.DataFrame:
    study = _study(model_name, device, path, image_dir, signature, min_sd_ratio)
    return lasso_table(study, neuron)


def cached_lasso(model_name: str, path: str, image_dir: str, neuron: str, *,
                 min_sd_ratio: float = PAPER_MIN_SD_RATIO) -> pd.DataFrame:
    """:func:`~signseg_core.neurons.study.lasso_table` of one neuron, cached."""
    return _lasso(model_name, current_device(), path, image_dir,
                  data_signature(path, image_dir), float(min_sd_ratio), neuron)


# -- the neuron model's ablation ---------------------------------------------------------------

def ablation_request(model_name: str, path: str, image_dir: str, neuron: str,
                     settings: VisualizeSettings, alphas, *,
                     min_sd_ratio: float = PAPER_MIN_SD_RATIO) -> VisualizeRequest:
    """The request of the neuron model's ablation: unit 0 of its readout, the control plus both
    signs × ``alphas`` (as :func:`~signseg_core.neurons.study.neuron_request` builds it), on the
    session's cached readout and generator (stored under the readout's fingerprint, so fits
    with another ``min_sd_ratio`` never share results)."""
    readout = readout_model(model_name, path, image_dir, neuron, min_sd_ratio=min_sd_ratio)
    generator = cached_generator(settings.generator, str(readout.device))
    return VisualizeRequest.for_unit(readout, generator, 0, settings, signs=SIGNS, alphas=alphas)


def strip_rows(results) -> dict[str, list[ConditionResult]]:
    """One row per sign present, the control first, by alpha: ``{"positive": [...], ...}``."""
    control = [r for r in results if r.key.sign == "control"][:1]
    rows = {}
    for sign in SIGNS:
        own = sorted((r for r in results if r.key.sign == sign), key=lambda r: r.key.alpha)
        if own:
            rows[sign] = control + own
    return rows or {"control": control}


@st.cache_data(show_spinner="Scoring the images with every neuron model…", max_entries=16)
def _population(model_name: str, device: str, path: str, image_dir: str, signature: str,
                min_sd_ratio: float, keys: tuple, _results: list) -> pd.DataFrame:
    study = _study(model_name, device, path, image_dir, signature, min_sd_ratio)
    return model_population_table(cached_model(model_name, device), study, _results)


def cached_population(model_name: str, path: str, image_dir: str, results, *,
                      min_sd_ratio: float = PAPER_MIN_SD_RATIO) -> pd.DataFrame:
    """:func:`~signseg_core.neurons.population.model_population_table` of the ablation's
    results (in silico Fig. 7 right), cached by the results' keys (a stored result's images are
    fixed by its key)."""
    keys = tuple(sorted(repr(r.key) for r in results))
    return _population(model_name, current_device(), path, image_dir,
                       data_signature(path, image_dir), float(min_sd_ratio), keys, list(results))


# -- diverseSet and localization ---------------------------------------------------------------

@st.cache_data(show_spinner="Choosing a diverse set (model outputs, PCA, k-means)…",
               max_entries=16)
def _diverse(model_name: str, device: str, folder: str, signature: str, k: int, seed: int):
    return diverse_set_from_folder(cached_model(model_name, device), folder, k=k, seed=seed)


def cached_diverse_set(model_name: str, folder: str, *, k: int, seed: int = 0):
    """:func:`~signseg_core.stimuli.diverse.diverse_set_from_folder` on the model's outputs,
    cached."""
    folder = str(Path(folder).expanduser())
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return _diverse(model_name, current_device(), folder, folder_signature(folder), int(k),
                    int(seed))


def diverse_sheet(selection, *, columns: int = 8) -> np.ndarray:
    """The chosen images as a labelled contact sheet (uint8 (H, W, 3))."""
    return contact_sheet(selection.paths, columns=min(columns, selection.k), labels=True)


@st.cache_data(show_spinner="Shuffling 30 disks and scoring the perturbed images…",
               max_entries=32)
def _localize(model_name: str, device: str, path: str, image_dir: str, signature: str,
              min_sd_ratio: float, neuron: str, image_path: str, seed: int):
    readout = _readout(model_name, device, path, image_dir, signature, min_sd_ratio, neuron)

    def score(x):
        return readout(x)[:, 0]

    image = load_image(image_path)
    loc, gray = localize_and_clear(score, image, fill="gray", seed=seed)
    if gray is None:  # an empty mask: nothing to keep, nothing to clear
        return image.numpy(), loc, {}
    white = background_clearing_effect(score, image, loc.mask, fill="white")
    return image.numpy(), loc, {"gray": gray, "white": white}


def cached_localization(model_name: str, path: str, image_dir: str, neuron: str,
                        image_path: str, *, min_sd_ratio: float = PAPER_MIN_SD_RATIO,
                        seed: int = 0):
    """``(image (3, H, W) array, LocalizationResult, {fill: BackgroundClearing})`` of the neuron
    model on one image: the perturbation mask, then the rest cleared to gray and to white (no
    clearing for an empty mask)."""
    return _localize(model_name, current_device(), path, image_dir,
                     data_signature(path, image_dir), float(min_sd_ratio), neuron,
                     str(image_path), int(seed))


def images_by_response(study: NeuronStudy, responses: pd.DataFrame) -> dict[str, float]:
    """``{image path: recorded response}`` of one neuron's :func:`response_table`, highest
    response first (the images a localization is most informative on)."""
    paths = dict(zip(study.dataset.image_names, study.dataset.images))
    order = responses.sort_values("response", ascending=False, kind="stable")
    return {str(paths[i]): float(r) for i, r in zip(order["image"], order["response"])}
