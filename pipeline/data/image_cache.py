"""A resized copy of the train images and their masks, at the largest resolution training uses.

The real photos are several megapixels: decoding one costs more than a training step on a
fast GPU. The cache holds each image downscaled (never upscaled) so that its short side is
``min_size * scale_high`` (long side at most ``max_size * scale_high``), plus an instance
table in the prepared table's format whose RLEs are at the cached size. Training reads the
cache exactly as it would read the originals.

Work is done in parts of ``PART_IMAGES`` images, each finished part written atomically with the
size of every JPEG it wrote, so an interrupted run resumes with the first unfinished part, and a
part whose images were deleted or damaged since is made again. A ``manifest.json`` records the
settings and fingerprints of the source table and of the code; a cache made otherwise is discarded.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from pipeline.data import rle
from pipeline.data.dataset import decode_masks, load_image
from pipeline.data.transforms import fit_scale, resize_image, resize_masks, scaled_size
from pipeline.utils.fingerprint import file_record, imported_modules, record_problem, source_digest
from pipeline.utils.io import as_json, atomic_path, write_json
from pipeline.utils.lock import exclusive
from pipeline.utils.paths import inside
from pipeline.utils.pool import ordered_map, worker_count
from pipeline.utils.tables import stored_json

PART_IMAGES = 256
MANIFEST, TABLE = "manifest.json", "instances.parquet"
FILE_BYTES = "file_bytes"  # a part's column: the size of each image's cached JPEG, checked by a later run
_POOL_FROM = 500  # fewer images than this are done in-process: a pool's start-up would cost more


@dataclass(frozen=True)
class CacheSettings:
    min_size: int
    max_size: int
    scale_high: float  # the largest random scale factor of training augmentation
    jpeg_quality: int

    def scale(self, height: int, width: int) -> float:
        return min(1.0, fit_scale(height, width, self.min_size, self.max_size) * self.scale_high)


@dataclass(frozen=True)
class CacheReport:
    images: int
    instances: int
    instances_vanished: int  # smaller than a pixel at the cached size; left out
    images_resized: int
    parts_reused: int  # finished by an earlier, interrupted run
    bytes_on_disk: int
    up_to_date: bool = False  # an earlier run had finished the whole cache: nothing was redone
    parts_redone: int = 0  # finished parts that failed their check (an image deleted or damaged) and were made again
    redone_because: str = ""  # the first such failure

    def metrics(self) -> dict:
        """The report without how the work was split across runs: the same data gives the same metrics."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("parts_reused", "up_to_date", "parts_redone", "redone_because")}


def _fingerprint(instances: pd.DataFrame) -> str:
    hashes = pd.util.hash_pandas_object(instances[["image_id", "height", "width", "rle"]], index=False)
    return f"{int(hashes.sum()) & (2**64 - 1):016x}"


def _cache_one(task: tuple[pd.DataFrame, Path, Path, CacheSettings]) -> pd.DataFrame:
    """Resize one image and its masks; write the JPEG; return its rows at the new size (empty masks kept), each
    with the size of the JPEG written (``FILE_BYTES``: what a later run checks the file against)."""
    rows, image_dir, out_images, settings = task
    height, width = int(rows.height.iloc[0]), int(rows.width.iloc[0])
    image_id = rows.image_id.iloc[0]
    scale = settings.scale(height, width)
    size = scaled_size(height, width, scale)
    target = inside(out_images, image_id, "image_id of the instance table")  # checked before anything is read
    image = resize_image(load_image(image_dir / target.name, height, width, scale), size)
    with atomic_path(target) as tmp:
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp, format="JPEG", quality=settings.jpeg_quality)
    # One mask at a time: an image's masks at its full size at once would take instances x pixels bytes (50 masks
    # of a 6,000 x 4,000 photo: 1.2 GB a process).
    new_rles = [rle.encode(resize_masks(decode_masks([text], height, width), size)[0].numpy()) for text in rows.rle]
    summary = rle.summarize(new_rles, [size[0]] * len(rows), [size[1]] * len(rows))
    return rows.assign(height=np.int32(size[0]), width=np.int32(size[1]), rle=new_rles, area=summary.area,
                       bbox_x=summary.bbox[:, 0].astype(np.int32), bbox_y=summary.bbox[:, 1].astype(np.int32),
                       bbox_w=summary.bbox[:, 2].astype(np.int32), bbox_h=summary.bbox[:, 3].astype(np.int32),
                       **{FILE_BYTES: target.stat().st_size})


def _start_or_resume(out_dir: Path, manifest: dict) -> bool:
    """Keep a cache made with ``manifest``, else start an empty one; True when the kept one is finished."""
    path = out_dir / MANIFEST
    manifest = as_json(manifest)
    if path.is_file() and stored_json(path) == manifest:
        return (out_dir / TABLE).is_file()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "images").mkdir(parents=True)
    (out_dir / "parts").mkdir()
    write_json(path, manifest)
    return False


