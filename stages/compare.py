"""Stage compare: every family of compare.families side by side, on the same validation fold and device.

Writes one entry per family to ``--out`` (the tuned competition score with its 95 % bootstrap
interval over validation images, mask AP, training and inference speed measured here on the same
images and input size, parameters, peak memory, and a semantic family's pixel accuracy), the same as
a Markdown table (``--table``) and a bar chart (``--chart``) that ``dvc plots show`` includes.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.labels import load_labels
from stages._cli import parser, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--models", type=Path, required=True, help="folder of the training runs, one per family")
    cli.add_argument("--evaluation", type=Path, required=True, help="folder of stage evaluate's outputs, per family")
    cli.add_argument("--instances", type=Path, required=True, help="instance table of the cached images")
    cli.add_argument("--images", type=Path, required=True, help="folder of the cached images")
    cli.add_argument("--folds", type=Path, required=True, help="folds.csv")
    cli.add_argument("--labels", type=Path, required=True, help="label_descriptions.json")
    cli.add_argument("--out", type=Path, required=True, help="JSON: one entry per family")
    cli.add_argument("--table", type=Path, required=True, help="Markdown table")
    cli.add_argument("--chart", type=Path, required=True, help="PNG bar chart")
    args = cli.parse_args()
    require_inputs(args, {"models": "train", "evaluation": "evaluate", "instances": "cache", "images": "cache",
                          "folds": "folds", "labels": "download"})
    from pipeline.comparison import families as comparison
    from pipeline.comparison import table
    from pipeline.data.annotations import read_instances
    from pipeline.data.dataset import validation_dataset
    from pipeline.utils.io import write_json
    settings = comparison.Settings.load(Path(args.params))
    num_attributes = len(load_labels(args.labels).attributes)
    val_set = validation_dataset(read_instances(args.instances), args.images, args.folds, settings.train.fold,
                                 settings.model, num_attributes)
    rows = comparison.compare(settings, args.models, args.evaluation, val_set, num_attributes)
    write_json(args.out, rows)
    table.write(rows, args.table, args.chart)
    print(table.markdown(rows), end="")


if __name__ == "__main__":
    run(main)
