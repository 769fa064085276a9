"""Stage download: put the competition data, in Kaggle's layout, at --out."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import DataParams, SyntheticParams, load_section
from stages._cli import parser, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--out", type=Path, required=True, help="folder to hold train/, test/, train.csv, ...")
    cli.add_argument("--archives", type=Path, default=Path("data/downloads"),
                     help="where the Kaggle archive is kept until unpacked (source=kaggle)")
    args = cli.parse_args()
    from pipeline.data import download, synthetic
    from pipeline.kaggle.api import authenticated_api
    from pipeline.kaggle.download import kaggle_download
    data = load_section(args.params, "data", DataParams)
    if data.source == "synthetic":
        summary = synthetic.write_dataset(args.out, load_section(args.params, "synthetic", SyntheticParams))
        print(f"synthetic dataset: {summary.train_images} train images with {summary.instances} instances, "
              f"{summary.test_images} test images; size defect injected in: {summary.size_defect_image}")
    elif data.source == "kaggle":
        kaggle_download(authenticated_api(), data.competition, args.out, args.archives)
    else:
        root = download.find_dataset_root(data.search_root)
        download.link_dataset(root, args.out)
        print(f"linked the dataset at {root} into {args.out} (read in place)")


if __name__ == "__main__":
    run(main)
