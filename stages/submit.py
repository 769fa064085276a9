"""Validate submission.csv, then upload it to the competition (not part of ``dvc repro``).

Usage: ``python -m stages.submit [--file submission.csv] [--note "text"]``. The message names
the git commit and a digest of params.yaml and the tuned post-processing, so every leaderboard
entry can be traced to what made it. Needs Kaggle credentials (``~/.kaggle/kaggle.json`` or
``KAGGLE_USERNAME``/``KAGGLE_KEY``).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import DataParams, load_section
from pipeline.config.tuned import load_tuned
from pipeline.data.labels import load_labels
from stages._cli import parser, run, tuned_postprocess


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--file", type=Path, default=Path("submission.csv"))
    cli.add_argument("--note", default="", help="text appended to the submission message")
    cli.add_argument("--sample-submission", type=Path, default=Path("data/raw/sample_submission.csv"))
    cli.add_argument("--test-images", type=Path, default=Path("data/raw/test"))
    cli.add_argument("--labels", type=Path, default=Path("data/raw/label_descriptions.json"))
    cli.add_argument("--tuned", type=Path, help="the tuned post-processing; default: "
                     "tuning/<model.family>/postprocess.yaml")
    args = cli.parse_args()
    from pipeline.kaggle import submit as kaggle_submit
    from pipeline.kaggle.api import authenticated_api
    from pipeline.submission import rows as submission
    args.tuned = tuned_postprocess(args.params, args.tuned)
    competition = load_section(args.params, "data", DataParams).competition
    params = load_tuned(args.tuned).postprocess
    records = submission.test_records(args.sample_submission, args.test_images)
    frame = submission.check_file(args.file, params.grids(records), load_labels(args.labels))
    text = kaggle_submit.message(Path(args.params).resolve().parent, [Path(args.params), args.tuned], args.note)
    answer = kaggle_submit.submit(authenticated_api(), args.file, competition, text)
    print(f"submitted {args.file} ({len(frame)} rows) to {competition}: {text!r}; Kaggle says: {answer or '-'}; "
          f"see `kaggle competitions submissions {competition}`")


if __name__ == "__main__":
    run(main)
