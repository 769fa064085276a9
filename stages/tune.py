"""Stage tune: search the post-processing thresholds that maximise the metric on the validation fold.

Reuses the saved raw predictions (no model). Writes the best set as a params-like file
(``postprocess:`` section) that stages evaluate and submission read, the headline metrics (the
tuned score and the held-out estimate: tuned on one half, scored on the other, the honest
number) and a report of the whole search.
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.config.inference import PostprocessParams, TuneParams
from pipeline.config.params import load_section
from pipeline.config.tuned import Tuned
from pipeline.data.labels import load_labels
from stages._cli import parser, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--predictions", type=Path, required=True, help="validation predictions (stage predict)")
    cli.add_argument("--instances", type=Path, required=True, help="prepared instance table (the ground truth)")
    cli.add_argument("--labels", type=Path, required=True, help="label_descriptions.json")
    cli.add_argument("--out", type=Path, required=True, help="the tuned postprocess section (YAML)")
    cli.add_argument("--metrics", type=Path, required=True, help="headline metrics (JSON) to write")
    cli.add_argument("--report", type=Path, required=True, help="report of the search (JSON) to write")
    args = cli.parse_args()
    require_inputs(args, {"predictions": "predict", "instances": "prepare", "labels": "download"})
    from pipeline.data.annotations import read_instances
    from pipeline.evaluation import headline, scoring
    from pipeline.evaluation import search as tuning
    from pipeline.inference import store
    from pipeline.inference.postprocess import check_attribute_settings
    from pipeline.utils.io import atomic_write, write_json
    start = load_section(args.params, "postprocess", PostprocessParams)
    params = load_section(args.params, "tune", TuneParams)
    labels = load_labels(args.labels)
    check_attribute_settings(start, labels)
    predictions = store.read(args.predictions)
    records = tuning.sample(predictions.images, params.max_images, params.seed)
    detections = predictions.by_image(r.image_id for r in records)
    truth = scoring.truth_on_grid(read_instances(args.instances), records, start)
    began = time.perf_counter()
    with scoring.Scorer(detections, truth, labels, params.workers) as scorer:
        found = tuning.search(scorer, records, start, params, labels)
        held_out, held_out_policy = tuning.held_out_score(scorer, records, start, params, labels)
    seconds = time.perf_counter() - began
    atomic_write(args.out, Tuned(predictions.family, found.params).text())
    report = tuning.report(found, held_out, held_out_policy, len(records), params, seconds)
    write_json(args.report, report)
    write_json(args.metrics, headline.tuning(report))
    changed = {k: v for k, v in found.params.model_dump().items() if v != getattr(start, k)}
    policy = report["policy_images"]
    print(f"tuned on {len(records)} images in {seconds:.0f} s, {scorer.workers} process(es), "
          f"{found.evaluations} evaluations: {found.start_score:.4f} -> {found.score:.4f} "
          f"(held-out estimate {held_out:.4f}); attribute settings on {found.policy_images} {params.policy_images} "
          f"images: {policy['before_attribute_tuning']} -> {policy['tuned']} (held-out {policy['tuned_held_out']}); "
          f"changed {changed}")


if __name__ == "__main__":
    run(main)
