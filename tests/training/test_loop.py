"""The training engine: schedule, sampling, resume, divergence guard, distributed training."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torchvision.ops import roi_align

from pipeline.config.training import TrainParams
from pipeline.data.sampler import EpochSampler
from pipeline.models.contract import MaskFormat
from pipeline.models.families.maskrcnn.attribute_head import AttributeRoIHeads
from pipeline.training import loop as engine
from pipeline.training import resume
from pipeline.training.distributed import Context
from pipeline.training.loop import PROGRESS, TrainingDiverged
from pipeline.training.schedule import lr_factor
from pipeline.training.validation import evaluate
from pipeline.utils import checkpoint
from pipeline.utils.checkpoint import BEST, LAST
from pipeline.utils.fingerprint import imported_modules
from pipeline.utils.lock import BusyError, exclusive

from model_configs import tiny_config
from training_runs import TRAIN, datasets, run, weights

REPO = Path(__file__).resolve().parents[2]


def test_learning_rate_warms_up_then_follows_the_schedule():
    cosine = TRAIN.model_copy(update={"warmup_steps": 10, "warmup_factor": 0.1})
    assert lr_factor(0, 100, cosine) == pytest.approx(0.1)
    assert lr_factor(5, 100, cosine) == pytest.approx(0.55)
    assert lr_factor(10, 100, cosine) == pytest.approx(1.0)
    assert lr_factor(55, 100, cosine) == pytest.approx(0.5)
    assert lr_factor(100, 100, cosine) == pytest.approx(0.0)
    steps = TRAIN.model_copy(update={"schedule": "step", "warmup_steps": 0, "milestones": (0.5, 0.75), "gamma": 0.1})
    assert [lr_factor(s, 100, steps) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize("size,world", [(10, 1), (10, 3), (7, 2), (1, 4)])
def test_sampler_shards_one_seeded_permutation_and_resumes_mid_epoch(size, world):
    shards = [list(EpochSampler(size, seed=5, epoch=2, rank=r, world_size=world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1, "every rank takes the same number of steps"
    indices = [i for shard in shards for i, _ in shard]
    assert set(indices) == set(range(size))
    assert len(indices) - size < world
    seeds = {i: s for shard in shards for i, s in shard}
    assert all(seeds[i] == s for shard in shards for i, s in shard), "a sample's seed does not depend on its rank"
    for r in range(world):
        assert list(EpochSampler(size, 5, 2, r, world, start=1)) == shards[r][1:]
    assert list(EpochSampler(size, 5, 3)) != list(EpochSampler(size, 5, 2)) or size == 1


def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(small_instances, small_dataset, tmp_path):
    data = datasets(small_instances, small_dataset / "train")
    whole = run(tmp_path / "whole", data, max_steps=5)
    assert (whole.steps, whole.epochs_done, whole.finished) == (5, 1, False)
    first = run(tmp_path / "cut", data, max_steps=2)
    assert first.steps == 2 and first.resumed_from_step is None
    second = run(tmp_path / "cut", data, max_steps=5)
    assert second.resumed_from_step == 2
    expected, got = weights(tmp_path / "whole" / "run"), weights(tmp_path / "cut" / "run")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), "resume changed the result"


def test_a_passed_deadline_stops_after_one_step_and_the_next_run_continues(small_instances, small_dataset, tmp_path):
    """A Kaggle session out of time: one step, a checkpoint, progress.json; the next session picks up the count."""
    data = datasets(small_instances, small_dataset / "train")
    cut = run(tmp_path / "cut", data, deadline=time.time() - 1)
    assert (cut.steps, cut.finished, cut.stopped_by) == (1, False, "deadline")
    progress = json.loads((tmp_path / "cut" / "run" / PROGRESS).read_text())
    assert progress["step"] == 1 and not progress["finished"] and progress["total_steps"] == 6
    assert not (tmp_path / "cut" / "run" / BEST).exists(), "no validation ran"
    rest = run(tmp_path / "cut", data, deadline=time.time() + 3600)
    assert (rest.resumed_from_step, rest.steps, rest.finished, rest.stopped_by) == (1, 6, True, None)
    assert json.loads((tmp_path / "cut" / "run" / PROGRESS).read_text())["finished"]
    run(tmp_path / "whole", data)
    expected, got = weights(tmp_path / "whole" / "run"), weights(tmp_path / "cut" / "run")
    assert all(torch.equal(expected[k], got[k]) for k in expected), "a deadline stop changed the result"


def test_a_deadline_at_the_end_of_an_epoch_leaves_its_validation_to_the_next_run(small_instances, small_dataset,
                                                                                 tmp_path, monkeypatch):
    data = datasets(small_instances, small_dataset / "train")  # 3 steps an epoch
    answers = iter([False, False, False, True])  # after each of the 3 steps, then before validating
    monkeypatch.setattr(engine, "too_late", lambda *args: next(answers))
    cut = run(tmp_path, data, deadline=time.time() + 3600)
    assert (cut.steps, cut.epochs_done, cut.stopped_by) == (3, 0, "deadline")
    saved = checkpoint.load(tmp_path / "run" / LAST)["state"]
    assert saved["batches_done"] == 3 and saved["history"] == []
    monkeypatch.undo()
    rest = run(tmp_path, data, max_steps=4)
    assert (rest.resumed_from_step, rest.epochs_done, rest.best_step) == (3, 1, 3), "validated before any new step"


def test_a_finished_run_keeps_last_and_best_and_logs_curves(small_instances, small_dataset, tmp_path):
    data = datasets(small_instances, small_dataset / "train")
    result = run(tmp_path, data)
    assert result.finished and result.epochs_done == 2 and result.steps == 6
    last = checkpoint.load(tmp_path / "run" / LAST)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "state", "params"} <= set(last)
    assert last["state"]["step"] == 6 and len(last["state"]["history"]) == 2
    best = torch.load(tmp_path / "run" / BEST, weights_only=True)
    assert best["score"]["score"] == result.best_score == max(h["score"] for h in last["state"]["history"])
    assert {"score", "mask_ap", "mask_ap50"} <= set(best["score"]), "the competition metric and mask AP"
    assert (tmp_path / "run" / "params.yaml").is_file()
    plots = tmp_path / "live" / "plots" / "metrics"
    for name in ("train/loss", "train/lr", "train/images_per_second", "val/mask_ap", "val/score"):
        assert (plots / f"{name}.tsv").is_file(), name
    assert len((plots / "train" / "loss.tsv").read_text().splitlines()) == 1 + 6
    again = run(tmp_path, data)
    assert again.resumed_from_step == 6 and again.steps == 6, "a finished run has nothing left to do"


def test_gradient_accumulation_steps_once_per_group_of_batches(small_instances, small_dataset, tmp_path):
    data = datasets(small_instances, small_dataset / "train")  # 6 images, batches of 2: 3 batches an epoch
    result = run(tmp_path, data, TRAIN.model_copy(update={"accumulate": 2, "epochs": 1}))
    assert result.steps == 2, "two full groups would need 4 batches; the epoch's last group is short"
    assert checkpoint.load(tmp_path / "run" / LAST)["state"]["batches_done"] == 0


def test_changed_params_start_fresh_and_keep_the_old_checkpoint_aside(small_instances, small_dataset, tmp_path,
                                                                        caplog):
    data = datasets(small_instances, small_dataset / "train")
    run(tmp_path, data, max_steps=1)
    changed = run(tmp_path, data, TRAIN.model_copy(update={"lr": 0.005}), max_steps=1)
    assert changed.resumed_from_step is None
    assert "train.lr: 0.01 -> 0.005" in caplog.text
    assert (tmp_path / "run.previous" / LAST).is_file()
    assert run(tmp_path, data, TRAIN.model_copy(update={"lr": 0.005, "workers": 1}),
               max_steps=2).resumed_from_step == 1, "DataLoader workers do not change the result"


def test_the_training_code_digest_covers_every_module_training_loads():
    """The resume key's code digest is over the modules ``pipeline.training.loop`` imports, read from its source; here
    checked against what Python really loads with it, as DVC's deps are in test_stages."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, pipeline.training.loop; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    assert {m for m in loaded if m.startswith("pipeline.")} <= set(engine._TRAINING_CODE)
    # what chooses best.pt and shapes the targets, named by the issue that found them missing
    assert {"pipeline.data.dataset", "pipeline.training.distributed", "pipeline.inference.masks",
            "pipeline.evaluation.metric", "pipeline.evaluation.coco", "pipeline.data.attributes",
            "pipeline.data.transforms"} <= set(engine._TRAINING_CODE)
    # tuning and its post-processing come after training: changing them must not retrain
    assert not {"pipeline.inference.postprocess", "pipeline.evaluation.search"} & set(engine._TRAINING_CODE)
    # a family's code is its own part of the key (the registry imports it when a run uses it)
    assert not any(m.startswith("pipeline.models.families") for m in engine._TRAINING_CODE)
    assert {"pipeline.models.families.maskrcnn.detector", "pipeline.models.families.maskrcnn.attribute_head"} <= set(
        tiny_config().code_modules())


