"""The figures of the synthetic dataset: garments of real categories, drawn as shapes on a body.

Every category has its own colour and a shape and place on the body, so a model can learn it.
Garments of categories 0-12 carry a visible textile pattern and length, and on a share of the
images the matching attribute ids. Parts overlap their garment; outer layers hide what they cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

# Fixed colour per category (RGB), distinct, so that colour alone tells most classes apart.
COLOURS = {
    0: (235, 235, 245), 1: (230, 60, 60), 2: (60, 120, 200), 3: (150, 90, 40), 4: (40, 40, 60),
    5: (240, 180, 40), 6: (40, 70, 140), 7: (120, 200, 120), 8: (200, 60, 160), 9: (120, 120, 100),
    10: (180, 40, 90), 11: (60, 160, 160), 12: (110, 50, 160), 13: (20, 20, 20), 14: (160, 110, 60),
    15: (255, 120, 200), 18: (200, 200, 210), 19: (90, 50, 20), 23: (30, 30, 30), 24: (210, 140, 70),
    25: (250, 210, 120), 42: (210, 190, 90),
    # Drawn by the real profile only (pipeline.data.synthetic_real), each as far as could be from the others.
    16: (0, 255, 0), 17: (0, 255, 255), 20: (0, 0, 255), 21: (135, 255, 0), 22: (255, 0, 255), 26: (0, 255, 120),
    27: (0, 150, 60), 29: (135, 0, 255), 30: (105, 255, 225), 34: (165, 105, 255), 35: (90, 165, 0),
    36: (180, 0, 0), 37: (0, 165, 255), 38: (60, 225, 60), 39: (255, 0, 120), 40: (225, 255, 0), 41: (0, 0, 165),
    43: (105, 165, 255), 44: (180, 255, 150), 45: (75, 60, 255),
}
_SKIN = ((240, 200, 170), (200, 150, 110), (140, 95, 65), (95, 60, 40))

# Attribute ids (label_descriptions.json) that the drawing makes visible.
_PATTERNS = {"plain": 61, "stripe": 72, "dot": 67, "check": 66}
_PATTERN_ODDS = (0.55, 0.15, 0.15, 0.15)
# Width factors of the fit. Drawn, not labelled: the fit attributes (40-42) need the garment's width relative
# to the body, too subtle at the demo's 192 px for a model trained on 64 images to learn.
_FIT = (0.85, 1.0, 1.2)
_SYMMETRICAL, _NO_TECHNIQUE, _NORMAL_WAIST = 20, 60, 88
_SINGLE_BREASTED, _ZIP_UP, _FLY, _NO_OPENING = 10, 14, 15, 18
# Hem height in body units (head top = 0, soles = 8) and its length attribute: few lengths, far apart,
# so that the demo's few garments per length suffice to learn them.
_UPPER_HEMS = ((3.4, 0), (4.0, 1))
_SKIRT_HEMS = ((4.6, 3), (5.8, 5), (7.3, 8))
_COAT_HEMS = ((5.3, 4), (6.8, 7))


@dataclass(frozen=True)
class Style:
    """The odds of what a figure wears: the demo's (the defaults), or the real profile's.

    A choice among options draws one of them uniformly: an option given twice is twice as likely.
    The odds the demo never uses (``top_pocket``, ``sleeveless`` at 0; ``neckline``, ``lower`` at 1)
    take no random draw there, so that the demo's images stay the bytes they were.
    """

    whole: float = 0.3  # a dress or a jumpsuit rather than a top and a bottom
    dress: float = 0.7  # of those, a dress
    dress_sleeves: tuple[float, ...] = (0.0, 0.3)
    tops: tuple[int, ...] = (0, 1, 2, 3, 5)
    lowers: tuple[int, ...] = (6, 6, 7, 8)
    outer: float = 0.35
    outers: tuple[int, ...] = (4, 9, 9, 12)
    pants_pocket: float = 0.5
    outer_pocket: float = 0.6
    top_pocket: float = 0.0
    sleeveless: float = 0.0  # a top's sleeves left off
    neckline: float = 1.0
    lower: float = 1.0  # a bottom under a top
    belt: float = 0.35
    rivets: float = 0.15
    shoes: float = 0.9
    hat: float = 0.25
    headband: float = 0.15  # when no hat
    glasses: float = 0.25
    bag: float = 0.3
    watch: float = 0.15
    scarf: float = 0.1


DEMO_STYLE = Style()


@dataclass
class Piece:
    """An instance before occlusion: its category, shape, look and drawing layer."""

    category: int | None  # None: skin, drawn but not annotated
    shape: np.ndarray
    colour: np.ndarray
    layer: float
    pattern: str = "plain"
    attributes: tuple[int, ...] = ()
    parts: list[Piece] = field(default_factory=list)


class Figure:
    """Draws shapes in body units: x from the figure's centre line, y from the top of its head."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, centre: float, unit: float, top: float):
        self.rng, self.height, self.width = rng, height, width
        self.cx, self.unit, self.top = centre, unit, top

    def _xy(self, points) -> list[tuple[float, float]]:
        return [(self.cx + x * self.unit, self.top + y * self.unit) for x, y in points]

    def _canvas(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        image = Image.new("1", (self.width, self.height), 0)
        return image, ImageDraw.Draw(image)

    def polygons(self, *polygons, mirror: bool = False) -> np.ndarray:
        """Union of polygons (lists of (x, y) in units); ``mirror`` adds each one's mirror image."""
        image, draw = self._canvas()
        for points in polygons:
            draw.polygon(self._xy(points), fill=1)
            if mirror:
                draw.polygon(self._xy([(-x, y) for x, y in points]), fill=1)
        return np.array(image, dtype=bool)

    def ellipses(self, *boxes: tuple[float, float, float, float]) -> np.ndarray:
        """Union of ellipses given as (centre x, centre y, radius x, radius y) in units."""
        image, draw = self._canvas()
        for x, y, rx, ry in boxes:
            (x0, y0), (x1, y1) = self._xy([(x - rx, y - ry), (x + rx, y + ry)])
            draw.ellipse((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)), fill=1)
        return np.array(image, dtype=bool)

    def colour(self, category: int, spread: float = 0.12) -> np.ndarray:
        base = np.array(COLOURS[category], dtype=np.float32)
        return np.clip(base * self.rng.uniform(1 - spread, 1 + spread), 0, 255)


