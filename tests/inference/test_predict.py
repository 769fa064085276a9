"""Inference with TTA: every view's detections land on the original image frame."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torchvision.ops import roi_align

import stages.predict
from pipeline.config.inference import PredictParams
from pipeline.config.model import ModelParams
from pipeline.inference import predict, store
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.inference.postprocess import paste
from pipeline.inference.predict import Inference, make_views, predict_batch
from pipeline.inference.store import PredictionsError
from pipeline.inference.trained import checkpoint_path, load_model
from pipeline.models import registry
from pipeline.models.contract import MaskFormat
from pipeline.models.layout import backbone_of, speed_up
from pipeline.utils.checkpoint import CheckpointError

from model_configs import changed, maskrcnn_config, yolact_config
from stage_runs import predict_args, training_inputs

MIN_SIZE, MAX_SIZE = 64, 96


def inference(model: torch.nn.Module, views: list, stack_views: bool = False) -> Inference:
    """``model`` run on the CPU in fp32 at the tests' input size."""
    return Inference(model, views, ModelParams(min_size=MIN_SIZE, max_size=MAX_SIZE), torch.device("cpu"),
                     stack_views=stack_views)


class StandInDetector(nn.Module):
    """A model of the contract that finds the one bright shape of an image: box and a crop mask of it."""

    mask_format = MaskFormat("crop", 28)
    num_attributes = 0

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        outputs = []
        for image in images:
            bright = (image[0] > 0.5).float()
            rows, cols = torch.nonzero(bright.any(1)).flatten(), torch.nonzero(bright.any(0)).flatten()
            box = torch.tensor([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], dtype=torch.float32)
            mask = roi_align(bright[None, None], [box], output_size=28, aligned=True)
            outputs.append({"boxes": box, "labels": torch.tensor([5]), "scores": torch.tensor([0.9]), "masks": mask})
        return outputs


