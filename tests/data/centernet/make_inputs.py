"""Make the reference inputs from the sample images that ship in @vladmandic/human@3.3.6.

Run once (not by the test suite): ``python tests/data/centernet/make_inputs.py PACKAGE_DIR``,
where PACKAGE_DIR is the ``package/`` folder of ``npm pack @vladmandic/human@3.3.6`` extracted.
Each crop is resized with Pillow's LANCZOS filter and written as an 8-bit RGB PNG. The PNG is the
ground truth from then on: the network input is the PNG's pixels repeated ``512 // side`` times
along each axis (nearest-neighbour upscaling, exact), as float32 values in [0, 255].
"""

import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent

# name: (asset, crop box (left, upper, right, lower), stored side)
INPUTS = {
    "group": ("samples.jpg", (300, 420, 1000, 1120), 256),  # a group of people, full length
    "avatar": ("screenshot-vrm.jpg", (0, 0, 653, 653), 512),  # a 3-D figure, a webcam inset
    "portrait": ("screenshot-faceid.jpg", (0, 150, 414, 564), 256),  # a man's head, UI text
}


def main(package_dir: str) -> None:
    assets = Path(package_dir) / "assets"
    for name, (asset, box, side) in INPUTS.items():
        with Image.open(assets / asset) as im:
            crop = im.convert("RGB").crop(box).resize((side, side), Image.LANCZOS)
        crop.save(HERE / f"{name}.png", optimize=True)
        print(name, crop.size, (HERE / f"{name}.png").stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1])
