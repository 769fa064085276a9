"""The GPU speed options of ``train`` params change how the model computes, not what (docs/gpu.md).

Each is compared on the CPU with the plain path: the same losses (within rounding), the same
weights after training, a bit-identical resume with ``deterministic: true``, and a divergence
still caught before a checkpoint is written.
"""

from __future__ import annotations

import functools
import re

import pytest
import torch
from torch import nn

from pipeline.models import registry
from pipeline.models.layout import backbone_of, speed_up
from pipeline.models.registry import FamilyError
from pipeline.training import distributed
from pipeline.training.loop import TrainingDiverged
from pipeline.training.schedule import optimizer
from pipeline.utils import checkpoint
from pipeline.utils.checkpoint import LAST

from model_configs import one_image, smoke_config, tiny_config
from training_runs import TRAIN, datasets, run, weights

#: Every family of the registry, with its smoke settings.
FAMILIES = {name: functools.partial(smoke_config, name) for name in registry.names()}


def _losses(config, channels_last: bool = False, compile_backbone: bool = False) -> dict[str, float]:
    torch.manual_seed(0)
    model = config().build(47, 92, initial_weights=True).train()
    speed_up(model, channels_last, compile_backbone)
    image, target = one_image()
    torch.manual_seed(1)  # the same proposal sampling in both runs
    return {name: value.item() for name, value in model([image], [target]).items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_channels_last_gives_the_losses_of_the_plain_layout(family):
    plain, fast = _losses(FAMILIES[family]), _losses(FAMILIES[family], channels_last=True)
    assert fast.keys() == plain.keys()
    assert fast == pytest.approx(plain, rel=1e-4, abs=1e-5)


def _backbone_is_channels_last(model: nn.Module) -> bool:
    convolutions = [m.weight for m in backbone_of(model).modules() if isinstance(m, nn.Conv2d)]
    return bool(convolutions) and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)


@pytest.mark.parametrize("family", FAMILIES)
def test_channels_last_lays_out_every_backbone_convolution_so(family):
    model = FAMILIES[family]().build(47, 92, initial_weights=True)
    speed_up(model, channels_last=True, compile_backbone=False)
    assert _backbone_is_channels_last(model)


@pytest.mark.slow
def test_a_compiled_backbone_gives_the_losses_of_the_eager_one():
    """torch.compile on the CPU (inductor, C++): about a minute, hence slow."""
    plain, compiled = _losses(tiny_config), _losses(tiny_config, compile_backbone=True)
    assert compiled == pytest.approx(plain, rel=1e-4, abs=1e-5)


def test_a_family_without_a_backbone_module_is_told_to_turn_the_options_off():
    with pytest.raises(FamilyError, match="exposes no backbone module.*turn channels_last and compile_backbone off"):
        speed_up(nn.Linear(2, 2), channels_last=True, compile_backbone=False)
    speed_up(nn.Linear(2, 2), channels_last=False, compile_backbone=False)  # nothing asked: nothing needed


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_the_fused_optimizer_steps_to_the_weights_of_the_default_one(name):
    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(4))
        model(torch.zeros(1, 3, 8, 8))
        params = TRAIN.model_copy(update={"optimizer": name, "fused_optimizer": fused})
        step = optimizer(model, params)
        assert step.defaults["fused"] is (True if fused else None), "the param picks the implementation"
        for seed in range(3):
            model(torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))).square().sum().backward()
            step.step()
            step.zero_grad()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[1], results[0], rtol=1e-5, atol=1e-6)


FAST = TRAIN.model_copy(update={"channels_last": True, "fused_optimizer": True, "sync_every": 2})


def test_deferred_host_syncs_train_to_the_same_weights_with_fewer_reads(small_instances, small_dataset, tmp_path,
                                                                        monkeypatch):
    """Four steps (3 batches an epoch), no checkpoint due before the stop: sync_every 1 reads the loss on the host
    after every batch; 3 reads it after step 3 and before the checkpoint at the stop, at step 4."""
    reads = []
    monkeypatch.setattr(distributed, "any_true", lambda context, flag: reads.append(flag) or flag)
    data = datasets(small_instances, small_dataset / "train")
    rarely_saved = TRAIN.model_copy(update={"checkpoint_every": 10})
    counts = {}
    for name, sync_every in (("plain", 1), ("deferred", 3)):
        run(tmp_path / name, data, rarely_saved.model_copy(update={"sync_every": sync_every}), max_steps=4)
        counts[name] = len(reads)
        reads.clear()
    assert counts == {"plain": 4, "deferred": 2}, "host reads of the loss flag"
    expected, got = weights(tmp_path / "plain" / "run"), weights(tmp_path / "deferred" / "run")
    assert all(torch.equal(expected[k], got[k]) for k in expected), "sync_every changed what was trained"


def test_with_every_option_on_a_resumed_run_is_bit_identical(small_instances, small_dataset, tmp_path):
    data = datasets(small_instances, small_dataset / "train")
    whole = run(tmp_path / "whole", data, FAST, max_steps=5)
    run(tmp_path / "cut", data, FAST, max_steps=3)
    resumed = run(tmp_path / "cut", data, FAST, max_steps=5)
    assert resumed.resumed_from_step == 3
    expected, got = weights(tmp_path / "whole" / "run"), weights(tmp_path / "cut" / "run")
    assert all(torch.equal(expected[k], got[k]) for k in expected), "resume changed the result"
    assert _backbone_is_channels_last(whole.model) and _backbone_is_channels_last(resumed.model), (
        "train.channels_last reaches the trained model, fresh or resumed")


def test_a_divergence_between_host_reads_is_caught_before_a_checkpoint(small_instances, small_dataset, tmp_path):
    """A checkpoint after every step, the flag read only every 4: the first checkpoint due after the divergence
    reads the flag first, so ``last.pt`` keeps the last good step's finite weights."""
    data = datasets(small_instances, small_dataset / "train")
    wild = TRAIN.model_copy(update={"lr": 1e6, "warmup_steps": 0, "grad_clip": 0.0, "epochs": 5, "sync_every": 4,
                                    "checkpoint_every": 1})
    with pytest.raises(TrainingDiverged, match=r"loss is not finite between steps \d+ and \d+ of epoch") as caught:
        run(tmp_path, data, wild)
    last_read, caught_at = map(int, re.search(r"between steps (\d+) and (\d+)", str(caught.value)).groups())
    saved = checkpoint.load(tmp_path / "run" / LAST)
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point()), (
        f"last.pt of step {saved['state']['step']} holds diverged weights")
    assert (saved["state"]["step"], caught_at) == (last_read, last_read + 1), (
        "the checkpoint due after the diverged step reads the flag first, and is not written")
