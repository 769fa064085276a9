"""The catalogue of similar items: descriptors in faiss, their items in parquet, and what built them in a manifest.

Items are stored sorted by category, so that each category is a contiguous range of ids and a
same-category search is a range-restricted search (``faiss.IDSelectorRange``) over one index,
exact or IVF alike, instead of one index per category.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import pandas as pd

from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path, write_json
from pipeline.utils.tables import read_json, read_parquet

IndexKind = Literal["flat", "ivf"]
INDEX, ITEMS, MANIFEST = "catalogue.faiss", "items.parquet", "manifest.json"
REBUILD = "rebuild it: dvc repro index"
_MANIFEST_KEYS = {"key", "features", "kind", "image_dir", "items", "dimensions"}


#: One row per instance: its image, box in that image's pixels (as stored), category and attributes.
META_COLUMNS = ("image_id", "x0", "y0", "x1", "y1", "category", "attributes")


class CatalogueError(PipelineError):
    """A catalogue that is missing, unreadable, or made by another model."""


def build_index(vectors: np.ndarray, kind: IndexKind, nlist: int, nprobe: int, seed: int) -> faiss.Index:
    """Inner product over unit vectors (cosine similarity): exact (``flat``) or IVF with ``nlist`` clusters."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        clusters = max(1, min(nlist, len(vectors)))  # k-means needs at least one vector per cluster
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, clusters, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.min_points_per_centroid = 1  # no warning on small catalogues
        index.train(vectors)
        index.nprobe = min(nprobe, clusters)
    index.add(vectors)
    return index


@dataclass
class Catalogue:
    """The index and its items (row ``i`` is id ``i``, sorted by category) with the manifest that made them."""

    index: faiss.Index
    items: pd.DataFrame
    manifest: dict

    def category_range(self, category: int) -> tuple[int, int]:
        """The ids [lo, hi) of ``category``'s items (the items are sorted by category); (lo, lo) when none."""
        categories = self.items.category.to_numpy()
        return (int(np.searchsorted(categories, category, "left")), int(np.searchsorted(categories, category, "right")))

    def search(self, vectors: np.ndarray, k: int, category: int | None = None) -> list[list[tuple[int, float]]]:
        """For each query, up to ``k`` (id, similarity) pairs, best first; only ``category``'s items if given."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if category is None:
            scores, ids = self.index.search(vectors, k)
        else:
            lo, hi = self.category_range(category)
            if lo == hi:
                return [[] for _ in vectors]
            selector = faiss.IDSelectorRange(lo, hi)
            params = (faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
                      if isinstance(self.index, faiss.IndexIVF) else faiss.SearchParameters(sel=selector))
            scores, ids = self.index.search(vectors, k, params=params)
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
                for row_ids, row_scores in zip(ids, scores, strict=True)]


def save_catalogue(folder: Path | str, catalogue: Catalogue) -> None:
    """Write the index, the items and (last, marking the folder complete) the manifest, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    with atomic_path(folder / INDEX) as tmp:
        faiss.write_index(catalogue.index, str(tmp))
    with atomic_path(folder / ITEMS) as tmp:
        catalogue.items.to_parquet(tmp, index=False)
    write_json(folder / MANIFEST, catalogue.manifest)


def load_catalogue(folder: Path | str, expected_key: dict | None = None) -> Catalogue:
    """The catalogue of ``folder``; refused when it was made by a model other than ``expected_key`` says, and a
    :class:`CatalogueError` naming the file when one is unreadable or does not fit the others."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise CatalogueError(f"{folder}: no catalogue ({MANIFEST} missing); run stage index (dvc repro index)")
    manifest = read_json(folder / MANIFEST, REBUILD)
    if not isinstance(manifest, dict) or not set(manifest) >= _MANIFEST_KEYS or not isinstance(manifest["key"], dict):
        raise CatalogueError(f"{folder / MANIFEST}: not the manifest of a catalogue; {REBUILD}")
    if expected_key is not None and manifest["key"] != expected_key:
        differ = sorted(k for k in {*manifest["key"], *expected_key} if manifest["key"].get(k) != expected_key.get(k))
        raise CatalogueError(f"{folder}: the catalogue was built with another model ({', '.join(differ)} differ); "
                             "rebuild it with this one: dvc repro index")
    try:
        index = faiss.read_index(str(folder / INDEX))
    except RuntimeError as exc:
        raise CatalogueError(f"{folder / INDEX}: cannot read the index ({str(exc).splitlines()[0]}); {REBUILD}",
                             ) from exc
    items = read_parquet(folder / ITEMS, META_COLUMNS, REBUILD)
    if index.ntotal != len(items) or len(items) != manifest["items"]:
        raise CatalogueError(f"{folder}: the index holds {index.ntotal} vectors, {ITEMS} {len(items)} items and "
                             f"{MANIFEST} says {manifest['items']}; {REBUILD}")
    if not items.category.is_monotonic_increasing:
        raise CatalogueError(f"{folder / ITEMS}: items are not sorted by category, so a search within a category "
                             f"would return others; {REBUILD}")
    return Catalogue(index, items, manifest)
