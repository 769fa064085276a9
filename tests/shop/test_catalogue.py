"""The catalogue of similar items: stable descriptors, exact and IVF search, its scores, and a refused foreign model."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import stages.index
import stages.similar
from pipeline.config.inference import PostprocessParams
from pipeline.config.shop import IndexParams
from pipeline.config.tuned import Tuned
from pipeline.data.attributes import Groups
from pipeline.data.dataset import InstanceDataset
from pipeline.data.folds import split
from pipeline.data.labels import load_labels
from pipeline.evaluation.bootstrap import interval
from pipeline.inference.trained import checkpoint_path, load_model
from pipeline.models import registry
from pipeline.shop import build
from pipeline.shop.catalogue import Catalogue, CatalogueError, build_index, load_catalogue, save_catalogue
from pipeline.shop.features import FeaturesError, embed, embed_instances, require_features
from pipeline.shop.scores import recall_at_k, retrieval_scores
from stages._cli import run

from model_configs import one_image, tiny_config, unet_config, yolact_config
from stage_runs import REPO, TINY_UNET_TRAINING, offline_stage, training_inputs

CPU = torch.device("cpu")


def test_an_instance_has_the_same_unit_vector_every_time():
    torch.manual_seed(0)
    model = tiny_config().build(47, 92).eval()
    image, target = one_image()
    first = embed(model, [image], [target["boxes"]], [target["masks"]], CPU)
    again = embed(model, [image.clone()], [target["boxes"].clone()], [target["masks"].clone()], CPU)
    assert first.keys() == {"fpn_mask", "box_head", "texture"}
    for kind, vectors in first.items():
        assert vectors.shape[0] == 2 and np.array_equal(vectors, again[kind]), kind
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_a_descriptor_describes_the_pixels_of_its_mask_not_its_whole_box():
    """One box over two halves that look nothing alike: the instance masked to the left half is described as
    the left half alone is (a box around it), unlike the instance masked to the right half."""
    torch.manual_seed(0)
    model = tiny_config().build(47, 92).eval()
    image = torch.full((3, 64, 96), 0.8)
    image[:, :, :48] = torch.rand((3, 64, 48), generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[8.0, 8, 88, 56], [8, 8, 88, 56], [8, 8, 48, 56], [48, 8, 88, 56]])
    masks = torch.zeros((4, 64, 96), dtype=torch.uint8)
    masks[[0, 2], 8:56, 8:48] = 1  # the left half: in the whole box, then in its own box
    masks[[1, 3], 8:56, 48:88] = 1
    found = embed(model, [image], [boxes], [masks], CPU)
    for kind in ("fpn_mask", "texture"):
        similar = (found[kind] @ found[kind].T).round(3)  # left, right (in the whole box), left alone, right alone
        assert similar[0, 2] > similar[0, 3] + 0.05, f"{kind}: the left mask is described as the left half"
        assert similar[1, 3] > similar[1, 2] + 0.05, f"{kind}: the right mask is described as the right half"
        assert similar[0, 1] < 0.99, f"{kind}: one box, two masks, two descriptors"


def test_the_catalogue_describes_each_instance_with_its_own_mask(small_instances, small_dataset):
    """``embed_instances`` gives each instance what ``embed`` gives it with its true mask, batch by batch as its
    loader makes them (a mask-weighted descriptor depends on the mask: see the test above)."""
    torch.manual_seed(0)
    model = tiny_config().build(47, 92).eval()
    ids = sorted(small_instances.image_id.unique())[:4]
    dataset = InstanceDataset(small_instances[small_instances.image_id.isin(ids)], small_dataset / "train", 64, 96, 92)
    vectors, _ = embed_instances(model, dataset, 2, 0, CPU, "fp32", "test")
    expected: dict[str, list[np.ndarray]] = {kind: [] for kind in vectors}
    for start in (0, 2):
        images, targets, _ = zip(*(dataset[i] for i in (start, start + 1)), strict=True)
        found = embed(model, list(images), [t["boxes"] for t in targets], [t["masks"] for t in targets], CPU)
        for kind, part in found.items():
            expected[kind].append(part)
    for kind, part in vectors.items():
        np.testing.assert_allclose(part, np.concatenate(expected[kind]), atol=1e-6, err_msg=kind)


def _catalogue(vectors: np.ndarray, categories: list[int], kind: str = "flat", nlist: int = 4,
               nprobe: int = 1) -> Catalogue:
    items = pd.DataFrame({"image_id": [f"{i}.jpg" for i in range(len(categories))], "x0": 0.0, "y0": 0.0,
                          "x1": 1.0, "y1": 1.0, "category": categories, "attributes": [[] for _ in categories]})
    manifest = {"key": {"checkpoint": "a"}, "features": "texture", "kind": kind, "image_dir": "images",
                "items": len(items), "dimensions": vectors.shape[1]}
    return Catalogue(build_index(vectors, kind, nlist, nprobe, seed=0), items, manifest)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_catalogue_item_finds_itself_first_and_a_category_search_stays_in_its_category(small_instances, offline,
                                                                                          small_dataset):
    torch.manual_seed(0)
    model = tiny_config().build(47, 92).eval()
    dataset = InstanceDataset(small_instances, small_dataset / "train", 64, 96, 92)
    vectors, items = embed_instances(model, dataset, 4, 0, CPU, "fp32", "test")
    assert len(items) == len(vectors["texture"]) > 20
    order = np.argsort(items.category.to_numpy(), kind="stable")
    catalogue = Catalogue(build_index(vectors["texture"][order], "flat", 4, 1, 0), items.iloc[order].reset_index(
        drop=True), {})
    found = catalogue.search(vectors["texture"][order], 1)
    assert [hits[0][0] for hits in found] == list(range(len(items)))
    assert all(hits[0][1] == pytest.approx(1.0, abs=1e-4) for hits in found)
    for category in set(catalogue.items.category):
        hits = catalogue.search(vectors["texture"][order][:3], 5, category=int(category))
        assert all(catalogue.items.category.iat[i] == category for row in hits for i, _ in row)
    assert catalogue.search(vectors["texture"][:1], 5, category=45) == [[]], "a category the catalogue lacks"


@given(st.integers(0, 2**16))
def test_ivf_recall_is_one_when_every_cluster_is_searched_and_measured_against_exact_search(seed):
    rng = np.random.default_rng(seed)
    gallery, queries = _unit(rng, 300, 16), _unit(rng, 20, 16)
    exact = build_index(gallery, "flat", 8, 8, 0).search(queries, 5)[1]
    ivf = build_index(gallery, "ivf", 8, 8, 0)
    assert recall_at_k(ivf.search(queries, 5)[1], exact) == 1.0
    ivf.nprobe = 1
    assert 0.0 < recall_at_k(ivf.search(queries, 5)[1], exact) <= 1.0
    assert recall_at_k(exact[::-1], exact) < 1.0, "another query's results are not this one's"


def test_an_ivf_category_search_returns_only_that_category():
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 200, 8)
    catalogue = _catalogue(vectors, sorted([c % 3 for c in range(200)]), "ivf", nlist=4, nprobe=4)
    hits = catalogue.search(vectors[:10], 7, category=2)
    assert all(len(row) == 7 and all(catalogue.items.category.iat[i] == 2 for i, _ in row) for row in hits)


@settings(max_examples=25)
@given(st.integers(0, 2**16), st.integers(0, 2))
def test_an_ivf_category_search_that_probes_every_cluster_is_the_exact_one(seed, category):
    """nprobe = nlist: the category's exact top k, whatever cluster the query falls in."""
    rng = np.random.default_rng(seed)
    vectors, queries = _unit(rng, 200, 8), _unit(rng, 10, 8)
    categories = sorted(c % 3 for c in range(200))
    exact = _catalogue(vectors, categories).search(queries, 7, category=category)
    ivf = _catalogue(vectors, categories, "ivf", nlist=4, nprobe=4).search(queries, 7, category=category)
    for want, got in zip(exact, ivf, strict=True):
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_an_ivf_category_search_probes_only_nprobe_clusters():
    """nprobe 1: the category's items in the query's nearest cluster (its inverted list) and no others, however
    many are asked for; nprobe = nlist: all of the category's items."""
    rng = np.random.default_rng(0)
    vectors, queries = _unit(rng, 120, 4), _unit(rng, 8, 4)
    categories = sorted(c % 3 for c in range(120))
    catalogue = _catalogue(vectors, categories, "ivf", nlist=4, nprobe=1)
    lists = catalogue.index.quantizer.search(vectors, 1)[1][:, 0]
    probed = catalogue.index.quantizer.search(queries, 1)[1][:, 0]
    in_category = [i for i, c in enumerate(categories) if c == 1]
    for query, cluster in zip(queries, probed, strict=True):
        (hits,) = catalogue.search(query[None], len(in_category), category=1)
        expected = [i for i in in_category if lists[i] == cluster]
        assert 0 < len(expected) < len(in_category) and sorted(i for i, _ in hits) == expected
    catalogue.index.nprobe = 4
    for row in catalogue.search(queries, len(in_category), category=1):
        assert sorted(i for i, _ in row) == in_category


