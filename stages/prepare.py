"""Stage prepare: validate train.csv against the label set and the JPEGs; write the instance table and report."""

from __future__ import annotations

from pathlib import Path

from pipeline.annotations import prepare
from pipeline.io import atomic_path, write_json
from pipeline.labels import load_labels
from pipeline.params import PrepareParams, load_section
from stages._cli import parser, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--raw", type=Path, required=True, help="the dataset folder (Kaggle layout)")
    cli.add_argument("--out", type=Path, required=True, help="instance table (parquet)")
    cli.add_argument("--report", type=Path, required=True, help="data report (JSON)")
    args = cli.parse_args()
    params = load_section(args.params, "prepare", PrepareParams)
    result = prepare(args.raw / "train.csv", load_labels(args.raw / "label_descriptions.json"), args.raw / "train",
                     on_size_mismatch=params.on_size_mismatch, max_examples=params.report_examples)
    with atomic_path(args.out) as tmp:
        result.instances.to_parquet(tmp, index=False)
    write_json(args.report, result.report)
    problems = {kind: p["count"] for kind, p in result.report["problems"].items() if p["count"]}
    print(f"kept {result.report['rows_kept']}/{result.report['rows']} rows of "
          f"{result.report['images_kept']}/{result.report['images']} images; problems: {problems or 'none'}")


if __name__ == "__main__":
    run(main)
