"""A tiny Mask R-CNN training run for the tests of the training loop: params, data and the run itself."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config.training import AugmentParams, TrainParams
from pipeline.data.dataset import InstanceDataset
from pipeline.data.transforms import Augment
from pipeline.training.loop import Job, train
from pipeline.utils import checkpoint
from pipeline.utils.checkpoint import LAST

from model_configs import tiny_config

SPEC = tiny_config(rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=100)
AUGMENT = AugmentParams(hflip=True, scale_range=(0.8, 1.2), color_jitter=0.2)
TRAIN = TrainParams(launcher="python", fold=0, epochs=2, batch_size=2, workers=0, optimizer="sgd", lr=0.01,
                    weight_decay=1e-4, schedule="cosine", warmup_steps=2, grad_clip=10.0, precision="bf16",
                    device="cpu", seed=3, deterministic=True, checkpoint_every=1, log_every=1)


def datasets(instances, image_dir: Path, n_train: int = 6, n_val: int = 3) -> tuple[InstanceDataset, InstanceDataset]:
    ids = sorted(instances.image_id.unique())
    train_rows = instances[instances.image_id.isin(ids[:n_train])]
    val_rows = instances[instances.image_id.isin(ids[n_train : n_train + n_val])]
    return (InstanceDataset(train_rows, image_dir, SPEC.model.min_size, SPEC.model.max_size, 92, Augment(AUGMENT)),
            InstanceDataset(val_rows, image_dir, SPEC.model.min_size, SPEC.model.max_size, 92))


def run(tmp: Path, data, params: TrainParams = TRAIN, **kwargs):
    return train(Job(SPEC, params, AUGMENT, 47, 92, *data, tmp / "run", tmp / "live", **kwargs))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(run_dir / LAST)["model"]
