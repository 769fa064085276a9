"""Stage compare from the small families' finished runs; the UNet's pixel scores, speed and memory that feed it."""

from __future__ import annotations

import json
import re
import resource
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as torch_f

from pipeline.comparison import speed
from pipeline.comparison.speed import Measurement, measure
from pipeline.comparison.table import markdown
from pipeline.config.comparison import CompareParams
from pipeline.config.inference import PredictParams
from pipeline.config.params import load_section
from pipeline.config.training import TrainParams
from pipeline.data.dataset import InstanceDataset
from pipeline.data.folds import split
from pipeline.inference.trained import load_model
from pipeline.models import registry
from pipeline.models.batching import IMAGENET_MEAN, IMAGENET_STD
from pipeline.models.families.unet.network import category_targets
from pipeline.training.distributed import Context
from pipeline.training.validation import pixel_scores
from pipeline.utils import checkpoint

from model_configs import tiny_config, unet_config
from stage_runs import TINY_UNET_TRAINING, TINY_YOLACT_TRAINING, stage, training_inputs
from training_runs import TRAIN

CPU = torch.device("cpu")
#: What each family's stage evaluate wrote of the Fashionpedia scores (null: no ground truth to score).
FASHIONPEDIA = {"maskrcnn": {"mask_ap": 0.125, "ap_iou_f1": 0.0625, "mask_ap50": 0.25},
                "unet": {"mask_ap": 0.5, "ap_iou_f1": None}, "yolact": {"mask_ap": 0.0, "ap_iou_f1": 0.0}}
FAMILIES = ("maskrcnn", "unet", "yolact")
FIELDS = {"family", "score", "score_ci95", "val_images", "mask_ap", "best_epoch", "fashionpedia", "attributes",
          "train_images_per_second", "inference_images_per_second", "parameters", "peak_memory_mb", "device"}


@pytest.fixture(scope="module")
def finished(small_instances, small_dataset, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """Both families trained one epoch on 8 images into models/<family>, and an evaluation folder each."""
    root = tmp_path_factory.mktemp("compare")
    params, args = training_inputs(root, small_instances, train={"epochs": 1},
                                   compare={"families": list(FAMILIES), "train_steps": 1, "inference_images": 2},
                                   **TINY_UNET_TRAINING, **TINY_YOLACT_TRAINING)
    for family in FAMILIES:
        done = stage("train", *args, "--family", family, "--images", str(small_dataset / "train"), "--limit", "8",
                     "--run-dir", str(root / "models" / family), "--live-dir", str(root / "dvclive" / family))
        assert done.returncode == 0, done.stderr
        scores = pd.DataFrame({"ImageId": ["a.jpg", "b.jpg", "c.jpg"], "score": [0.0, 0.5, 1.0]})
        (root / "evaluation" / family).mkdir(parents=True)
        scores.to_csv(root / "evaluation" / family / "image_scores.csv", index=False)
        (root / "evaluation" / family / "fashionpedia.json").write_text(json.dumps(FASHIONPEDIA[family]))
    compare_args = [*args, "--models", str(root / "models"), "--evaluation", str(root / "evaluation"),
                    "--images", str(small_dataset / "train"), "--out", str(root / "compare.json"),
                    "--table", str(root / "compare.md"), "--chart", str(root / "compare.png")]
    return root, params, compare_args


def _pixel_scores_of_best(root: Path, params: Path, images: Path) -> dict[str, dict[str, float]]:
    """The UNet's pixel scores measured here from its best.pt: on the validation fold, and on as many of the images
    it trained on (the first 8 of the training folds), unaugmented, in batches as training validated them."""
    config, train = registry.load(params, "unet"), load_section(params, "train", TrainParams)
    model = load_model(root / "models" / "unet" / "best.pt", config, CPU, 92)
    train_ids, val_ids = split(pd.read_csv(root / "folds.csv"), train.fold)
    instances = pd.read_parquet(root / "instances.parquet")
    datasets = {name: InstanceDataset(instances[instances.image_id.isin(ids)], images, config.model.min_size,
                                      config.model.max_size, 92) for name, ids in (("train", train_ids[:8]),
                                                                                  ("val", val_ids))}
    context = Context(0, 1, CPU)
    return {"val": pixel_scores(model, datasets["val"], context, train.batch_size, "fp32"),
            "train": pixel_scores(model, datasets["train"], context, train.batch_size, "fp32",
                                  limit=len(datasets["val"]))}


def test_the_unet_logs_losses_pixel_accuracy_and_mean_iou_on_train_and_validation(finished):
    """The train scores are those of the training images, not the validation ones again."""
    root, params, args = finished
    logged = json.loads((root / "dvclive" / "unet" / "metrics.json").read_text())
    assert {"loss_bce", "loss_dice", "loss", "pixel_accuracy", "mean_iou"} <= set(logged["train"])
    assert {"score", "mask_ap", "pixel_accuracy", "mean_iou"} <= set(logged["val"])
    assert all(0 <= logged[split][key] <= 1 for split in ("train", "val") for key in ("pixel_accuracy", "mean_iou"))
    measured = _pixel_scores_of_best(root, params, Path(args[args.index("--images") + 1]))
    for side, scores in measured.items():
        assert logged[side]["pixel_accuracy"] == pytest.approx(scores["pixel_accuracy"], abs=1e-6), side
        assert logged[side]["mean_iou"] == pytest.approx(scores["mean_iou"], abs=1e-6), side
    detector = json.loads((root / "dvclive" / "maskrcnn" / "metrics.json").read_text())
    assert "pixel_accuracy" not in detector["val"], "an instance family has no semantic map to score"


def _numbers(cell: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"[\d,]*\.?\d+", cell)]


