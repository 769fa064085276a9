"""Raw predictions on disk: one parquet row per detection, written in resumable parts.

A prediction folder holds ``manifest.json`` (what made it: checkpoint digest, family, views,
params; the size and digest of the two other files), ``images.csv`` (every predicted image with
its original size, including those without any detection) and ``detections.parquet``. While it
runs, finished parts of ``part_size`` images sit in ``parts/``, each with a record of its
parquet's size and digest; after an interruption a run with the same manifest keeps the parts
that pass that check and predicts the others again. Readers check the finished files the same
way, so a damaged folder is an error that names it, and the next run of stage predict redoes it.
"""

from __future__ import annotations

import logging
import re
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
from pipeline.utils.fingerprint import file_record, record_problem
from pipeline.utils.io import as_json, atomic_path, write_json
from pipeline.utils.lock import exclusive
from pipeline.utils.tables import stored_json

MANIFEST, IMAGES, DETECTIONS, PARTS = "manifest.json", "images.csv", "detections.parquet", "parts"
_MANIFEST_KEYS = {"key", "family", "views", "mask_format", "num_attributes", "images", "limit", "files"}
_PART = re.compile(r"part-(\d+)\.json")
log = logging.getLogger(__name__)


class PredictionsError(PipelineError):
    """A prediction folder that is missing, incomplete or made for something else."""


def _table(image_ids: list[str], detections: list[Detections], manifest: dict) -> pa.Table:
    counts, fmt = [len(d) for d in detections], _mask_format(manifest)
    merged = Detections.concat(detections, fmt.size, manifest["num_attributes"], fmt.kind, len(manifest["views"]))
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
class Made:
    """What a prediction folder is made with and for: its manifest, less the record of its files."""

    key: dict  # what the detections depend on (``pipeline.inference.predict.prediction_key``)
    family: str  # the model family that predicted them; a tuned file is checked against it
    views: list[str]
    mask_format: MaskFormat
    num_attributes: int
    limit: int | None = None  # stage predict's --limit: a smoke run of the first images, which no reader accepts

    def manifest(self, images: int) -> dict:
        """As it reads back from the file: a key holding tuples would otherwise never match its stored copy."""
        return as_json({"key": self.key, "family": self.family, "views": self.views,
                        "mask_format": asdict(self.mask_format), "num_attributes": self.num_attributes,
                        "images": images, "limit": self.limit})


