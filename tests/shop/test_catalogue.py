"""The catalogue of similar items: stable descriptors, exact and IVF search, its scores, and a refused foreign model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline.data.attributes import Groups
from pipeline.data.dataset import InstanceDataset
from pipeline.shop.catalogue import embed_instances
from pipeline.shop.features import embed
from pipeline.shop.index import Catalogue, CatalogueError, build_index, load_catalogue, save_catalogue
from pipeline.shop.scores import recall_at_k, retrieval_scores

from model_configs import one_image, tiny_config
from stage_runs import REPO, offline_stage, params_file

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


def _catalogue(vectors: np.ndarray, categories: list[int], kind: str = "flat", nlist: int = 4,
               nprobe: int = 1) -> Catalogue:
    items = pd.DataFrame({"image_id": [f"{i}.jpg" for i in range(len(categories))], "x0": 0.0, "y0": 0.0,
                          "x1": 1.0, "y1": 1.0, "category": categories, "attributes": [[] for _ in categories]})
    return Catalogue(build_index(vectors, kind, nlist, nprobe, seed=0), items, {"key": {"checkpoint": "a"}})


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


def test_a_catalogue_built_with_another_model_is_refused(tmp_path):
    catalogue = _catalogue(_unit(np.random.default_rng(0), 10, 4), [1] * 10)
    catalogue.manifest = {"key": {"checkpoint": "aaa", "model": {"min_size": 64}}, "features": "texture"}
    save_catalogue(tmp_path / "index", catalogue)
    loaded = load_catalogue(tmp_path / "index", {"checkpoint": "aaa", "model": {"min_size": 64}})
    assert loaded.index.ntotal == 10
    assert loaded.items[["image_id", "category"]].equals(catalogue.items[["image_id", "category"]])
    with pytest.raises(CatalogueError, match="built with another model \\(checkpoint differ\\).*dvc repro index"):
        load_catalogue(tmp_path / "index", {"checkpoint": "bbb", "model": {"min_size": 64}})
    with pytest.raises(CatalogueError, match="no catalogue"):
        load_catalogue(tmp_path / "elsewhere")


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
                         "--out", str(tmp_path / "index"), "--metrics", str(tmp_path / "retrieval.json"))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "retrieval.json").read_text())
    assert metrics["catalogue_items"] > 0 and metrics["features"] in metrics["by_features"]
    assert 0 < metrics["ivf_recall_at_k"] <= 1 and json.loads((tmp_path / "index" / "manifest.json").read_text())[
        "kind"] == "ivf"
    (tmp_path / "tuned").mkdir()
    tuned = params_file(tmp_path / "tuned", postprocess={"score_thresh": 0.0})
    photo = sorted((small_dataset / "test").iterdir())[0]
    search = ["--run-dir", str(root / "run"), "--index", str(tmp_path / "index"), "--tuned", str(tuned),
              "--labels", labels, str(photo), "--k", "3", "--out", str(tmp_path / "similar")]
    done = offline_stage("similar", *common, *search)
    assert done.returncode == 0, done.stderr
    found = json.loads((tmp_path / "similar" / f"{photo.stem}.json").read_text())
    assert found["items"] and all(len(item["similar"]) <= 3 for item in found["items"])
    assert all(hit["class_id"].split("_")[0] == str(item["category_id"])
               for item in found["items"] for hit in item["similar"])
    assert (tmp_path / "similar" / f"{photo.stem}.png").is_file()
    (tmp_path / "notes.jpg").write_text("not a photo")
    segmented = offline_stage("segment", *common, "--run-dir", str(root / "run"), "--tuned", str(tuned),
                              "--labels", labels, str(tmp_path / "notes.jpg"), str(photo),
                              "--out", str(tmp_path / "segmented"))
    assert segmented.returncode == 1 and "notes.jpg: not an image" in segmented.stderr, segmented.stderr
    assert "1 of 2 photo(s) could not be segmented" in segmented.stderr and "Traceback" not in segmented.stderr
    assert {p.name for p in (tmp_path / "segmented").iterdir()} == {f"{photo.stem}.json", f"{photo.stem}.png"}
    params["maskrcnn"]["box_detections_per_img"] = 7
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(params))
    refused = offline_stage("similar", "--params", str(tmp_path / "other.yaml"), *search)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "built with another model (maskrcnn differ)" in refused.stderr
