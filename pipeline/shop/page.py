"""What the web page shows of a photo: the API's result as JSON with pictures inline, and the clear errors it may get.

The page (``page.html``, beside this module) posts the photo's bytes as they are and draws what comes back:
the overlay, the items with their attributes, and per item its most similar catalogue items as tiles.
Nothing is fetched from elsewhere: every picture travels inside the answer as a PNG data URL.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources

from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.shop.model import FashionModel
from pipeline.shop.photos import DECODE_ERRORS, PHOTO_FORMATS
from pipeline.utils.errors import PipelineError

PAGE = resources.files("pipeline.shop") / "page.html"


class Refused(PipelineError):
    """A request the page answers with a message: ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Limits:
    """What the page accepts: the photo's bytes and pixels, and how many photos may wait while one is segmented."""

    max_bytes: int = 20 * 2**20
    max_pixels: int = 100_000_000
    max_waiting: int = 4


@dataclass
class PhotoDesk:
    """The model behind the page: one photo at a time, at most ``limits.max_waiting`` more in the queue; a photo
    takes its place in the queue before its bytes are read, and one that finds the queue full is refused."""

    model: FashionModel
    limits: Limits
    k: int = 6  # similar items shown per item
    no_similar: str | None = field(init=False, default=None)  # why no similar items are shown
    _model_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    _count_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    _in_flight: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        try:
            self.model.check_catalogue()
        except PipelineError as exc:
            self.no_similar = str(exc)

    @contextmanager
    def place(self) -> Iterator[None]:
        """A place in the queue for one photo (the one segmented counts), or :class:`Refused` (503) at once."""
        with self._count_lock:
            if self._in_flight > self.limits.max_waiting:
                raise Refused(503, f"busy: {self._in_flight} photos are being segmented or wait; try again in a "
                                   "moment")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._in_flight -= 1

    def answer(self, data: bytes, name: str) -> dict:
        """The page's JSON for a photo's bytes (its place in the queue taken); :class:`Refused` for what is not a
        photo or is too large."""
        if len(data) > self.limits.max_bytes:
            raise self.too_large(name, len(data))
        image = decode(data, name, self.limits.max_pixels)
        with self._model_lock:
            return self._segmented(image, name)

    def too_large(self, name: str, size: int | None) -> Refused:
        """The refusal of a photo of ``size`` bytes (None: more than the limit, its size untold)."""
        said = f"{megabytes(size)} MB" if size is not None else "too large"
        return Refused(413, f"{name}: {said}; the page takes photos of up to {megabytes(self.limits.max_bytes)} MB")

    def _segmented(self, image: Image.Image, name: str) -> dict:
        started = time.perf_counter()
        result = self.model(image, name)
        items = [{"category": item.category, "attributes": list(item.attributes), "score": item.score,
                  "box": list(item.box)} for item in result.items]
        answer = {"photo": name, "width": result.photo.width, "height": result.photo.height,
                  "family": self.model.family,
                  "overlay": data_url(result.plot()), "items": items, "similar": None}
        if self.no_similar is None and result.found:
            similar = result.similar(self.k)
            answer["similar"] = [[{**match, "tile": data_url(tile)} for match, tile in zip(matches, row[1:],
                                                                                           strict=True)]
                                 for matches, row in zip(similar.matches, similar.rows(), strict=True)]
        answer["ms"] = round((time.perf_counter() - started) * 1000)
        return answer


def decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """The uploaded photo, upright; :class:`Refused` (400 or 413) naming it for anything else. Only photo formats
    are opened (no PostScript, whose reader would run Ghostscript), and the size is checked before decoding."""
    if not data:
        raise Refused(400, f"{name}: the file is empty")
    too_many = Refused(413, f"{name}: more than {max_pixels / 1e6:.0f} megapixels; the page takes photos of up to "
                            f"{max_pixels / 1e6:.0f} megapixels")
    try:
        with Image.open(io.BytesIO(data), formats=PHOTO_FORMATS) as opened:
            if opened.width * opened.height > max_pixels:
                raise Refused(413, f"{name}: {opened.width} x {opened.height} pixels; the page takes photos of up "
                                   f"to {max_pixels / 1e6:.0f} megapixels")
            opened.load()
            return ImageOps.exif_transpose(opened)
    except UnidentifiedImageError as exc:
        raise Refused(400, f"{name}: not an image ({', '.join(PHOTO_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:  # PIL's own limit, before the header is read
        raise too_many from exc
    except DECODE_ERRORS as exc:
        raise Refused(400, f"{name}: not an image the page can read ({exc})") from exc


def megabytes(size: int) -> str:
    """``20``, ``0.3``: a size in MB as a person says it."""
    return f"{round(size / 2**20, 1):g}"


def data_url(image: Image.Image) -> str:
    """A picture inline in JSON: ``data:image/png;base64,...``."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

