"""Stage train: the model family of params.yaml on the cached train images, validated on the held-out fold each epoch.

Run it as ``python -m stages.train ...`` on one device, or ``torchrun --nproc_per_node=N -m stages.train ...``
on N GPUs; it resumes from the run folder's last checkpoint unless --no-resume. A time limit
(``--deadline``, or the environment variable IMATERIALIST_TRAIN_DEADLINE, which the Kaggle kernel sets)
stops training with a checkpoint before that moment; the next run continues from it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config.params import load_section
from pipeline.config.training import DEADLINE_ENV, AugmentParams, TrainParams
from pipeline.data.labels import load_labels
from stages._cli import add_family, parser, positive, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    add_family(cli)
    cli.add_argument("--instances", type=Path, required=True, help="instance table (stage cache or prepare)")
    cli.add_argument("--images", type=Path, required=True, help="folder of the images that table describes")
    cli.add_argument("--folds", type=Path, required=True, help="folds.csv from stage folds")
    cli.add_argument("--labels", type=Path, required=True, help="label_descriptions.json")
    cli.add_argument("--run-dir", type=Path, required=True, help="checkpoints and resolved params")
    cli.add_argument("--live-dir", type=Path, required=True, help="DVCLive metrics and plots")
    cli.add_argument("--metrics", type=Path, help="headline metrics (JSON) to write: the best epoch's scores")
    cli.add_argument("--no-resume", action="store_true", help="start fresh even if the run folder has a checkpoint")
    cli.add_argument("--max-steps", type=positive, help="smoke runs: stop after this many optimizer steps")
    cli.add_argument("--limit", type=positive, help="smoke runs: train on the first N training images only")
    cli.add_argument("--deadline", type=float, default=os.environ.get(DEADLINE_ENV),
                     help=f"stop before this time (seconds since 1970, UTC); default: ${DEADLINE_ENV} if set")
    args = cli.parse_args()
    require_inputs(args, {"instances": "cache", "images": "cache", "folds": "folds", "labels": "download"})
    from pipeline.data.annotations import read_instances
    from pipeline.data.dataset import fold_datasets
    from pipeline.data.transforms import Augment
    from pipeline.evaluation import headline
    from pipeline.models import registry
    from pipeline.training.loop import Job, train
    from pipeline.training.tracking import logged_throughput
    from pipeline.utils.io import write_json
    config = registry.load(args.params, args.family)
    augment = load_section(args.params, "augment", AugmentParams)
    params = load_section(args.params, "train", TrainParams)
    labels = load_labels(args.labels)
    num_classes, num_attributes = len(labels.categories) + 1, len(labels.attributes)
    train_set, val_set = fold_datasets(read_instances(args.instances), args.images, args.folds, params.fold,
                                       config.model, num_attributes, Augment(augment), train_limit=args.limit)
    result = train(Job(config, params, augment, num_classes, num_attributes, train_set, val_set, args.run_dir,
                       args.live_dir, resume=not args.no_resume, max_steps=args.max_steps, deadline=args.deadline))
    if not result.main_process:
        return
    if args.metrics:
        write_json(args.metrics, headline.training(result.best, logged_throughput(args.live_dir)))
    state = "finished" if result.finished else f"stopped at step {result.steps} ({result.stopped_by})"
    best = "none" if result.best_score is None else f"{result.best_score:.4f} at step {result.best_step}"
    print(f"training {state}: {result.epochs_done} epochs, {result.steps} steps; "
          f"best val score {best} (competition metric, category matching)")


if __name__ == "__main__":
    run(main)