def _band(start: tuple[float, float], end: tuple[float, float], width: float, stop: float = 1.0):
    """Quadrilateral of ``width`` units along the segment start→end, cut at fraction ``stop``."""
    (x0, y0), (x1, y1) = start, end
    x1, y1 = x0 + (x1 - x0) * stop, y0 + (y1 - y0) * stop
    dx, dy = x1 - x0, y1 - y0
    norm = max(np.hypot(dx, dy), 1e-6)
    ox, oy = -dy / norm * width / 2, dx / norm * width / 2
    return [(x0 + ox, y0 + oy), (x1 + ox, y1 + oy), (x1 - ox, y1 - oy), (x0 - ox, y0 - oy)]


_SHOULDER, _WRIST = (1.0, 1.35), (1.4, 4.2)
_HIP, _ANKLE = (0.45, 4.1), (0.5, 7.6)


def _arm_bands(stop: float, width: float) -> list[list]:
    """Left and right bands along the arms, from the shoulder to fraction ``stop`` of the way to the wrist."""
    return [_band((side * _SHOULDER[0], _SHOULDER[1]), (side * _WRIST[0], _WRIST[1]), width, stop) for side in (-1, 1)]


def _sleeves(fig: Figure, garment: Piece, stop: float, width: float) -> list[Piece]:
    """Left and right sleeve instances (category 31), in the cloth of the garment that owns them."""
    return [Piece(31, fig.polygons(band), garment.colour * 0.93, garment.layer + 0.1, garment.pattern)
            for band in _arm_bands(stop, width)]


def _body(fig: Figure, rng: np.random.Generator) -> list[Piece]:
    """Skin: head, neck, arms, hands and legs, under everything."""
    skin = np.array(_pick(rng, _SKIN), dtype=np.float32)
    neck = [(-0.15, 0.8), (0.15, 0.8), (0.2, 1.3), (-0.2, 1.3)]
    shape = fig.polygons(*_arm_bands(1.0, 0.3), _band(_HIP, _ANKLE, 0.4), neck, _upper(4.2, 0.95), mirror=True)
    hand = (_WRIST[0], _WRIST[1] + 0.1, 0.15, 0.2)
    shape |= fig.ellipses((0.0, 0.5, 0.36, 0.48), hand, (-hand[0], *hand[1:]))
    return [Piece(None, shape, skin, 0.0)]


def _garment_attributes(length: int | None, pattern: str, opening: int, *extra: int) -> tuple[int, ...]:
    ids = {_SYMMETRICAL, _NO_TECHNIQUE, _PATTERNS[pattern], opening, *extra}
    if length is not None:
        ids.add(length)
    return tuple(sorted(ids))


