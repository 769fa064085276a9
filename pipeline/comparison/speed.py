"""Each family's speed, size and memory, measured in one run on the same device, images and input size.

Every family is measured in a fresh process of its own, so that its peak memory is its own:
CUDA's peak allocated memory on a GPU, the process's peak resident memory on a CPU (Python and
torch included, about 0.4 GB of it). The weights are the trained ones; the timed training steps
change a copy, never the run's checkpoints.
"""

from __future__ import annotations

import resource
import sys
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
from pipeline.inference.trained import load_model, resolve_device
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


def _peak_resident_mb() -> float:
    """This process's own peak resident memory, in MiB.

    Linux keeps ``ru_maxrss`` across ``exec``: a spawned process starts with its parent's peak, so
    a family measured from a stage holding 2 GB reported at least 2 GB. The high-water mark of the
    process's own memory map (``VmHWM``) starts afresh; ``ru_maxrss`` is the fallback elsewhere.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _measure(checkpoint: Path, config: ModelConfig, num_attributes: int, dataset: InstanceDataset,
             compare: CompareParams, train: TrainParams, predict: PredictParams) -> Measurement:
    torch.manual_seed(compare.seed)
    device = resolve_device(predict.device)
    model = load_model(checkpoint, config, device, num_attributes)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    inference = _inference_rate(model, dataset, compare, predict, device)
    training = _train_rate(model, dataset, compare, train, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _peak_resident_mb()
    return Measurement(training, inference, sum(p.numel() for p in model.parameters()), peak, str(device),
                       model.num_attributes > 0)


def measure(checkpoint: Path, config: ModelConfig, num_attributes: int, dataset: InstanceDataset,
            compare: CompareParams, train: TrainParams, predict: PredictParams) -> Measurement:
    """One family's ``Measurement``, made in a process of its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_measure, checkpoint, config, num_attributes, dataset, compare, train, predict).result()
