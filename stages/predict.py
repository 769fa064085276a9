"""Stage predict: raw detections of the trained model (any family), with TTA, on the validation fold and test images.

Writes ``<out>/val`` and ``<out>/test`` (``pipeline.inference.store``): one parquet row per
detection, so that post-processing, tuning and the submission never need the model again.
An interrupted run resumes from its finished parts.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.inference import PredictParams
from pipeline.config.params import load_section
from pipeline.config.training import TrainParams
from pipeline.data.labels import load_labels
from stages._cli import add_family, parser, positive, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    add_family(cli)
    cli.add_argument("--run-dir", type=Path, required=True, help="training run folder (best.pt, last.pt)")
    cli.add_argument("--instances", type=Path, required=True, help="prepared instance table (original sizes)")
    cli.add_argument("--folds", type=Path, required=True, help="folds.csv")
    cli.add_argument("--train-images", type=Path, required=True, help="folder of the original train images")
    cli.add_argument("--sample-submission", type=Path, required=True, help="sample_submission.csv (test ImageIds)")
    cli.add_argument("--test-images", type=Path, required=True, help="folder of the test images")
    cli.add_argument("--labels", type=Path, required=True, help="label_descriptions.json")
    cli.add_argument("--out", type=Path, required=True, help="writes <out>/val and <out>/test")
    cli.add_argument("--limit", type=positive, help="smoke runs: the first N images of each split only (a folder "
                     "no other stage reads)")
    args = cli.parse_args()
    require_inputs(args, {"instances": "prepare", "folds": "folds", "train_images": "download",
                          "sample_submission": "download", "test_images": "download", "labels": "download"})
    from pipeline.data.annotations import read_instances
    from pipeline.data.folds import read_folds, split
    from pipeline.inference import store as raw_predictions
    from pipeline.inference.predict import Inference, make_views, predict_files, prediction_key, records_of
    from pipeline.inference.trained import open_model
    from pipeline.models import registry
    from pipeline.models.contract import InferenceCounts
    from pipeline.models.layout import speed_up
    from pipeline.submission.rows import test_records
    config = registry.load(args.params, args.family)
    params = load_section(args.params, "predict", PredictParams)
    fold = load_section(args.params, "train", TrainParams).fold
    instances = read_instances(args.instances)
    _, val_ids = split(read_folds(args.folds), fold, str(args.folds))
    splits = {
        "val": (records_of(instances, val_ids), args.train_images),
        "test": (test_records(args.sample_submission, args.test_images), args.test_images),
    }
    trained = open_model(args.run_dir, config, len(load_labels(args.labels).attributes), params.device,
                         checkpoint_name=params.checkpoint)
    model, checkpoint, views = trained.model, trained.checkpoint, make_views(params.scales, params.hflip)
    speed_up(model, params.channels_last, compile_backbone=False)
    predict = predict_files(Inference(model, views, config.model, trained.device, params.precision,
                                      params.stack_views), params.batch_size, params.workers)
    for name, (records, image_dir) in splits.items():
        limit = args.limit if args.limit and args.limit < len(records) else None
        records = records[:limit]
        made = raw_predictions.Made(prediction_key(checkpoint, config, params, records), config.model.family,
                                    [v.name for v in views], model.mask_format, model.num_attributes, limit)
        result = raw_predictions.write(args.out / name, made, records, lambda todo, d=image_dir: predict(todo, d),
                                       params.part_size, description=f"predict {name}")
        print(f"{name}: {len(result.images)} images, {result.detection_count} detections over "
              f"{len(views)} view(s) ({', '.join(result.views)}) in {args.out / name}")
        if isinstance(model, InferenceCounts) and model.inference_counts:  # what a semantic family kept, dropped
            counts = model.inference_counts
            print(f"  {name}, images predicted in this run: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            counts.clear()


if __name__ == "__main__":
    run(main)
