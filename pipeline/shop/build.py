"""Stage index's work: embed the training folds' instances, choose the descriptor on the validation fold, index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.config.shop import FEATURE_KINDS, IndexParams
from pipeline.data.attributes import Groups
from pipeline.data.dataset import InstanceDataset
from pipeline.models.contract import DetectionModel
from pipeline.models.registry import ModelConfig
from pipeline.shop.catalogue import Catalogue, build_index
from pipeline.shop.features import embed_instances
from pipeline.shop.scores import recall_at_k, retrieval_scores
from pipeline.utils.errors import PipelineError
from pipeline.utils.fingerprint import file_digest
from pipeline.utils.io import as_json


def catalogue_key(checkpoint: Path | str, config: ModelConfig) -> dict:
    """What a catalogue's vectors depend on: the weights and the model sections (a query must use the same).

    As it reads back from the manifest (lists, not tuples), so that the two compare equal.
    """
    return as_json({"checkpoint": file_digest(checkpoint), **config.key()})


@dataclass(frozen=True)
class Sources:
    """The model and the two sides of the split: the catalogue (training folds) and the queries (validation)."""

    model: DetectionModel
    key: dict
    catalogue: InstanceDataset
    queries: InstanceDataset
    image_dir: Path
    device: torch.device


def build_catalogue(sources: Sources, params: IndexParams, groups: Groups) -> tuple[Catalogue, dict]:
    """The catalogue of ``params.kind`` with the chosen descriptor, and the metrics of every descriptor.

    Each descriptor is scored as an exact index of the catalogue queried with the validation
    instances (``pipeline.shop.scores``); ``features: auto`` keeps the better ``score``.
    """
    embedded, items = embed_instances(sources.model, sources.catalogue, params.batch_size, params.workers,
                                      sources.device, params.precision, "embed catalogue")
    if items.empty:
        raise PipelineError("the training folds have no instances to put in the catalogue")
    queried, query_items = embed_instances(sources.model, sources.queries, params.batch_size, params.workers,
                                           sources.device, params.precision, "embed queries")
    order = np.argsort(items.category.to_numpy(), kind="stable")  # each category a range of ids
    items = items.iloc[order].reset_index(drop=True)
    exact = {kind: Catalogue(build_index(embedded[kind][order], "flat", params.nlist, params.nprobe, params.seed),
                             items, {}) for kind in FEATURE_KINDS}
    by_features = {kind: retrieval_scores(exact[kind], queried[kind], query_items, params.k, groups)
                   for kind in FEATURE_KINDS}
    chosen = (max(FEATURE_KINDS, key=lambda kind: by_features[kind]["score"]) if params.features == "auto"
              else params.features)
    vectors = embedded[chosen][order]
    index = exact[chosen].index if params.kind == "flat" else build_index(vectors, params.kind, params.nlist,
                                                                         params.nprobe, params.seed)
    metrics = {"features": chosen, "kind": params.kind, "k": params.k, "catalogue_items": len(items),
               "queries": len(query_items), **by_features[chosen], "by_features": by_features}
    if params.kind == "ivf":
        queries = np.ascontiguousarray(queried[chosen])
        metrics["ivf_recall_at_k"] = recall_at_k(index.search(queries, params.k)[1],
                                                 exact[chosen].index.search(queries, params.k)[1])
    manifest = {"key": sources.key, "features": chosen, "kind": params.kind, "image_dir": str(sources.image_dir),
                "items": len(items), "dimensions": int(vectors.shape[1])}
    return Catalogue(index, items, manifest), metrics
