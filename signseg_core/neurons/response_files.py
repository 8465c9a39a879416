"""Reading neuron response files, CSV or NPZ, into one form, with every problem found.

The two formats are described in :mod:`signseg_core.neurons.data`. A parser never raises on a bad
file: it returns a :class:`ParsedResponses` whose ``problems`` name each bad CSV line or NPZ
index, and :func:`~signseg_core.neurons.data.load_neuron_data` accepts the file only when there
are none (all-or-nothing).

What a file may hold is bounded, so bad data fails here, naming its row, and never later inside
a model: a response must be finite with ``|response| <=`` :data:`MAX_ABS_RESPONSE` (1e18, so its
square, 1e36, stays finite even in float32, where neuron models' readouts compute; 1e308 passes
``isfinite`` but its square overflows float64); an NPZ's arrays are read only by name, each at
most :data:`MAX_NPZ_BYTES` by its header before any is loaded; an image name must stay inside the
image folder (no ``..``, not absolute, not a link out of it) and every image is decoded in full,
:data:`MIN_IMAGE_SIDE` to :data:`MAX_IMAGE_SIDE` px a side and at most :data:`MAX_IMAGE_PIXELS`
pixels (decompression bombs are refused before they are decoded).
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from signseg_core.checks import check_inside, is_plain_relative

__all__ = ["MAX_ABS_RESPONSE", "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE", "MAX_NPZ_BYTES",
           "METADATA_COLUMNS", "MIN_IMAGE_SIDE", "REQUIRED_COLUMNS", "ParsedResponses",
           "check_image_files", "parse_csv", "parse_npz"]

REQUIRED_COLUMNS = ("image", "neuron", "response")
METADATA_COLUMNS = ("session", "area", "monkey")
NPZ_ARRAYS = ("responses", "images", "neurons", *(name + "s" for name in METADATA_COLUMNS))
#: The largest response magnitude taken: its square stays finite in float32 (max 3.4e38).
MAX_ABS_RESPONSE = 1e18
#: The largest array an NPZ may declare, in bytes (1 GiB: a million images x 128 neurons).
MAX_NPZ_BYTES = 1 << 30
#: Image sides and area taken: the engine's smallest localization disk needs 16 px; a 24-MP
#: photograph passes; larger images would take over 300 MB each as float32.
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE, MAX_IMAGE_PIXELS = 16, 10_000, 25_000_000
_CELLS_SHOWN = 100  # bad NPZ cells listed one by one; the rest are counted


class ParsedResponses(NamedTuple):
    """What a parser read; unpacks as ``problems, images, where, neurons, responses, metadata``.

    problems : every problem found, in file order (empty for a valid file).
    images : image names, in order of first appearance; neurons : neuron ids, likewise.
    where : image name → where it first occurs (``"first on line 3"``, ``"images[0]"``).
    responses : float64 ``(n_images, n_neurons)``, NaN where not shown; None when unreadable.
    metadata : ``{"session" | "area" | "monkey": one str per neuron}``; None when unreadable.
    """

    problems: list[str]
    images: list[str]
    where: dict[str, str]
    neurons: list[str]
    responses: np.ndarray | None
    metadata: dict[str, tuple[str, ...]] | None


def _unreadable(problem: str) -> ParsedResponses:
    """A file that could not be read at all: one problem, nothing else."""
    return ParsedResponses([problem], [], {}, [], None, None)


# -- CSV ---------------------------------------------------------------------------------------

def parse_csv(path: Path) -> ParsedResponses:
    """One row per (image, neuron): columns ``image, neuron, response`` and optionally
    ``session, area, monkey``, header names matched case-insensitively."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return _unreadable(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})")
    if not text.strip():
        return _unreadable(f"the file is empty; expected a header with columns "
                           f"{list(REQUIRED_COLUMNS)}")
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = [h.strip().lower() for h in next(reader)]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            return _unreadable(f"line 1: missing column(s) {missing}; the header has {header}")
        return _parse_rows(reader, header)
    except csv.Error as exc:  # e.g. a field over csv's size limit
        return _unreadable(f"line {reader.line_num}: it is not a readable CSV ({exc})")


