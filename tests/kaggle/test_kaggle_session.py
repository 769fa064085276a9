"""The Kaggle notebook session's plan: stage order and commands from dvc.yaml, launcher, weights, resume source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.kaggle.session import (
    RECORD,
    SessionError,
    Stage,
    find_file,
    find_previous,
    read_stages,
    render,
    resolve_launcher,
    stage_order,
)

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
DVC_ORDER = ["download", "prepare", "folds", "cache", "train@maskrcnn", "predict@maskrcnn", "tune@maskrcnn",
             "evaluate@maskrcnn", "submission", "compare", "index"]


def with_families(*families: str, chosen: str = "maskrcnn") -> dict:
    return {**PARAMS, "compare": {**PARAMS["compare"], "families": list(families)},
            "model": {**PARAMS["model"], "family": chosen}}


def test_stages_run_in_the_order_of_dvc_yaml_deps_and_outs():
    stages = read_stages(REPO / "dvc.yaml", PARAMS)
    assert [s.name for s in stage_order(stages)] == DVC_ORDER
    shuffled = stage_order(stages[::-1])
    for position, stage in enumerate(shuffled):
        later_outs = [out for other in shuffled[position + 1:] for out in other.outs]
        assert not [dep for dep in stage.deps if dep in later_outs], f"{stage.name} runs before its inputs exist"
    loop = [Stage("a", "x", ("b.txt",), ("a.txt",)), Stage("b", "y", ("a.txt",), ("b.txt",))]
    with pytest.raises(SessionError, match="cycle"):
        stage_order(loop)


def test_commands_are_filled_from_params_as_dvc_fills_them():
    params = {**PARAMS, "train": {**PARAMS["train"], "launcher": "torchrun --standalone --nproc_per_node=2"}}
    train = next(s for s in read_stages(REPO / "dvc.yaml", params) if s.name == "train@maskrcnn")
    argv = render(train.cmd, {})
    assert argv[:5] == ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "stages.train"]
    assert " --family maskrcnn " in train.cmd and " --run-dir models/maskrcnn " in train.cmd
    with pytest.raises(SessionError, match=r"\$\{train.launcher\}"):
        read_stages(REPO / "dvc.yaml", {**PARAMS, "train": {}})


def test_foreach_stages_are_expanded_per_family_as_dvc_names_them():
    stages = {s.name: s for s in read_stages(REPO / "dvc.yaml", with_families("maskrcnn", "unet", chosen="unet"))}
    for name in ("train", "predict", "tune", "evaluate"):
        assert {f"{name}@maskrcnn", f"{name}@unet"} <= set(stages), name
        assert name not in stages
    assert "predictions/unet/val" in stages["tune@unet"].deps and "models/unet" in stages["predict@unet"].deps
    assert "predictions/unet/test" in stages["submission"].deps, "the submission is model.family's"
    ordered = [s.name for s in stage_order(list(stages.values()))]
    assert ordered.index("evaluate@unet") < ordered.index("compare") > ordered.index("evaluate@maskrcnn")


def test_two_gpus_train_with_torchrun_one_with_python():
    assert resolve_launcher("auto", 2) == "python -m torch.distributed.run --standalone --nproc_per_node=2"
    assert resolve_launcher("auto", 1) == resolve_launcher("auto", 0) == "python"
    assert resolve_launcher("python -X dev", 2) == "python -X dev"


def test_an_attached_weights_file_is_found_wherever_it_is_mounted(tmp_path):
    with pytest.raises(SessionError, match="no files named 'w.pth'"):
        find_file(tmp_path, "w.pth")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "w.pth").write_bytes(b"")
    assert find_file(tmp_path, "w.pth") == tmp_path / "a" / "b" / "w.pth"


@pytest.mark.parametrize(("family", "key", "weights_file"), [("maskrcnn", "weights", "maskrcnn_coco.pth"),
                                                            ("maskrcnn", "weights", ""),
                                                            ("unet", "encoder_weights", "maskrcnn_coco.pth")])
def test_the_session_points_model_weights_at_the_attached_file(tmp_path, family, key, weights_file):
    from pipeline.kaggle.session import Session, prepare

    bundle_dir, input_root = tmp_path / "bundle", tmp_path / "input"
    bundle_dir.mkdir()
    params = with_families("maskrcnn", "unet", chosen=family)
    params["kaggle_session"] = {**params["kaggle_session"], "weights_file": weights_file}
    (bundle_dir / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", bundle_dir / "dvc.yaml")
    (input_root / "coco-weights" / "v1").mkdir(parents=True)
    (input_root / "coco-weights" / "v1" / "maskrcnn_coco.pth").write_bytes(b"")
    session = Session(bundle_dir, input_root, tmp_path / "working", started=0.0, gpus=2)
    written, _, previous = prepare(session)
    resolved = yaml.safe_load((tmp_path / "working" / "params.yaml").read_text())
    expected = str(input_root / "coco-weights" / "v1" / "maskrcnn_coco.pth") if weights_file else "none"
    assert resolved[family][key] == written[family][key] == expected
    assert resolved["compare"]["families"] == [family], "a session trains the submission's family alone"
    assert resolved["train"]["launcher"].endswith("--nproc_per_node=2") and previous is None
    if weights_file:
        shutil.rmtree(input_root / "coco-weights")
        with pytest.raises(SessionError, match="no files named 'maskrcnn_coco.pth'"):
            prepare(session)


def test_the_previous_output_that_trained_furthest_is_resumed(tmp_path):
    assert find_previous(tmp_path, "maskrcnn") is None
    for name, step, family in (("v1", 40, "maskrcnn"), ("v2", 120, "maskrcnn"), ("v3", None, "maskrcnn"),
                               ("v4", 500, "unet")):
        run = tmp_path / name / "models" / family
        run.mkdir(parents=True)
        (tmp_path / name / RECORD).write_text('{"sessions": []}')
        if step is not None:
            (run / "last.pt").write_bytes(b"")
            (run / "progress.json").write_text(json.dumps({"step": step}))
    assert find_previous(tmp_path, "maskrcnn") == tmp_path / "v2", "v3 has no checkpoint; v2 is furthest"
    assert find_previous(tmp_path, "unet") == tmp_path / "v4", "another family's run is not resumed"


def fake_stages(finished: bool) -> str:
    """A dvc.yaml of two stages: train (writes its progress, finished or not) and index, which needs it."""
    progress = f"{{'step': 3, 'finished': {finished}}}"
    train = (f"python -c \"import json, os; os.makedirs('models/${{item}}', exist_ok=True); "
             f"json.dump({progress}, open('models/${{item}}/progress.json', 'w'))\"")
    return yaml.safe_dump({"stages": {
        "train": {"foreach": "${compare.families}", "do": {"cmd": train, "outs": ["models/${item}"]}},
        "index": {"cmd": "python -c \"open('index.txt', 'w').write('built')\"", "deps": ["models/${index.family}"],
                  "outs": ["index.txt"]}}})


@pytest.mark.parametrize("before", [None, False, True])
def test_a_stage_after_training_runs_only_in_a_session_that_starts_with_training_finished(tmp_path, before):
    """The session that finishes training has used its time on it: the catalogue waits for the next version."""
    from pipeline.kaggle.session import Session, run, summary

    bundle_dir, working = tmp_path / "bundle", tmp_path / "working"
    bundle_dir.mkdir()
    params = with_families("maskrcnn")
    params["kaggle_session"] = {**params["kaggle_session"], "after_training": ["index"], "discard": []}
    (bundle_dir / "params.yaml").write_text(yaml.safe_dump(params))
    (bundle_dir / "dvc.yaml").write_text(fake_stages(finished=True))
    if before is not None:  # the training run as a previous version left it
        (working / "models" / "maskrcnn").mkdir(parents=True)
        (working / "models" / "maskrcnn" / "progress.json").write_text(json.dumps({"step": 3, "finished": before}))
    entry = run(Session(bundle_dir, tmp_path / "input", working, started=0.0, gpus=1))
    assert (working / "index.txt").is_file() == bool(before)
    assert entry["train"]["finished"], "this session's training finished either way"
    if before:
        assert entry["stages"][-1]["name"] == "index" and entry["stages"][-1]["exit_code"] == 0
        assert "run in a version" not in summary(entry)
    else:
        assert entry["stages"][-1] == {"name": "index", "skipped": "training had not finished when the session began"}
        assert summary(entry).endswith("; index run in a version that starts with training finished")


def test_after_training_must_name_stages_of_dvc_yaml(tmp_path):
    from pipeline.kaggle.session import Session, run

    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    params = with_families("maskrcnn")
    params["kaggle_session"] = {**params["kaggle_session"], "after_training": ["indx"]}
    (bundle_dir / "params.yaml").write_text(yaml.safe_dump(params))
    (bundle_dir / "dvc.yaml").write_text(fake_stages(True))
    with pytest.raises(SessionError, match=r"after_training names \['indx'\], not stages of dvc.yaml"):
        run(Session(bundle_dir, tmp_path / "input", tmp_path / "working", started=0.0, gpus=1))
    assert not (tmp_path / "working" / "models").exists(), "refused before any stage ran"
