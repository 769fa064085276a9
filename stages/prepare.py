"""Stage prepare: validate train.csv against the label set and the JPEGs; write the instance table and report."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import FoldsParams, PrepareParams, load_section
from pipeline.data.labels import load_labels
from stages._cli import parser, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--raw", type=Path, required=True, help="the dataset folder (Kaggle layout)")
    cli.add_argument("--out", type=Path, required=True, help="instance table (parquet)")
    cli.add_argument("--report", type=Path, required=True, help="data report (JSON)")
    args = cli.parse_args()
    require_inputs(args, {"raw": "download"})
    from pipeline.data.annotations import prepare
    from pipeline.utils.io import atomic_write, write_json
    params = load_section(args.params, "prepare", PrepareParams)
    n_folds = load_section(args.params, "folds", FoldsParams).n_folds
    result = prepare(args.raw / "train.csv", load_labels(args.raw / "label_descriptions.json"), args.raw / "train",
                     on_size_mismatch=params.on_size_mismatch, max_examples=params.report_examples)
    write_json(args.report, result.report)  # also when the table is unusable: the report says why
    result.require(n_folds, args.raw / "train.csv")
    atomic_write(args.out, result.instances.to_parquet(index=False))
    print(result.describe())


if __name__ == "__main__":
    run(main)
