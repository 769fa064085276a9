"""One Kaggle notebook session: ``python -m kaggle_kernel.session --bundle ... --input ... --working ...``.

Started by ``run_kernel.py`` once the pipeline is installed; runs the stages of ``dvc.yaml``
(``pipeline.kaggle.session``) and says where training stands.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pipeline.kaggle.session import Session, run, summary
from stages._cli import run as run_cli


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--bundle", type=Path, required=True, help="the code dataset's folder")
    cli.add_argument("--input", type=Path, required=True, help="the read-only input root (/kaggle/input)")
    cli.add_argument("--working", type=Path, required=True, help="the output folder (/kaggle/working)")
    cli.add_argument("--started", type=float, default=time.time(), help="when the session began (time.time())")
    args = cli.parse_args()
    entry = run(Session(args.bundle, args.input, args.working, args.started, torch.cuda.device_count()))
    print(summary(entry))


if __name__ == "__main__":
    run_cli(main)
