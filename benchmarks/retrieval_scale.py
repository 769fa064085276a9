"""The catalogue index at the real catalogue's size: build time, query latency and memory, exact and IVF.

The real training set has about 330,000 instances; this measures faiss on that many synthetic
unit vectors (clustered, as descriptors of 46 categories are) and on 1,000,000, at the dimension
of the chosen descriptor (``texture``: 640 with a ResNet FPN; ``fpn_mask`` 256; ``box_head`` 1024),
with ``pipeline.shop.catalogue``'s own build and search: one query at a time and in batches of 100,
over all items and within one category (an ``IDSelectorRange``), and IVF's recall@k against
exact search on the same queries. Prints one line per setting and writes them as JSON.

  python benchmarks/retrieval_scale.py --sizes 330000 1000000 --dim 640 --json results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.shop.catalogue import Catalogue, build_index  # noqa: E402
from pipeline.shop.scores import recall_at_k  # noqa: E402

CATEGORIES = 46


def vectors(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 46 category centres (sorted by category, as the catalogue stores them)."""
    rng = np.random.default_rng(seed)
    categories = np.sort(rng.integers(0, CATEGORIES, n))
    centres = rng.normal(size=(CATEGORIES, dim)).astype(np.float32)
    found = centres[categories] + rng.normal(scale=1.5, size=(n, dim)).astype(np.float32)
    found /= np.linalg.norm(found, axis=1, keepdims=True)
    return found, categories


def timed(function, repeat: int = 1) -> float:
    """Mean seconds of one call."""
    started = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - started) / repeat


def measure(catalogue: Catalogue, queries: np.ndarray, args) -> dict:
    """Query latency one at a time, in a batch, and within the largest category."""
    categories = catalogue.items.category.to_numpy()
    one = timed(lambda: [catalogue.search(q[None], args.k) for q in queries[:20]]) / 20
    batch = timed(lambda: catalogue.search(queries, args.k)) / len(queries)
    category = int(np.bincount(categories).argmax())
    in_category = timed(lambda: [catalogue.search(q[None], args.k, category) for q in queries[:20]]) / 20
    return {"query_ms_one": round(one * 1e3, 2), "query_ms_batched": round(batch * 1e3, 3),
            "query_ms_one_in_category": round(in_category * 1e3, 2)}


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--sizes", type=int, nargs="+", default=[330_000, 1_000_000])
    cli.add_argument("--dim", type=int, default=640)
    cli.add_argument("--nlist", type=int, default=1024)
    cli.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256], help="IVF clusters searched")
    cli.add_argument("--k", type=int, default=8)
    cli.add_argument("--json", type=Path)
    args = cli.parse_args()
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    results = []
    for size in args.sizes:
        gallery, categories = vectors(size, args.dim, seed=0)
        queries, _ = vectors(100, args.dim, seed=1)
        items = pd.DataFrame({"category": categories})
        exact = None
        for kind in ("flat", "ivf"):
            started = time.perf_counter()
            index = build_index(gallery, kind, args.nlist, args.nprobe[0], seed=0)
            build = round(time.perf_counter() - started, 2)
            common = {"kind": kind, "items": size, "dim": args.dim, "build_seconds": build,
                      "index_mib": round(faiss.serialize_index(index).nbytes / 2**20, 1)}
            for nprobe in args.nprobe if kind == "ivf" else [None]:
                if nprobe is not None:
                    index.nprobe = nprobe
                result = {**common, "nlist": args.nlist if nprobe else None, "nprobe": nprobe,
                          **measure(Catalogue(index, items, {}), queries, args)}
                ids = index.search(queries, args.k)[1]
                exact = ids if exact is None else exact
                result["recall_at_k"] = recall_at_k(ids, exact)
                results.append(result)
                print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
