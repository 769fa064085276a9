"""Any image PIL opens, as the 8-bit RGB every model here takes.

``Image.convert("RGB")`` clips deeper images instead of scaling them: a 16-bit greyscale PNG
(values up to 65,535) comes out pure white. Such images are scaled to 8 bits by their range:
the 16-bit modes by 65,535; 32-bit integer and float images (which have no nominal range) by the
smallest usual one that holds their values (1 for floats in [0, 1], 255, 65,535), else by their
own minimum and maximum.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_SIXTEEN_BITS = ("I;16", "I;16L", "I;16B", "I;16N")


def _to_eight_bits(values: np.ndarray, full_range: float | None) -> Image.Image:
    values = values.astype(np.float64)
    low, high = (0.0, full_range) if full_range else (float(values.min(initial=0)), float(values.max(initial=0)))
    scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _nominal_range(values: np.ndarray, floats: bool) -> float | None:
    """The smallest usual full range holding every value; None when none does (negative or very large values)."""
    if values.size and values.min() < 0:
        return None
    top = float(values.max(initial=0))
    candidates = (1.0, 255.0, 65535.0) if floats else (255.0, 65535.0)
    return next((r for r in candidates if top <= r), None)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB; high-depth greyscale scaled by its range, every other mode converted by PIL."""
    if image.mode in _SIXTEEN_BITS:
        image = _to_eight_bits(np.asarray(image), 65535.0)
    elif image.mode in ("I", "F"):
        values = np.asarray(image)
        image = _to_eight_bits(values, _nominal_range(values, floats=image.mode == "F"))
    return image if image.mode == "RGB" else image.convert("RGB")
