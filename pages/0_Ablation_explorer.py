"""Ablation explorer: a unit's preferred images as its positive or its negative input weights are
ablated (the paper's Fig 2B–C), read from the store or computed in the background."""

from __future__ import annotations

import streamlit as st

from signseg_core.conditions import (
    DEFAULT_ALPHAS,
    SIGNS,
    Condition,
    parse_alpha,
    parse_sign,
    parse_unit,
)
from signseg_core.sweeps.preview import (
    budget_settings,
    default_settings,
    describe_defaults,
    full_budget,
)
from signseg_ui.cached_models import require_model
from signseg_ui.error_display import show_error
from signseg_ui.evolution_settings import evolution_settings, generator_choices, optimizer_caption
from signseg_ui.explorer import (
    DEFAULT_ALPHA,
    DEFAULT_SIGN,
    DEFAULT_UNIT,
    N_CONDITIONS,
    current_key,
    missing_count,
    stored_pooled,
    stored_results,
    submit_unit,
    unit_job,
    unit_request,
    unit_requests,
    unit_text,
)
from signseg_ui.jobs_widget import job_panel
from signseg_ui.live_view import (
    budget_picker,
    compute_label,
    expected_or_none,
    live_preview,
    precomputed_note,
    unit_format,
)
from signseg_ui.navigation import sidebar_nav
from signseg_ui.pickers import model_picker
from signseg_ui.unit_results import show_unit_results
from signseg_ui.widget_choices import remember_choice, restore_choice

st.set_page_config(page_title="Ablation explorer · signseg", layout="wide")
sidebar_nav()
st.title("Ablation explorer")
st.write(
    "Pick a readout unit, then remove a fraction α of its positive or of its negative input "
    "weights (largest first). Each condition's preferred images come from restarts of an "
    "optimiser over a generator's codes (an evolution strategy, or gradient ascent for maco); "
    "the number above each image is the ablated unit's activation."
)

name = model_picker(key="explorer_model")
model = require_model(name)
units = list(range(model.n_classes))
default_unit = DEFAULT_UNIT if DEFAULT_UNIT < len(units) else 0
restore_choice("explorer_unit", "unit", units, lambda raw: parse_unit(raw, len(units)),
               default_unit)
restore_choice("explorer_sign", "sign", SIGNS, parse_sign, DEFAULT_SIGN)
restore_choice("explorer_alpha", "alpha", DEFAULT_ALPHAS,
               lambda raw: parse_alpha(raw, choices=DEFAULT_ALPHAS), DEFAULT_ALPHA)

note = precomputed_note(name)
if note:
    st.caption(note)
col_unit, col_sign, col_alpha = st.columns([2, 1, 2])
unit = col_unit.selectbox("Unit (type a class name or index)", units, key="explorer_unit",
                          format_func=unit_format(name))
sign = col_sign.radio("Weights ablated", SIGNS, key="explorer_sign", horizontal=True)
alpha = col_alpha.select_slider("Ablation strength α", DEFAULT_ALPHAS, key="explorer_alpha",
                                format_func=lambda a: f"{a:.1f}")
remember_choice("explorer_unit", "unit", str(unit))
remember_choice("explorer_sign", "sign", sign)
remember_choice("explorer_alpha", "alpha", f"{alpha:g}")

device = str(model.device)
budget = budget_picker(name, unit, device)
with st.expander("Optimisation settings and image set", expanded=budget == "custom"):
    settings = (evolution_settings(key="explorer", defaults=default_settings(name),
                                   reset_on=name, caption=describe_defaults())
                if budget == "custom" else budget_settings(name, budget))
    if budget != "custom":
        st.caption(f"{optimizer_caption(settings)} Choose Custom to change the settings.")
    others = [g for g in generator_choices() if settings and g != settings.generator]
    pooled = st.multiselect("Pool with other generators (the paper pools DeePSiM + BigGAN)",
                            others, key="explorer_pool")
if settings is None:
    st.stop()
try:  # built once: their keys serve every read below
    requests = unit_requests(name, unit, settings, [settings.generator, *pooled])
    by_generator, job = stored_pooled(requests), unit_job(requests)
    full = None if budget != "preview" else stored_results(
        unit_request(name, unit, full_budget(name)))
except Exception as exc:  # the UI layer turns engine errors into messages
    show_error(exc, context="Cannot read the results")
    st.stop()
showing_full = full is not None and len(full) == N_CONDITIONS and not pooled
if showing_full:
    by_generator = {full_budget(name).generator: full}  # the full budget is here: show it
    st.caption("Showing the full-budget results, which are stored for this unit.")

missing = 0 if showing_full else missing_count(requests, by_generator)
shown = current_key(unit, sign, alpha)


def submit():
    return submit_unit(requests, first=Condition(unit, sign, alpha),
                       expected_s=expected_or_none(requests, missing))


finished = job_panel(lambda: job, submit, key="explorer",
                     label=compute_label(unit, missing, requests, device),
                     needed=missing > 0, live=live_preview(shown),
                     help="Runs in the background, the condition on screen first; each "
                          "condition is kept on disk as soon as it is done.")
for result in finished or []:
    by_generator.setdefault(result.key.generator, {})[result.condition.key] = result
show_unit_results(name, unit, sign, alpha, by_generator,
                  restarts=(full_budget(name) if showing_full else settings).restarts)