def _parse_rows(reader, header: list[str]) -> ParsedResponses:
    """The data rows after ``header``: each valid one fills a cell, each bad one adds problems."""
    col = {name: header.index(name) for name in (*REQUIRED_COLUMNS, *METADATA_COLUMNS)
           if name in header}
    problems: list[str] = []
    images: dict[str, int] = {}  # name -> column index, in order of first appearance
    where: dict[str, int] = {}  # name -> first line
    neurons: dict[str, int] = {}
    meta: dict[str, dict[str, tuple[str, int]]] = {name: {} for name in METADATA_COLUMNS}
    seen: dict[tuple[str, str], int] = {}
    cells: list[tuple[int, int, float]] = []
    for row in reader:
        line = reader.line_num
        if not any(field.strip() for field in row):
            continue
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} fields, but the header has {len(header)}")
            continue
        image, neuron, value, bad = _check_row(row, col, line, seen, meta)
        if bad:
            problems.extend(f"line {line}: {b}" for b in bad)
            continue
        seen[(image, neuron)] = line
        i = images.setdefault(image, len(images))
        where.setdefault(image, line)
        j = neurons.setdefault(neuron, len(neurons))
        cells.append((i, j, value))
    if not seen and not problems:
        problems.append("the file has a header but no data rows")
    responses = np.full((len(images), len(neurons)), np.nan)
    for i, j, value in cells:
        responses[i, j] = value
    metadata = {name: tuple(meta[name].get(n, ("", 0))[0] for n in neurons)
                for name in METADATA_COLUMNS}
    where_text = {name: f"first on line {line}" for name, line in where.items()}
    return ParsedResponses(problems, list(images), where_text, list(neurons), responses, metadata)


def _check_row(row: list[str], col: dict[str, int], line: int,
               seen: dict[tuple[str, str], int], meta: dict[str, dict[str, tuple[str, int]]]):
    """``(image, neuron, response, problems)`` of one CSV row.

    ``seen`` holds the line of each (image, neuron) accepted so far; ``meta`` records the first
    (value, line) of each neuron's metadata, which later rows must repeat.
    """
    image, neuron = row[col["image"]].strip(), row[col["neuron"]].strip()
    raw = row[col["response"]].strip()
    bad = [f"empty {c}" for c, v in (("image", image), ("neuron", neuron)) if not v]
    try:
        value = float(raw)
    except ValueError:
        bad.append(f"response {raw!r} is not a number")
        value = None
    if value is not None and not np.isfinite(value):
        bad.append(f"response is {raw!r}; every row needs a finite response (leave out the "
                   "rows of images a neuron was not shown)")
    elif value is not None and abs(value) > MAX_ABS_RESPONSE:
        bad.append(f"response {raw!r} is too large: |response| must be at most "
                   f"{MAX_ABS_RESPONSE:g}, so that its square stays finite")
    if (image, neuron) in seen and image and neuron:
        bad.append(f"duplicate of line {seen[(image, neuron)]} (image {image!r}, "
                   f"neuron {neuron!r})")
    for name in METADATA_COLUMNS:
        if name in col and neuron:
            v = row[col[name]].strip()
            first = meta[name].setdefault(neuron, (v, line))
            if first[0] != v:
                bad.append(f"neuron {neuron!r} has {name} {v!r} here but {first[0]!r} on "
                           f"line {first[1]}; neuron ids must be unique across {name}s")
    return image, neuron, value, bad


# -- NPZ ---------------------------------------------------------------------------------------

