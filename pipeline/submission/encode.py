"""The CPU half of a submission: post-process each image's detections and RLE-encode its masks, in worker processes.

Per image, in one worker: ``process_image`` then ``rle.encode``; only the encoded rows come back,
so neither the masks nor the time they take pile up in the stage's process (3,200 test images
hold tens of thousands of 512 x 512 masks).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from tqdm import tqdm

from pipeline.config.inference import PostprocessParams
from pipeline.data.annotations import SUBMISSION_COLUMNS
from pipeline.data.labels import LabelSet
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.inference.postprocess import process_image
from pipeline.submission.rows import image_rows
from pipeline.utils.pool import ordered_map, worker_count

Row = tuple[str, str, str]
#: Fewer images than this are encoded in-process: starting workers (each imports torch) takes seconds.
POOL_FROM = 200


def _one_image(task: tuple[Detections, ImageRecord], params: PostprocessParams, labels: LabelSet) -> list[Row]:
    detections, record = task
    return image_rows(record.image_id, process_image(detections, record.height, record.width, params, labels))


def encoded_rows(detections: Mapping[str, Detections], records: Sequence[ImageRecord], params: PostprocessParams,
                 labels: LabelSet, workers: int = 0) -> pd.DataFrame:
    """Submission rows of ``records`` in their order, as ``rows.frame`` writes them from instances.

    ``workers`` processes (0: one per CPU core, or none under ``POOL_FROM`` images; 1: none).
    """
    one = functools.partial(_one_image, params=params, labels=labels)
    tasks = ((detections[r.image_id], r) for r in records)
    rows: list[Row] = []
    with ordered_map(worker_count(workers, len(records), POOL_FROM), torch.set_num_threads, (1,)) as imap, \
            tqdm(total=len(records), desc="post-process and encode", unit="img") as bar:
        for found in imap(one, tasks, chunksize=8):
            rows += found
            bar.update()
    return pd.DataFrame(rows, columns=SUBMISSION_COLUMNS)