def _check_table(table: str, rows: dict) -> None:
    """Each cell of the Markdown table against the JSON's value, within the cell's rounding."""
    header, _, *lines = table.splitlines()
    names = [name.strip() for name in header.strip("|").split("|")]
    assert [line.split("|")[1].strip() for line in lines] == list(rows)
    for line in lines:
        cells = dict(zip(names, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        row = rows[cells["family"]]
        assert _numbers(cells["score (95 % interval)"]) == pytest.approx([row["score"], *row["score_ci95"]], abs=5e-4)
        assert _numbers(cells["mask AP"]) == pytest.approx([row["mask_ap"]] if row["mask_ap"] is not None else [],
                                                           abs=5e-4)
        fashionpedia = row["fashionpedia"]
        assert cells["Fashionpedia mask AP / AP IoU+F1"] == " / ".join(
            "–" if v is None else f"{v:.3f}" for v in (fashionpedia["mask_ap"], fashionpedia["ap_iou_f1"]))
        assert _numbers(cells["train img/s"]) == pytest.approx([row["train_images_per_second"]], abs=5e-3)
        assert _numbers(cells["inference img/s"]) == pytest.approx([row["inference_images_per_second"]], abs=5e-3)
        assert _numbers(cells["parameters"]) == pytest.approx([row["parameters"] / 1e6], abs=0.05)
        assert _numbers(cells["peak memory"]) == pytest.approx([row["peak_memory_mb"]], abs=0.5)
        pixels = row.get("pixel_accuracy")
        assert _numbers(cells["pixel accuracy train / val"]) == pytest.approx(
            [pixels["train"], pixels["val"]] if pixels else [], abs=5e-4)
        assert cells["attributes"] == ("yes" if row["attributes"] else "no (categories only)")


def test_compare_writes_every_field_for_every_family(finished):
    root, params, args = finished
    done = stage("compare", *args)
    assert done.returncode == 0, done.stderr
    rows = json.loads((root / "compare.json").read_text())
    assert list(rows) == list(FAMILIES)
    for family, row in rows.items():
        assert set(row) >= FIELDS, FIELDS - set(row)
        assert row["family"] == family and row["score"] == pytest.approx(0.5) and row["val_images"] == 3
        low, high = row["score_ci95"]
        assert 0 <= low < 0.5 < high <= 1
        assert row["train_images_per_second"] > 0 and row["inference_images_per_second"] > 0
        assert row["parameters"] > 1e6 and row["peak_memory_mb"] > 100 and row["device"] == "cpu"
        assert row["fashionpedia"] == {k: FASHIONPEDIA[family][k] for k in ("mask_ap", "ap_iou_f1")}
        built = registry.load(params, family).build(47, 92, initial_weights=False)
        assert row["parameters"] == sum(p.numel() for p in built.parameters()), family
    assert rows["maskrcnn"]["attributes"] and not rows["unet"]["attributes"] and rows["yolact"]["attributes"]
    assert set(rows["unet"]["pixel_accuracy"]) == {"train", "val"} and "pixel_accuracy" not in rows["maskrcnn"]
    assert "pixel_accuracy" not in rows["yolact"]
    record = checkpoint.load(root / "models" / "unet" / "best.pt")["score"]
    assert record["train_pixel_accuracy"] != record["pixel_accuracy"], "the two splits differ, or this tells nothing"
    for name in ("pixel_accuracy", "mean_iou"):
        assert rows["unet"][name] == {"train": record[f"train_{name}"], "val": record[name]}, name
    assert (root / "compare.md").read_text() == markdown(rows) == done.stdout
    _check_table(done.stdout, rows)
    assert (root / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_family_without_outputs_is_a_clear_error(finished, tmp_path):
    root, params, args = finished
    missing = tmp_path / "evaluation"
    (missing / "maskrcnn").mkdir(parents=True)
    for name in ("image_scores.csv", "fashionpedia.json"):
        (missing / "maskrcnn" / name).write_bytes((root / "evaluation" / "maskrcnn" / name).read_bytes())
    at = args.index("--evaluation")
    done = stage("compare", *args[:at + 1], str(missing), *args[at + 2:])
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: {missing / 'unet' / 'image_scores.csv'}: missing: family 'unet' has not "
                                   "been evaluated (dvc repro evaluate@unet, or add it to compare.families)")


@pytest.mark.parametrize("content", ["{not json", '{"mask_ap": 0.5}', '{"mask_ap": "high", "ap_iou_f1": 0.1}',
                                     '{"mask_ap": 1.5, "ap_iou_f1": 0.1}', '[0.5, 0.1]'])
def test_a_damaged_fashionpedia_file_is_a_clear_error(finished, tmp_path, content):
    root, _, args = finished
    evaluation = tmp_path / "evaluation"
    for family in FAMILIES:
        (evaluation / family).mkdir(parents=True)
        for name in ("image_scores.csv", "fashionpedia.json"):
            (evaluation / family / name).write_bytes((root / "evaluation" / family / name).read_bytes())
    (evaluation / "yolact" / "fashionpedia.json").write_text(content)
    at = args.index("--evaluation")
    done = stage("compare", *args[:at + 1], str(evaluation), *args[at + 2:])
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {evaluation / 'yolact' / 'fashionpedia.json'}: "), done.stderr
    assert done.stderr.strip().endswith("rerun stage evaluate@yolact") and "Traceback" not in done.stderr


def test_a_run_stopped_before_its_first_validation_is_compared_from_its_last_checkpoint(finished, tmp_path):
    """A Kaggle session out of time in its first epoch has only last.pt, and stage predict used it."""
    root, _, args = finished
    models = tmp_path / "models"
    for family in FAMILIES:
        (models / family).mkdir(parents=True)
        (models / family / "last.pt").write_bytes((root / "models" / family / "last.pt").read_bytes())
    (models / "unet" / "best.pt").write_bytes((root / "models" / "unet" / "best.pt").read_bytes())
    at = args.index("--models")
    done = stage("compare", *args[:at + 1], str(models), *args[at + 2:])
    assert done.returncode == 0, done.stderr
    assert f"{models / 'maskrcnn' / 'best.pt'} does not exist yet" in done.stderr
    rows = json.loads((root / "compare.json").read_text())
    assert rows["maskrcnn"]["best_epoch"] is None and rows["maskrcnn"]["mask_ap"] is None
    assert rows["maskrcnn"]["inference_images_per_second"] > 0 and rows["unet"]["best_epoch"] == 1
    assert "| maskrcnn | 0.500 (" in done.stdout and "| – |" in done.stdout
    (models / "maskrcnn" / "last.pt").unlink()
    missing = stage("compare", *args[:at + 1], str(models), *args[at + 2:])
    assert missing.returncode == 1 and missing.stderr.strip() == (
        f"error: {models / 'maskrcnn' / 'best.pt'}: missing: family 'maskrcnn' has not been trained "
        "(dvc repro train@maskrcnn, or add it to compare.families)")


def test_the_submission_family_must_be_compared(finished, tmp_path):
    _, params, args = finished
    other = tmp_path / "params.yaml"
    other.write_text(params.read_text().replace("family: maskrcnn", "family: fake"))
    at = args.index("--params")
    done = stage("compare", *args[:at + 1], str(other), *args[at + 2:])
    assert done.returncode == 1 and "model.family 'fake' (the submission's) is not in compare.families" in done.stderr


CLASSES = 4  # background, categories 1 and 2, and a class that neither the truth nor the prediction shows


class Painted(nn.Module):
    """Stands in for the UNet's network: predicts, at each pixel, the class written in the image's first channel
    (padding, zero after normalisation, reads as background)."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        written = (batch[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]).round().long()
        shown = torch_f.one_hot(written, CLASSES).permute(0, 3, 1, 2)[:, 1:].float()  # a channel per category
        return 20 * shown - 10  # logits: sigmoid 1 where written, 0 elsewhere


def _painted(predicted: list[list[int]], instances: list[tuple[int, list[list[int]]]]) -> tuple:
    """A dataset item whose image says the predicted class of each pixel and whose instances are the truth."""
    image = torch.zeros((3, len(predicted), len(predicted[0])))
    image[0] = torch.tensor(predicted, dtype=torch.float32)
    target = {"labels": torch.tensor([label for label, _ in instances]),
              "masks": torch.tensor([mask for _, mask in instances], dtype=torch.uint8)}
    return image, target, {"image_id": f"{len(predicted)}.jpg"}


def test_the_unet_s_pixel_scores_are_those_of_a_hand_counted_confusion_matrix():
    """Two images, 2 x 3 and 1 x 2, batched (and so padded) together or one at a time."""
    model = unet_config().build(CLASSES, 0, initial_weights=False)
    model.net = Painted()
    first = _painted([[0, 1, 1], [2, 0, 1]], [(1, [[0, 1, 1], [0, 0, 0]]), (2, [[0, 0, 0], [1, 1, 0]])])
    second = _painted([[2, 2]], [(2, [[1, 0]])])
    counts = model.confusion([first[0], second[0]], [first[1], second[1]])
    assert counts.tolist() == [[1, 1, 1, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]], "true class by predicted"
    context = Context(0, 1, CPU)
    model.train()
    # IoU per class shown: tp / (true + predicted - tp): 1 / (3 + 2 - 1), 2 / (2 + 3 - 2), 2 / (3 + 3 - 2).
    both = pixel_scores(model, [first, second], context, 2, "fp32")
    assert both == pytest.approx({"pixel_accuracy": 5 / 8, "mean_iou": (1 / 4 + 2 / 3 + 1 / 2) / 3})
    assert pixel_scores(model, [first, second], context, 1, "fp32") == pytest.approx(both)
    assert pixel_scores(model, [first, second], context, 1, "fp32", limit=1) == pytest.approx(
        {"pixel_accuracy": 4 / 6, "mean_iou": (1 / 3 + 2 / 3 + 1 / 2) / 3})
    assert model.training, "left in the mode it was in"
    assert pixel_scores(tiny_config().build(47, 92, initial_weights=False), [first], context, 1, "fp32") == {}


def test_a_unet_that_predicts_every_instance_scores_one_where_parts_lie_on_garments():
    """A shirt (1), a sleeve on it (3) and a pocket on both (2): both sides put the smaller on top."""
    masks = torch.zeros((3, 8, 10), dtype=torch.uint8)
    masks[0, 1:7, 1:8] = 1
    masks[1, 1:7, 6:10] = 1
    masks[2, 2:4, 5:7] = 1
    target = {"labels": torch.tensor([1, 3, 2]), "masks": masks}
    model = unet_config().build(CLASSES, 0, initial_weights=False).eval()
    truth = category_targets(target, (8, 10), CLASSES - 1)
    model.logits = lambda images: (20 * truth - 10)[None]
    counts = model.confusion([torch.zeros((3, 8, 10))], [target])
    assert torch.equal(counts, torch.diag(counts.diag())) and counts.sum() == 80, counts


@pytest.fixture
def timed(monkeypatch) -> ModuleType:
    """``fake_family``, its family ``timed`` registered for this test alone (a process that ``measure`` spawns
    registers it itself, importing ``fake_family`` to unpickle the family's params)."""
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    import fake_family  # registers its families, into the copy, when first imported

    registry.register(fake_family.TIMED)
    return fake_family


def _measured(tmp_path: Path, small_instances, small_dataset, config: registry.ModelConfig, steps: int = 3,
              how=measure) -> Measurement:
    """``how`` (``measure``, or ``speed._measure`` in this process) of the family ``timed`` (``fake_family``):
    ``steps`` + 1 images timed in batches of 2, ``steps`` training steps of 2 images, each after one untimed."""
    torch.save({"model": config.build(47, 92).state_dict(), "num_classes": 47}, tmp_path / "best.pt")
    ids = sorted(small_instances.image_id.unique())[:4]
    dataset = InstanceDataset(small_instances[small_instances.image_id.isin(ids)], small_dataset / "train", 64, 96, 92)
    compare = CompareParams(families=("timed",), train_steps=steps, inference_images=steps + 1, bootstrap_resamples=100)
    predict = PredictParams(hflip=False, scales=(1.0,), batch_size=2, workers=0, device="cpu")
    return how(tmp_path / "best.pt", config, 92, dataset, compare, TRAIN.model_copy(update={"batch_size": 2}), predict)


def test_speeds_memory_and_parameters_are_measured_as_defined(tmp_path, small_instances, small_dataset, timed):
    """A family whose every forward pass (a batch of 2 images) takes 0.2 s: 10 images/s, training and inference
    alike, less a little for the rest of the step, and the untimed first pass not counted; the peak is the measuring
    process's peak resident memory in MB. Measured in this process (``measure`` runs the same in a process of its
    own, which the memory test below needs and this one does not)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    found = _measured(tmp_path, small_instances, small_dataset, timed.timed_config(0.2), how=speed._measure)
    assert 8 < found.inference_images_per_second <= 10 and 8 < found.train_images_per_second <= 10, found
    assert before <= found.peak_memory_mb <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert found.parameters == timed.TimedModel.parameters_count and found.device == "cpu" and not found.attributes


def test_peak_memory_is_the_measuring_process_s_own(tmp_path, small_instances, small_dataset, timed):
    """A family that fills 200 MB more in each pass peaks 200 MB higher, whatever the process that asked for the
    measurement holds: this one is first made to peak 1 GB higher, as a stage holding a large dataset would."""
    held = torch.ones(2**30 // 4)
    del held
    light, heavy = (_measured(tmp_path, small_instances, small_dataset, timed.timed_config(0.0, ballast), steps=1)
                    for ballast in (0, 200))
    assert 0.9 * 200 < heavy.peak_memory_mb - light.peak_memory_mb < 1.2 * 200, (light, heavy)


def test_an_unknown_family_in_compare_families_names_the_known_ones(tmp_path):
    """Checked with the registry before any run is read or measured."""
    import yaml

    from pipeline.comparison import families as comparison
    from pipeline.models.registry import FamilyError

    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    params["compare"]["families"] = ["maskrcnn", "maskrnn"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(FamilyError,
                       match="no model family 'maskrnn' .*; the known families are mask2former, maskrcnn, unet"):
        comparison.compare(comparison.Settings.load(tmp_path / "params.yaml"), tmp_path, tmp_path, None, 92)
