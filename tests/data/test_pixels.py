"""Deep images (16-bit PNG, 32-bit integer or float) read as what they show, not clipped to white."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.data.dataset import load_image
from pipeline.data.pixels import to_rgb

GRADIENT = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))  # 48 x 64, dark to light


def grey(image: Image.Image) -> np.ndarray:
    rgb = np.asarray(to_rgb(image))
    assert rgb.dtype == np.uint8 and rgb.shape[-1] == 3
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0].astype(int)


def test_a_16_bit_png_is_scaled_by_its_range(tmp_path):
    Image.fromarray(GRADIENT.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I;16")
        assert np.abs(grey(image) - GRADIENT).max() <= 1


STRETCHED = GRADIENT.astype(float) * 255 / GRADIENT.max()  # the gradient's own range spread over 0-255


@pytest.mark.parametrize(("values", "mode", "expected"), [
    (GRADIENT.astype(np.int32) * 257, "I", GRADIENT),  # a 16-bit image as older Pillow opens it
    (GRADIENT.astype(np.int32), "I", GRADIENT),  # 8-bit values in a 32-bit image
    (GRADIENT.astype(np.float32) / 255, "F", GRADIENT),  # a float image in [0, 1]
    (GRADIENT.astype(np.float32) * 1000 - 5000, "F", STRETCHED),  # no usual range: its own minimum and maximum
])
def test_32_bit_images_are_scaled_by_the_range_that_holds_their_values(values, mode, expected):
    image = Image.fromarray(values)
    assert image.mode == mode
    assert np.abs(grey(image) - expected).max() <= 1


def test_training_and_inference_read_a_16_bit_image_as_its_8_bit_twin(tmp_path):
    Image.fromarray(GRADIENT.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(GRADIENT).save(tmp_path / "plain.png")
    deep, plain = (load_image(tmp_path / name, 48, 64, 1.0) for name in ("deep.png", "plain.png"))
    assert (deep.int() - plain.int()).abs().max() <= 1


def test_ordinary_modes_are_converted_as_pil_does():
    for mode in ("L", "P", "RGBA", "LA", "CMYK", "1"):
        image = Image.new(mode, (4, 3))
        assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(image.convert("RGB")))