def test_scores_count_shared_labels_against_the_exact_random_baseline():
    """Descriptors that are the pattern itself: precision 1 for the pattern, the pool's share for random."""
    patterns = [0, 0, 0, 1, 1, 2, 0, 1]
    vectors = np.eye(3, dtype=np.float32)[patterns]
    gallery = _catalogue(vectors, [5] * 8)
    gallery.items["attributes"] = [[60 + p] for p in patterns]
    queries = pd.DataFrame({"category": [5, 5], "attributes": [[60], [61]]})
    pattern = Groups({"pattern": (60, 61, 62)})
    found = retrieval_scores(gallery, np.eye(3, dtype=np.float32)[[0, 1]], queries, 3, pattern)
    assert found["category"]["precision"] == 1.0 and found["category"]["random"] == 1.0
    assert found["attribute_groups"]["pattern"]["precision"] == 1.0
    assert found["attribute_groups"]["pattern"]["random"] == pytest.approx((4 / 8 + 3 / 8) / 2, abs=1e-4)


def _described(categories: np.ndarray, share: float, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors: the first ``share`` of the items point at their category's axis (plus a little noise), the
    others anywhere, so that a larger share retrieves the category better."""
    vectors = _unit(rng, len(categories), dim)
    told = np.arange(len(categories)) < share * len(categories)
    vectors[told] = np.eye(dim, dtype=np.float32)[categories[told]] + 0.01 * vectors[told]
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


DIMENSIONS = {"fpn_mask": 6, "box_head": 7, "texture": 8}


def _embedded(rng: np.random.Generator, shares: dict[str, float], categories: np.ndarray,
              ) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """What ``embed_instances`` returns for instances of ``categories``: each kind's descriptors and the items."""
    items = pd.DataFrame({"image_id": [f"{i}.jpg" for i in range(len(categories))], "x0": 0.0, "y0": 0.0,
                          "x1": 1.0, "y1": 1.0, "category": categories, "attributes": [[] for _ in categories]})
    return {kind: _described(categories, share, DIMENSIONS[kind], rng) for kind, share in shares.items()}, items


@pytest.mark.parametrize("best,middle,worst", [("texture", "fpn_mask", "box_head"), ("fpn_mask", "box_head",
                                                                                       "texture"),
                                               ("box_head", "texture", "fpn_mask")])
def test_auto_features_index_the_descriptor_that_retrieves_best(monkeypatch, best, middle, worst):
    """``features: auto`` keeps the descriptor with the highest score on the queries; a named one is kept as named."""
    rng = np.random.default_rng(0)
    shares = {best: 1.0, middle: 0.5, worst: 0.0}
    sides = {"catalogue": _embedded(rng, shares, rng.permutation(np.arange(40) % 5)),
             "queries": _embedded(rng, shares, np.arange(10) % 5)}
    monkeypatch.setattr(build, "embed_instances", lambda model, dataset, *args: sides[dataset])
    sources = build.Sources(None, {"checkpoint": "a"}, "catalogue", "queries", REPO, CPU)
    params = IndexParams(k=3, device="cpu", precision="fp32")
    catalogue, metrics = build.build_catalogue(sources, params, Groups({}))
    scores = {kind: metrics["by_features"][kind]["score"] for kind in shares}
    assert scores[best] > scores[middle] > scores[worst], "the descriptors retrieve as designed"
    assert metrics["features"] == catalogue.manifest["features"] == best
    assert metrics["score"] == scores[best] and metrics["category"] == metrics["by_features"][best]["category"]
    order = np.argsort(sides["catalogue"][1].category.to_numpy(), kind="stable")
    assert catalogue.manifest["dimensions"] == DIMENSIONS[best]
    assert np.array_equal(catalogue.index.reconstruct_n(0, 40), sides["catalogue"][0][best][order])
    named, metrics = build.build_catalogue(sources, params.model_copy(update={"features": worst}), Groups({}))
    assert metrics["features"] == named.manifest["features"] == worst and metrics["score"] == scores[worst]
    assert np.array_equal(named.index.reconstruct_n(0, 40), sides["catalogue"][0][worst][order])


def _at(degrees: list[float]) -> np.ndarray:
    """Unit vectors in the plane at these angles: the nearest are those of the closest angles."""
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], 1).astype(np.float32)


