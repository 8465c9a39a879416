"""Image strips: a grid of captioned images drawn into one uint8 array (PNG-ready), with row labels
on the left and an optional note beneath saying what the captions' numbers are.

Captions are set in a TrueType font that has Greek letters (DejaVu Sans or Liberation Sans, where
the system has them), so ``"α = 0.5"`` prints as written; without one, Pillow's own font is used
and ``α`` is spelled ``a``.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: TrueType fonts tried for captions, in order (Pillow looks them up in the system's font folders).
STRIP_FONTS = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "arial.ttf")
#: Gap between tiles and around the grid (px).
GAP = 4
_MISSING = "\U000f0000"  # a private-use code point: every font draws its "no glyph" box


def _glyph(font, char: str) -> bytes:
    mask = font.getmask(char)
    return bytes(mask) + bytes(str(mask.size), "ascii")


def _has_glyph(font, char: str) -> bool:
    return _glyph(font, char) != _glyph(font, _MISSING)


@functools.lru_cache(maxsize=8)
def strip_font(px: int) -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, bool]:
    """A font of ``px`` pixels for captions and whether it draws ``α`` (else ``a`` is used)."""
    for name in STRIP_FONTS:
        try:
            font = ImageFont.truetype(name, px)
        except OSError:
            continue
        if _has_glyph(font, "α"):
            return font, True
    try:
        return ImageFont.load_default(size=px), False
    except (TypeError, ImportError):  # a Pillow without FreeType: its bitmap font
        return ImageFont.load_default(), False


def _text(text: str, greek: bool) -> str:
    return text if greek else text.replace("α", "a")


def _wrap(text: str, width: float, font, measure: ImageDraw.ImageDraw) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` px in ``font``."""
    lines: list[str] = []
    for word in text.split():
        if lines and measure.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def image_strip(rows: dict[str, list], *, tile: int = 112, caption_px: int = 14,
                note: str = "") -> np.ndarray:
    """A grid of images with captions: ``rows`` maps a row label to ``(image, caption)`` pairs.

    Parameters
    ----------
    rows : row label → list of (uint8 (H, W, 3) image, caption). A caption may have several
        lines (``"\\n"``); each is drawn above its image, scaled to ``tile`` x ``tile``.
    tile : side of each image (px).
    caption_px : height of one caption line (px); the font is a little smaller.
    note : a line beneath the grid (wrapped to its width), e.g. what the captions' numbers are.

    Returns
    -------
    uint8 (H_total, W_total, 3) on a white background: a label column as wide as the longest
    row label, then the columns ``tile + 4`` px apart.
    """
    font, greek = strip_font(max(caption_px - 2, 6))
    n_cols = max(len(v) for v in rows.values())
    n_lines = max((str(c).count("\n") + 1 for items in rows.values() for _, c in items),
                  default=1)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(90, *(int(measure.textlength(_text(label, greek), font=font)) + 3 * GAP
                        for label in rows))
    cell_h = tile + n_lines * caption_px + GAP
    width = label_w + n_cols * (tile + GAP)
    note_lines = _wrap(_text(note, greek), width - 2 * GAP, font, measure)
    canvas = Image.new("RGB", (width, len(rows) * cell_h + GAP + len(note_lines) * caption_px),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, items) in enumerate(rows.items()):
        y = r * cell_h + GAP // 2
        draw.text((GAP, y + n_lines * caption_px + (tile - caption_px) // 2),
                  _text(label, greek), fill=(0, 0, 0), font=font)
        for c, (image, caption) in enumerate(items):
            x = label_w + c * (tile + GAP)
            canvas.paste(Image.fromarray(image).resize((tile, tile)),
                         (x, y + n_lines * caption_px))
            for k, line in enumerate(str(caption).split("\n")):
                draw.text((x + 2, y + k * caption_px), _text(line, greek), fill=(0, 0, 0),
                          font=font)
    for k, line in enumerate(note_lines):
        draw.text((GAP, len(rows) * cell_h + GAP + k * caption_px), line, fill=(60, 60, 60),
                  font=font)
    return np.asarray(canvas)
