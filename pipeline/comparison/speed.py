"""Each family's speed, size and memory, measured in one run on the same device, images and input size.

Every family is measured in a fresh process of its own, so that its peak memory is its own:
CUDA's peak allocated memory on a GPU, the process's peak resident memory on a CPU (Python and
torch included, about 0.4 GB of it). The weights are the trained ones; the timed training steps
change a copy, never the run's checkpoints.
"""

from __future__ import annotations

import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from pipeline.config.comparison import CompareParams
from pipeline.config.inference import PredictParams
from pipeline.config.training import TrainParams
from pipeline.data.dataset import InstanceDataset
from pipeline.inference.predict import load_model, resolve_device
from pipeline.models.registry import ModelConfig
from pipeline.training import schedule
from pipeline.utils.device import autocast


@dataclass(frozen=True)
class Measurement:
    train_images_per_second: float
    inference_images_per_second: float  # the plain view, the family's own post-processing included
    parameters: int
    peak_memory_mb: float
    device: str
    attributes: bool  # whether the family predicts attributes (else its ClassIds are categories alone)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, work) -> float:
    _sync(device)
    started = time.perf_counter()
    work()
    _sync(device)
    return time.perf_counter() - started


def _inference_rate(model, dataset: InstanceDataset, compare: CompareParams, predict: PredictParams,
                    device: torch.device) -> float:
    count = min(compare.inference_images, len(dataset))
    images = [dataset[i][0].to(device) for i in range(count)]
    batches = [images[k : k + predict.batch_size] for k in range(0, count, predict.batch_size)]
    model.eval()

    @torch.inference_mode()
    def run(parts) -> None:
        for batch in parts:
            with autocast(device, predict.precision):
                model(batch)

    run(batches[:1])  # warm-up: lazy allocations, cuDNN's choices
    return count / _timed(device, lambda: run(batches))


def _train_rate(model, dataset: InstanceDataset, compare: CompareParams, train: TrainParams,
                device: torch.device) -> float:
    items = [dataset[i % len(dataset)] for i in range(train.batch_size)]
    images = [image.to(device) for image, _, _ in items]
    targets = [{k: v.to(device) for k, v in target.items()} for _, target, _ in items]
    optimizer = schedule.optimizer(model, train)
    model.train()

    def steps(count: int) -> None:
        for _ in range(count):
            with autocast(device, train.precision):
                losses = model(images, targets)
            sum(losses.values()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    steps(1)
    return compare.train_steps * len(images) / _timed(device, lambda: steps(compare.train_steps))


def _measure(checkpoint: Path, config: ModelConfig, num_attributes: int, dataset: InstanceDataset,
             compare: CompareParams, train: TrainParams, predict: PredictParams) -> Measurement:
    torch.manual_seed(compare.seed)
    device = resolve_device(predict.device)
    model = load_model(checkpoint, config, device, num_attributes)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    inference = _inference_rate(model, dataset, compare, predict, device)
    training = _train_rate(model, dataset, compare, train, device)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux
    return Measurement(training, inference, sum(p.numel() for p in model.parameters()), peak, str(device),
                       model.num_attributes > 0)


def measure(checkpoint: Path, config: ModelConfig, num_attributes: int, dataset: InstanceDataset,
            compare: CompareParams, train: TrainParams, predict: PredictParams) -> Measurement:
    """One family's ``Measurement``, made in a process of its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_measure, checkpoint, config, num_attributes, dataset, compare, train, predict).result()