def test_scores_of_a_gallery_of_several_categories_match_a_hand_count():
    """Eight items of three categories at known angles; four queries whose top 2 (overall, and within their
    category) were worked out by hand, and so each precision, random baseline, margin and the score."""
    gallery = _catalogue(_at([0, 10, 100, 20, 200, 110, 120, 300]), [1, 1, 1, 2, 2, 3, 3, 3])
    gallery.items["attributes"] = [[60], [61, 70], [60, 71], [60], [61], [62, 70], [62, 70], [62, 71]]
    queries = pd.DataFrame({"category": [1, 2, 3, 3], "attributes": [[60, 71], [61], [62, 70], [71]]})
    groups = Groups({"pattern": (60, 61, 62), "length": (70, 71)})
    found = retrieval_scores(gallery, _at([4, 17, 107, 290]), queries, 2, groups)
    # Top 2 overall: items 0, 1 | 3, 1 | 5, 2 | 7, 0; shares of the categories 3/8, 2/8, 3/8, 3/8.
    category = {"precision": [1, 1 / 2, 1 / 2, 1 / 2], "random": [3 / 8, 2 / 8, 3 / 8, 3 / 8]}
    # Top 2 within the category: items 0, 1 | 3, 4 | 5, 6 | 7, 6; only the queries with a value in the group.
    pattern = {"precision": [1 / 2, 1 / 2, 1], "random": [2 / 3, 1 / 2, 1]}
    length = {"precision": [0, 1, 1 / 2], "random": [1 / 3, 2 / 3, 1 / 3]}
    for name, (got, want) in {"category": (found["category"], category),
                              "pattern": (found["attribute_groups"]["pattern"], pattern),
                              "length": (found["attribute_groups"]["length"], length)}.items():
        margins = np.subtract(want["precision"], want["random"])
        low, high = interval(margins, 2000, seed=0)
        assert got["queries"] == len(margins), name
        assert got["precision"] == pytest.approx(np.mean(want["precision"]), abs=1e-4), name
        assert got["random"] == pytest.approx(np.mean(want["random"]), abs=1e-4), name
        assert got["margin"] == pytest.approx(margins.mean(), abs=1e-4), name
        assert got["margin_interval"] == pytest.approx([low, high], abs=1e-4), name
        assert low < got["margin"] < high, f"{name}: the per-query margins differ, so does the interval's ends"
    assert found["k"] == 2 and set(found["attribute_groups"]) == {"pattern", "length"}
    assert found["score"] == pytest.approx((5 / 8 + (2 / 3 + 1 / 2) / 2) / 2, abs=1e-4)