def _lighter(colour: np.ndarray) -> np.ndarray:
    """The colour of a collar on its garment."""
    return np.minimum(colour * 1.25 + 20, 255)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _upper(hem: float, fit: float) -> list:
    return [(-0.3, 1.15), (0.3, 1.15), (1.0, 1.3), (0.8 * fit, 2.4), (0.72 * fit, 3.0), (0.85 * fit, hem),
            (-0.85 * fit, hem), (-0.72 * fit, 3.0), (-0.8 * fit, 2.4), (-1.0, 1.3)]


def _skirt(hem: float, fit: float) -> list:
    flare = (0.85 + 0.12 * (hem - 3.0)) * fit
    return [(-0.72, 3.0), (0.72, 3.0), (flare, hem), (-flare, hem)]


def _legs(hem: float, fit: float) -> tuple[list, list]:
    hips = [(-0.72, 3.0), (0.72, 3.0), (0.9 * fit, 4.2), (-0.9 * fit, 4.2)]
    return hips, _band(_HIP, (_ANKLE[0], hem), 0.58 * fit)


def _sleeved(fig: Figure, outline: list, sleeve: float, width: float) -> np.ndarray:
    return fig.polygons(outline, *(_arm_bands(sleeve, width) if sleeve else []))


def dress_figure(fig: Figure, rng: np.random.Generator, attributed: bool, style: Style = DEMO_STYLE) -> list[Piece]:
    """One figure's pieces: skin, garments with their parts, and accessories."""
    pieces = _body(fig, rng)

    def add(category: int, shape: np.ndarray, layer: float, pattern: str = "plain",
            attributes: tuple[int, ...] = ()) -> Piece:
        piece = Piece(category, shape, fig.colour(category), layer, pattern, attributes if attributed else ())
        pieces.append(piece)
        return piece

    def draw_pattern() -> str:
        return str(rng.choice(list(_PATTERNS), p=_PATTERN_ODDS))

    fit = _pick(rng, _FIT)
    pattern = draw_pattern()
    whole = rng.random() < style.whole
    if whole and rng.random() < style.dress:
        hem, length = _pick(rng, _SKIRT_HEMS)
        sleeve = _pick(rng, style.dress_sleeves)
        top = add(10, fig.polygons(_skirt(hem, fit)) | _sleeved(fig, _upper(3.1, fit), sleeve, 0.5), 2.0, pattern,
                  _garment_attributes(length, pattern, _NO_OPENING, _NORMAL_WAIST))
    elif whole:
        hips, leg = _legs(_ANKLE[1], fit)
        sleeve = 1.0
        top = add(11, fig.polygons(hips, leg, mirror=True) | _sleeved(fig, _upper(3.1, fit), sleeve, 0.5), 2.0,
                  pattern, _garment_attributes(None, pattern, _ZIP_UP))
    else:
        category = _pick(rng, style.tops)
        hem, length = _pick(rng, _UPPER_HEMS)
        sleeve = {0: 1.0, 1: 0.3, 2: 1.0, 3: 1.0, 5: 0.0}[category]
        if style.sleeveless and rng.random() < style.sleeveless:
            sleeve = 0.0
        opening = _SINGLE_BREASTED if category in (0, 3, 5) else _NO_OPENING
        top = add(category, _sleeved(fig, _upper(hem, fit), sleeve, 0.5), 2.0, pattern,
                  _garment_attributes(length, pattern, opening))
        if style.lower == 1.0 or rng.random() < style.lower:
            _lower_body(fig, rng, add, draw_pattern(), style)
    if sleeve:
        top.parts += _sleeves(fig, top, sleeve, 0.5)
    if style.neckline == 1.0 or rng.random() < style.neckline:
        top.parts.append(Piece(33, fig.polygons([(-0.3, 1.15), (0.3, 1.15), (0.0, 1.65)]), top.colour * 0.75, 2.2))
    if style.top_pocket and rng.random() < style.top_pocket:
        pocket = fig.polygons([(0.3, 1.9), (0.6, 1.9), (0.6, 2.2), (0.3, 2.2)])
        top.parts.append(Piece(32, pocket, top.colour * 0.8, 2.2))
    if rng.random() < style.outer:
        _outerwear(fig, rng, add, fit, style)
    _accessories(fig, rng, add, style)
    return pieces