def test_imported_modules_follows_lazy_and_package_imports(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\nimport os\n")
    (package / "b.py").write_text("def f():\n    from pkg.c import g\n    return g\n")
    (package / "c.py").write_text("import pkg.d\ng = 1\n")
    (package / "d.py").write_text("")
    (package / "unused.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    # the package itself too: Python runs its __init__ before any of its modules
    assert imported_modules("pkg.a", "pkg") == ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d")


def test_the_best_checkpoint_breaks_a_tie_of_the_score_by_mask_ap(small_instances, small_dataset, tmp_path,
                                                                  monkeypatch):
    """Early epochs often score 0 on the competition metric; mask AP then tells which learned more."""
    scores = iter([{"score": 0.0, "mask_ap": 0.10}, {"score": 0.0, "mask_ap": 0.30}, {"score": 0.0, "mask_ap": 0.20},
                   {"score": 0.0, "mask_ap": 0.50}, {"score": 0.05, "mask_ap": 0.01}, {"score": 0.05, "mask_ap": 0.01}])
    monkeypatch.setattr(engine, "evaluate", lambda *args: next(scores))
    data = datasets(small_instances, small_dataset / "train", n_train=2)  # one step per epoch
    three = TRAIN.model_copy(update={"epochs": 3})
    run(tmp_path / "tie", data, three)
    assert checkpoint.load(tmp_path / "tie" / "run" / BEST)["step"] == 2, "the same score, the best mask AP"
    run(tmp_path / "score", data, three)
    assert checkpoint.load(tmp_path / "score" / "run" / BEST)["step"] == 2, \
        "a higher score beats a higher mask AP; an equal result is no gain"


def test_changed_training_code_starts_fresh(small_instances, small_dataset, tmp_path, caplog, monkeypatch):
    """DVC reruns the stage when the code changes; resuming would only reload the old result."""
    data = datasets(small_instances, small_dataset / "train")
    run(tmp_path, data, max_steps=1)
    monkeypatch.setattr(resume, "source_digest", lambda *names: "edited")
    assert run(tmp_path, data, max_steps=1).resumed_from_step is None
    assert "code changed: code: " in caplog.text


def test_a_diverging_loss_stops_with_a_clear_message(small_instances, small_dataset, tmp_path):
    data = datasets(small_instances, small_dataset / "train")
    wild = TRAIN.model_copy(update={"lr": 1e6, "warmup_steps": 0, "grad_clip": 0.0, "epochs": 5})
    with pytest.raises(TrainingDiverged, match="loss is not finite .* Lower train.lr"):
        run(tmp_path, data, wild)


def test_a_batch_the_model_cannot_take_is_reported_with_its_images(small_instances, small_dataset, tmp_path,
                                                                    monkeypatch):
    data = datasets(small_instances, small_dataset / "train")
    calls = []

    def crash_on_the_second_batch(self, features, proposals, image_shapes, targets=None):
        calls.append(len(image_shapes))
        if len(calls) == 2:
            raise IndexError("index is out of bounds for dimension with size 0")
        return original(self, features, proposals, image_shapes, targets)

    original = AttributeRoIHeads.forward
    monkeypatch.setattr(AttributeRoIHeads, "forward", crash_on_the_second_batch)
    order = list(EpochSampler(len(data[0]), TRAIN.seed, 0, 0, 1))
    second = [data[0].images[index].image_id for index, _ in order[2:4]]  # (image, augmentation seed)
    with pytest.raises(IndexError, match="index is out of bounds") as caught:  # its type and traceback kept
        run(tmp_path, data, TRAIN.model_copy(update={"epochs": 1}))
    notes = caught.value.__notes__
    assert len(notes) == 1, notes
    assert f"batch of images {second[0]}, {second[1]} (epoch 1, after 1 optimizer steps)" in notes[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, instances, image_dir: Path, tmp: Path,
                params: TrainParams = TRAIN) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    result = run(tmp, datasets(instances, image_dir), params, max_steps=2)
    torch.save({k: v for k, v in result.model.named_parameters()}, tmp / f"rank{rank}.pt")
    kinds = sorted({type(m).__name__ for m in result.model.modules() if "BatchNorm" in type(m).__name__})
    (tmp / f"rank{rank}.json").write_text(json.dumps(kinds))


@pytest.mark.slow
def test_two_process_ddp_ends_with_identical_weights(small_instances, small_dataset, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), small_instances, small_dataset / "train", tmp_path), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    saved = weights(tmp_path / "run")
    assert all(torch.equal(saved[k], ranks[0][k]) for k in ranks[0])
    assert checkpoint.load(tmp_path / "run" / LAST)["state"]["step"] == 2
    assert len(checkpoint.load(tmp_path / "run" / LAST)["rng"]) == 2


def test_changed_masks_of_the_same_images_start_fresh(small_instances, small_dataset, tmp_path):
    data = datasets(small_instances, small_dataset / "train")
    run(tmp_path, data, max_steps=1)
    first = small_instances.image_id.min()
    edited = small_instances.copy()
    edited.loc[edited.image_id == first, "category"] = 0  # same images, other labels
    assert run(tmp_path, datasets(edited, small_dataset / "train"), max_steps=1).resumed_from_step is None


class _Replay(torch.nn.Module):
    """Stands in for a model of the contract in eval mode: returns the given outputs, one per image, in order."""

    mask_format = MaskFormat("crop", 112)
    num_attributes = 0

    def __init__(self, outputs: list[dict]) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, images):
        taken, self.outputs = self.outputs[: len(images)], self.outputs[len(images) :]
        return taken