def test_a_catalogue_built_with_another_model_is_refused(tmp_path):
    catalogue = _catalogue(_unit(np.random.default_rng(0), 10, 4), [1] * 10)
    catalogue.manifest["key"] = {"checkpoint": "aaa", "model": {"min_size": 64}}
    save_catalogue(tmp_path / "index", catalogue)
    loaded = load_catalogue(tmp_path / "index", {"checkpoint": "aaa", "model": {"min_size": 64}})
    assert loaded.index.ntotal == 10
    assert loaded.items[["image_id", "category"]].equals(catalogue.items[["image_id", "category"]])
    with pytest.raises(CatalogueError, match="built with another model \\(checkpoint differ\\).*dvc repro index"):
        load_catalogue(tmp_path / "index", {"checkpoint": "bbb", "model": {"min_size": 64}})
    with pytest.raises(CatalogueError, match="no catalogue"):
        load_catalogue(tmp_path / "elsewhere")


KEY = {"checkpoint": "aaa", "model": {"family": "maskrcnn", "min_size": 64}, "maskrcnn": {"anchor_sizes": [8, 16]}}
OTHER_KEY = {"checkpoint": "bbb", "model": {"family": "maskrcnn", "min_size": 96},
             "maskrcnn": {"anchor_sizes": [8, 32]}}


