"""How well the catalogue retrieves, with no street-to-shop pairs: precision@k of labels shared with the query.

The validation fold's true instances are the queries and the catalogue is the gallery. Scored:
the share of the top k that have the query's category (search over all categories), and, among
the top k of the query's own category, the share whose attributes of a group (textile pattern,
length, ...) equal the query's, for queries that have one in that group. Each beside the
precision a random pick of the same pool would have on average, computed exactly from the
gallery's label counts rather than sampled, and the 95 % bootstrap interval of the difference
over the queries (a margin inside its interval's reach of 0 is noise, not a result).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.data.attributes import Groups
from pipeline.evaluation.bootstrap import interval
from pipeline.shop.catalogue import Catalogue

RESAMPLES = 2000


def _group_value(attributes, members: frozenset[int]) -> frozenset[int]:
    return frozenset(int(a) for a in attributes) & members


def _summary(precision: list[float], random: list[float]) -> dict:
    """Mean precision and random baseline over the queries, and the interval of their per-query difference."""
    margin = np.asarray(precision) - np.asarray(random)
    low, high = interval(margin, RESAMPLES, seed=0)
    return {"queries": len(precision), "precision": round(float(np.mean(precision)), 4),
            "random": round(float(np.mean(random)), 4), "margin": round(float(margin.mean()), 4),
            "margin_interval": [round(low, 4), round(high, 4)]}


def _category_precision(catalogue: Catalogue, queries: np.ndarray, categories: np.ndarray, k: int) -> dict:
    gallery = catalogue.items.category.to_numpy()
    found = catalogue.search(queries, k)
    precision = [np.mean(gallery[[i for i, _ in hits]] == c) if hits else 0.0
                 for hits, c in zip(found, categories, strict=True)]
    share = pd.Series(gallery).value_counts(normalize=True)
    return _summary(precision, [float(share.get(c, 0.0)) for c in categories])


def _attribute_precision(catalogue: Catalogue, queries: np.ndarray, items: pd.DataFrame, k: int,
                         groups: Groups) -> dict[str, dict]:
    gallery = catalogue.items
    totals = {name: {"precision": [], "random": []} for name in groups.names}
    for category, rows in items.groupby("category"):
        hits = catalogue.search(queries[rows.index.to_numpy()], k, category=int(category))
        pool = gallery[gallery.category == category].attributes
        for name, ids in groups.members.items():
            members = frozenset(ids)
            pool_values = [_group_value(a, members) for a in pool]
            for query_attributes, found in zip(rows.attributes, hits, strict=True):
                value = _group_value(query_attributes, members)
                if not value or not found:
                    continue
                same = [_group_value(gallery.attributes.iat[i], members) == value for i, _ in found]
                totals[name]["precision"].append(np.mean(same))
                totals[name]["random"].append(np.mean([v == value for v in pool_values]))
    return {name: _summary(t["precision"], t["random"]) for name, t in totals.items() if t["precision"]}


def retrieval_scores(catalogue: Catalogue, queries: np.ndarray, items: pd.DataFrame, k: int, groups: Groups) -> dict:
    """Precision@k of the category and of each attribute group, each with its random baseline.

    ``items`` are the queries' labels (``pipeline.shop.catalogue.META_COLUMNS``), row ``i`` for
    ``queries[i]``. ``score`` (what chooses the descriptor) is the mean of the category's precision
    and the attribute groups' mean precision.
    """
    items = items.reset_index(drop=True)
    category = _category_precision(catalogue, queries, items.category.to_numpy(), k)
    attributes = _attribute_precision(catalogue, queries, items, k, groups)
    mean = float(np.mean([g["precision"] for g in attributes.values()])) if attributes else 0.0
    return {"k": k, "category": category, "attribute_groups": attributes,
            "score": round((category["precision"] + mean) / 2, 4)}


def recall_at_k(approximate: np.ndarray, exact: np.ndarray) -> float:
    """The share of the exact top k (faiss ids per query, -1 for none) that an approximate search also returns."""
    shared = [len(set(e[e >= 0]) & set(a[a >= 0])) / max(1, int((e >= 0).sum()))
              for e, a in zip(exact, approximate, strict=True)]
    return round(float(np.mean(shared)), 4) if shared else 1.0
