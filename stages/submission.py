"""Stage submission: post-process the test predictions with the tuned params and write submission.csv.

The file is validated before it is written (atomically): an invalid submission is never
written. Every test image gets at least one row.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.inference import SubmissionParams
from pipeline.config.params import load_section
from pipeline.config.tuned import load_tuned
from pipeline.data.labels import load_labels
from stages._cli import parser, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--predictions", type=Path, required=True, help="test predictions (stage predict)")
    cli.add_argument("--sample-submission", type=Path, required=True, help="sample_submission.csv (test ImageIds)")
    cli.add_argument("--test-images", type=Path, required=True, help="folder of the test images (their sizes)")
    cli.add_argument("--labels", type=Path, required=True, help="label_descriptions.json")
    cli.add_argument("--tuned", type=Path, required=True, help="tuned postprocess section (stage tune)")
    cli.add_argument("--out", type=Path, required=True, help="submission CSV to write")
    args = cli.parse_args()
    require_inputs(args, {"predictions": "predict", "sample_submission": "download", "test_images": "download",
                          "labels": "download", "tuned": "tune"})
    from pipeline.inference import store
    from pipeline.inference.postprocess import check_attribute_settings
    from pipeline.submission import rows as submission
    from pipeline.submission.encode import encoded_rows
    tuned = load_tuned(args.tuned)
    params = tuned.postprocess
    labels = load_labels(args.labels)
    check_attribute_settings(params, labels)
    predictions = store.read(args.predictions)
    tuned.require_family(predictions.family, args.tuned, f"the predictions in {args.predictions}")
    records = submission.test_records(args.sample_submission, args.test_images)
    predictions.require(records, args.predictions)
    workers = load_section(args.params, "submission", SubmissionParams).workers
    frame = encoded_rows(predictions.by_image(), records, params, labels, workers)
    submission.write(frame, args.out, params.grids(records), labels)
    empty = int(frame.EncodedPixels.eq("").sum())
    print(f"{args.out}: {len(frame)} rows for {len(records)} test images ({empty} without a prediction), "
          f"grid {params.grid}, valid")


if __name__ == "__main__":
    run(main)
