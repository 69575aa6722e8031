"""A labelled image folder of real files, written on the spot: for the demo and examples.

:func:`write_image_folder` draws three classes of picture that a small model can
tell apart whatever their colours, size or rotation (a filled disc, a ring, scattered
specks) and saves them the way real datasets come: JPEG and PNG, in RGB, grey, grey
with alpha, palette, RGBA, CMYK and 16-bit modes, at sizes from 48 to 160 pixels a
side, and optionally a few damaged files, as scraped datasets have.

>>> import pathlib, tempfile
>>> import headrace as hr
>>> scratch = tempfile.TemporaryDirectory()
>>> written = write_image_folder(scratch.name, per_class=4, damaged=1)
>>> len(written), hr.image_folder(scratch.name).classes
(13, ('disc', 'ring', 'specks'))
>>> scratch.cleanup()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import numpy as np

__all__ = ["CLASSES", "write_image_folder"]

#: The class folders :func:`write_image_folder` fills.
CLASSES: Final = ("disc", "ring", "specks")

# (mode, format, extension): the files cycle through these.
_KINDS: Final = (
    ("RGB", "JPEG", ".jpg"),
    ("L", "PNG", ".png"),
    ("P", "PNG", ".png"),
    ("RGBA", "PNG", ".png"),
    ("CMYK", "JPEG", ".jpg"),
    ("I;16", "PNG", ".png"),
    ("LA", "PNG", ".png"),
    ("RGB", "PNG", ".png"),
)


def write_image_folder(
    root: str | os.PathLike[str], *, per_class: int = 40, damaged: int = 0, seed: int = 0
) -> list[Path]:
    """Write ``per_class`` images into each class folder under ``root``; return the paths.

    ``damaged`` more files, cut off half-way through their data, go into the first
    class folder: a decoding stage with ``on_error="skip"`` counts and drops them.
    The same ``seed`` writes the same pictures.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(root)
    written = []
    for number in range(per_class * len(CLASSES)):
        name = CLASSES[number % len(CLASSES)]
        width, height = (int(side) for side in rng.integers(48, 161, size=2))
        background = tuple(int(c) for c in rng.integers(0, 90, size=3))
        ink = tuple(int(c) for c in rng.integers(150, 256, size=3))
        image = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(image)
        short = min(width, height)
        cx = width / 2 + rng.uniform(-0.08, 0.08) * short
        cy = height / 2 + rng.uniform(-0.08, 0.08) * short
        radius = rng.uniform(0.25, 0.35) * short
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if name == "disc":
            draw.ellipse(box, fill=ink)
        elif name == "ring":
            draw.ellipse(box, outline=ink, width=max(2, round(short * 0.07)))
        else:
            for _ in range(int(rng.integers(20, 40))):
                x, y = rng.uniform(0, width), rng.uniform(0, height)
                r = short * 0.04
                draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)
        mode, fmt, extension = _KINDS[(number // len(CLASSES)) % len(_KINDS)]
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{number:05d}{extension}"
        _save(image, mode, fmt, path)
        written.append(path)
    for number in range(damaged):
        path = root / CLASSES[0] / f"damaged-{number:03d}.jpg"
        written.append(path)
        _save(Image.new("RGB", (96, 96), (200, 40, 40)), "RGB", "JPEG", path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return written


def _save(image: object, mode: str, fmt: str, path: Path) -> None:
    from PIL import Image

    assert isinstance(image, Image.Image)
    if mode == "I;16":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        image = Image.fromarray(grey)
        assert isinstance(image, Image.Image)
    elif mode == "P":
        image = image.quantize(colors=32)
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
