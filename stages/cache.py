"""Stage cache: a copy of the train images and masks resized to the largest training resolution."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.model import ModelParams
from pipeline.config.params import load_section
from pipeline.config.training import AugmentParams, CacheParams
from stages._cli import parser, require_inputs, run


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--instances", type=Path, required=True, help="instance table from stage prepare")
    cli.add_argument("--images", type=Path, required=True, help="folder of the train JPEGs")
    cli.add_argument("--out", type=Path, required=True, help="cache folder (images/ and instances.parquet)")
    cli.add_argument("--report", type=Path, required=True, help="cache report (JSON)")
    args = cli.parse_args()
    require_inputs(args, {"instances": "prepare", "images": "download"})
    from pipeline.data.annotations import read_instances
    from pipeline.data.image_cache import CacheSettings, build_cache
    from pipeline.utils.io import write_json
    model = load_section(args.params, "model", ModelParams)
    augment = load_section(args.params, "augment", AugmentParams)
    params = load_section(args.params, "cache", CacheParams)
    settings = CacheSettings(model.min_size, model.max_size, augment.scale_range[1], params.jpeg_quality)
    report = build_cache(read_instances(args.instances), args.images, args.out, settings, params.workers)
    write_json(args.report, report.metrics())
    reused = f", {report.parts_reused} parts kept from an interrupted run" if report.parts_reused else ""
    reused += ", up to date: nothing redone" if report.up_to_date else ""
    if report.parts_redone:
        reused += (f", {report.parts_redone} finished part(s) made again: they failed their check "
                   f"(e.g. {report.redone_because})")
    print(f"cached {report.images} images ({report.images_resized} downscaled, {report.bytes_on_disk / 1e6:.1f} MB); "
          f"{report.instances} instances, {report.instances_vanished} too small to keep at the cached size{reused}")


if __name__ == "__main__":
    run(main)
