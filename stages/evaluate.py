"""Stage evaluate: the validation score with default and tuned post-processing, with and without TTA.

Writes the headline metrics (``--metrics``: the submitted score with and without TTA, the Fashionpedia mask
AP and AP with attributes), the report (``--report``: every variant, per class, the attribute policies and
groups, the Fashionpedia summary), the validation
predictions in submission format (score them with your own implementation of the metric), and a
PNG gallery of ground truth beside prediction that ``dvc plots show`` includes.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.inference import EvaluateParams, PostprocessParams
from pipeline.config.params import load_section
from pipeline.config.tuned import load_tuned
from pipeline.data.labels import load_labels
from stages._cli import parser, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--predictions", type=Path, required=True, help="validation predictions (stage predict)")
    cli.add_argument("--instances", type=Path, required=True, help="prepared instance table (the ground truth)")
    cli.add_argument("--images", type=Path, required=True, help="folder of the original train images")
    cli.add_argument("--labels", type=Path, required=True, help="label_descriptions.json")
    cli.add_argument("--tuned", type=Path, required=True, help="tuned postprocess section (stage tune)")
    cli.add_argument("--metrics", type=Path, required=True, help="headline metrics (JSON) to write")
    cli.add_argument("--report", type=Path, required=True, help="the whole report (JSON) to write")
    cli.add_argument("--val-submission", type=Path, required=True, help="validation predictions as a submission CSV")
    cli.add_argument("--gallery", type=Path, required=True, help="folder of PNG pictures")
    cli.add_argument("--image-scores", type=Path, help="CSV of each image's submitted score (stage compare's input)")
    cli.add_argument("--fashionpedia", type=Path, help="JSON of the Fashionpedia scores (stage compare's input)")
    args = cli.parse_args()
    require_inputs(args, {"predictions": "predict", "instances": "prepare", "images": "download", "labels": "download",
                          "tuned": "tune"})
    from pipeline.data.annotations import read_instances
    from pipeline.evaluation import headline
    from pipeline.evaluation.evaluate import Outputs, evaluate
    from pipeline.inference import store
    from pipeline.inference.postprocess import check_attribute_settings
    from pipeline.utils.io import write_json
    default = load_section(args.params, "postprocess", PostprocessParams)
    tuned_file = load_tuned(args.tuned)
    tuned = tuned_file.postprocess
    params = load_section(args.params, "evaluate", EvaluateParams)
    labels = load_labels(args.labels)
    check_attribute_settings(tuned, labels)
    predictions = store.read(args.predictions)
    tuned_file.require_family(predictions.family, args.tuned, f"the predictions in {args.predictions}")
    metrics, rows = evaluate(predictions, read_instances(args.instances), args.images, labels, default, tuned, params,
                             Outputs(args.val_submission, args.gallery, args.image_scores, args.fashionpedia))
    write_json(args.report, metrics)
    write_json(args.metrics, headline.evaluation(metrics))
    print(f"validation ({len(predictions.images)} images, {rows} rows, match on {params.match_on}): "
          f"default {metrics['default_tta']:.4f} with TTA / {metrics['default_no_tta']:.4f} without; "
          f"tuned {metrics['tuned_tta']:.4f} / {metrics['tuned_no_tta']:.4f}; submitted {metrics['submitted']:.4f}")
    fashionpedia = metrics["fashionpedia"]
    print(f"  Fashionpedia (on the grid, up to 100 detections an image): mask AP {_number(fashionpedia['mask_ap'])} "
          f"({fashionpedia['images']} images), AP with attributes (IoU + F1) {_number(fashionpedia['ap_iou_f1'])} "
          f"({fashionpedia['attributed_images']} images with attributes)")
    for subset, row in metrics["attribute_policies"].items():
        print(f"  {subset} ({row['images']}): " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "images"))
    quality = metrics["attributes"]
    if not quality["predicted"]:
        print("  attributes: not predicted by this family; its ClassIds are categories alone")
        return
    print(f"  attributes of {quality['found']} found garments ({quality['missed']} missed): exact set "
          f"{quality['exact_set']:.3f}; micro F1 " + ", ".join(f"{g} {v['micro_f1']:.2f}"
                                                         for g, v in quality["groups"].items()))


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    run(main)