def _part_problem(path: Path, expected: list[str], images: Path) -> str | None:
    """Why the finished part ``path`` cannot be kept: not the file written, other images, or a JPEG not the size
    written."""
    if problem := record_problem(path, stored_json(path.with_suffix(".json"))):
        return problem
    try:
        part = pd.read_parquet(path, columns=["image_id", FILE_BYTES])
    except Exception as exc:  # a truncated or foreign file: pyarrow raises several kinds
        return f"{path.name} cannot be read ({type(exc).__name__})"
    written = part.groupby("image_id", sort=True)[FILE_BYTES].first()
    if list(written.index) != expected:
        return f"{path.name} holds other images than its part"
    for image_id, size in written.items():
        file = images / image_id
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != size:
            return f"{file} has {file.stat().st_size:,} bytes, {size:,} were written"
    return None


def _parts_to_do(part_paths: list[Path], parts: list[list[pd.DataFrame]], images: Path) -> tuple[list[int], list[str]]:
    """The parts to make: those never finished, and the finished ones that fail their check (removed, with why)."""
    todo, problems = [], []
    for k, path in enumerate(part_paths):
        if not path.with_suffix(".json").is_file():  # its record, written last, marks a part finished
            todo.append(k)
        elif problem := _part_problem(path, [str(rows.image_id.iloc[0]) for rows in parts[k]], images):
            problems.append(problem)
            path.with_suffix(".json").unlink()
            todo.append(k)
    return todo, problems


def _make_parts(todo: list[int], parts: list[list[pd.DataFrame]], part_paths: list[Path], image_dir: Path,
                out_dir: Path, settings: CacheSettings, workers: int, done_images: int) -> None:
    """Resize the images of the ``todo`` parts (in ``workers`` processes) and write each part when finished."""
    with ordered_map(workers if todo else 1, torch.set_num_threads, (1,)) as imap, \
            tqdm(total=sum(map(len, parts)), initial=done_images, desc="cache", unit="img") as bar:
        for k in todo:
            tasks = [(rows, image_dir, out_dir / "images", settings) for rows in parts[k]]
            results = []
            for result in imap(_cache_one, tasks, chunksize=4):
                results.append(result)
                bar.update()
            with atomic_path(part_paths[k]) as tmp:
                pd.concat(results, ignore_index=True).to_parquet(tmp, index=False)
            write_json(part_paths[k].with_suffix(".json"), file_record(part_paths[k]))


def build_cache(instances: pd.DataFrame, image_dir: Path | str, out_dir: Path | str, settings: CacheSettings,
                workers: int = 0) -> CacheReport:
    """Write ``out_dir/images/*.jpg`` and ``out_dir/instances.parquet``; resume an interrupted run.

    Every finished part is checked first (its images present, each the size written): a part that
    fails is made again, and the report says why. ``workers`` processes resize images (0: one per
    CPU core, or none for small data). One process at a time builds a cache
    (:class:`~pipeline.utils.lock.BusyError` for a second).
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    with exclusive(out_dir, "stage cache"):
        finished = _start_or_resume(out_dir, {"settings": asdict(settings), "source": _fingerprint(instances),
                                              "code": source_digest(*imported_modules(__name__))})
        groups = [rows for _, rows in instances.groupby("image_id", sort=True)]
        parts = [groups[i : i + PART_IMAGES] for i in range(0, len(groups), PART_IMAGES)]
        part_paths = [out_dir / "parts" / f"part-{k:05d}.parquet" for k in range(len(parts))]
        todo, problems = _parts_to_do(part_paths, parts, out_dir / "images")
        done_images = len(groups) - sum(len(parts[k]) for k in todo)
        workers = worker_count(workers, len(groups) - done_images, _POOL_FROM)
        _make_parts(todo, parts, part_paths, image_dir, out_dir, settings, workers, done_images)
        table = pd.concat([pd.read_parquet(path) for path in part_paths], ignore_index=True)
        vanished = table.area.eq(0)
        with atomic_path(out_dir / TABLE) as tmp:
            table[~vanished].drop(columns=FILE_BYTES).reset_index(drop=True).to_parquet(tmp, index=False)
    resized = sum(int(settings.scale(int(g.height.iloc[0]), int(g.width.iloc[0])) < 1.0) for g in groups)
    on_disk = int(table.groupby("image_id")[FILE_BYTES].first().sum()) if len(table) else 0
    return CacheReport(images=len(groups), instances=int((~vanished).sum()), instances_vanished=int(vanished.sum()),
                       images_resized=resized, parts_reused=0 if finished else len(parts) - len(todo),
                       bytes_on_disk=on_disk, up_to_date=finished and not todo, parts_redone=len(problems),
                       redone_because=problems[0] if problems else "")
