"""The training loop: one process, or one per GPU under torchrun; resumable at any checkpoint.

Follows torchvision's ``references/detection`` engine: sum the loss dict, stop on a non-finite
loss, one checkpoint dict. Adds what a restartable Kaggle run needs: a mid-epoch resume that
reproduces the uninterrupted run (same samples, augmentations, RNG draws and optimiser state),
and a resume key so that a checkpoint made with other params is never continued.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from dvclive import Live
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline import checkpoint, distributed, metric
from pipeline.checkpoint import BEST, LAST
from pipeline.coco_eval import encode_masks, image_annotations, mask_ap
from pipeline.dataset import InstanceDataset, collate
from pipeline.detections import Instance
from pipeline.errors import PipelineError
from pipeline.fingerprint import imported_modules, source_digest
from pipeline.io import atomic_path, write_json
from pipeline.model import AttributeRoIHeads, ModelSpec, attributes_of_boxes, build_model
from pipeline.postprocess import remove_overlaps
from pipeline.precision import autocast
from pipeline.sampler import EpochSampler
from pipeline.tracking import open_live
from pipeline.train_params import AugmentParams, TrainParams

RESOLVED, PROGRESS = "params.yaml", "progress.json"
# The validation number that picks the best checkpoint: the competition metric (category matching,
# fixed post-processing: detections scoring at least VAL_SCORE_THRESH, masks at 0.5, overlaps
# within a class removed). Thresholds are tuned after training (stage tune), not here.
SCORE = "score"
#: The environment variable through which a time-limited session (the Kaggle kernel) gives the train stage
#: its deadline, in ``time.time()`` seconds.
DEADLINE_ENV = "IMATERIALIST_TRAIN_DEADLINE"
VAL_SCORE_THRESH = 0.5
# Settings that change neither the result nor the data order: a checkpoint made with other values resumes.
_RUNTIME_ONLY = {"launcher", "workers", "checkpoint_every", "log_every"}
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


def lr_factor(step: int, total: int, params: TrainParams) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps: linear warm-up, then cosine or steps.

    A pure function of the step (not a chain of torch schedulers) so that it is tested directly
    and a resumed run recomputes exactly the same value.
    """
    if step < params.warmup_steps:
        progress = step / params.warmup_steps
        return params.warmup_factor + (1 - params.warmup_factor) * progress
    if params.schedule == "cosine":
        span = max(1, total - params.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - params.warmup_steps) / span)))
    return params.gamma ** sum(step >= round(m * total) for m in params.milestones)


def resume_key(spec: ModelSpec, train: TrainParams, augment: AugmentParams, train_set: InstanceDataset,
               world_size: int) -> dict:
    """What a checkpoint must share with this run to be continued by it: params, training images, process
    count and the training code (a code change reruns the DVC stage; it must not just resume a finished run).
    """
    return {"model": asdict(spec), "augment": augment.model_dump(mode="json"),
            "train": train.model_dump(mode="json", exclude=_RUNTIME_ONLY),
            "train_images": {"count": len(train_set), "hash": train_set.fingerprint()}, "world_size": world_size,
            "code": source_digest(*_TRAINING_CODE)}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out


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


def _optimizer(model: torch.nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if params.optimizer == "sgd":
        return torch.optim.SGD(trainable, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)
    return torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)


def competition_lists(target: dict, output: dict) -> tuple[list[metric.Labelled], list[metric.Labelled]]:
    """Truth and prediction of one image as the competition metric takes them (ClassId = category)."""
    truth = list(zip((str(int(label) - 1) for label in target["labels"].tolist()), encode_masks(target["masks"]),
                     strict=True))
    keep = output["scores"] >= VAL_SCORE_THRESH
    found = [Instance(str(int(label) - 1), score, mask) for label, score, mask in
             zip(output["labels"][keep].tolist(), output["scores"][keep].tolist(),
                 (output["masks"][keep, 0] > 0.5).numpy(), strict=True)]
    return truth, [(i.class_id, metric.encode(i.mask)) for i in remove_overlaps(found) if i.mask.any()]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, dataset: InstanceDataset, context: distributed.Context, num_classes: int,
             batch_size: int, precision: str) -> dict[str, float]:
    """The competition metric (``score``) and mask AP on ``dataset``; each process predicts its share."""
    was_training = model.training
    model.eval()
    images, truth, detected, competition, attributes = [], [], [], [], []
    with_head = isinstance(getattr(model, "roi_heads", None), AttributeRoIHeads)
    mine = list(range(context.rank, len(dataset), context.world_size))
    for start in range(0, len(mine), batch_size):
        batch = [dataset[i] for i in mine[start : start + batch_size]]
        inputs = [image.to(context.device) for image, _, _ in batch]
        with autocast(context.device, precision):
            outputs = model(inputs)
            if with_head:
                boxes = [target["boxes"].to(context.device) for _, target, _ in batch]
                said = attributes_of_boxes(model, inputs, boxes)
        if with_head:
            attributes += [(target["attributes"], probabilities.float().cpu())
                           for (_, target, _), probabilities in zip(batch, said, strict=True)]
        for index, (image, target, meta), output in zip(mine[start : start + batch_size], batch, outputs,
                                                        strict=True):
            output = {k: v.float().cpu() for k, v in output.items()}
            images.append((index + 1, image.shape[1], image.shape[2]))
            gt, dt = image_annotations(index + 1, target, output)
            truth += gt
            detected += dt
            competition.append((meta["image_id"], *competition_lists(target, output)))
    model.train(was_training)
    parts = distributed.gather(context, (images, truth, detected, competition, attributes))
    score = mask_ap(*(sum((part[k] for part in parts), []) for k in range(3)), num_classes=num_classes)
    per_image = [item for part in parts for item in part[3]]
    value = metric.evaluate({i: t for i, t, _ in per_image}, {i: p for i, _, p in per_image}, "category").score
    if with_head:
        score.update(true_box_attributes([item for part in parts for item in part[4]]))
    return {SCORE: value, **score}