def test_a_catalogue_is_refused_naming_each_part_of_the_model_that_differs(tmp_path):
    """Weights, model section, family section, or the family itself: whatever differs is named, nothing else."""
    catalogue = _catalogue(_unit(np.random.default_rng(0), 10, 4), [1] * 10)
    catalogue.manifest["key"] = KEY
    save_catalogue(tmp_path, catalogue)
    assert load_catalogue(tmp_path, dict(reversed(KEY.items()))).index.ntotal == 10, "the same key, in any order"
    for count in (1, 2, 3):
        for parts in itertools.combinations(KEY, count):
            expected = {**KEY, **{part: OTHER_KEY[part] for part in parts}}
            named = re.escape(f"built with another model ({', '.join(sorted(parts))} differ); rebuild it with this "
                              "one: dvc repro index")
            with pytest.raises(CatalogueError, match=named):
                load_catalogue(tmp_path, expected)
    unet = {"checkpoint": "aaa", "model": {"family": "unet", "min_size": 64}, "unet": {"encoder": "resnet18"}}
    with pytest.raises(CatalogueError, match=re.escape("another model (maskrcnn, model, unet differ)")):
        load_catalogue(tmp_path, unet)


@pytest.mark.parametrize("config", [unet_config(), yolact_config()], ids=["unet", "yolact"])
def test_a_family_without_instance_features_cannot_describe_the_catalogue(config):
    name = config.model.family
    with pytest.raises(FeaturesError, match=f"family {name} has no instance features .*index.family: maskrcnn"):
        require_features(config.build(47, 92, initial_weights=False), name)
    require_features(tiny_config().build(47, 92, initial_weights=False), "maskrcnn")


def _tuned(path: Path, family: str) -> Path:
    """A tuned file of ``family`` that keeps every detection: the untrained models these tests use score low."""
    postprocess = {**yaml.safe_load((REPO / "params.yaml").read_text())["postprocess"], "score_thresh": 0.0}
    path.write_text(Tuned(family, PostprocessParams.model_validate(postprocess)).text())
    return path


