"""Stage serve (not in dvc.yaml: run on demand): a local web page that segments a photo and finds similar items.

  python -m stages.serve [--run-dir models/maskrcnn] [--port 7860] [--host 127.0.0.1]

Open the address it prints, drop or choose a photo: the page shows the items drawn over it, each
item's category, attributes and score, and, when the catalogue of stage index was built with this
model, each item's most similar catalogue items. The model is the Python API's (``pipeline.load``).
It listens on this machine only unless ``--host`` says otherwise, loads nothing from elsewhere, and
answers one photo at a time: photos larger than ``--max-mb``, files that are not images and more
than ``--max-waiting`` photos at once get a message on the page.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.utils.errors import PipelineError
from stages._cli import add_family, parser, positive, run
from stages._photos import add_model_arguments, open_model


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    value = positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return value


def main() -> None:
    cli = parser(__doc__)
    add_family(cli)
    add_model_arguments(cli)
    cli.add_argument("--index", type=Path, default=Path("index"), help="catalogue folder (stage index)")
    cli.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    cli.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    cli.add_argument("--k", type=positive, default=6, help="similar items shown per item (default 6)")
    cli.add_argument("--max-mb", type=positive, default=20, help="largest photo accepted, in MB (default 20)")
    cli.add_argument("--max-waiting", type=positive, default=4, help="photos that may wait for the model (default 4)")
    args = cli.parse_args()
    try:
        from pipeline.shop.server import LOCAL_HOSTS, listen, make_app, serve
    except ImportError as exc:
        raise PipelineError(f"stage serve needs fastapi and uvicorn ({exc}): pip install -e '.[serve]' "
                            "(make demo installs them)") from exc
    from pipeline.shop.page import Limits, PhotoDesk
    listener = listen(args.host, args.port)
    desk = PhotoDesk(open_model(args, args.family, args.index), Limits(args.max_mb * 2**20,
                                                                      max_waiting=args.max_waiting), args.k)
    local = args.host in LOCAL_HOSTS
    print(f"model: {desk.model.family}, {desk.model.info['checkpoint']}")
    print("similar items: " + ("from " + str(args.index) if desk.no_similar is None else f"none ({desk.no_similar})"))
    if not local:
        print(f"warning: listening on {args.host}: other machines that reach it can use the page")
    print(f"open http://{'localhost' if local else args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    serve(make_app(desk, LOCAL_HOSTS if local else ("*",)), listener, args.max_waiting)


if __name__ == "__main__":
    run(main)
