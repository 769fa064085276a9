"""The named pieces of the training loop, each alone: best checkpoint, deadline, divergence, meter, resume."""

from __future__ import annotations

import math
import time

import pytest
import torch
from test_loop import TRAIN

from pipeline.training.distributed import Context
from pipeline.training.loop import Job, TrainingDiverged, _State, check_finite, too_late
from pipeline.training.meter import Meter
from pipeline.training.resume import RESOLVED, differences, restore
from pipeline.training.validation import improves
from pipeline.utils import checkpoint
from pipeline.utils.checkpoint import BEST, LAST
from pipeline.utils.fingerprint import file_record

ONE = Context(0, 1, torch.device("cpu"))


def test_the_best_checkpoint_is_the_higher_score_then_the_higher_mask_ap():
    best = {"score": 0.2, "mask_ap": 0.1}
    assert improves({"score": 0.0, "mask_ap": 0.0}, None), "the first validation is the best so far"
    assert improves({"score": 0.3, "mask_ap": 0.0}, best)
    assert improves({"score": 0.2, "mask_ap": 0.2}, best), "a tie of the score goes to mask AP"
    assert not improves({"score": 0.2, "mask_ap": 0.1}, best), "an equal epoch keeps the earlier one"
    assert not improves({"score": 0.1, "mask_ap": 0.9}, best)


def test_a_deadline_counts_the_time_the_next_piece_of_work_needs():
    assert not too_late(ONE, None, 1e9), "no deadline, never too late"
    assert too_late(ONE, time.time() + 10, 20)
    assert not too_late(ONE, time.time() + 100, 20)
    assert too_late(ONE, time.time() - 1, 0)


def test_a_non_finite_loss_stops_with_what_to_change(tmp_path):
    params = TRAIN.model_copy(update={"lr": 0.02})
    job = Job(None, params, None, 47, 92, None, None, tmp_path / "run", tmp_path / "live")
    check_finite(ONE, {"loss_a": torch.tensor(1.0)}, _State(), job)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 0 \(loss_a 1, loss_b nan\)\. Lower train.lr \(now "
                                               r"0.02\).*run/last.pt holds the last good checkpoint"):
        check_finite(ONE, {"loss_a": torch.tensor(1.0), "loss_b": torch.tensor(math.nan)}, _State(), job)


class _Live:
    def __init__(self) -> None:
        self.rows: dict[str, float] = {}
        self.step = 0

    def log_metric(self, name: str, value: float, plot: bool = True) -> None:
        self.rows[name] = value

    def make_summary(self) -> None:
        pass


def test_the_meter_resumed_from_its_state_writes_the_row_an_uninterrupted_one_writes():
    whole, first = Meter(1), Meter(1)
    batches = [{"loss_box": torch.tensor(1.0), "loss_mask": torch.tensor(3.0)},
               {"loss_box": torch.tensor(2.0), "loss_mask": torch.tensor(5.0)}]
    for meter in (whole, first):
        meter.add(batches[0], images=2, dropped=1)
    resumed = Meter(1, first.state())
    for meter in (whole, resumed):
        meter.add(batches[1], images=2, dropped=0)
    rows = []
    for meter in (whole, resumed):
        live = _Live()
        meter.write(live, step=2, lr=0.1)
        rows.append({k: v for k, v in live.rows.items() if k != "train/images_per_second"})
    assert rows[0] == rows[1] == {"train/loss_box": 1.5, "train/loss_mask": 4.0, "train/loss": 5.5, "train/lr": 0.1,
                                  "train/instances_dropped": 1}


def test_differences_name_every_changed_key_by_its_path():
    old = {"model": {"min_size": 192, "max_size": 256}, "train": {"lr": 0.1}, "code": "a"}
    new = {"model": {"min_size": 192, "max_size": 320}, "train": {"lr": 0.1}, "code": "b", "world_size": 2}
    assert differences(old, new) == ["code: a -> b", "model.max_size: 256 -> 320", "world_size: None -> 2"]