@dataclass(frozen=True)
class Predictions:
    """A finished prediction folder, read back: its manifest and image list; the detections stay on disk until
    :meth:`by_image` reads them (all of them, or those of a sample)."""

    manifest: dict
    images: list[ImageRecord]
    folder: Path

    @property
    def mask_format(self) -> MaskFormat:
        return _mask_format(self.manifest)

    @property
    def num_attributes(self) -> int:
        return int(self.manifest["num_attributes"])

    @property
    def views(self) -> list[str]:
        """The TTA views' names, in the order of the detections' view numbers; the first is the plain view."""
        return list(self.manifest["views"])

    @property
    def n_views(self) -> int:
        return len(self.manifest["views"])

    @property
    def family(self) -> str:
        return str(self.manifest["family"])

    @property
    def detection_count(self) -> int:
        return pq.ParquetFile(self.folder / DETECTIONS).metadata.num_rows

    def require(self, records: list[ImageRecord], source: Path | str) -> None:
        """Raise :class:`PredictionsError` unless every image of ``records`` was predicted."""
        predicted = {r.image_id for r in self.images}
        if missing := [r.image_id for r in records if r.image_id not in predicted]:
            raise PredictionsError(f"{source}: no predictions for {len(missing)} image(s), e.g. {missing[0]}; "
                                   "rerun stage predict without --limit")

    def by_image(self, image_ids: Iterable[str] | None = None) -> dict[str, Detections]:
        """Detections of every image, or of ``image_ids`` only (empty ones included): masks as (N, M, M) and
        attributes as (N, A) uint8.

        Only the rows of the images asked for are read, and each column becomes one array without a
        Python object per detection; an image's arrays are slices of those (the real validation fold
        holds about 2 million detections).
        """
        fmt, a, n_views = self.mask_format, self.num_attributes, self.n_views
        wanted = [r.image_id for r in self.images] if image_ids is None else list(dict.fromkeys(image_ids))
        self.require([ImageRecord(i, 0, 0) for i in wanted], self.folder)
        result = {image_id: Detections.empty(fmt.size, a, fmt.kind, n_views) for image_id in wanted}
        if not wanted:
            return result
        table = pq.read_table(self.folder / DETECTIONS,
                              filters=None if image_ids is None else [("image_id", "in", wanted)])
        if table.num_rows == 0:
            return result
        codes, names = _image_codes(table)
        order = np.argsort(codes, kind="stable")
        if np.all(order[1:] > order[:-1]):
            order = slice(None)  # stage predict writes each image's rows together: no copy to regroup them
        columns = {"boxes": np.stack([table.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")], axis=1),
                   "scores": table.column("score").to_numpy(), "categories": table.column("category").to_numpy(),
                   "views": table.column("view").to_numpy(),
                   "masks": _fixed_width(table, "mask", fmt.size**2, self.folder).reshape(-1, fmt.size, fmt.size),
                   "attributes": _fixed_width(table, "attributes", a, self.folder)}
        if len(columns["views"]) and not 0 <= columns["views"].min() <= columns["views"].max() < n_views:
            raise _damaged(self.folder, f"{DETECTIONS}: view numbers outside the {n_views} views of {MANIFEST}")
        columns = {name: values[order] for name, values in columns.items()}
        grouped = codes[order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        for start, end in zip(starts, [*starts[1:], len(grouped)], strict=True):
            part = slice(start, end)
            result[names[grouped[start]]] = Detections(
                columns["boxes"][part].astype(np.float32, copy=False), columns["scores"][part].astype(np.float32),
                columns["categories"][part].astype(np.int16), columns["views"][part].astype(np.int8),
                columns["masks"][part], columns["attributes"][part], fmt.kind, n_views)
        del table, columns
        pa.default_memory_pool().release_unused()  # arrow keeps freed memory for reuse, which nothing here needs
        return result


def _image_codes(table: pa.Table) -> tuple[np.ndarray, list[str]]:
    """Each row's image as a small integer, and the image id of each integer."""
    encoded = table.column("image_id").combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()


def _fixed_width(table: pa.Table, name: str, width: int, folder: Path) -> np.ndarray:
    """Column ``name``, binary values of ``width`` bytes each, as one (rows, width) uint8 array."""
    column = table.column(name)
    if width == 0 or len(column) == 0:
        return np.zeros((len(column), width), np.uint8)
    chunks = []
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        raise _damaged(folder, f"{DETECTIONS}: column {name} holds {column.type}, not bytes")
    for chunk in column.chunks:
        offset_type = np.int32 if pa.types.is_binary(chunk.type) else np.int64
        offsets = np.frombuffer(chunk.buffers()[1], offset_type, len(chunk) + 1,
                                offset=chunk.offset * np.dtype(offset_type).itemsize)
        if chunk.null_count or not np.all(np.diff(offsets) == width):
            raise _damaged(folder, f"{DETECTIONS}: column {name} has values that are not {width} bytes long")
        if len(chunk):
            chunks.append(np.frombuffer(chunk.buffers()[2], np.uint8)[offsets[0] : offsets[-1]])
    return (chunks[0] if len(chunks) == 1 else np.concatenate(chunks)).reshape(-1, width)  # one chunk: no copy


def _damaged(folder: Path, problem: str) -> PredictionsError:
    return PredictionsError(f"{folder}: damaged, {problem}; run stage predict (dvc repro) to predict it again")


def _checked_manifest(folder: Path) -> dict:
    """The manifest of a finished folder whose files are still the ones written; a clear error otherwise."""
    if not (folder / MANIFEST).is_file():
        raise PredictionsError(f"{folder}: not a finished prediction folder (missing {MANIFEST}); run stage predict")
    manifest = stored_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or not set(manifest) >= _MANIFEST_KEYS or not isinstance(manifest["files"], dict):
        raise _damaged(folder, f"{MANIFEST} is not the manifest of a prediction folder")
    views = manifest["views"]
    if not (isinstance(views, list) and views and all(isinstance(v, str) for v in views)):
        raise _damaged(folder, f"{MANIFEST}: views is not a list of view names")
    for name in (IMAGES, DETECTIONS):
        if problem := record_problem(folder / name, manifest["files"].get(name)):
            raise _damaged(folder, problem)
    return manifest


def _load(folder: Path, manifest: dict) -> Predictions:
    images = pd.read_csv(folder / IMAGES, dtype={"image_id": str}, keep_default_na=False)
    if len(images) != manifest["images"]:
        raise _damaged(folder, f"{IMAGES} lists {len(images)} images, {MANIFEST} says {manifest['images']}")
    records = [ImageRecord(str(i), int(h), int(w)) for i, h, w in images[["image_id", "height", "width"]].itertuples(
        index=False)]
    return Predictions(manifest, records, folder)


def read(folder: Path | str) -> Predictions:
    """A finished prediction folder, checked: its files are the ones stage predict wrote, and it covers all the
    images it was asked for (a folder made with ``--limit`` is refused)."""
    folder = Path(folder)
    manifest = _checked_manifest(folder)
    if manifest["limit"]:
        raise PredictionsError(f"{folder}: made with --limit {manifest['limit']}, a smoke run of the first images "
                               "only; run stage predict without --limit")
    return _load(folder, manifest)


def write(folder: Path | str, made: Made, records: list[ImageRecord],
          predict: Callable[[list[ImageRecord]], Iterable[tuple[list[ImageRecord], list[Detections]]]],
          part_size: int, description: str = "predict") -> Predictions:
    """Predict ``records`` in parts and consolidate; resume from the finished parts made with the same ``made``.

    ``predict`` receives the records still to do, and yields (records, detections) batches in
    any grouping; parts are cut from that stream every ``part_size`` images. One process at a
    time writes a folder (:class:`~pipeline.utils.lock.BusyError` for a second).
    """
    folder = Path(folder)
    with exclusive(folder, f"stage {description}"):
        manifest = made.manifest(len(records))
        if finished := _finished(folder, manifest):
            log.info("%s: up to date (%d images), nothing to predict", folder, len(records))
            return _load(folder, finished)
        todo, done = _start_or_resume(folder, manifest, records)
        with tqdm(total=len(records), initial=len(records) - len(todo), desc=description, unit="img") as progress:
            _predict_parts(folder / PARTS, manifest, predict(todo), part_size, progress, max(done, default=-1) + 1)
        return _consolidate(folder, manifest, records)


def _finished(folder: Path, manifest: dict) -> dict | None:
    """The stored manifest when ``folder`` is finished with ``manifest``, else None; a finished folder whose files
    fail their check is not finished."""
    stored = stored_json(folder / MANIFEST)
    if not isinstance(stored, dict) or {k: v for k, v in stored.items() if k != "files"} != manifest:
        return None
    try:
        return _checked_manifest(folder)
    except PredictionsError as exc:
        log.warning("%s: predicting it again", exc)
        return None


def _start_or_resume(folder: Path, manifest: dict, records: list[ImageRecord],
                     ) -> tuple[list[ImageRecord], dict[int, list[str]]]:
    """The records still to predict, and the finished parts kept (all of them to do and none kept, unless
    ``folder`` holds parts made with ``manifest``)."""
    parts = folder / PARTS
    if stored_json(parts / "key.json") != manifest:
        if folder.exists():
            shutil.rmtree(folder)
        parts.mkdir(parents=True)
        write_json(parts / "key.json", manifest)
    done = _finished_parts(parts, verify=True)
    done_ids = {image_id for ids in done.values() for image_id in ids}
    todo = [r for r in records if r.image_id not in done_ids]
    if done_ids:
        log.info("%s: resuming, %d of %d images already predicted", folder, len(records) - len(todo), len(records))
    return todo, done


def _predict_parts(parts: Path, manifest: dict, batches: Iterable[tuple[list[ImageRecord], list[Detections]]],
                   part_size: int, progress: tqdm, number: int) -> None:
    """Cut ``batches`` into parts of ``part_size`` images, numbered from ``number`` on, and write each.

    Parts are written by a thread while the model predicts the next images (pyarrow releases
    the GIL); one part in flight at most, and its errors surface here.
    """
    pending_ids: list[ImageRecord] = []
    pending: list[Detections] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="predictions-writer") as writer:
        in_flight: Future | None = None
        for batch_records, batch in batches:
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


def _next_part(writer: ThreadPoolExecutor, in_flight: Future | None, parts: Path, number: int,
               records: list[ImageRecord], detections: list[Detections], manifest: dict) -> Future:
    """Wait for the part being written (raising its error), then start writing this one."""
    if in_flight is not None:
        in_flight.result()
    return writer.submit(_write_part, parts, number, records, detections, manifest)


def _finished_parts(parts: Path, verify: bool) -> dict[int, list[str]]:
    """Part number -> its image ids, for the parts whose record (written last) exists and, with ``verify``, whose
    parquet is the one it records; a part that fails the check is removed, and its images are predicted again."""
    done = {}
    for path in sorted(parts.glob("part-*.json")):
        if not (number := _PART.fullmatch(path.name)):
            continue
        stored = stored_json(path)
        if not isinstance(stored, dict) or not isinstance(stored.get("images"), list):
            problem = f"{path.name} cannot be read"
        else:
            problem = record_problem(path.with_suffix(".parquet"), stored.get("parquet")) if verify else None
        if problem:
            log.warning("%s: %s; its images are predicted again", parts / path.stem, problem)
            path.unlink()
            path.with_suffix(".parquet").unlink(missing_ok=True)
            continue
        done[int(number[1])] = stored["images"]
    return done


def _write_part(parts: Path, number: int, records: list[ImageRecord], detections: list[Detections],
                manifest: dict) -> None:
    table = parts / f"part-{number:05d}.parquet"
    with atomic_path(table) as tmp:
        pq.write_table(_table([r.image_id for r in records], detections, manifest), tmp)
    # Written last, it marks the part finished, with the record that tells a damaged parquet later.
    write_json(table.with_suffix(".json"), {"images": [r.image_id for r in records], "parquet": file_record(table)})


def _consolidate(folder: Path, manifest: dict, records: list[ImageRecord]) -> Predictions:
    """One detections table in ``records``' order (whatever order the parts were made in), the image list and,
    last, the manifest with the record of both files."""
    parts = folder / PARTS
    done = _finished_parts(parts, verify=False)  # checked when this run started, or written by it
    predicted = {image_id for ids in done.values() for image_id in ids}
    if missing := [r.image_id for r in records if r.image_id not in predicted]:
        raise PredictionsError(f"{folder}: {len(missing)} image(s) were not predicted, e.g. {missing[0]}")
    tables = [pq.read_table(parts / f"part-{n:05d}.parquet") for n in sorted(done)]
    table = pa.concat_tables(tables) if tables else _table([], [], manifest)
    position = {r.image_id: k for k, r in enumerate(records)}
    order = np.argsort([position[i] for i in table.column("image_id").to_pylist()], kind="stable")
    with atomic_path(folder / DETECTIONS) as tmp:
        pq.write_table(table.take(pa.array(order, pa.int64())), tmp, compression="zstd")
    with atomic_path(folder / IMAGES) as tmp:
        pd.DataFrame([vars(r) for r in records], columns=["image_id", "height", "width"]).to_csv(tmp, index=False)
    finished = {**manifest, "files": {name: file_record(folder / name) for name in (IMAGES, DETECTIONS)}}
    write_json(folder / MANIFEST, finished)  # last: its presence marks the folder finished
    shutil.rmtree(parts)
    return _load(folder, finished)