def _lower_body(fig: Figure, rng: np.random.Generator, add, pattern: str, style: Style) -> None:
    """Trousers, shorts or a skirt, with a pocket or a belt now and then."""
    category = _pick(rng, style.lowers)
    fit = _pick(rng, _FIT)
    if category == 8:
        hem, length = _pick(rng, _SKIRT_HEMS)
        shape, opening = fig.polygons(_skirt(hem, fit)), _NO_OPENING
    else:
        hem, length = (_ANKLE[1], None) if category == 6 else (5.0, None)
        hips, leg = _legs(hem, fit)
        shape, opening = fig.polygons(hips, leg, mirror=True), _FLY
    bottom = add(category, shape, 1.0, pattern, _garment_attributes(length, pattern, opening))
    if category == 6 and rng.random() < style.pants_pocket:
        pocket = fig.polygons([(0.35, 3.4), (0.7, 3.4), (0.7, 3.75), (0.4, 3.75)])
        bottom.parts.append(Piece(32, pocket, bottom.colour * 0.8, 1.1))
    if rng.random() < style.belt:
        add(19, fig.polygons([(-0.76, 2.92), (0.76, 2.92), (0.76, 3.18), (-0.76, 3.18)]), 2.5)
    if rng.random() < style.rivets:
        for x in (-0.4, -0.5):
            add(42, fig.ellipses((x, 4.6, 0.05, 0.05)), 1.2)


def _outerwear(fig: Figure, rng: np.random.Generator, add, fit: float, style: Style) -> None:
    """A cape, or an open jacket or coat with sleeves, collar and maybe a pocket."""
    category = _pick(rng, style.outers)
    if category == 12:
        add(12, fig.polygons([(-0.3, 1.1), (0.3, 1.1), (1.7, 4.4), (-1.7, 4.4)]), 4.0, "plain",
            _garment_attributes(None, "plain", _NO_OPENING))
        return
    hem, length = (4.1, 1) if category == 4 else _pick(rng, _COAT_HEMS)
    panel = [(-0.32, 1.12), (-0.14, 1.8), (-0.14, hem), (-1.0 * fit, hem), (-0.85 * fit, 3.0), (-1.08, 1.28)]
    outer = add(category, fig.polygons(panel, _arm_bands(1.0, 0.6)[0], mirror=True), 4.0, "plain",
                _garment_attributes(length, "plain", _SINGLE_BREASTED))
    outer.parts += _sleeves(fig, outer, 1.0, 0.6)
    collar = fig.polygons([(-0.32, 1.1), (-0.12, 1.9), (-0.5, 1.45)], mirror=True)
    outer.parts.append(Piece(28, collar, _lighter(outer.colour), 4.2))
    if rng.random() < style.outer_pocket:
        pocket = fig.polygons([(0.4, 3.3), (0.8, 3.3), (0.8, 3.6), (0.4, 3.6)])
        outer.parts.append(Piece(32, pocket, outer.colour * 0.7, 4.2))


def _accessories(fig: Figure, rng: np.random.Generator, add, style: Style) -> None:
    """Shoes, headwear, glasses, a bag, a watch and a scarf, each at its own place and rate."""
    if rng.random() < style.shoes:
        for side in (-1, 1):
            add(23, fig.ellipses((side * 0.55, 7.82, 0.32, 0.18)), 1.5)
    if rng.random() < style.hat:
        add(14, fig.ellipses((0.0, 0.12, 0.75, 0.12), (0.0, -0.05, 0.42, 0.22)), 6.0)
    elif rng.random() < style.headband:
        add(15, fig.polygons(_band((-0.42, 0.3), (0.42, 0.3), 0.12)), 6.0)
    if rng.random() < style.glasses:
        add(13, fig.ellipses((-0.17, 0.48, 0.12, 0.08), (0.17, 0.48, 0.12, 0.08)), 6.0)
    if rng.random() < style.bag:
        side = _pick(rng, (-1, 1))
        add(24, fig.polygons([(side * 1.35, 3.6), (side * 2.0, 3.6), (side * 2.1, 4.5), (side * 1.3, 4.5)]), 6.0)
    if rng.random() < style.watch:
        add(18, fig.polygons(_band((-1.32, 3.95), (-1.38, 4.1), 0.32)), 5.0)
    if rng.random() < style.scarf:
        add(25, fig.polygons(_band((-0.35, 1.2), (0.35, 1.2), 0.25), _band((0.2, 1.2), (0.3, 2.6), 0.22)), 5.0)


def _first(pieces: list[Piece], categories: tuple[int, ...]) -> Piece | None:
    return next((piece for piece in pieces if piece.category in categories), None)