def test_validation_scores_a_perfect_prediction_one(small_instances, small_dataset):
    _, val_set = datasets(small_instances, small_dataset / "train")
    def crops(target: dict) -> torch.Tensor:  # the true masks as the contract's crop maps
        masks = target["masks"][:, None].float()
        return torch.cat([roi_align(m[None], [b[None]], 112, aligned=True)
                          for m, b in zip(masks, target["boxes"], strict=True)])

    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                "masks": crops(t)} for _, t, _ in (val_set[i] for i in range(len(val_set)))]
    context = Context(0, 1, torch.device("cpu"))
    score = evaluate(_Replay(perfect), val_set, context, 47, batch_size=2, precision="fp32")
    assert score["score"] == pytest.approx(1.0) and score["mask_ap"] == pytest.approx(1.0)
    shifted = [{**o, "labels": o["labels"] % 46 + 1} for o in perfect]  # every category wrong
    score = evaluate(_Replay(shifted), val_set, context, 47, batch_size=2, precision="fp32")
    assert score["score"] == 0.0


# --- CUDA only: skipped on the CPU machines; on a GPU machine `pytest tests/training -k cuda` runs them ---

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = TRAIN.model_copy(update={"device": "cuda", "deterministic": False})


def test_autocast_follows_the_precision_param_on_cuda_only():
    from pipeline.utils.device import autocast

    x = torch.ones(4, 4)
    for precision in ("fp32", "bf16", "fp16"):
        with autocast(torch.device("cpu"), precision):
            assert (x @ x).dtype == torch.float32, "the CPU always runs fp32"
    if torch.cuda.is_available():
        cuda = x.cuda()
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            with autocast(torch.device("cuda"), precision):
                assert (cuda @ cuda).dtype == dtype, precision


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_cuda_checkpoints_and_resumes(small_instances, small_dataset, tmp_path, precision):
    data = datasets(small_instances, small_dataset / "train")
    params = CUDA.model_copy(update={"precision": precision})
    first = run(tmp_path, data, params, max_steps=2)
    saved = checkpoint.load(tmp_path / "run" / LAST)
    assert first.steps == 2 and all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    if precision == "fp16":
        assert saved["scaler"]["scale"] > 0, "fp16 trains with a GradScaler, whose state is checkpointed"
    else:
        assert saved["scaler"] == {}, "bf16 needs no loss scaling"
    assert run(tmp_path, data, params, max_steps=3).resumed_from_step == 2


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_ddp_on_two_cuda_gpus_trains_with_syncbatchnorm(small_instances, small_dataset, tmp_path):
    params = CUDA.model_copy(update={"precision": "bf16"})
    mp.spawn(_ddp_worker, args=(2, _free_port(), small_instances, small_dataset / "train", tmp_path, params), nprocs=2)
    kinds = json.loads((tmp_path / "rank0.json").read_text())
    assert "SyncBatchNorm" in kinds and "BatchNorm2d" not in kinds, kinds
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])


