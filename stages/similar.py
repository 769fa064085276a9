"""Stage similar (not in dvc.yaml: run on demand): a photo's items and the most similar catalogue items of each.

  python -m stages.similar PHOTO [PHOTO ...] [--k 8] [--index index] [--out similar]

Segments each photo as stage segment does, with the catalogue's model (``index.family``),
describes each item as the catalogue's items were described, and searches the catalogue
within the item's category, through the Python API (``result.similar``). Writes ``<out>/<name>.json``
(each item with its k results: image, box, ClassId, similarity) and ``<out>/<name>.png`` (a contact
sheet: per item its crop from the photo, then the results' crops). A catalogue made with other weights
or model params is refused.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.params import load_section
from pipeline.config.shop import IndexParams
from stages._cli import parser, positive, run
from stages._photos import add_arguments, for_each_photo, open_model, output_folder


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--k", type=positive, default=8, help="similar items per item (default 8)")
    cli.add_argument("--index", type=Path, default=Path("index"), help="catalogue folder (stage index)")
    add_arguments(cli)
    cli.add_argument("--out", type=Path, default=Path("similar"), help="folder to write (default: similar)")
    args = cli.parse_args()
    from pipeline.shop.photos import photo_paths
    from pipeline.utils.io import atomic_path, write_json
    photos = photo_paths(args.photos)  # before any model loads: a wrong folder or pattern fails at once
    output_folder(args.out, make=False)
    model = open_model(args, load_section(args.params, "index", IndexParams).family, args.index)
    model.check_catalogue()  # before any photo
    output_folder(args.out)

    def work(path: Path, name: str) -> str:
        found = model(path).similar(args.k)
        write_json(args.out / f"{name}.json", found.to_dict())
        with atomic_path(args.out / f"{name}.png") as tmp:
            found.plot().save(tmp, format="PNG")
        return f"{len(found.matches)} item(s), up to {args.k} similar each -> {args.out / name}.json, .png"

    for_each_photo(photos, work, "searched")

if __name__ == "__main__":
    run(main)
