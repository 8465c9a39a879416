"""The PNG codec: uint8 RGB arrays to PNG bytes and back (lossless).

The store keeps preferred images as PNGs (:mod:`signseg_core.optimize.visualize`), and exports
write them (:func:`signseg_core.figures.export.image_png`); both go through these two functions.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(image: np.ndarray) -> bytes:
    """PNG bytes of ``image``: uint8 (H, W, 3) RGB (or (H, W) grey), stored losslessly."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def png_decode(raw: bytes) -> np.ndarray:
    """uint8 (H, W, 3) RGB from PNG bytes (grey or RGBA files are converted to RGB)."""
    with Image.open(io.BytesIO(raw)) as im:
        return np.asarray(im.convert("RGB"))
