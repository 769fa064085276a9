"""The ONNX export: what onnxruntime finds without this project's code is what PyTorch finds, or no file is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.inference.export import TOLERANCE, ExportError, export_onnx, require_onnx
from pipeline.models import registry
from pipeline.models.family import Family

from model_configs import tiny_config
from stage_runs import stage

pytest.importorskip("onnxruntime", reason="stage export's extra is not installed: pip install -e '.[export]'")

#: Runs an ONNX file on the images of an .npz with onnxruntime in a process where this project and torch cannot be
#: imported, and saves its outputs beside them.
STANDALONE = """
import sys, importlib.abc
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pipeline", "torch", "torchvision"):
            raise ImportError(f"{name} may not be imported here")
sys.meta_path.insert(0, Refuse())
import numpy as np, onnxruntime
model, images, out = sys.argv[1:]
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
found = {}
for key, image in np.load(images).items():
    for name, value in zip(names, session.run(names, {"image": image})):
        found[f"{key}/{name}"] = value
np.savez(out, **found)
"""


def _images(sizes: list[tuple[int, int]], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=generator) for h, w in sizes]


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    torch.manual_seed(0)
    config = tiny_config(box_score_thresh=0.045, box_detections_per_img=100, rpn_pre_nms_top_n_test=50,
                         rpn_post_nms_top_n_test=50)  # finds 6 to 25 boxes on these random images
    return config.build(47, 92).eval()


def test_onnxruntime_without_this_project_finds_pytorchs_detections_at_any_size(detector, tmp_path):
    path = tmp_path / "maskrcnn.onnx"
    written = export_onnx(detector, registry.family("maskrcnn"), path, _images([(64, 90), (96, 72), (80, 96)]))
    assert list(written["outputs"]) == ["boxes", "labels", "scores", "masks", "attributes"]
    check = written["check"]
    assert check["sizes"] == [[64, 90], [96, 72], [80, 96]]
    assert len(set(check["per_image"])) > 1, "other detection counts than the traced image's: none is frozen"
    unseen = {f"image{i}": image.numpy() for i, image in enumerate(_images([(72, 64), (90, 96)], seed=1))}
    np.savez(tmp_path / "images.npz", **unseen)
    done = subprocess.run([sys.executable, "-c", STANDALONE, str(path), str(tmp_path / "images.npz"),
                           str(tmp_path / "found.npz")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    found = np.load(tmp_path / "found.npz")
    with torch.no_grad():
        for key, image in unseen.items():
            boxes, labels, scores, masks, attributes = _expected(detector, image)
            assert len(boxes) == len(found[f"{key}/boxes"]) > 0
            assert (found[f"{key}/labels"] == labels).all()
            assert np.abs(found[f"{key}/boxes"] - boxes).max() <= TOLERANCE["boxes"]
            assert found[f"{key}/masks"].shape == (len(boxes), 1, *image.shape[1:]), "masks on the image"
            assert np.abs(found[f"{key}/masks"] - masks).max() <= TOLERANCE["masks"]
            assert np.abs(found[f"{key}/scores"] - scores).max() <= TOLERANCE["scores"]
            assert np.abs(found[f"{key}/attributes"] - attributes).max() <= TOLERANCE["attributes"]


def _expected(detector: nn.Module, image: np.ndarray) -> list[np.ndarray]:
    """PyTorch's outputs for the image, masks pasted as the exported module pastes them."""
    module, _ = registry.family("maskrcnn").onnx(detector)
    return [t.numpy() for t in module(torch.from_numpy(image))]


class _Frozen(nn.Module):
    """Decides in Python on the image's brightness: a trace keeps the branch of the image it was traced on."""

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        factor = 2.0 if float(image.mean()) > 0.5 else 1.0
        boxes = torch.tensor([[1.0, 2.0, 5.0, 6.0]]) * factor + image.mean() * 0
        return boxes, torch.ones(1, dtype=torch.int64)


