"""The model-family seam: a family registered from outside runs train -> predict -> tune -> evaluate -> submission."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.config.model import ModelParams
from pipeline.models.families.maskrcnn.params import MaskRCNNParams
from pipeline.models.registry import FAMILIES_PACKAGE, FamilyError, ModelConfig, family, load, names

from stage_runs import predict_args, run_dirs, training_inputs, with_fake_family


def test_an_unknown_family_names_the_known_ones(tmp_path):
    with pytest.raises(FamilyError, match=f"no model family 'solo' .*; the known families are {', '.join(names())}$"):
        family("solo")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"model": {"family": "maskrcnn", "min_size": 64, "max_size": 96},
                                    "maskrcnn": {"architecture": "maskrcnn_resnet18_fpn"},
                                    "unet": {"encoder": "resnet34"}}))
    config = load(path)
    assert isinstance(config.family, MaskRCNNParams) and config.family.architecture == "maskrcnn_resnet18_fpn"
    key = config.key()
    assert set(key) == {"model", "maskrcnn"}, "the resume and prediction keys hold both sections"
    assert key["model"] == {"family": "maskrcnn", "min_size": 64, "max_size": 96}
    assert key["maskrcnn"]["anchor_sizes"] == (32, 64, 128, 256, 512), "the family's defaults fill its section"
    assert load(path, "unet").key()["model"]["family"] == "unet", "--family picks another family's section"


def test_a_family_is_imported_only_when_used_and_its_code_is_its_package_alone():
    import subprocess
    import sys

    code = ("import sys, stages.train, stages.predict, stages.compare\n"
            f"print(sorted(m for m in sys.modules if m.startswith('{FAMILIES_PACKAGE}')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", "a stage imports a family only to run it"
    assert len(names()) >= 3
    for name in names():
        own = {m for m in family(name).code_modules() if m.startswith(f"{FAMILIES_PACKAGE}.")}
        assert own and all(m.startswith(f"{FAMILIES_PACKAGE}.{name}") for m in own), own
        assert f"{FAMILIES_PACKAGE}.{name}.params" in own, "its schema is in its package"


def test_a_model_without_the_contract_is_a_clear_error(monkeypatch):
    from torch import nn

    from pipeline.models import registry
    from pipeline.models.contract import MaskFormat

    monkeypatch.setitem(registry._FAMILIES, "bare", registry.Family("bare", dict, lambda *args: nn.Linear(1, 1)))
    with pytest.raises(FamilyError, match="family 'bare' built a Linear without the contract's mask_format"):
        ModelConfig(ModelParams(family="bare"), {}).build(47, 92)

    class Attributed(nn.Linear):  # says it predicts attributes, cannot give those of given boxes
        mask_format, num_attributes = MaskFormat("crop", 4), 92

    monkeypatch.setitem(registry._FAMILIES, "bare", registry.Family("bare", dict, lambda *args: Attributed(1, 1)))
    with pytest.raises(FamilyError, match="predicts 92 attributes but its model has no attributes_of_boxes"):
        ModelConfig(ModelParams(family="bare"), {}).build(47, 92)


class _EntryPoint:
    def __init__(self, name: str, value: str, found: object) -> None:
        self.name, self.value, self.found = name, value, found

    def load(self) -> object:
        return self.found


def test_an_installed_package_adds_a_family_through_an_entry_point(monkeypatch):
    from torch import nn

    from pipeline.models import registry
    from pipeline.models.family import Family

    plugged = Family("plugged", dict, lambda *args: nn.Linear(1, 1))
    installed = [_EntryPoint("plugged", "plug.family:FAMILY", plugged)]

    def entry_points(group: str) -> list:
        return installed if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry.importlib.metadata, "entry_points", entry_points)
    registry._discovered.cache_clear()
    try:
        assert registry.family("plugged") is plugged and "plugged" in registry.names()
        assert {"maskrcnn", "unet", "yolact"} <= set(registry.names()), "beside the built-in families"
        installed[:] = [_EntryPoint("broken", "plug.family:nothing", object())]
        registry._discovered.cache_clear()
        with pytest.raises(FamilyError, match="the entry point broken = plug.family:nothing defines no FAMILY"):
            registry.names()
    finally:
        monkeypatch.undo()
        registry._discovered.cache_clear()
    with pytest.raises(FamilyError, match="pipeline.models.families.toy names its family 'other': a family's "
                                          "package bears its name"):
        registry._adopt({}, Family("other", dict, plugged.build), f"{FAMILIES_PACKAGE}.toy")


def test_a_fake_family_goes_through_every_stage_with_no_change_to_the_pipeline(small_instances, small_dataset,
                                                                                tmp_path):
    params, args = training_inputs(
        tmp_path, small_instances, model={"family": "fake"}, fake={"category": 2, "mask_size": 8},
        train={"epochs": 1}, predict={"scales": [1.0]},
        tune={"score_thresh": [0.3, 0.5], "nms_iou": [0.5], "mask_thresh": [0.5], "min_area": [0],
              "max_detections": [20], "rounds": 1}, evaluate={"gallery_images": 1})
    trained = with_fake_family("train", *args, "--images", str(small_dataset / "train"), "--limit", "4",
                               *run_dirs(tmp_path))
    assert trained.returncode == 0, trained.stderr
    assert "training finished: 1 epochs" in trained.stdout
    resolved = yaml.safe_load((tmp_path / "run" / "params.yaml").read_text())
    assert resolved["fake"] == {"category": 2, "mask_size": 8} and "maskrcnn" not in resolved
    losses = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "train" / "loss_fake.tsv", sep="\t")
    assert losses.loss_fake.iloc[-1] < losses.loss_fake.iloc[0], "the loop trained the family's weight"

    predicted = with_fake_family("predict", *predict_args(tmp_path, params, small_dataset, tmp_path / "predictions"))
    assert predicted.returncode == 0, predicted.stderr
    manifest = json.loads((tmp_path / "predictions" / "test" / "manifest.json").read_text())
    assert manifest["mask_format"] == {"kind": "crop", "size": 8} and manifest["num_attributes"] == 0

    common = ["--params", str(params), "--labels", str(small_dataset / "label_descriptions.json")]
    val = ["--predictions", str(tmp_path / "predictions" / "val"), "--instances", str(tmp_path / "instances.parquet")]
    tuned = with_fake_family("tune", *common, *val, "--out", str(tmp_path / "postprocess.yaml"),
                             "--metrics", str(tmp_path / "tune.json"), "--report", str(tmp_path / "tr.json"))
    assert tuned.returncode == 0, tuned.stderr
    evaluated = with_fake_family("evaluate", *common, *val, "--images", str(small_dataset / "train"),
                                 "--tuned", str(tmp_path / "postprocess.yaml"), "--metrics", str(tmp_path / "e.json"),
                                 "--report", str(tmp_path / "er.json"),
                                 "--val-submission", str(tmp_path / "val.csv"), "--gallery", str(tmp_path / "gallery"))
    assert evaluated.returncode == 0, evaluated.stderr
    test = ["--sample-submission", str(small_dataset / "sample_submission.csv"),
            "--test-images", str(small_dataset / "test"), "--tuned", str(tmp_path / "postprocess.yaml")]
    written = with_fake_family("submission", *common, "--predictions", str(tmp_path / "predictions" / "test"), *test,
                               "--out", str(tmp_path / "submission.csv"))
    assert written.returncode == 0, written.stderr
    checked = with_fake_family("validate_submission", str(tmp_path / "submission.csv"), *common[2:], *test)
    assert checked.returncode == 0 and ": valid (" in checked.stdout, checked.stderr
    rows = pd.read_csv(tmp_path / "submission.csv", dtype=str, keep_default_na=False)
    test_ids = set(pd.read_csv(small_dataset / "sample_submission.csv").ImageId)
    assert set(rows.ImageId) == test_ids and set(rows.ClassId) == {"2"}, "one centre instance per test image"


_TOY = {
    "params.py": '''from dataclasses import dataclass


@dataclass(frozen=True)
class ToyParams:
    __pydantic_config__ = {"extra": "forbid"}

    category: int = 2
''',
    "network.py": '''import torch
from torch import nn

from pipeline.models.contract import MaskFormat


class Toy(nn.Module):
    num_attributes = 0
    mask_format = MaskFormat("crop", 4)

    def __init__(self, category: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.label = category + 1

    def forward(self, images, targets=None):
        if self.training:
            return {"loss_toy": (self.weight - 1) ** 2 + 0 * sum(image.sum() for image in images)}
        return [{"boxes": torch.tensor([[0.0, 0.0, image.shape[-1] / 2, image.shape[-2] / 2]]),
                 "labels": torch.tensor([self.label]), "scores": torch.sigmoid(self.weight)[None],
                 "masks": torch.ones(1, 1, 4, 4)} for image in images]
''',
    "__init__.py": '''from pipeline.models.families.toy.params import ToyParams
from pipeline.models.family import Family


def build(settings, model_params, num_classes, num_attributes, initial_weights=True):
    from pipeline.models.families.toy.network import Toy

    return Toy(settings.category)


FAMILY = Family("toy", ToyParams, build, smoke_settings={"category": 3})
''',
}


@pytest.mark.slow
def test_a_new_family_is_its_package_and_nothing_else(tmp_path):
    """A family package dropped into a copy of the project, with its params section: the registry finds it, the
    contract suite checks it, the import-linter contracts cover it and dvc.yaml needs no edit."""
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                           capture_output=True, check=True).stdout.decode().split("\0")
    copy = tmp_path / "project"
    for name in filter(None, files):
        if (repo / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, copy / name)
    package = copy / FAMILIES_PACKAGE.replace(".", "/") / "toy"
    package.mkdir()
    for name, text in _TOY.items():
        (package / name).write_text(text)
    with open(copy / "params.yaml", "a") as params:
        params.write("toy:\n  category: 5\n")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=copy, capture_output=True, text=True, timeout=600)

    found = run(sys.executable, "-c", "from pipeline.models import registry\n"
                "print(registry.names(), registry.load('params.yaml', 'toy').key()['toy'])")
    expected = tuple(sorted((*names(), "toy")))
    assert found.stdout.split("\n")[0] == f"{expected} {{'category': 5}}", found.stderr
    checked = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/models/test_contract.py",
                  "-k", "toy")
    assert checked.returncode == 0 and " passed" in checked.stdout and "[toy" in run(
        sys.executable, "-m", "pytest", "-q", "--collect-only", "tests/models/test_contract.py").stdout, checked.stdout
    deps = run(sys.executable, "tools/dvc_deps.py", "--check")
    assert deps.returncode == 0, deps.stderr
    lint = str(Path(sys.executable).parent / "lint-imports")
    assert run(lint).returncode == 0
    with open(package / "network.py", "a") as network:
        network.write("from pipeline.models.families.unet import params  # noqa\n")
    broken = run(lint)
    assert broken.returncode == 1 and "pipeline.models.families.toy is not allowed to import" in broken.stdout
