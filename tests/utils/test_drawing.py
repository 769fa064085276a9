"""The pictures' labels: numbered badges that never overlap nor leave the image, legend lines that fit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from pipeline.utils.drawing import Labelled, annotate, fit_text, font, font_size, place_badges, text_width

rectangles = st.lists(st.tuples(st.integers(0, 150), st.integers(0, 110), st.integers(1, 160), st.integers(1, 120)),
                      min_size=1, max_size=14)


def _masks(shape: tuple[int, int], boxes) -> list[np.ndarray]:
    masks = []
    for y, x, h, w in boxes:
        mask = np.zeros(shape, bool)
        mask[y:y + h, x:x + w] = True
        masks.append(mask)
    return masks


@settings(max_examples=40, deadline=None)
@given(rectangles)
def test_badges_stay_inside_the_image_and_apart(boxes):
    masks = _masks((160, 120), boxes)
    placed = place_badges(masks, (22, 14))
    for x0, y0, x1, y1 in placed:
        assert x0 >= 0 and y0 >= 0 and x1 <= 120 and y1 <= 160
    for k, a in enumerate(placed):
        for b in placed[k + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_a_badge_sits_inside_its_mask_when_the_mask_has_room():
    mask = np.zeros((100, 100), bool)
    mask[60:90, 10:50] = True
    (x0, y0, x1, y1), = place_badges([mask], (20, 12))
    assert mask[y0:y1, x0:x1].all()


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=40), st.lists(st.text(min_size=1, max_size=20), max_size=8),
       st.integers(20, 300))
def test_fitted_text_never_runs_past_its_width(name, details, width):
    draw, face = ImageDraw.Draw(Image.new("RGB", (10, 10))), font(14)
    text = fit_text(draw, name, details, width, face)
    assert text_width(draw, text, face) <= width


def test_details_are_dropped_from_the_end_and_counted_before_the_name_is_cut():
    draw, face = ImageDraw.Draw(Image.new("RGB", (10, 10))), font(14)
    details = ("zip-up", "symmetrical", "no waistline", "floral")
    whole = fit_text(draw, "jacket 0.61", details, 1000, face)
    assert whole == "jacket 0.61: zip-up, symmetrical, no waistline, floral"
    shorter = fit_text(draw, "jacket 0.61", details, text_width(draw, "jacket 0.61: zip-up, +3", face), face)
    assert shorter == "jacket 0.61: zip-up, +3"
    assert fit_text(draw, "jacket 0.61", details, text_width(draw, "jacket 0.61", face), face) == "jacket 0.61"
    assert fit_text(draw, "jacket 0.61", details, text_width(draw, "jack…", face), face) == "jack…"


def test_annotate_adds_a_legend_line_per_item_in_a_font_that_grows_with_the_image():
    image = Image.new("RGB", (320, 200), "grey")
    items = [Labelled(m, k, f"item {k}", ("a", "b")) for k, m in enumerate(_masks((200, 320), [(0, 0, 50, 50)] * 3))]
    sheet = annotate(image, items, "title")
    line = font_size(320) + 6
    assert sheet.width == 320 and sheet.height == line + 200 + 3 * line + 4
    assert font_size(200) < font_size(600)