def test_an_export_that_does_not_agree_with_pytorch_is_refused_and_not_written(tmp_path):
    frozen = Family("frozen", dict, lambda *a: None, onnx=lambda model: (_Frozen(), {"boxes": "", "labels": ""}))
    dark, bright = torch.full((3, 8, 8), 0.2), torch.full((3, 8, 8), 0.8)
    path = tmp_path / "frozen.onnx"
    said = r"frozen.onnx: the export does not agree with PyTorch \(boxes differ by 6 \(tolerance 0.05\)\); not written"
    with pytest.raises(ExportError, match=said):
        export_onnx(nn.Identity(), frozen, path, [dark, bright])
    assert list(tmp_path.iterdir()) == []
    assert export_onnx(nn.Identity(), frozen, path, [dark, dark])["check"]["same_detections"]


class _FrozenDetections(nn.Module):
    """The same box on every image, but its label (``labels``) or the number of boxes (``count``) decided in Python
    on the image's brightness: a trace keeps those of the image it was traced on."""

    def __init__(self, changes: str) -> None:
        super().__init__()
        self.changes = changes

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bright = float(image.mean()) > 0.5
        count = 2 if bright and self.changes == "count" else 1
        boxes = torch.tensor([[1.0, 2.0, 5.0, 6.0]]).repeat(count, 1) + image.mean() * 0
        return boxes, torch.full((count,), 2 if bright and self.changes == "labels" else 1, dtype=torch.int64)


@pytest.mark.parametrize("changes", ["labels", "count"])
def test_an_export_that_finds_other_labels_or_another_number_of_items_is_refused(changes, tmp_path):
    frozen = Family("frozen", dict, lambda *a: None,
                    onnx=lambda model: (_FrozenDetections(changes), {"boxes": "", "labels": ""}))
    dark, bright = torch.full((3, 8, 8), 0.2), torch.full((3, 8, 8), 0.8)
    with pytest.raises(ExportError, match=r"\(other detections \(count or labels\)\); not written"):
        export_onnx(nn.Identity(), frozen, tmp_path / "frozen.onnx", [dark, bright])
    assert list(tmp_path.iterdir()) == []


def test_an_export_checked_on_photos_where_pytorch_finds_nothing_is_refused(tmp_path):
    torch.manual_seed(0)
    blind = tiny_config(box_score_thresh=0.999).build(47, 92).eval()
    with pytest.raises(ExportError, match="PyTorch found nothing on the photos, so nothing was compared"):
        export_onnx(blind, registry.family("maskrcnn"), tmp_path / "blind.onnx", _images([(64, 90)]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [n for n in registry.names() if registry.family(n).onnx is None])
def test_a_family_that_does_not_export_says_why_before_any_model_loads(name, tmp_path):
    with pytest.raises(ExportError, match=f"family {name} does not export to ONNX: .{{40}}"):
        require_onnx(registry.family(name))
    done = stage("export", "--family", name, "--run-dir", str(tmp_path / "no-run"), "--out", str(tmp_path / "x.onnx"))
    assert done.returncode == 1 and done.stderr.startswith(f"error: family {name} does not export to ONNX: ")
    assert "Traceback" not in done.stderr and not (tmp_path / "x.onnx").exists()


def test_an_output_that_is_a_folder_is_refused_and_left_as_it_is(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    done = stage("export", "--run-dir", str(tmp_path / "no-run"), "--out", str(tmp_path), "--photos", "x.jpg")
    assert done.returncode == 1 and done.stderr.startswith(f"error: {tmp_path}: --out is a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_stage_export_writes_the_file_and_its_description_from_a_run(project, small_dataset, tmp_path):
    out = tmp_path / "model.onnx"
    done = stage("export", "--params", str(project / "params.yaml"), "--run-dir", str(project / "models" / "maskrcnn"),
                 "--format", "onnx", "--out", str(out), "--photos", str(small_dataset / "test"))
    assert done.returncode == 0, done.stderr
    described = json.loads(out.with_name("model.onnx.json").read_text())
    assert described["check"]["images"] == len(list((small_dataset / "test").iterdir()))
    assert described["check"]["max_difference"] and len(described["categories"]) == 46
    assert len(described["attributes"]) == 92 and described["input"]["image"].startswith("float32 (3, height, width)")
    assert done.stdout.startswith(f"{out}: ") and "onnxruntime finds PyTorch's" in done.stdout
