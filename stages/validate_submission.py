"""Check a submission CSV against every rule of the competition before you upload it.

Usage: ``python -m stages.validate_submission FILE``. Exits 0 when valid, 1 with the list of
problems (CSV line numbers) otherwise. The grid comes from the tuned postprocess file (or
``--grid``); the test ImageIds from the sample submission.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config.inference import PostprocessParams
from pipeline.config.params import load_section
from pipeline.data.labels import load_labels
from pipeline.submission import rows as submission
from stages._cli import parser, run, tuned_postprocess


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("file", type=Path, help="the submission CSV")
    cli.add_argument("--sample-submission", type=Path, default=Path("data/raw/sample_submission.csv"))
    cli.add_argument("--test-images", type=Path, default=Path("data/raw/test"))
    cli.add_argument("--labels", type=Path, default=Path("data/raw/label_descriptions.json"))
    cli.add_argument("--tuned", type=Path, help="postprocess section naming the grid; default: "
                     "tuning/<model.family>/postprocess.yaml")
    cli.add_argument("--grid", help="override the grid: 512x512, native, ...")
    args = cli.parse_args()
    args.tuned = tuned_postprocess(args.params, args.tuned)
    params = load_section(args.tuned, "postprocess", PostprocessParams)
    if args.grid:
        params = PostprocessParams.model_validate({**params.model_dump(), "grid": args.grid})
    records = submission.test_records(args.sample_submission, args.test_images)
    labels = load_labels(args.labels)
    frame = submission.check_file(args.file, records, params, labels)
    for remark in submission.remarks(frame, labels):
        print(f"warning: {args.file}: {remark}", file=sys.stderr)
    print(f"{args.file}: valid ({len(frame)} rows, {frame.ImageId[frame.ImageId != ''].nunique()} images, "
          f"grid {params.grid})")


if __name__ == "__main__":
    run(main)
