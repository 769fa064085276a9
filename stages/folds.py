"""Stage folds: multilabel-stratified K folds of the train images on category presence."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import FoldsParams, load_section
from pipeline.data.labels import load_labels
from stages._cli import parser, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--instances", type=Path, required=True, help="instance table from stage prepare")
    cli.add_argument("--labels", type=Path, required=True, help="label_descriptions.json")
    cli.add_argument("--out", type=Path, required=True, help="folds.csv (ImageId, fold)")
    cli.add_argument("--report", type=Path, required=True, help="fold balance (JSON)")
    args = cli.parse_args()
    require_inputs(args, {"instances": "prepare", "labels": "download"})
    from pipeline.data.annotations import read_instances
    from pipeline.data.folds import fold_balance, make_folds
    from pipeline.utils.io import atomic_write, write_json
    params = load_section(args.params, "folds", FoldsParams)
    instances = read_instances(args.instances, columns=["image_id", "category"])
    n_categories = len(load_labels(args.labels).categories)
    folds = make_folds(instances, n_categories, params.n_folds, params.seed, str(args.instances))
    atomic_write(args.out, folds.to_csv(index=False))
    balance = fold_balance(instances, folds, n_categories)
    write_json(args.report, balance)
    print(f"{len(folds)} images in {params.n_folds} folds: {balance['images_per_fold']}")


if __name__ == "__main__":
    run(main)
