"""What training logs to DVCLive: mean losses, images/s and dropped instances per row; validation per epoch."""

from __future__ import annotations

import logging
import time

import torch
from dvclive import Live

log = logging.getLogger(__name__)


class Meter:
    """Training numbers between two DVCLive rows: mean loss terms, images/s over all processes, dropped instances.

    Its state is saved in every checkpoint, so that the first row after a resume covers the same
    batches, and ``instances_dropped`` the same count, as in an uninterrupted run.
    """

    def __init__(self, world_size: int, saved: dict | None = None) -> None:
        self.world_size = world_size
        self.dropped = 0  # instances empty after resizing, in this process since training started
        self.reset()
        if saved is not None:
            self.dropped, self.images, self.batches = saved["dropped"], saved["images"], saved["batches"]
            self.losses = dict(saved["losses"])
            self.start -= saved["seconds"]

    def state(self) -> dict:
        return {"dropped": self.dropped, "images": self.images, "batches": self.batches,
                "losses": {name: float(total) for name, total in self.losses.items()},
                "seconds": time.perf_counter() - self.start}

    def reset(self) -> None:
        self.start, self.images, self.batches, self.losses = time.perf_counter(), 0, 0, {}

    def add(self, losses: dict[str, torch.Tensor], images: int, dropped: int) -> None:
        self.images += images
        self.batches += 1
        self.dropped += dropped
        # Summed on the loss's device, in float64 as Python floats would be: no wait for the GPU until a row is written.
        for name, value in {**losses, "loss": sum(losses.values())}.items():
            self.losses[name] = self.losses.get(name, 0.0) + value.detach().double()

    def exclude(self, seconds: float) -> None:
        """Leave time spent on other work (validation) out of the throughput."""
        self.start += seconds

    def images_per_second(self) -> float:
        return self.images * self.world_size / max(time.perf_counter() - self.start, 1e-9)

    def write(self, live: Live | None, step: int, lr: float) -> None:
        if live is not None:
            live.step = step
            for name, total in self.losses.items():
                live.log_metric(f"train/{name}", float(total) / self.batches)
            live.log_metric("train/lr", lr)
            live.log_metric("train/images_per_second", self.images_per_second())
            live.log_metric("train/instances_dropped", self.dropped, plot=False)
            live.make_summary()
        self.reset()


#: Validation-time scores of training images carry this prefix and are logged as ``train/<name>``.
TRAIN_PREFIX = "train_"


def log_validation(live: Live, epoch: int, step: int, score: dict[str, float], best: tuple[float, int], key: str,
                   ) -> None:
    """One epoch's validation numbers, and the best ``key`` so far as (value, step)."""
    live.step = step
    for name, value in score.items():
        trained = name.startswith(TRAIN_PREFIX)
        live.log_metric(f"train/{name[len(TRAIN_PREFIX):]}" if trained else f"val/{name}", value)
    live.log_metric(f"val/best_{key}", best[0], plot=False)
    live.make_summary()
    log.info("epoch %d: val %s %.4f, mask AP %.4f (best %s %.4f at step %d)", epoch, key, score[key],
             score["mask_ap"], key, best[0], best[1])
