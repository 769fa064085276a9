"""Build the push-ready Kaggle kernel folder and its code dataset: ``make kaggle-kernel``.

Writes ``<out>/kernel`` (``kaggle kernels push -p``) and ``<out>/dataset`` (``kaggle datasets
create -p``); docs/kaggle.md gives the whole sequence. ``--wheelhouse-only`` just
downloads the dependency wheels (the test suite's set-up does this).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline.config.kaggle import KernelBuildParams
from pipeline.config.params import load_section
from stages._cli import parser, run

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--out", type=Path, default=Path("build/kaggle"), help="where kernel/ and dataset/ go")
    cli.add_argument("--wheelhouse", type=Path, default=Path("build/wheelhouse"),
                     help="cache of dependency wheels, one folder per set of Python versions")
    cli.add_argument("--owner", help="Kaggle username (default: kaggle_kernel.owner, $KAGGLE_USERNAME, kaggle.json)")
    cli.add_argument("--internet", action="store_true",
                     help="an online notebook (default: kaggle_kernel.enable_internet)")
    cli.add_argument("--resume", action="store_true",
                     help="the kernel is its own source: continue its last version (default: kaggle_kernel.resume)")
    cli.add_argument("--python", nargs="+",
                     help="Python versions of the wheels (default: kaggle_kernel.python_versions)")
    cli.add_argument("--wheelhouse-only", action="store_true",
                     help="only download the wheels, for this interpreter unless --python says otherwise")
    cli.add_argument("--notebook", action="store_true",
                     help="write the kernel as a notebook (.ipynb, Kaggle's default type) instead of a script")
    cli.add_argument("--allow-missing-weights", action="store_true",
                     help="build although the params name a weights file that no attached dataset provides")
    args = cli.parse_args()
    from pipeline.kaggle.bundle import build, check_weights, notebook_params, wheelhouse
    settings = load_section(args.params, "kaggle_kernel", KernelBuildParams)
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    versions = tuple(args.python or ([current] if args.wheelhouse_only else settings.python_versions))
    settings = settings.model_copy(update={"python_versions": versions, "owner": args.owner or settings.owner,
                                           "enable_internet": args.internet or settings.enable_internet,
                                           "resume": args.resume or settings.resume})
    params = notebook_params(REPO, Path(args.params), settings)
    # before minutes of downloads
    problem = None if args.wheelhouse_only else check_weights(params, settings, args.allow_missing_weights)
    wheels = wheelhouse(args.wheelhouse / ("py" + "-".join(versions)), versions)
    print(f"dependency wheels for Python {', '.join(versions)}: {wheels}")
    if args.wheelhouse_only:
        return
    built = build(REPO, args.out, Path(args.params), settings, wheels, os.environ, as_notebook=args.notebook,
                  allow_missing_weights=args.allow_missing_weights)
    meta = built.metadata
    weights = params.get("kaggle_session", {}).get("weights_file", "")
    steps = [f"kaggle datasets create -p {built.dataset}   # the code; later builds: kaggle datasets version -p "
             f"{built.dataset} -m MSG"]
    if settings.weights_dataset:
        steps.append(f"# once: the dataset {settings.weights_dataset} must hold {weights or 'the weights file'} "
                     "(docs/kaggle.md, 'Pretrained weights in an offline notebook')")
    steps += [f"kaggle kernels push -p {built.kernel}", f"kaggle kernels status {meta['id']}",
              f"kaggle kernels output {meta['id']} -p kaggle-output"]
    print(f"kernel {meta['id']} ({meta['kernel_type']}, internet {'on' if meta['enable_internet'] else 'off'}, "
          f"{meta['machine_shape']}); uploads and runs, in order:\n" + "\n".join(f"  {step}" for step in steps))
    if problem:
        print(f"WARNING: {problem}", file=sys.stderr)


if __name__ == "__main__":
    run(main)