def _unet_run(root: Path, instances: pd.DataFrame) -> tuple[list[str], list[str]]:
    """A UNet's run folder (best.pt) named by ``index.family``: the arguments of stage index and of stage similar."""
    params, args = training_inputs(root, instances, index={"family": "unet"}, **TINY_UNET_TRAINING)
    (root / "run").mkdir()
    torch.save({"model": unet_config().build(47, 92, initial_weights=False).state_dict(), "num_classes": 47},
               root / "run" / "best.pt")
    tuned = _tuned(root / "tuned.yaml", "unet")
    labels = args[args.index("--labels") + 1]
    return ([*args, "--run-dir", str(root / "run")],
            ["--params", str(params), "--run-dir", str(root / "run"), "--tuned", str(tuned), "--labels", labels])


def _refused(monkeypatch, module, *args: str) -> str:
    """The error line with which stage ``module`` exits, run in this process as its command line runs it."""
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])
    with pytest.raises(SystemExit) as stopped:
        run(module.main)
    return str(stopped.value.code)


def test_stages_index_and_similar_refuse_a_family_without_instance_features(monkeypatch, small_instances,
                                                                            small_dataset, tmp_path, offline):
    index_args, similar_args = _unet_run(tmp_path, small_instances)
    refusal = "error: family unet has no instance features (pipeline.models.contract): build the catalogue with"
    indexed = _refused(monkeypatch, stages.index, *index_args, "--images", str(small_dataset / "train"),
                       "--out", str(tmp_path / "index"), "--metrics", str(tmp_path / "retrieval.json"),
                       "--report", str(tmp_path / "retrieval-report.json"))
    assert indexed.startswith(refusal) and not (tmp_path / "index").exists()
    photo = sorted((small_dataset / "test").iterdir())[0]
    searched = _refused(monkeypatch, stages.similar, str(photo), *similar_args, "--index", str(tmp_path / "index"),
                        "--out", str(tmp_path / "similar"))
    assert searched.startswith(refusal) and not (tmp_path / "similar").exists()


def _ivf_recall(root: Path, images: Path, params_path: Path, catalogue: Catalogue) -> float:
    """The recall@k of the catalogue's IVF index measured here: the validation fold's instances described again by
    the run's model, each one's exact top k (numpy, over every stored vector) against what the index returns."""
    params = yaml.safe_load(params_path.read_text())
    config = registry.load(params_path, "maskrcnn")
    model = load_model(checkpoint_path(root / "run", "best"), config, CPU, 92)
    _, val_ids = split(pd.read_csv(root / "folds.csv"), params["train"]["fold"])
    instances = pd.read_parquet(root / "instances.parquet")
    queries = InstanceDataset(instances[instances.image_id.isin(val_ids)], images, config.model.min_size,
                              config.model.max_size, 92)
    k = params["index"]["k"]
    vectors = embed_instances(model, queries, params["index"]["batch_size"], 0, CPU, "fp32", "queries")[0][
        catalogue.manifest["features"]]
    catalogue.index.make_direct_map()
    stored = catalogue.index.reconstruct_n(0, catalogue.index.ntotal)
    exact = np.argsort(-(vectors @ stored.T), axis=1, kind="stable")[:, :k]
    found = catalogue.index.search(vectors, k)[1]
    return float(np.mean([len(set(e) & set(f)) / len(e) for e, f in zip(exact, found, strict=True)]))