def l_shape(height: int, width: int) -> np.ndarray:
    """An L (left-right asymmetric, so a wrong un-flip shows) away from the borders."""
    mask = np.zeros((height, width), bool)
    mask[height // 5 : 4 * height // 5, width // 6 : width // 3] = True
    mask[3 * height // 5 : 4 * height // 5, width // 6 : 3 * width // 5] = True
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("height,width", [(150, 200), (211, 97)])
def test_every_view_maps_back_onto_the_original_shape(height, width):
    truth = l_shape(height, width)
    image = torch.from_numpy(np.where(truth, 230, 20).astype(np.uint8))[None].repeat(3, 1, 1)
    views = make_views((1.0, 0.75, 1.5), hflip=True)
    detections = predict_batch(inference(StandInDetector(), views), [image], [ImageRecord("a.jpg", height, width)])[0]
    assert sorted(detections.views.tolist()) == list(range(len(views)))
    rows, cols = np.nonzero(truth)
    for k, view in enumerate(views):
        box = detections.boxes[k]
        expected_box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert box == pytest.approx(expected_box, abs=max(height, width) / 40), view.name
        canvas = np.zeros((height, width), np.float32)
        paste(detections.masks[k], box, canvas, 0)
        assert iou(canvas > 0.5, truth) > 0.85, view.name


def test_a_flipped_view_is_mirrored_back():
    """Without the un-flip the L would come back mirrored: its IoU with the truth would be low."""
    height, width = 120, 160
    truth = l_shape(height, width)
    image = torch.from_numpy(np.where(truth, 230, 20).astype(np.uint8))[None].repeat(3, 1, 1)
    plain, flipped = predict_batch(inference(StandInDetector(), make_views((1.0,), hflip=True)), [image],
                                   [ImageRecord("a.jpg", height, width)])[0].masks
    assert iou(flipped > 127, plain > 127) > 0.9
    assert iou(flipped[:, ::-1] > 127, plain > 127) < 0.7


def test_views_put_the_plain_view_first_and_scales_must_include_it():
    assert [v.name for v in make_views((1.25, 1.0, 0.8), hflip=True)] == [
        "x1", "x0.8", "x1.25", "x1-flip", "x0.8-flip", "x1.25-flip"]
    with pytest.raises(ValidationError, match="must include 1.0"):
        PredictParams(hflip=False, scales=(0.8, 1.2), batch_size=1, workers=0)


def test_a_real_model_predicts_a_batch_of_different_sizes(tmp_path):
    spec = random_maskrcnn()
    torch.manual_seed(0)
    torch.save({"model": spec.build(47, 92).state_dict(), "num_classes": 47}, tmp_path / "best.pt")
    model = load_model(tmp_path / "best.pt", spec, torch.device("cpu"), 92)
    records = [ImageRecord("a.jpg", 90, 130), ImageRecord("b.jpg", 140, 70)]
    images = [torch.randint(0, 255, (3, r.height, r.width), dtype=torch.uint8) for r in records]
    found = predict_batch(inference(model, make_views((1.0, 1.2), True)), images, records)
    for detections, record in zip(found, records, strict=True):
        assert isinstance(detections, Detections) and len(detections) > 0 and detections.mask_kind == "roi"
        assert detections.n_views == 4
        assert detections.masks.shape[1:] == (28, 28) and detections.masks.dtype == np.uint8
        assert (detections.boxes[:, [0, 2]] <= record.width + 1e-3).all()
        assert (detections.boxes[:, [1, 3]] <= record.height + 1e-3).all()
        assert detections.categories.min() >= 0 and detections.categories.max() < 46
        assert set(detections.views.tolist()) <= {0, 1, 2, 3}
        assert detections.attributes.shape == (len(detections), 92) and detections.attributes.dtype == np.uint8


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    small = maskrcnn_config(min_size=MIN_SIZE, max_size=MAX_SIZE, anchor_sizes=(8, 16, 32, 64, 128))
    torch.save({"model": small.build(47, 92).state_dict(), "num_classes": 47}, tmp_path / "best.pt")
    other = changed(small, mask_head_layers=(64,))
    with pytest.raises(Exception, match="does not fit the model sections of params.yaml"):
        load_model(tmp_path / "best.pt", other, torch.device("cpu"), 92)


def test_an_unreadable_checkpoint_says_what_predict_can_do_about_it(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*rerun stage train") as caught:
        load_model(tmp_path / "best.pt", SPEC, torch.device("cpu"), 92)
    assert "--no-resume" not in str(caught.value), "predict has no such option"


def test_best_falls_back_to_last_until_a_validation_has_run(tmp_path, caplog):
    """A Kaggle session that ran out of time in its first epoch still predicts, from last.pt."""
    caplog.set_level("INFO")
    with pytest.raises(CheckpointError, match="run stage train first"):
        checkpoint_path(tmp_path, "best")
    (tmp_path / "last.pt").write_bytes(b"")
    assert checkpoint_path(tmp_path, "best") == tmp_path / "last.pt"
    assert "best.pt does not exist yet" in caplog.text
    (tmp_path / "best.pt").write_bytes(b"")
    assert checkpoint_path(tmp_path, "best") == tmp_path / "best.pt"
    assert checkpoint_path(tmp_path, "last") == tmp_path / "last.pt"


SPEC = maskrcnn_config(min_size=MIN_SIZE, max_size=MAX_SIZE, anchor_sizes=(8, 16, 32, 64, 128))
TTA = PredictParams(hflip=True, scales=(1.0, 1.25), batch_size=2, workers=0)


def test_the_prediction_key_changes_with_what_changes_predictions_and_survives_json(tmp_path):
    from pipeline.inference.predict import prediction_key
    from pipeline.utils.fingerprint import imported_modules, source_digest
    from pipeline.utils.io import as_json

    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights one")
    records = [ImageRecord("a.jpg", 100, 80), ImageRecord("b.jpg", 90, 70)]
    key = prediction_key(weights, SPEC, TTA, records)
    assert as_json(key) == as_json(prediction_key(weights, SPEC, TTA, records)), "the same inputs, the same key"
    runtime_only = TTA.model_copy(update={"workers": 3, "part_size": 5})
    assert prediction_key(weights, SPEC, runtime_only, records) == key, "decoding processes and parts change nothing"
    others = [prediction_key(weights, changed(SPEC, anchor_sizes=(8, 16, 32, 64, 256)), TTA, records),
              # a batch pads its images to one size, which moves scores near the padded edges
              prediction_key(weights, SPEC, TTA.model_copy(update={"batch_size": TTA.batch_size + 1}), records),
              prediction_key(weights, SPEC, TTA.model_copy(update={"scales": (1.0,)}), records),
              prediction_key(weights, SPEC, TTA, records[:1]),
              prediction_key(weights, SPEC, TTA, [ImageRecord("a.jpg", 100, 81), records[1]])]
    weights.write_bytes(b"weights two")
    others.append(prediction_key(weights, SPEC, TTA, records))
    assert all(as_json(other) != as_json(key) for other in others)
    # the inference code, through every module it imports (the view geometry of pipeline.data.transforms
    # included), and the family's own code, which predict imports only through the registry
    family = SPEC.code_modules()
    assert key["code"] == source_digest(*sorted({*imported_modules("pipeline.inference.predict"), *family}))
    assert "pipeline.data.transforms" in imported_modules("pipeline.inference.predict")
    detector = "pipeline.models.families.maskrcnn.detector"
    assert detector in family and detector not in imported_modules("pipeline.inference.predict")


def test_a_missing_gpu_and_a_missing_image_are_clear_errors(monkeypatch):
    from pipeline.inference.predict import records_of
    from pipeline.inference.trained import resolve_device
    from pipeline.utils.errors import PipelineError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PipelineError, match="predict.device is cuda but torch sees no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(PipelineError, match="^index.device is cuda but torch sees no CUDA device"):
        resolve_device("cuda", "index.device")
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    import pandas as pd

    table = pd.DataFrame({"image_id": ["a.jpg", "a.jpg", "b.jpg"], "height": [10, 10, 20], "width": [5, 5, 6]})
    assert records_of(table, ["b.jpg", "a.jpg"]) == [ImageRecord("b.jpg", 20, 6), ImageRecord("a.jpg", 10, 5)]
    with pytest.raises(PipelineError, match=r"2 image\(s\) are not in the instance table, e.g. c.jpg"):
        records_of(table, ["a.jpg", "c.jpg", "d.jpg"])


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_that_cannot_be_read_is_named_in_one_line_by_any_decoding_process(tmp_path, workers):
    """From a DataLoader worker, torch raises the error again with the worker's whole traceback as its message."""
    from pipeline.data.annotations import DataError
    from pipeline.inference.predict import predict_files

    torch.manual_seed(0)
    model = SPEC.build(47, 92, initial_weights=True).eval()
    run = predict_files(inference(model, make_views((1.0,), False)), 1, workers)
    with pytest.raises(DataError) as caught:
        list(run([ImageRecord("gone.jpg", 60, 80)], tmp_path))
    assert str(caught.value) == f"{tmp_path / 'gone.jpg'}: image not found"


def _in_order(detections: Detections) -> Detections:
    return detections.select(np.lexsort((-detections.scores, detections.views)))


def assert_same_detections(got: Detections, expected: Detections, mask_levels: int = 2) -> None:
    """The same detections of the same views, scores and boxes within rounding, masks within a few levels of 255."""
    got, expected = _in_order(got), _in_order(expected)
    assert len(got) == len(expected) and (got.views == expected.views).all()
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-2)
    assert (got.categories == expected.categories).all()
    assert np.abs(got.masks.astype(int) - expected.masks.astype(int)).max(initial=0) <= mask_levels
    assert np.abs(got.attributes.astype(int) - expected.attributes.astype(int)).max(initial=0) <= mask_levels


def test_all_views_in_one_forward_map_each_view_back_as_separate_forwards_do():
    records = [ImageRecord("a.jpg", 90, 130), ImageRecord("b.jpg", 140, 70)]
    images = [torch.zeros((3, r.height, r.width), dtype=torch.uint8) for r in records]
    images[0][:, 20:50, 30:100], images[1][:, 60:130, 5:40] = 255, 255
    views, batches = make_views((1.0, 1.2), True), []
    model = StandInDetector()
    model.register_forward_pre_hook(lambda module, args: batches.append(len(args[0])))
    each = predict_batch(inference(model, views), images, records)
    stacked = predict_batch(inference(model, views, stack_views=True), images, records)
    assert batches == [2, 2, 2, 2, 8], "one forward per view, then one for all four views of both images"
    for got, expected in zip(stacked, each, strict=True):
        assert sorted(got.views.tolist()) == [0, 1, 2, 3]
        assert_same_detections(got, expected, mask_levels=0)


def _trained_like(config_of, tmp_path):
    config = config_of()
    torch.manual_seed(0)
    torch.save({"model": config.build(47, 92).state_dict(), "num_classes": 47}, tmp_path / "best.pt")
    return load_model(tmp_path / "best.pt", config, torch.device("cpu"), 92)


def random_maskrcnn():
    """A Mask R-CNN that, untrained, still returns its full 20 detections per view (no score threshold)."""
    return maskrcnn_config(min_size=MIN_SIZE, max_size=MAX_SIZE, anchor_sizes=(8, 16, 32, 64, 128),
                           rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=50, box_score_thresh=0.0,
                           box_detections_per_img=20)


@pytest.mark.parametrize("option", ["stack_views", "channels_last"])
@pytest.mark.parametrize("family", ["maskrcnn", "yolact"])
def test_the_inference_speed_options_keep_the_detections(option, family, tmp_path):
    """Flip views: the same size, so stacking them pads nothing and the detections must not move."""
    config_of = random_maskrcnn if family == "maskrcnn" else lambda: yolact_config(score_threshold=0.0)
    model = _trained_like(config_of, tmp_path)
    records = [ImageRecord("a.jpg", 90, 130)]
    images = [torch.randint(0, 255, (3, 90, 130), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))]
    views = make_views((1.0,), True)
    (plain,) = predict_batch(inference(model, views), images, records)
    if option == "channels_last":
        speed_up(model, channels_last=True, compile_backbone=False)
    (fast,) = predict_batch(inference(model, views, stack_views=option == "stack_views"), images, records)
    assert len(plain) > 0
    assert_same_detections(fast, plain)


def test_the_predict_stage_passes_its_speed_options_to_inference(small_instances, small_dataset, tmp_path,
                                                                  monkeypatch):
    """Stage predict, in-process on one image of each split, with an untrained tiny Mask R-CNN's weights:
    every batch is predicted with the views stacked and the backbone in channels-last format."""
    params, _ = training_inputs(tmp_path, small_instances,
                                predict={"stack_views": True, "channels_last": True, "device": "cpu"})
    config = registry.load(params)
    (tmp_path / "run").mkdir()
    torch.save({"model": config.build(47, 92, initial_weights=False).state_dict(), "num_classes": 47},
               tmp_path / "run" / "best.pt")
    calls, real = [], predict.predict_batch

    def spy(inference, *args, **kwargs):
        convolutions = [m.weight for m in backbone_of(inference.model).modules() if isinstance(m, nn.Conv2d)]
        calls.append((inference.stack_views,
                      all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)))
        return real(inference, *args, **kwargs)

    monkeypatch.setattr(predict, "predict_batch", spy)
    monkeypatch.setattr(sys, "argv", ["predict", *predict_args(tmp_path, params, small_dataset, tmp_path / "out"),
                                      "--limit", "1"])
    stages.predict.main()
    assert calls == [(True, True)] * 2, "(predict.stack_views, predict.channels_last) of each split's batch"
    for split in ("val", "test"):  # a --limit run is a smoke run: its folders say so, and no reader takes them
        with pytest.raises(PredictionsError, match="made with --limit 1"):
            store.read(tmp_path / "out" / split)