def test_a_finished_run_whose_best_checkpoint_was_damaged_gets_the_same_best_weights_back(small_instances,
                                                                                        small_dataset, tmp_path,
                                                                                        caplog):
    """Rerunning the stage used to print 'training finished' and leave best.pt broken. One epoch: last.pt holds
    the best weights, and they are written again from it (test_pieces covers a run whose best was earlier)."""
    data = datasets(small_instances, small_dataset / "train", n_train=4, n_val=2)
    one_epoch = TRAIN.model_copy(update={"epochs": 1})
    assert run(tmp_path, data, one_epoch).finished
    best = checkpoint.load(tmp_path / "run" / BEST)["model"]
    (tmp_path / "run" / BEST).write_bytes((tmp_path / "run" / BEST).read_bytes()[:1000])
    caplog.clear()
    assert run(tmp_path, data, one_epoch).finished
    assert "best.pt has 1,000 bytes" in caplog.text
    caplog.clear()
    repaired = checkpoint.load(tmp_path / "run" / BEST)["model"]
    assert all(torch.equal(best[k], repaired[k]) for k in best)
    run(tmp_path, data, one_epoch)
    assert "best.pt" not in caplog.text, "sound again: nothing to repair"


def test_a_run_folder_another_run_trains_in_is_refused(small_instances, small_dataset, tmp_path):
    data = datasets(small_instances, small_dataset / "train", n_train=2, n_val=1)
    with exclusive(tmp_path / "run", "stage train"), \
            pytest.raises(BusyError, match=rf"{tmp_path / 'run'} is busy: stage train \(process"):
        run(tmp_path, data)
    assert not (tmp_path / "run").exists(), "nothing was touched"
