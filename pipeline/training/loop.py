"""The training loop: one process, or one per GPU under torchrun; resumable at any checkpoint.

Follows torchvision's ``references/detection`` engine: sum the loss dict, stop on a non-finite
loss, one checkpoint dict. Adds what a restartable Kaggle run needs: a mid-epoch resume that
reproduces the uninterrupted run (same samples, augmentations, RNG draws and optimiser state),
and a resume key so that a checkpoint made with other params is never continued. The model is
any family of ``pipeline.models.registry``, reached only through its contract.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.config.training import AugmentParams, TrainParams
from pipeline.data.dataset import InstanceDataset, collate
from pipeline.data.sampler import EpochSampler
from pipeline.models.layout import speed_up
from pipeline.models.registry import ModelConfig
from pipeline.training import distributed, schedule
from pipeline.training.curves import write_curves
from pipeline.training.failures import naming_images
from pipeline.training.meter import TRAIN_PREFIX, Meter, log_validation
from pipeline.training.resume import RESOLVED, restore, resume_key
from pipeline.training.tracking import open_live
from pipeline.training.validation import SCORE, evaluate, improves, pixel_scores
from pipeline.utils import checkpoint
from pipeline.utils.checkpoint import BEST, LAST
from pipeline.utils.device import autocast
from pipeline.utils.errors import PipelineError, from_worker
from pipeline.utils.fingerprint import file_record, imported_modules
from pipeline.utils.io import atomic_path, write_json
from pipeline.utils.lock import exclusive

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
# Every module this one imports, directly or not: what DVC reruns the train stage for (its deps), and so
# what a checkpoint must have been trained with to be continued.
_TRAINING_CODE = imported_modules(__name__)


class TrainingDiverged(PipelineError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    steps: int
    epochs_done: int
    best_score: float | None
    best_step: int | None
    best: dict | None  # the best epoch's validation record (epoch, step, score, mask_ap, ...)
    resumed_from_step: int | None
    finished: bool  # all epochs trained and validated
    stopped_by: str | None  # "max_steps" or "deadline" when training stopped early
    model: torch.nn.Module  # the trained model (on this process's device, not wrapped in DDP)
    main_process: bool  # False on the other ranks of a distributed run


@dataclass
class _State:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    batches_done: int = 0  # batches of ``epoch`` already trained on, on each process
    step: int = 0  # optimizer steps since the start
    best_score: float | None = None
    best_step: int | None = None
    history: list[dict] = field(default_factory=list)  # validation results, one per epoch
    val_seconds: float = 0.0  # how long the last validation took: a deadline must leave room for it
    best_file: dict | None = None  # size and digest of best.pt as written: a later run checks it before resuming

    def best(self) -> dict | None:
        return next((h for h in self.history if h["step"] == self.best_step), None)


@dataclass(frozen=True)
class Job:
    """What one training run is given: model, params, data, folders and when to stop early."""

    config: ModelConfig
    params: TrainParams
    augment: AugmentParams
    num_classes: int
    num_attributes: int
    train_set: InstanceDataset
    val_set: InstanceDataset
    run_dir: Path
    live_dir: Path
    resume: bool = True
    max_steps: int | None = None  # stop (with a checkpoint) after this many optimizer steps in all
    deadline: float | None = None  # time.time() seconds; stop, with a checkpoint, before work would pass it


def _seed_everything(seed: int, rank: int, deterministic: bool) -> None:
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: numpy and random seeded from torch's per-worker seed (torch does not do it)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _to_device(images: list, targets: list, device: torch.device) -> tuple[list, list]:
    return ([image.to(device, non_blocking=True) for image in images],
            [{k: v.to(device, non_blocking=True) for k, v in target.items()} for target in targets])


def _batches(loader: DataLoader, context: distributed.Context) -> Iterator:
    try:
        for images, targets, metas in loader:
            yield (*_to_device(images, targets, context.device), metas)
    except PipelineError as exc:
        if (raised := from_worker(exc)) is exc:
            raise
        raise raised from None


def too_late(context: distributed.Context, deadline: float | None, seconds_needed: float) -> bool:
    """Whether work taking ``seconds_needed`` would end after ``deadline``, on any process (all stop together)."""
    if deadline is None:  # the same on every process: no collective call needed
        return False
    return distributed.any_true(context, time.time() + seconds_needed >= deadline)


def _diverged(where: str, job: Job) -> TrainingDiverged:
    return TrainingDiverged(
        f"loss is not finite {where}. Lower train.lr (now {job.params.lr}), raise train.warmup_steps or set "
        f"train.precision: fp32; {job.run_dir / LAST} holds the last good checkpoint")


def check_finite(context: distributed.Context, losses: dict[str, torch.Tensor], state: _State, job: Job) -> None:
    """Raise ``TrainingDiverged`` on every process when the loss is not finite on any of them."""
    if distributed.any_true(context, not bool(torch.isfinite(sum(losses.values())))):
        values = ", ".join(f"{k} {v.item():.4g}" for k, v in losses.items())
        raise _diverged(f"at epoch {state.epoch + 1}, step {state.step} ({values})", job)


class _LossGuard:
    """The divergence check of ``train.sync_every``: every batch (1), or on the device and read every N steps.

    Reading a loss on the host waits for the GPU to finish the step; above 1 the check
    accumulates a finiteness flag on the device instead and reads it every ``sync_every``
    optimizer steps and before every checkpoint, so a checkpoint never holds diverged weights.
    """

    def __init__(self, trainer: _Trainer) -> None:
        self.trainer, self.finite, self.since = trainer, None, trainer.state.step

    def batch(self, losses: dict[str, torch.Tensor]) -> None:
        trainer = self.trainer
        if trainer.params.sync_every == 1:
            check_finite(trainer.context, losses, trainer.state, trainer.job)
            return
        finite = torch.isfinite(sum(losses.values()).detach())
        self.finite = finite if self.finite is None else self.finite & finite

    def due(self) -> bool:
        return self.trainer.state.step % self.trainer.params.sync_every == 0

    def check(self) -> None:
        """Read the flag (one sync) and raise on every process if any loss since the last read was not finite."""
        if self.finite is None:
            return
        state, context = self.trainer.state, self.trainer.context
        if distributed.any_true(context, not bool(self.finite)):
            raise _diverged(f"between steps {self.since} and {state.step} of epoch {state.epoch + 1}",
                            self.trainer.job)
        self.finite, self.since = None, state.step


class _Trainer:
    """The model, its optimiser state and the run's bookkeeping, built (or restored) in a fixed order."""

    def __init__(self, context: distributed.Context, job: Job) -> None:
        params = self.params = job.params
        self.context, self.job = context, job
        _seed_everything(params.seed, context.rank, params.deterministic)
        self.precision = params.precision if context.device.type == "cuda" else "fp32"
        if self.precision != params.precision and context.is_main:
            log.info("train.precision %s applies to CUDA only; this CPU run uses fp32", params.precision)
        code = tuple(sorted({*_TRAINING_CODE, *job.config.code_modules()}))  # the loop's and the family's
        self.key = resume_key(job.config, params, job.augment, job.train_set, context.world_size, code)
        job.run_dir.mkdir(parents=True, exist_ok=True)
        saved = restore(job.run_dir, self.key, job.resume, context)
        self.model = job.config.build(job.num_classes, job.num_attributes, initial_weights=saved is None)
        self.model.to(context.device)
        if context.distributed and context.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        speed_up(self.model, params.channels_last, params.compile_backbone)
        self.optimizer = schedule.optimizer(self.model, params)
        per_rank = EpochSampler(len(job.train_set), params.seed, 0, context.rank, context.world_size).per_rank()
        self.batches_per_epoch = -(-per_rank // params.batch_size)
        self.total_steps = -(-self.batches_per_epoch // params.accumulate) * params.epochs
        self.scheduler = schedule.scheduler(self.optimizer, self.total_steps, params)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.state = _State()
        self.resumed_from = None if saved is None else self._load(saved)
        self.ddp = DistributedDataParallel(
            self.model, device_ids=[context.device.index] if context.device.type == "cuda" else None,
        ) if context.distributed else None
        self.resolved = {**self.key, "train": params.model_dump(mode="json")}
        self.saved_meter = None if saved is None else saved["meter"]

    def _load(self, saved: dict) -> int:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        self.state = _State(**saved["state"])
        if self.context.rank < len(saved["rng"]):
            checkpoint.set_rng_state(saved["rng"][self.context.rank])
        if self.context.is_main:
            log.info("resuming %s at epoch %d, step %d", self.job.run_dir / LAST, self.state.epoch + 1, self.state.step)
        return self.state.step

    def save(self, meter: Meter, best: bool) -> float:
        """``best.pt`` (when ``best``), then ``last.pt`` with the record of ``best.pt`` it will be checked against;
        returns the seconds it took, which a deadline must leave room for."""
        started = time.perf_counter()
        rng = distributed.gather(self.context, checkpoint.rng_state())  # every process's, for an exact resume
        if self.context.is_main:
            weights = {"model": self.model.state_dict(), "params": self.resolved, "num_classes": self.job.num_classes,
                       "num_attributes": self.job.num_attributes}
            if best:
                checkpoint.save(self.job.run_dir / BEST, {**weights, "score": self.state.history[-1],
                                                          "step": self.state.step})
                self.state.best_file = file_record(self.job.run_dir / BEST)
            checkpoint.save(self.job.run_dir / LAST, {
                **weights, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng, "state": asdict(self.state), "meter": meter.state(),
                "resume_key": self.key})
        return time.perf_counter() - started

    def step(self, losses: dict[str, torch.Tensor]) -> None:
        """The optimizer step that ends an accumulation: clip, step, update the scaler and the schedule."""
        if self.params.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.params.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.step += 1


@dataclass
class _Clock:
    """What a deadline must leave room for: the slowest step and the last checkpoint's write."""

    slowest_step: float = 0.0
    save_seconds: float = 0.0


def _train_epoch(trainer: _Trainer, meter: Meter, live, loader_seed: torch.Generator, clock: _Clock) -> str | None:
    """The rest of the current epoch's batches; returns why it stopped early ("max_steps", "deadline") or None."""
    job, params, state, context = trainer.job, trainer.params, trainer.state, trainer.context
    sampler = EpochSampler(len(job.train_set), params.seed, state.epoch, context.rank, context.world_size,
                           start=state.batches_done * params.batch_size)
    loader = DataLoader(job.train_set, batch_size=params.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=params.workers, worker_init_fn=_seed_worker, generator=loader_seed,
                        pin_memory=context.device.type == "cuda")
    net = trainer.ddp or trainer.model
    stopped_by, guard = None, _LossGuard(trainer)
    with tqdm(total=trainer.batches_per_epoch, initial=state.batches_done, disable=not context.is_main,
              desc=f"epoch {state.epoch + 1}/{params.epochs}", unit="batch", dynamic_ncols=True) as bar:
        step_started = time.perf_counter()
        for images, targets, metas in _batches(loader, context):
            state.batches_done += 1
            step_ends = state.batches_done % params.accumulate == 0 or state.batches_done == trainer.batches_per_epoch
            no_sync = trainer.ddp.no_sync() if trainer.ddp is not None and not step_ends else contextlib.nullcontext()
            with no_sync, naming_images(metas, state.epoch, state.step):
                with autocast(context.device, trainer.precision):
                    losses = net(images, targets)
                guard.batch(losses)
                loss = sum(losses.values())
                trainer.scaler.scale(loss / params.accumulate).backward()
            bar.update()
            meter.add(losses, len(images), sum(meta["dropped"] for meta in metas))
            if not step_ends:
                continue
            trainer.step(losses)
            if guard.due():
                guard.check()
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{meter.images_per_second():.1f}")
            if state.step % params.log_every == 0:
                meter.write(live, state.step, trainer.optimizer.param_groups[0]["lr"])
            clock.slowest_step = max(clock.slowest_step, time.perf_counter() - step_started)
            if job.max_steps is not None and state.step >= job.max_steps:
                stopped_by = "max_steps"
            elif too_late(context, job.deadline, clock.slowest_step + clock.save_seconds):
                stopped_by = "deadline"
            if state.step % params.checkpoint_every == 0 or stopped_by:
                guard.check()
                clock.save_seconds = trainer.save(meter, best=False)
            if stopped_by:
                return stopped_by
            step_started = time.perf_counter()
    guard.check()  # the epoch's last steps, before validation and its checkpoint
    return None


def _validate(trainer: _Trainer, meter: Meter, live) -> None:
    """Score the finished epoch, keep the best checkpoint, log both."""
    job, state = trainer.job, trainer.state
    started = time.perf_counter()
    score = evaluate(trainer.model, job.val_set, trainer.context, job.num_classes, trainer.params.batch_size,
                     trainer.precision)
    # A semantic family's pixel scores on as many training images, unaugmented, in eval mode (BatchNorm's
    # running statistics) as validation sees them: the train/validation gap, not a running mean under augmentation.
    probe = pixel_scores(trainer.model, job.train_set, trainer.context, trainer.params.batch_size, trainer.precision,
                         limit=len(job.val_set))
    score.update({f"{TRAIN_PREFIX}{name}": value for name, value in probe.items()})
    state.val_seconds = time.perf_counter() - started
    meter.exclude(state.val_seconds)
    state.epoch, state.batches_done = state.epoch + 1, 0
    improved = improves(score, state.best())
    if improved:
        state.best_score, state.best_step = score[SCORE], state.step
    state.history.append({"epoch": state.epoch, "step": state.step, **score})
    trainer.save(meter, best=improved)
    if live is not None:
        log_validation(live, state.epoch, state.step, score, (state.best_score, state.best_step), SCORE)
        write_curves(job.live_dir, job.config.model.family)


def _run(trainer: _Trainer) -> str | None:
    """Train and validate epoch by epoch until done or stopped; returns why it stopped early, or None."""
    job, state, context = trainer.job, trainer.state, trainer.context
    if context.is_main:
        with atomic_path(job.run_dir / RESOLVED) as tmp:
            tmp.write_text(yaml.safe_dump(trainer.resolved, sort_keys=False), encoding="utf-8")
    with open_live(job.live_dir, trainer.resumed_from) if context.is_main else contextlib.nullcontext() as live:
        loader_seed = torch.Generator().manual_seed(trainer.params.seed)
        meter, clock = Meter(context.world_size, trainer.saved_meter), _Clock()
        (trainer.ddp or trainer.model).train()
        while state.epoch < trainer.params.epochs:
            if stopped_by := _train_epoch(trainer, meter, live, loader_seed, clock):
                return stopped_by
            if too_late(context, job.deadline, state.val_seconds + clock.save_seconds):
                trainer.save(meter, best=False)  # the epoch's batches are done: a resumed run validates first
                return "deadline"
            _validate(trainer, meter, live)
    return None


def train(job: Job) -> TrainResult:
    """Train, validate after each epoch, keep ``run_dir/last.pt`` and ``run_dir/best.pt``; log to DVCLive.

    With ``job.resume`` and a ``last.pt`` made with the same params, data and code, training
    continues from it; a checkpoint made otherwise is moved to ``<run_dir>.previous/`` (beside
    the run folder, outside what DVC tracks) and training starts fresh. ``job.max_steps`` and
    ``job.deadline`` stop training early with a checkpoint (at least one step always runs); a
    stopped run resumes where it stopped. ``run_dir/progress.json`` says where training stands
    when it returns.
    """
    context = distributed.setup(job.params.device)
    try:
        # One run at a time in a run folder: two would each continue the other's last.pt.
        with exclusive(job.run_dir, "stage train") if context.is_main else contextlib.nullcontext():
            trainer = _Trainer(context, job)
            stopped_by = _run(trainer)
    finally:
        distributed.teardown(context)
    state = trainer.state
    if context.is_main:
        write_curves(job.live_dir, job.config.model.family)  # the steps after the last validation too
        write_json(job.run_dir / PROGRESS, {
            "finished": stopped_by is None, "stopped_by": stopped_by, "epoch": state.epoch,
            "epochs": job.params.epochs, "step": state.step, "total_steps": trainer.total_steps,
            "resumed_from_step": trainer.resumed_from, "best_score": state.best_score, "best_step": state.best_step})
    return TrainResult(steps=state.step, epochs_done=state.epoch, best_score=state.best_score,
                       best_step=state.best_step, best=state.best(), resumed_from_step=trainer.resumed_from,
                       finished=stopped_by is None, stopped_by=stopped_by, model=trainer.model,
                       main_process=context.is_main)
