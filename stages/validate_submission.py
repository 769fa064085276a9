"""Check a submission CSV against every rule of the competition before you upload it.

Usage: ``python -m stages.validate_submission FILE``. Exits 0 when valid, 1 with the list of
problems (CSV line numbers) otherwise. The grid comes from the tuned postprocess file (or
``--grid``), one of the known grids either way; the test ImageIds from the sample submission.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

from pipeline.config.inference import grids
from pipeline.config.literals import Grid
from pipeline.config.tuned import load_tuned
from pipeline.data.labels import load_labels
from stages._cli import parser, run, tuned_postprocess


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("file", type=Path, help="the submission CSV")
    cli.add_argument("--sample-submission", type=Path, default=Path("data/raw/sample_submission.csv"))
    cli.add_argument("--test-images", type=Path, default=Path("data/raw/test"))
    cli.add_argument("--labels", type=Path, default=Path("data/raw/label_descriptions.json"))
    cli.add_argument("--tuned", type=Path, help="postprocess section naming the grid; default: "
                     "tuning/<model.family>/postprocess.yaml")
    cli.add_argument("--grid", choices=get_args(Grid), help="the grid, instead of the tuned file's (which is then "
                     "not read)")
    args = cli.parse_args()
    from pipeline.submission import rows as submission
    grid = args.grid or load_tuned(tuned_postprocess(args.params, args.tuned)).postprocess.grid
    records = submission.test_records(args.sample_submission, args.test_images)
    labels = load_labels(args.labels)
    frame = submission.check_file(args.file, grids(grid, records), labels)
    for remark in submission.remarks(frame, labels):
        print(f"warning: {args.file}: {remark}", file=sys.stderr)
    print(f"{args.file}: valid ({len(frame)} rows, {frame.ImageId[frame.ImageId != ''].nunique()} images, "
          f"grid {grid})")


if __name__ == "__main__":
    run(main)