def rare_items(fig: Figure, rng: np.random.Generator, pieces: list[Piece], odds: dict[int, float]) -> None:
    """What the demo's figures never wear, each category at its ``odds`` per figure: tights, socks, leg
    warmers, gloves, a tie and an umbrella; a hood, lapels and epaulettes on the outer garment; a shirt's collar."""
    def chance(category: int) -> bool:
        return rng.random() < odds.get(category, 0.0)

    def wear(category: int, shape: np.ndarray, layer: float) -> None:
        pieces.append(Piece(category, shape, fig.colour(category), layer))

    if chance(21):
        wear(21, fig.polygons(_band(_HIP, _ANKLE, 0.44), mirror=True), 0.5)
    for category, (start, stop, width, layer) in ((22, (7.0, 7.75, 0.36, 1.4)), (20, (6.2, 7.4, 0.5, 1.3))):
        if chance(category):
            for side in (-1, 1):
                wear(category, fig.polygons(_band((side * _ANKLE[0], start), (side * _ANKLE[0], stop), width)), layer)
    if chance(17):
        for side in (-1, 1):
            wear(17, fig.ellipses((side * _WRIST[0], _WRIST[1] + 0.1, 0.2, 0.26)), 5.5)
    if chance(16):
        wear(16, fig.polygons([(-0.08, 1.3), (0.08, 1.3), (0.14, 2.9), (0.0, 3.1), (-0.14, 2.9)]), 2.3)
    if chance(26):
        wear(26, fig.ellipses((1.3, -0.2, 1.9, 0.55)) | fig.polygons(_band((1.3, -0.2), (1.3, 3.9), 0.08)), 7.0)
    outer, top = _first(pieces, (4, 9)), _first(pieces, (0, 1, 2, 3, 4, 9, 10, 11))

    def attach(host: Piece | None, category: int, shape: np.ndarray) -> None:
        if host is not None:
            colour = fig.colour(category) if category in COLOURS else _lighter(host.colour)
            host.parts.insert(0, Piece(category, shape, colour, host.layer + 0.2))  # first: painted last, on top

    if chance(27):
        attach(outer or top, 27, fig.polygons([(-0.62, 0.95), (0.62, 0.95), (0.45, 1.4), (-0.45, 1.4)]))
    if chance(29):
        attach(outer, 29, fig.polygons([(-0.3, 1.2), (-0.12, 2.3), (-0.5, 1.75)], mirror=True))
    if chance(30) and outer is not None:
        for side in (-1, 1):
            attach(outer, 30, fig.polygons(_band((side * 0.55, 1.2), (side * 1.05, 1.32), 0.16)))
    if chance(28) and top is not None and top.category == 0:
        attach(top, 28, fig.polygons([(-0.3, 1.1), (-0.05, 1.6), (-0.45, 1.4)], mirror=True))


def occlude(pieces: list[Piece]) -> list[tuple[Piece, np.ndarray]]:
    """Visible mask of every piece and part, from the top down: hidden where a higher piece covers it.

    A piece's parts lie on it and do not hide it; of two pieces on one layer, the later one is on top.
    """
    visible = []
    cover = np.zeros_like(pieces[0].shape)
    for _, piece in sorted(enumerate(pieces), key=lambda item: (item[1].layer, item[0]), reverse=True):
        for item in (*piece.parts, piece):
            visible.append((item, item.shape & ~cover))
        cover = cover | piece.shape
        for part in piece.parts:
            cover |= part.shape
    return visible


def figure_centre(rng: np.random.Generator, width: int, k: int, figures: int) -> float:
    """The centre line of figure ``k`` of ``figures``: in the middle of its slot of the width, give or take."""
    slot = (k + 0.5) / figures
    return width * slot + rng.uniform(-0.08, 0.08) * width / figures


def scene(rng: np.random.Generator, height: int, width: int, attributed: bool) -> list[Piece]:
    figures = 2 if width > 1.2 * height and rng.random() < 0.5 else 1
    close_up = rng.random() < 0.2
    pieces: list[Piece] = []
    for k in range(figures):
        unit = height / (rng.uniform(5.0, 6.0) if close_up else rng.uniform(8.3, 9.2)) / (1.15 if figures > 1 else 1.0)
        centre = figure_centre(rng, width, k, figures)
        top = rng.uniform(0.02, 0.06) * height
        pieces += dress_figure(Figure(rng, height, width, centre, unit, top), rng, attributed)
    return pieces
