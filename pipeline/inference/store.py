"""Raw predictions on disk: one parquet row per detection, written in resumable parts.

A prediction folder holds ``manifest.json`` (what made it: checkpoint digest, views, params),
``images.csv`` (every predicted image with its original size, including those without any
detection) and ``detections.parquet``. While it runs, finished parts of ``part_size`` images
sit in ``parts/``; after an interruption a run with the same manifest skips them.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.inference.detections import Detections, ImageRecord
from pipeline.models.contract import MaskFormat
from pipeline.utils.errors import PipelineError
from pipeline.utils.io import as_json, atomic_path, write_json

MANIFEST, IMAGES, DETECTIONS, PARTS = "manifest.json", "images.csv", "detections.parquet", "parts"
log = logging.getLogger(__name__)


class PredictionsError(PipelineError):
    """A prediction folder that is missing, incomplete or made for something else."""


def _table(image_ids: list[str], detections: list[Detections], mask_format: MaskFormat, num_attributes: int,
           ) -> pa.Table:
    counts = [len(d) for d in detections]
    merged = Detections.concat(detections, mask_format.size, num_attributes, mask_format.kind)
    return pa.table({
        "image_id": pa.array(np.repeat(np.asarray(image_ids, dtype=object), counts).tolist(), pa.string()),
        "view": pa.array(merged.views, pa.int8()),
        "category": pa.array(merged.categories, pa.int16()),
        "score": pa.array(merged.scores, pa.float32()),
        **{name: pa.array(merged.boxes[:, k], pa.float32()) for k, name in enumerate(("x1", "y1", "x2", "y2"))},
        "mask": pa.array([m.tobytes() for m in merged.masks], pa.binary()),
        "attributes": pa.array([a.tobytes() for a in merged.attributes], pa.binary()),
    })


def _mask_format(manifest: dict) -> MaskFormat:
    return MaskFormat(**manifest["mask_format"])


@dataclass(frozen=True)
class Predictions:
    """A finished prediction folder, read back."""

    manifest: dict
    images: list[ImageRecord]
    detections: pd.DataFrame

    @property
    def mask_format(self) -> MaskFormat:
        return _mask_format(self.manifest)

    @property
    def num_attributes(self) -> int:
        return int(self.manifest["num_attributes"])

    @property
    def views(self) -> list[str]:
        return list(self.manifest["views"])

    def require(self, records: list[ImageRecord], source: Path | str) -> None:
        """Raise :class:`PredictionsError` unless every image of ``records`` was predicted."""
        predicted = {r.image_id for r in self.images}
        if missing := [r.image_id for r in records if r.image_id not in predicted]:
            raise PredictionsError(f"{source}: no predictions for {len(missing)} image(s), e.g. {missing[0]}; "
                                   "rerun stage predict without --limit")

    def by_image(self) -> dict[str, Detections]:
        """Detections of every image (empty ones included), masks as (N, M, M) and attributes as (N, A) uint8."""
        fmt, a = self.mask_format, self.num_attributes
        m = fmt.size
        result = {r.image_id: Detections.empty(m, a, fmt.kind) for r in self.images}
        for image_id, group in self.detections.groupby("image_id", sort=False):
            masks = np.frombuffer(b"".join(group["mask"]), np.uint8).reshape(len(group), m, m)
            attributes = np.frombuffer(b"".join(group["attributes"]), np.uint8).reshape(len(group), a)
            result[image_id] = Detections(group[["x1", "y1", "x2", "y2"]].to_numpy(np.float32),
                                          group["score"].to_numpy(np.float32), group["category"].to_numpy(np.int16),
                                          group["view"].to_numpy(np.int8), masks, attributes, fmt.kind)
        return result


def read(folder: Path | str) -> Predictions:
    folder = Path(folder)
    missing = [name for name in (MANIFEST, IMAGES, DETECTIONS) if not (folder / name).is_file()]
    if missing:
        raise PredictionsError(f"{folder}: not a finished prediction folder (missing {', '.join(missing)}); "
                               "run stage predict")
    manifest = json.loads((folder / MANIFEST).read_text())
    images = pd.read_csv(folder / IMAGES, dtype={"image_id": str})
    records = [ImageRecord(str(i), int(h), int(w)) for i, h, w in images[["image_id", "height", "width"]].itertuples(
        index=False)]
    return Predictions(manifest, records, pd.read_parquet(folder / DETECTIONS))


def write(folder: Path | str, key: dict, records: list[ImageRecord], mask_format: MaskFormat, num_attributes: int,
          views: list[str],
          predict: Callable[[list[ImageRecord]], Iterable[tuple[list[ImageRecord], list[Detections]]]],
          part_size: int, description: str = "predict") -> Predictions:
    """Predict ``records`` in parts and consolidate; resume from finished parts made with the same ``key``.

    ``predict`` receives the records still to do, and yields (records, detections) batches in
    any grouping; parts are cut from that stream every ``part_size`` images.
    """
    folder = Path(folder)
    # Compared as it reads back from the file: a key holding tuples would otherwise never match its stored copy.
    manifest = as_json({"key": key, "views": views, "mask_format": asdict(mask_format),
                        "num_attributes": num_attributes,
                        "images": len(records)})
    if _stored(folder / MANIFEST) == manifest and (folder / DETECTIONS).is_file():
        log.info("%s: up to date (%d images), nothing to predict", folder, len(records))
        return read(folder)
    parts = folder / PARTS
    state = parts / "key.json"
    if _stored(state) != manifest:
        if folder.exists():
            shutil.rmtree(folder)
        parts.mkdir(parents=True)
        write_json(state, manifest)
    done = _finished_parts(parts)
    done_ids = {image_id for ids in done.values() for image_id in ids}
    todo = [r for r in records if r.image_id not in done_ids]
    if done_ids:
        log.info("%s: resuming, %d of %d images already predicted", folder, len(records) - len(todo), len(records))
    progress = tqdm(total=len(records), initial=len(records) - len(todo), desc=description, unit="img")
    pending_ids: list[ImageRecord] = []
    pending: list[Detections] = []
    number = max(done, default=-1) + 1
    # Parts are written by a thread while the model predicts the next images (pyarrow releases the GIL);
    # one part in flight at most, and its errors surface here.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="predictions-writer") as writer:
        in_flight: Future | None = None
        for batch_records, batch in predict(todo):
            pending_ids += batch_records
            pending += batch
            progress.update(len(batch_records))
            while len(pending_ids) >= part_size:
                in_flight = _next_part(writer, in_flight, parts, number, pending_ids[:part_size], pending[:part_size],
                                       manifest)
                pending_ids, pending, number = pending_ids[part_size:], pending[part_size:], number + 1
        if pending_ids:
            in_flight = _next_part(writer, in_flight, parts, number, pending_ids, pending, manifest)
        if in_flight is not None:
            in_flight.result()
    progress.close()
    return _consolidate(folder, manifest, records)


def _next_part(writer: ThreadPoolExecutor, in_flight: Future | None, parts: Path, number: int,
               records: list[ImageRecord], detections: list[Detections], manifest: dict) -> Future:
    """Wait for the part being written (raising its error), then start writing this one."""
    if in_flight is not None:
        in_flight.result()
    return writer.submit(_write_part, parts, number, records, detections, manifest)


def _stored(path: Path) -> object:
    """The JSON in ``path``; None when there is none or it cannot be read (a fresh start follows)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _finished_parts(parts: Path) -> dict[int, list[str]]:
    """Part number -> its image ids, for parts whose id list (written last) exists."""
    return {int(path.stem.split("-")[1]): json.loads(path.read_text()) for path in sorted(parts.glob("part-*.json"))}