def true_box_attributes(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """The head on the true boxes of instances with attributes: micro F1 and exact sets at probability 0.5.

    From (targets, probabilities) per image, both (N, num_attributes). Empty without such instances.
    """
    truth = torch.cat([t for t, _ in pairs]) if pairs else torch.zeros((0, 0))
    said = torch.cat([p for _, p in pairs]) >= 0.5 if pairs else torch.zeros((0, 0), dtype=torch.bool)
    annotated = truth.sum(1) > 0
    truth, said = truth[annotated].bool(), said[annotated]
    if not len(truth):
        return {}
    hits = (truth & said).sum().item()
    return {"attribute_f1": 2 * hits / (truth.sum().item() + said.sum().item()),
            "attribute_exact": (truth == said).all(1).float().mean().item()}


def _batches(loader: DataLoader, context: distributed.Context) -> Iterator:
    try:
        for images, targets, metas in loader:
            yield (*_to_device(images, targets, context.device), metas)
    except PipelineError as exc:
        # From a DataLoader worker the error arrives with the worker's traceback as its message;
        # its last line is "module.Class: message". Keep just the message, as in-process errors have.
        text = str(exc)
        if "Original Traceback" not in text:
            raise
        raise type(exc)(text.rstrip().splitlines()[-1].split(": ", 1)[-1]) from None


def train(spec: ModelSpec, params: TrainParams, augment: AugmentParams, num_classes: int, num_attributes: int,
          train_set: InstanceDataset, val_set: InstanceDataset, run_dir: Path | str, live_dir: Path | str,
          resume: bool = True, max_steps: int | None = None, deadline: float | None = None) -> TrainResult:
    """Train, validate after each epoch, keep ``run_dir/last.pt`` and ``run_dir/best.pt``; log to DVCLive.

    With ``resume`` and a ``last.pt`` made with the same params, data and code, training
    continues from it; a checkpoint made otherwise is moved to ``<run_dir>.previous/`` (beside
    the run folder, outside what DVC tracks) and training starts fresh. ``max_steps`` stops
    (with a checkpoint) after that many optimizer steps in all; ``deadline`` (``time.time()`` seconds)
    stops, with a checkpoint, before the step or validation that would end after it (at least one
    step always runs). A stopped run resumes where it stopped. ``run_dir/progress.json`` says where
    training stands when it returns.
    """
    context = distributed.setup(params.device)
    try:
        return _train(context, spec, params, augment, num_classes, num_attributes, train_set, val_set, Path(run_dir),
                      Path(live_dir), resume, max_steps, deadline)
    finally:
        distributed.teardown(context)


class _Meter:
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
        return {"dropped": self.dropped, "images": self.images, "batches": self.batches, "losses": dict(self.losses),
                "seconds": time.perf_counter() - self.start}

    def reset(self) -> None:
        self.start, self.images, self.batches, self.losses = time.perf_counter(), 0, 0, {}

    def add(self, losses: dict[str, torch.Tensor], images: int, dropped: int) -> None:
        self.images += images
        self.batches += 1
        self.dropped += dropped
        for name, value in {**losses, "loss": sum(losses.values())}.items():
            self.losses[name] = self.losses.get(name, 0.0) + value.item()

    def exclude(self, seconds: float) -> None:
        """Leave time spent on other work (validation) out of the throughput."""
        self.start += seconds

    def images_per_second(self) -> float:
        return self.images * self.world_size / max(time.perf_counter() - self.start, 1e-9)

    def write(self, live: Live | None, step: int, lr: float) -> None:
        if live is not None:
            live.step = step
            for name, total in self.losses.items():
                live.log_metric(f"train/{name}", total / self.batches)
            live.log_metric("train/lr", lr)
            live.log_metric("train/images_per_second", self.images_per_second())
            live.log_metric("train/instances_dropped", self.dropped, plot=False)
            live.make_summary()
        self.reset()


def _improves(score: dict[str, float], state: _State) -> bool:
    """A higher competition score, or the same with a higher mask AP.

    Early in training few detections pass the fixed score threshold and the metric is often 0
    for several epochs; mask AP (threshold-free) then tells which of them learned more.
    """
    if state.best_score is None:
        return True
    best = next(h for h in state.history if h["step"] == state.best_step)
    return (score[SCORE], score["mask_ap"]) > (best[SCORE], best["mask_ap"])


def _log_validation(live: Live, state: _State, score: dict[str, float]) -> None:
    live.step = state.step
    for name, value in score.items():
        live.log_metric(f"val/{name}", value)
    live.log_metric(f"val/best_{SCORE}", state.best_score, plot=False)
    live.make_summary()
    print(f"epoch {state.epoch}: val {SCORE} {score[SCORE]:.4f}, mask AP {score['mask_ap']:.4f} "
          f"(best {SCORE} {state.best_score:.4f} at step {state.best_step})")


def _restore(run_dir: Path, key: dict, resume: bool, context: distributed.Context) -> dict | None:
    path = run_dir / LAST
    if not path.is_file():
        return None
    saved = checkpoint.load(path) if resume else None
    if saved is not None and saved.get("resume_key") == key:
        return saved
    distributed.barrier(context)
    if context.is_main:
        why = ("--no-resume" if not resume else
               "params, data or code changed: " + "; ".join(_differences(saved.get("resume_key", {}), key)))
        previous = run_dir.with_name(run_dir.name + ".previous")
        print(f"not resuming {path} ({why}); it moves to {previous}, training starts fresh")
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        for name in (LAST, BEST, RESOLVED):
            if (run_dir / name).exists():
                os.replace(run_dir / name, previous / name)
    distributed.barrier(context)
    return None


def _train(context: distributed.Context, spec: ModelSpec, params: TrainParams, augment: AugmentParams,
           num_classes: int, num_attributes: int, train_set: InstanceDataset, val_set: InstanceDataset,
           run_dir: Path, live_dir: Path, resume: bool, max_steps: int | None, deadline: float | None) -> TrainResult:
    _seed_everything(params.seed, context.rank, params.deterministic)
    precision = params.precision if context.device.type == "cuda" else "fp32"
    if precision != params.precision and context.is_main:
        print(f"train.precision {params.precision} applies to CUDA only; this CPU run uses fp32")
    key = resume_key(spec, params, augment, train_set, context.world_size)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = _restore(run_dir, key, resume, context)

    model = build_model(spec if saved is None else ModelSpec(**{**asdict(spec), "weights": "none"}), num_classes,
                        num_attributes)
    model.to(context.device)
    if context.distributed and context.device.type == "cuda" and not spec.freeze_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = _optimizer(model, params)
    per_rank = EpochSampler(len(train_set), params.seed, 0, context.rank, context.world_size).per_rank()
    batches_per_epoch = -(-per_rank // params.batch_size)
    steps_per_epoch = -(-batches_per_epoch // params.accumulate)
    total_steps = steps_per_epoch * params.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, params))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    state = _State()
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = _State(**saved["state"])
        if context.rank < len(saved["rng"]):
            checkpoint.set_rng_state(saved["rng"][context.rank])
        if context.is_main:
            print(f"resuming {run_dir / LAST} at epoch {state.epoch + 1}, step {state.step}")
    resumed_from = state.step if saved is not None else None
    ddp = DistributedDataParallel(model, device_ids=[context.device.index] if context.device.type == "cuda" else None) \
        if context.distributed else None
    net = ddp or model
    resolved = {**key, "train": params.model_dump(mode="json")}

    def save(best: bool) -> None:
        rng = distributed.gather(context, checkpoint.rng_state())  # every process's, for an exact resume
        if not context.is_main:
            return
        data = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng, "state": asdict(state), "meter": meter.state(),
                "resume_key": key, "params": resolved, "num_classes": num_classes, "num_attributes": num_attributes}
        checkpoint.save(run_dir / LAST, data)
        if best:
            checkpoint.save(run_dir / BEST, {"model": model.state_dict(), "params": resolved,
                                             "num_classes": num_classes, "num_attributes": num_attributes,
                                             "score": state.history[-1],
                                             "step": state.step})

    if context.is_main:
        with atomic_path(run_dir / RESOLVED) as tmp:
            tmp.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    with open_live(live_dir, resumed_from) if context.is_main else contextlib.nullcontext() as live:
        loader_seed = torch.Generator().manual_seed(params.seed)
        meter = _Meter(context.world_size, saved["meter"] if saved is not None else None)
        stopped_by: str | None = None
        slowest_step = save_seconds = 0.0
        net.train()
        while state.epoch < params.epochs and stopped_by is None:
            sampler = EpochSampler(len(train_set), params.seed, state.epoch, context.rank, context.world_size,
                                   start=state.batches_done * params.batch_size)
            loader = DataLoader(train_set, batch_size=params.batch_size, sampler=sampler, collate_fn=collate,
                                num_workers=params.workers, worker_init_fn=_seed_worker, generator=loader_seed,
                                pin_memory=context.device.type == "cuda")
            bar = tqdm(total=batches_per_epoch, initial=state.batches_done, disable=not context.is_main,
                       desc=f"epoch {state.epoch + 1}/{params.epochs}", unit="batch", dynamic_ncols=True)
            step_started = time.perf_counter()
            for images, targets, metas in _batches(loader, context):
                state.batches_done += 1
                step_ends = state.batches_done % params.accumulate == 0 or state.batches_done == batches_per_epoch
                no_sync = ddp.no_sync() if ddp is not None and not step_ends else contextlib.nullcontext()
                with no_sync:
                    with autocast(context.device, precision):
                        losses = net(images, targets)
                    loss = sum(losses.values())
                    if distributed.any_true(context, not bool(torch.isfinite(loss))):
                        values = ", ".join(f"{k} {v.item():.4g}" for k, v in losses.items())
                        raise TrainingDiverged(
                            f"loss is not finite at epoch {state.epoch + 1}, step {state.step} ({values}). "
                            f"Lower train.lr (now {params.lr}), raise train.warmup_steps or set train.precision: fp32; "
                            f"{run_dir / LAST} holds the last good checkpoint")
                    scaler.scale(loss / params.accumulate).backward()
                bar.update()
                meter.add(losses, len(images), sum(meta["dropped"] for meta in metas))
                if not step_ends:
                    continue
                if params.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                state.step += 1
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{meter.images_per_second():.1f}")
                if state.step % params.log_every == 0:
                    meter.write(live, state.step, optimizer.param_groups[0]["lr"])
                slowest_step = max(slowest_step, time.perf_counter() - step_started)
                if max_steps is not None and state.step >= max_steps:
                    stopped_by = "max_steps"
                elif _too_late(context, deadline, slowest_step + save_seconds):
                    stopped_by = "deadline"
                if state.step % params.checkpoint_every == 0 or stopped_by:
                    started = time.perf_counter()
                    save(best=False)
                    save_seconds = time.perf_counter() - started
                if stopped_by:
                    break
                step_started = time.perf_counter()
            bar.close()
            if stopped_by is None and _too_late(context, deadline, state.val_seconds + save_seconds):
                stopped_by = "deadline"  # the epoch's batches are done: a resumed run validates first
                save(best=False)
            if stopped_by:
                break
            started = time.perf_counter()
            score = evaluate(model, val_set, context, num_classes, params.batch_size, precision)
            state.val_seconds = time.perf_counter() - started
            meter.exclude(state.val_seconds)
            state.epoch, state.batches_done = state.epoch + 1, 0
            improved = _improves(score, state)
            if improved:
                state.best_score, state.best_step = score[SCORE], state.step
            state.history.append({"epoch": state.epoch, "step": state.step, **score})
            save(best=improved)
            if live is not None:
                _log_validation(live, state, score)
    finished = stopped_by is None
    if context.is_main:
        write_json(run_dir / PROGRESS, {"finished": finished, "stopped_by": stopped_by, "epoch": state.epoch,
                                        "epochs": params.epochs, "step": state.step, "total_steps": total_steps,
                                        "resumed_from_step": resumed_from, "best_score": state.best_score,
                                        "best_step": state.best_step})
    return TrainResult(steps=state.step, epochs_done=state.epoch, best_score=state.best_score,
                       best_step=state.best_step, resumed_from_step=resumed_from, finished=finished,
                       stopped_by=stopped_by, model=model, main_process=context.is_main)


def _too_late(context: distributed.Context, deadline: float | None, seconds_needed: float) -> bool:
    """Whether work taking ``seconds_needed`` would end after ``deadline``, on any process (all stop together)."""
    if deadline is None:  # the same on every process: no collective call needed
        return False
    return distributed.any_true(context, time.time() + seconds_needed >= deadline)
