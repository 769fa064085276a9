"""Stage index: the catalogue of similar items, every true instance of the training folds described by the model.

Writes ``<out>/catalogue.faiss``, ``<out>/items.parquet`` and ``<out>/manifest.json``
(``pipeline.shop.catalogue``), and the retrieval scores on the validation fold: the headline to ``--metrics``,
every attribute group and feature set to ``--report``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import load_section
from pipeline.config.shop import IndexParams
from pipeline.config.training import TrainParams
from pipeline.data.labels import load_labels
from stages._cli import parser, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--run-dir", type=Path, required=True, help="training run folder of index.family (best.pt)")
    cli.add_argument("--instances", type=Path, required=True, help="instance table of the images (the cache's)")
    cli.add_argument("--images", type=Path, required=True, help="folder of those images")
    cli.add_argument("--folds", type=Path, required=True, help="folds.csv")
    cli.add_argument("--labels", type=Path, required=True, help="label_descriptions.json")
    cli.add_argument("--out", type=Path, required=True, help="catalogue folder to write")
    cli.add_argument("--metrics", type=Path, required=True, help="headline retrieval scores (JSON) to write")
    cli.add_argument("--report", type=Path, required=True, help="every retrieval score (JSON) to write")
    args = cli.parse_args()
    require_inputs(args, {"instances": "cache", "images": "cache", "folds": "folds",
                          "labels": "download"})
    from pipeline.data.annotations import read_instances
    from pipeline.data.attributes import groups_of
    from pipeline.data.dataset import fold_datasets
    from pipeline.evaluation import headline
    from pipeline.inference.trained import open_model
    from pipeline.models import registry
    from pipeline.shop.build import Sources, build_catalogue, catalogue_key
    from pipeline.shop.catalogue import save_catalogue
    from pipeline.shop.features import require_features
    from pipeline.utils.io import write_json
    params = load_section(args.params, "index", IndexParams)
    config = registry.load(args.params, params.family)
    labels = load_labels(args.labels)
    trained = open_model(args.run_dir, config, len(labels.attributes), params.device, device_setting="index.device",
                         doing="indexing")
    require_features(trained.model, params.family)
    instances = read_instances(args.instances)
    datasets = fold_datasets(instances, args.images, args.folds, load_section(args.params, "train", TrainParams).fold,
                             config.model, len(labels.attributes))
    catalogue, metrics = build_catalogue(Sources(trained.model, catalogue_key(trained.checkpoint, config), *datasets,
                                                 args.images, trained.device), params, groups_of(labels))
    save_catalogue(args.out, catalogue)
    write_json(args.report, metrics)
    write_json(args.metrics, headline.retrieval(metrics))
    pattern = metrics["attribute_groups"].get("textile pattern", {})
    print(f"{args.out}: {metrics['catalogue_items']} items, {metrics['features']} features, {params.kind} index; "
          f"precision@{params.k} category {metrics['category']['precision']:.3f} "
          f"(random {metrics['category']['random']:.3f}), textile pattern {pattern.get('precision', float('nan')):.3f} "
          f"(random {pattern.get('random', float('nan')):.3f})")


if __name__ == "__main__":
    run(main)
