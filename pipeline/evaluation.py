"""The validation report: the metric under default and tuned post-processing, with and without TTA,
the validation predictions in submission format, and a gallery of pictures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from pipeline import rle, submission
from pipeline.detections import ImageRecord
from pipeline.gallery import Shape, render
from pipeline.io import atomic_path
from pipeline.labels import LabelSet
from pipeline.metric import Score
from pipeline.postprocess import Instance
from pipeline.predict_params import MatchOn, PostprocessParams
from pipeline.tuning import Scorer


def scores(scorer: Scorer, records: Sequence[ImageRecord], default: PostprocessParams, tuned: PostprocessParams,
           match_on: MatchOn) -> tuple[dict, Score]:
    """The metric for {default, tuned} x {TTA, plain view}, and per class for the tuned set as submitted.

    Returns the metrics and the full score of the submitted (tuned) set.
    """
    result: dict = {"match_on": match_on, "images": len(records)}
    for name, params in (("default", default), ("tuned", tuned)):
        for tta in (True, False):
            value = scorer(params.model_copy(update={"tta": tta}), records, match_on)
            result[f"{name}_{'tta' if tta else 'no_tta'}"] = round(value.score, 5)
    submitted = scorer(tuned, records, match_on)
    result["submitted"] = round(submitted.score, 5)
    result["submitted_category_match"] = round(scorer(tuned, records, "category").score, 5)
    result["per_class"] = {key: round(value, 5) for key, value in submitted.per_class.items()}
    return result, submitted


def write_val_submission(instances: Mapping[str, Sequence[Instance]], records: Sequence[ImageRecord],
                         params: PostprocessParams, labels: LabelSet, path: Path | str) -> pd.DataFrame:
    """Validation predictions in the submission format, validated like a real submission."""
    frame = submission.frame(instances, records)
    submission.write(frame, path, params.grids(records), labels)
    return frame


def write_gallery(folder: Path | str, image_dir: Path | str, truth_table: pd.DataFrame,
                  instances: Mapping[str, Sequence[Instance]], records: Sequence[ImageRecord],
                  per_image: Mapping[str, float], labels: LabelSet, long_side: int) -> list[Path]:
    """One PNG per image of ``records``: ground truth beside the submitted prediction, with names and scores."""
    names = {c.id: c.name for c in labels.categories}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        written = []
        for number, record in enumerate(records):
            rows = truth_table[truth_table.image_id == record.image_id]
            truth = [Shape(int(r.category), str(r.class_id) if "_" in str(r.class_id) else names[int(r.category)],
                           rle.decode(r.rle, record.height, record.width)) for r in rows.itertuples(index=False)]
            predicted = [Shape(int(i.class_id.split("_")[0]), f"{names[int(i.class_id.split('_')[0])]} {i.score:.2f}",
                               i.mask) for i in instances[record.image_id]]
            title = f"{record.image_id}  score {per_image.get(record.image_id, float('nan')):.3f}"
            name = f"{number:02d}_{Path(record.image_id).stem}.png"
            render(Path(image_dir) / record.image_id, truth, predicted, long_side, title).save(tmp / name)
            written.append(Path(folder) / name)
    return written