def test_a_checkpoint_of_another_run_moves_aside_and_one_of_this_run_is_restored(tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoint.save(run_dir / LAST, {"model": {}, "resume_key": {"lr": 0.1}})
    (run_dir / BEST).write_bytes(b"best")
    (run_dir / RESOLVED).write_text("lr: 0.1\n")
    assert restore(run_dir, {"lr": 0.1}, True, ONE)["resume_key"] == {"lr": 0.1}
    assert restore(run_dir, {"lr": 0.2}, True, ONE) is None
    assert "not resuming" in caplog.text
    previous = tmp_path / "run.previous"
    assert sorted(p.name for p in previous.iterdir()) == sorted([LAST, BEST, RESOLVED])
    assert not any(run_dir.iterdir()), "training starts fresh"


def _finished_run(run_dir, best_step: int, step: int) -> dict:
    """A run folder whose last.pt (step ``step``) records the best.pt written at ``best_step``."""
    run_dir.mkdir()
    weights = {"model": {"w": torch.arange(4.0) + best_step}, "params": {}, "num_classes": 47, "num_attributes": 92}
    checkpoint.save(run_dir / BEST, {**weights, "score": {"step": best_step}, "step": best_step})
    state = {"step": step, "best_step": best_step, "history": [{"step": best_step, "score": 0.3}],
             "best_file": file_record(run_dir / BEST)}
    checkpoint.save(run_dir / LAST, {**weights, "resume_key": {"lr": 0.1}, "state": state})
    return checkpoint.load(run_dir / BEST)


def test_a_damaged_best_checkpoint_is_written_again_from_last_when_it_holds_the_same_weights(tmp_path, caplog):
    best = _finished_run(tmp_path / "run", best_step=6, step=6)
    (tmp_path / "run" / BEST).write_bytes((tmp_path / "run" / BEST).read_bytes()[:200])
    assert restore(tmp_path / "run", {"lr": 0.1}, True, ONE) is not None
    assert "best.pt: best.pt has 200 bytes" in caplog.text
    repaired = checkpoint.load(tmp_path / "run" / BEST)
    assert torch.equal(repaired["model"]["w"], best["model"]["w"]) and repaired["step"] == 6
    caplog.clear()
    assert restore(tmp_path / "run", {"lr": 0.1}, True, ONE) is not None
    assert caplog.text == "", "last.pt now records the new best.pt"


@pytest.mark.parametrize("damage", [lambda best: best.unlink(), lambda best: best.write_bytes(b"")])
def test_a_damaged_best_checkpoint_no_file_can_restore_means_training_again(tmp_path, caplog, damage):
    """A finished run used to print 'training finished' and leave best.pt broken, run after run."""
    _finished_run(tmp_path / "run", best_step=3, step=6)
    damage(tmp_path / "run" / BEST)
    assert restore(tmp_path / "run", {"lr": 0.1}, True, ONE) is None
    assert (f"not resuming {tmp_path / 'run' / LAST} (best.pt failed its check (best.pt "
            in caplog.text)
    assert not (tmp_path / "run" / LAST).exists(), "training starts fresh"


def test_a_damaged_last_checkpoint_means_training_again(tmp_path, caplog):
    _finished_run(tmp_path / "run", best_step=6, step=6)
    (tmp_path / "run" / LAST).write_bytes((tmp_path / "run" / LAST).read_bytes()[:300])
    assert restore(tmp_path / "run", {"lr": 0.1}, True, ONE) is None
    assert "(it cannot be read: " in caplog.text
    assert sorted(p.name for p in (tmp_path / "run.previous").iterdir()) == [BEST, LAST]


def test_a_best_checkpoint_newer_than_last_is_kept(tmp_path, caplog):
    """A run cut off between writing a new best.pt and the last.pt that records it: best.pt is sound, only newer
    than the record. Training resumes from last.pt; nothing moves aside."""
    _finished_run(tmp_path / "run", best_step=3, step=4)
    newer = {"model": {"w": torch.zeros(4)}, "params": {}, "num_classes": 47, "num_attributes": 92, "step": 6}
    checkpoint.save(tmp_path / "run" / BEST, newer)
    saved = restore(tmp_path / "run", {"lr": 0.1}, True, ONE)
    assert saved is not None and "not resuming" not in caplog.text
    assert saved["state"]["best_file"] == file_record(tmp_path / "run" / BEST), "the next last.pt records it"
    assert torch.equal(checkpoint.load(tmp_path / "run" / BEST)["model"]["w"], torch.zeros(4))