def _write_part(parts: Path, number: int, records: list[ImageRecord], detections: list[Detections],
                manifest: dict) -> None:
    name = f"part-{number:05d}"
    with atomic_path(parts / f"{name}.parquet") as tmp:
        pq.write_table(_table([r.image_id for r in records], detections, _mask_format(manifest),
                              manifest["num_attributes"]), tmp)
    write_json(parts / f"{name}.json", [r.image_id for r in records])  # marks the part finished


def _consolidate(folder: Path, manifest: dict, records: list[ImageRecord]) -> Predictions:
    parts = folder / PARTS
    done = _finished_parts(parts)
    predicted = {image_id for ids in done.values() for image_id in ids}
    if missing := [r.image_id for r in records if r.image_id not in predicted]:
        raise PredictionsError(f"{folder}: {len(missing)} image(s) were not predicted, e.g. {missing[0]}")
    tables = [pq.read_table(parts / f"part-{n:05d}.parquet") for n in sorted(done)]
    table = pa.concat_tables(tables) if tables else _table([], [], _mask_format(manifest), manifest["num_attributes"])
    with atomic_path(folder / DETECTIONS) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    with atomic_path(folder / IMAGES) as tmp:
        pd.DataFrame([vars(r) for r in records], columns=["image_id", "height", "width"]).to_csv(tmp, index=False)
    write_json(folder / MANIFEST, manifest)  # last: its presence marks the folder finished
    shutil.rmtree(parts)
    return read(folder)