def parse_npz(path: Path) -> ParsedResponses:
    """``responses (n_images, n_neurons)``, ``images (n_images,)`` and optionally ``neurons``,
    ``sessions``, ``areas``, ``monkeys`` (each ``(n_neurons,)``); object arrays are refused."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = list(npz.files)
            too_big = [f"{n} ({size:,} bytes)" for n, size in _npz_sizes(npz)
                       if size > MAX_NPZ_BYTES]
            if too_big:
                return _unreadable(f"arrays larger than {MAX_NPZ_BYTES:,} bytes: {too_big}")
            arrays = {name: npz[name] for name in NPZ_ARRAYS if name in files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            return _unreadable("it holds object arrays, which are never unpickled; save names as "
                               "plain string arrays, e.g. np.array(names, dtype=str)")
        return _unreadable(f"it is not a readable .npz ({exc})")
    except Exception as exc:  # a truncated or foreign file
        return _unreadable(f"it is not a readable .npz ({type(exc).__name__}: {exc})")
    missing = [k for k in ("responses", "images") if k not in arrays]
    if missing:
        return _unreadable(f"missing array(s) {missing}; the file has {sorted(files)[:20]}")
    r = arrays["responses"]
    if r.ndim != 2 or r.size == 0:
        return _unreadable(f"responses must be a non-empty (n_images, n_neurons) matrix, got "
                           f"shape {r.shape}")
    if not (np.issubdtype(r.dtype, np.number) or r.dtype == bool) \
            or np.issubdtype(r.dtype, np.complexfloating):
        return _unreadable(f"responses must be real numbers, got dtype {r.dtype}")
    return _check_npz_arrays(arrays, r.astype(np.float64))


def _check_npz_arrays(arrays: dict[str, np.ndarray], r: np.ndarray) -> ParsedResponses:
    """Names, metadata and values of a readable NPZ checked against ``responses`` ``r``."""
    problems: list[str] = []
    n_images, n_neurons = r.shape
    names = [str(s).strip() for s in np.asarray(arrays["images"]).ravel()]
    neurons = [str(s).strip() for s in np.asarray(arrays.get("neurons",
                                                             np.arange(n_neurons))).ravel()]
    meta = {}
    for key, n, what in (("images", n_images, "n_images"), ("neurons", n_neurons, "n_neurons")):
        got = len(names if key == "images" else neurons)
        if got != n:
            problems.append(f"{key} has {got} entries but responses has {what} = {n}")
    for name in METADATA_COLUMNS:
        values = [str(s) for s in np.asarray(arrays.get(name + "s", [""] * n_neurons)).ravel()]
        if len(values) != n_neurons:
            problems.append(f"{name}s has {len(values)} entries but there are {n_neurons} "
                            "neurons")
        meta[name] = tuple(values)
    if problems:
        return ParsedResponses(problems, [], {}, [], None, None)
    for what, items in (("images", names), ("neurons", neurons)):
        first: dict[str, int] = {}
        for k, item in enumerate(items):
            if not item:
                problems.append(f"{what}[{k}] is empty")
            elif item in first:
                problems.append(f"{what}[{k}] duplicates {what}[{first[item]}] ({item!r})")
            first.setdefault(item, k)
    problems += _bad_cells(r, names, neurons)
    where = {name: f"images[{k}]" for k, name in reversed(list(enumerate(names)))}
    return ParsedResponses(problems, names, where, neurons, r, meta)


def _bad_cells(r: np.ndarray, names: list[str], neurons: list[str]) -> list[str]:
    """One problem per infinite or too large response (the first :data:`_CELLS_SHOWN`), then a
    count of the rest."""
    with np.errstate(invalid="ignore"):
        bad = np.isinf(r) | (np.abs(r) > MAX_ABS_RESPONSE)
    problems = []
    for i, j in list(zip(*np.nonzero(bad)))[:_CELLS_SHOWN]:
        what = ("use NaN for images a neuron was not shown" if np.isinf(r[i, j]) else
                f"|response| must be at most {MAX_ABS_RESPONSE:g}, so that its square stays finite")
        problems.append(f"responses[{i}, {j}] (image {names[i]!r}, neuron {neurons[j]!r}) is "
                        f"{r[i, j]}; {what}")
    if int(bad.sum()) > _CELLS_SHOWN:
        problems.append(f"... and {int(bad.sum()) - _CELLS_SHOWN} more infinite or too large "
                        "responses")
    return problems


def _npz_sizes(npz) -> list[tuple[str, int]]:
    """``(array name, bytes)`` of every array of an open NPZ, from its ``.npy`` header alone."""
    fmt, sizes = np.lib.format, []
    for info in npz.zip.infolist():
        with npz.zip.open(info) as handle:
            read = {(1, 0): fmt.read_array_header_1_0,
                    (2, 0): fmt.read_array_header_2_0}.get(fmt.read_magic(handle))
            if read is None:  # a newer header: its stored size bounds it
                sizes.append((info.filename.removesuffix(".npy"), info.file_size))
                continue
            shape, _, dtype = read(handle)
        sizes.append((info.filename.removesuffix(".npy"), math.prod(shape) * dtype.itemsize))
    return sizes


# -- images ------------------------------------------------------------------------------------

def check_image_files(folder: Path, names: Sequence[str], where: dict[str, str]) -> list[str]:
    """One problem per image of ``names`` that is not a plain name inside ``folder`` (``..``, an
    absolute path, a link out of the folder), is missing, or does not decode in full within the
    size limits; ``where`` (from the parser) says where each name first occurs in the file."""
    problems = []
    for name in names:
        at = f"image {name!r} ({where[name]})"
        if not is_plain_relative(name):
            problems.append(f"{at} must be a file name inside the image folder (no '..', not "
                            "an absolute path)")
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{at} not found in {folder}")
            continue
        try:
            check_inside(path, folder, what="image")
        except ValueError:
            problems.append(f"{at} is a link to a file outside the image folder")
            continue
        problem = image_problem(path)
        if problem:
            problems.append(f"{at} {problem}")
    return problems


def image_problem(path: Path) -> str:
    """Why the image file at ``path`` cannot be used ("" when it can): decoded in full (a
    truncated file fails here, not in a model), its size checked from the header first, so a
    decompression bomb is refused before it is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if min(width, height) < MIN_IMAGE_SIDE or max(width, height) > MAX_IMAGE_SIDE \
                        or width * height > MAX_IMAGE_PIXELS:
                    return (f"is {width}x{height} px; images must be {MIN_IMAGE_SIDE} to "
                            f"{MAX_IMAGE_SIDE:,} px a side and at most {MAX_IMAGE_PIXELS:,} px")
                im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return (f"is larger than PIL decodes safely (a decompression bomb?); images must be at "
                f"most {MAX_IMAGE_PIXELS:,} px")
    except Exception as exc:  # any decoder failure: truncated, corrupt, foreign
        return f"is not an image PIL can read in full ({type(exc).__name__})"
    return ""