def test_stages_index_and_similar_from_a_training_run(trained, small_dataset, tmp_path, offline):
    """Index the run's catalogue (IVF), find similar items of a test photo; a bad photo is skipped by stage
    segment; a changed model section is refused."""
    root, labels = trained, str(REPO / "pipeline" / "data" / "label_descriptions.json")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["maskrcnn"]["box_score_thresh"] = 0.0  # the 2-step model scores little: take what it finds
    params["index"].update(kind="ivf", nlist=4, nprobe=2)  # the approximate index, end to end
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    common = ["--params", str(tmp_path / "params.yaml")]
    done = offline_stage("index", *common, "--run-dir", str(root / "run"),
                         "--instances", str(root / "instances.parquet"), "--images", str(small_dataset / "train"),
                         "--folds", str(root / "folds.csv"), "--labels", labels,
                         "--out", str(tmp_path / "index"), "--metrics", str(tmp_path / "retrieval.json"),
                         "--report", str(tmp_path / "retrieval-report.json"))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "retrieval-report.json").read_text())
    assert json.loads((tmp_path / "retrieval.json").read_text()) == {"precision": metrics["category"]["precision"]}
    assert metrics["catalogue_items"] > 0 and metrics["features"] in metrics["by_features"]
    assert metrics["score"] == max(scores["score"] for scores in metrics["by_features"].values())
    assert 0 < metrics["ivf_recall_at_k"] <= 1 and json.loads((tmp_path / "index" / "manifest.json").read_text())[
        "kind"] == "ivf"
    recall = _ivf_recall(root, small_dataset / "train", tmp_path / "params.yaml", load_catalogue(tmp_path / "index"))
    assert metrics["ivf_recall_at_k"] == pytest.approx(recall, abs=1e-4)
    tuned = _tuned(tmp_path / "tuned.yaml", "maskrcnn")
    photo = sorted((small_dataset / "test").iterdir())[0]
    search = ["--run-dir", str(root / "run"), "--index", str(tmp_path / "index"), "--tuned", str(tuned),
              "--labels", labels, str(photo), "--k", "3", "--out", str(tmp_path / "similar")]
    done = offline_stage("similar", *common, *search)
    assert done.returncode == 0, done.stderr
    found = json.loads((tmp_path / "similar" / f"{photo.stem}.json").read_text())
    assert found["items"] and all(len(item["similar"]) <= 3 for item in found["items"])
    assert all(hit["class_id"].split("_")[0] == str(item["category_id"])
               for item in found["items"] for hit in item["similar"])
    names = load_labels(labels)
    assert all(hit["category"] == names.category_name(item["category_id"])
               and hit["attributes"] == [names.attributes[a].name for a in names.parse(hit["class_id"]).attributes]
               for item in found["items"] for hit in item["similar"]), "names beside the ids"
    assert (tmp_path / "similar" / f"{photo.stem}.png").is_file()
    said = rf"{re.escape(str(photo))}: \d+ item\(s\), up to 3 similar each -> .* \(\d+ ms\)\n"
    assert re.fullmatch(said, done.stdout), done.stdout
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo, folder / photo.name)
    (folder / "notes.jpg").write_text("not a photo")
    segmented = offline_stage("segment", *common, "--run-dir", str(root / "run"), "--tuned", str(tuned),
                              str(folder), "--out", str(tmp_path / "segmented"))  # the packaged label set
    assert segmented.returncode == 1 and "notes.jpg: not an image" in segmented.stderr, segmented.stderr
    assert "1 of 2 photo(s) could not be segmented" in segmented.stderr and "Traceback" not in segmented.stderr
    assert {p.name for p in (tmp_path / "segmented").iterdir()} == {f"{photo.stem}.json", f"{photo.stem}.png"}
    assert segmented.stdout.startswith(f"{folder / photo.name}: ") and segmented.stdout.rstrip().endswith(" ms)")
    mistyped = offline_stage("segment", *common, "--run-dir", str(root / "rnu"), "--tuned", str(tuned), str(photo))
    assert mistyped.returncode == 1 and f"the runs in {root} are: {root / 'run'}" in mistyped.stderr
    params["maskrcnn"]["box_detections_per_img"] = 7
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(params))
    refused = offline_stage("similar", "--params", str(tmp_path / "other.yaml"), *search)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "built with another model (maskrcnn differ)" in refused.stderr
