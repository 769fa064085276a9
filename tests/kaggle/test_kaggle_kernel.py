"""The Kaggle notebook: the build, the metadata, the stage order, and whole sessions in a simulated Kaggle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from pipeline.config.kaggle import KernelBuildParams
from pipeline.config.params import SyntheticParams, load_section
from pipeline.data.synthetic import write_dataset
from pipeline.kaggle.bundle import (
    BundleError,
    build,
    kernel_metadata,
    metadata_problems,
    notebook_params,
    validate_params,
)
from pipeline.kaggle.session import read_stages, stage_order
from pipeline.utils.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
WHEELS = REPO / "build" / "wheelhouse" / f"py{PYTHON}"
# The notebook settings of the simulated sessions: the tiny synthetic data, a model that trains in seconds.
TINY = {
    "data": {"source": "dir"},
    "model": {"min_size": 64, "max_size": 96},
    "maskrcnn": {"anchor_sizes": [8, 16, 32, 64, 128], "rpn_post_nms_top_n_train": 100,
                 "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 100, "box_batch_size_per_image": 32,
                 "mask_head_layers": [32, 32]},
    "train": {"epochs": 2, "batch_size": 4, "checkpoint_every": 2, "log_every": 1, "warmup_steps": 2},
    "predict": {"scales": [1.0]},
    "tune": {"score_thresh": [0.3, 0.5], "nms_iou": [0.5], "mask_thresh": [0.5], "min_area": [0],
             "max_detections": [100], "rounds": 1, "workers": 1},
    "evaluate": {"gallery_images": 2, "workers": 1},
    "kaggle_kernel": {"python_versions": [PYTHON]},
    "kaggle_session": {"reserve_minutes": 0},
}
COMPETITION_DATA = SyntheticParams(seed=11, train_images=20, test_images=3, min_side=96, max_side=128,
                                   attribute_rate=0.3, size_defect=True)


def build_params(params_file: Path, **changes) -> KernelBuildParams:
    return load_section(params_file, "kaggle_kernel", KernelBuildParams).model_copy(update=changes)


def tiny_params(folder: Path, session: dict | None = None) -> Path:
    """params.yaml with the kaggle_kernel.params_overrides pointing at TINY (plus ``session`` settings)."""
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {**TINY, "kaggle_session": {**TINY["kaggle_session"], **(session or {})}}
    (folder / "overrides.yaml").write_text(yaml.safe_dump(overrides), encoding="utf-8")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["kaggle_kernel"]["params_overrides"] = str(folder / "overrides.yaml")
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return folder / "params.yaml"


def wheels() -> Path:
    """The dependency wheels the bundle carries, which `make test` fetches in its set-up (a network step).

    A plain ``pytest`` without them skips the tests that build a bundle; under `make test` (which sets
    IMATERIALIST_REQUIRE_WHEELHOUSE) their absence is a failure, so CI never skips them quietly.
    """
    if not (WHEELS / ".complete").is_file():
        message = (f"{WHEELS} is missing: `make test` fetches the dependency wheels in its set-up "
                   "(or run python -m kaggle_kernel.build --wheelhouse-only)")
        if os.environ.get("IMATERIALIST_REQUIRE_WHEELHOUSE"):
            pytest.fail(message)
        pytest.skip(message)
    return WHEELS


def bundle(tmp: Path, session: dict | None = None, **changes) -> tuple[Path, Path, dict]:
    params_file = tiny_params(tmp, session)
    built = build(REPO, tmp / "out", params_file, build_params(params_file, owner="tester", **changes), wheels(), {})
    return built.kernel, built.dataset, built.metadata


# --- the build and the metadata ------------------------------------------------------------------------------------

def test_the_build_writes_metadata_the_kaggle_client_pushes_offline_by_default(tmp_path, monkeypatch, capsys):
    kernel, dataset, meta = bundle(tmp_path)
    assert sorted(p.name for p in kernel.iterdir()) == ["kernel-metadata.json", "run_kernel.py"]
    assert metadata_problems(json.loads((kernel / "kernel-metadata.json").read_text()), kernel) == []
    assert (dataset / "imaterialist-bundle.json").is_file() and (dataset / "dvc.yaml").is_file()
    assert not [p for p in dataset.iterdir() if p.is_dir()], "Kaggle's dataset upload skips sub-folders"
    assert not list(dataset.glob("torch-*.whl")), "torch comes from the notebook image"
    bundled = yaml.safe_load((dataset / "params.yaml").read_text())
    assert bundled["data"]["source"] == "dir" and bundled["train"]["epochs"] == 2, "overrides merged"
    assert bundled["train"]["optimizer"] == "adamw", "what the overrides leave alone stays"

    sent = push_with_the_kaggle_client(kernel, tmp_path, monkeypatch)
    assert "does not resolve" not in capsys.readouterr().out, "the client's title-to-slug check passes"
    assert sent.enable_internet is False and sent.enable_gpu is True and sent.is_private is True
    assert sent.slug == "tester/imaterialist-2019-mask-rcnn" and sent.machine_shape == "NvidiaTeslaT4"
    assert sent.competition_data_sources == ["imaterialist-fashion-2019-FGVC6"]
    assert sent.dataset_data_sources == ["tester/imaterialist-2019-pipeline-code"]
    assert sent.kernel_data_sources == [], "no own source before the first version exists"
    assert sent.text == (REPO / "kaggle_kernel" / "run_kernel.py").read_text()


def test_build_options_turn_on_internet_resume_and_weights(tmp_path):
    _, _, meta = bundle(tmp_path, enable_internet=True, resume=True, weights_dataset="tester/coco-weights")
    assert meta["enable_internet"] is True
    assert meta["kernel_sources"] == ["tester/imaterialist-2019-mask-rcnn"]
    assert meta["dataset_sources"] == ["tester/imaterialist-2019-pipeline-code", "tester/coco-weights"]


def test_the_default_build_stops_before_downloading_when_no_dataset_provides_its_weights(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kaggle_kernel.build", "--out", str(tmp_path / "out"),
                           "--wheelhouse", str(tmp_path / "wheels")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "kaggle_session.weights_file is 'maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth', but " \
           "kaggle_kernel.weights_dataset is empty" in done.stderr
    assert not (tmp_path / "wheels").exists() and not (tmp_path / "out").exists(), "nothing downloaded nor built"
    params_file = REPO / "params.yaml"
    with pytest.raises(BundleError, match="no attached dataset provides that file"):
        build(REPO, tmp_path / "out", params_file, build_params(params_file, owner="tester"), tmp_path, {})


def test_the_build_can_write_the_kernel_as_a_notebook_of_the_same_script(tmp_path):
    params_file = tiny_params(tmp_path)
    built = build(REPO, tmp_path / "out", params_file, build_params(params_file, owner="tester"), wheels(), {},
                  as_notebook=True)
    assert built.metadata["code_file"] == "run_kernel.ipynb" and built.metadata["kernel_type"] == "notebook"
    assert metadata_problems(built.metadata, built.kernel) == []
    cells = json.loads((built.kernel / "run_kernel.ipynb").read_text())["cells"]
    source, script = "".join(cells[-1]["source"]), (REPO / "kaggle_kernel" / "run_kernel.py").read_text()
    assert source.startswith(script.replace('if __name__ == "__main__":\n    main()\n', "").rstrip("\n"))
    assert source.count("main()") == script.count("main()"), "the session runs once"
    ending = source[source.rindex("try:"):]
    for status in (0, None):  # IPython would call a SystemExit a failure, even 0: the cell lets it pass
        exec(ending, {"main": lambda status=status: sys.exit(status)})
    with pytest.raises(SystemExit):
        exec(ending, {"main": lambda: sys.exit(1)})
    assert metadata_problems({**built.metadata, "kernel_type": "script"}, built.kernel) == [
        "language/kernel_type: this bootstrap is a python notebook"]


def push_with_the_kaggle_client(kernel: Path, home: Path, monkeypatch):
    """``kaggle kernels push -p kernel`` up to the network: the client's own checks, the request it would send."""
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / "no-credentials"))
    from kaggle.api.kaggle_api_extended import KaggleApi

    captured = []

    class Client:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        class kernels:  # noqa: N801 - the client's attribute names
            class kernels_api_client:  # noqa: N801
                @staticmethod
                def save_kernel(request):
                    captured.append(request)
                    return request

    monkeypatch.setattr(KaggleApi, "build_kaggle_client", lambda self: Client())
    KaggleApi().kernels_push(str(kernel))
    return captured[0]


@pytest.mark.parametrize("field,value,problem", [
    ("enable_internet", None, "enable_internet: missing"),
    ("enable_gpu", "true", "enable_gpu: expected bool"),
    ("id", "tester/Bad Slug", "is not a Kaggle slug"),
    ("id", "imaterialist-2019-mask-rcnn", "is not owner/slug"),
    ("title", "Something else", "does not resolve to the slug"),
    ("code_file", "missing.py", "does not exist"),
    ("dataset_sources", ["no-owner"], "is not owner/slug"),
    ("competition_sources", [], "no competition data"),
    ("accelerator", "T4", "unknown field"),
])
def test_metadata_defects_are_named(tmp_path, field, value, problem):
    (tmp_path / "run_kernel.py").write_text("")
    meta = kernel_metadata("tester", build_params(REPO / "params.yaml"), "imaterialist-fashion-2019-FGVC6")
    assert metadata_problems(meta, tmp_path) == []
    if value is None:
        del meta[field]
    else:
        meta[field] = value
    assert any(problem in line for line in metadata_problems(meta, tmp_path)), metadata_problems(meta, tmp_path)


def test_the_shipped_notebook_params_merge_and_validate_in_every_section(tmp_path):
    """kaggle_kernel/params.kaggle.yaml as the build merges it over params.yaml: a typo there, or a value a
    section refuses, fails here rather than hours into a GPU session."""
    shipped = build_params(REPO / "params.yaml")
    assert shipped.params_overrides == "kaggle_kernel/params.kaggle.yaml"
    merged = notebook_params(REPO, REPO / "params.yaml", shipped)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    validate_params(tmp_path / "params.yaml")
    overrides = yaml.safe_load((REPO / shipped.params_overrides).read_text())
    for section, values in overrides.items():
        assert {key: merged[section][key] for key in values} == values, f"{section}: an override was lost"
    assert merged["maskrcnn"]["architecture"] == "maskrcnn_resnet50_fpn_v2" and merged["train"]["precision"] == "fp16"
    assert merged["train"]["seed"] == yaml.safe_load((REPO / "params.yaml").read_text())["train"]["seed"], \
        "what the overrides leave alone stays"


def test_an_invalid_override_fails_the_build_not_the_notebook(tmp_path):
    params_file = tiny_params(tmp_path)
    overrides = yaml.safe_load((tmp_path / "overrides.yaml").read_text())
    overrides["train"]["optimizer"] = "adam"
    (tmp_path / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    with pytest.raises(PipelineError, match="train"):
        build(REPO, tmp_path / "out", params_file, build_params(params_file, owner="tester"), wheels(), {})


def test_the_owner_comes_from_the_environment_or_a_clear_error(tmp_path):
    params_file = tiny_params(tmp_path)
    with pytest.raises(BundleError, match="no Kaggle username"):
        build(REPO, tmp_path / "out", params_file, build_params(params_file), wheels(),
              {"KAGGLE_CONFIG_DIR": str(tmp_path)})
    (tmp_path / "kaggle.json").write_text("{not json")
    with pytest.raises(BundleError, match="kaggle.json: cannot read its username"):
        build(REPO, tmp_path / "out", params_file, build_params(params_file), wheels(),
              {"KAGGLE_CONFIG_DIR": str(tmp_path)})
    (tmp_path / "kaggle.json").write_text(json.dumps({"username": "fromfile", "key": "secret"}))
    built = build(REPO, tmp_path / "out", params_file, build_params(params_file), wheels(),
                  {"KAGGLE_CONFIG_DIR": str(tmp_path)})
    assert built.metadata["id"] == "fromfile/imaterialist-2019-mask-rcnn"
    assert "secret" not in "".join(p.read_text(errors="ignore") for p in built.kernel.iterdir())


# --- whole sessions in a simulated Kaggle -------------------------------------------------------------------------

def _closure(names: list[str]) -> list:
    """The installed distributions of ``names`` and everything they require here, extras included."""
    seen: dict[str, object] = {}
    todo = [Requirement(name) for name in names]
    while todo:
        requirement = todo.pop()
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue
        key = (dist.metadata["Name"].lower(), frozenset(requirement.extras))
        if key in seen:
            continue
        seen[key] = dist
        for line in dist.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra})
                                             for extra in {"", *requirement.extras}):
                todo.append(needed)
    return list(seen.values())


@pytest.fixture(scope="module")
def notebook_python(tmp_path_factory) -> Path:
    """A fresh virtual environment that has torch and torchvision (and what they need) and nothing else:
    what a Kaggle image looks like to the bundle. The packages are linked from this environment, not copied."""
    root = tmp_path_factory.mktemp("image")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    image_site = root / "image-site"
    image_site.mkdir()
    for dist in _closure(["torch", "torchvision"]):
        site = Path(dist.locate_file(""))
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if not (image_site / top).exists():
                (image_site / top).symlink_to(site / top)
    python = root / "venv" / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    (Path(venv_site) / "image.pth").write_text(str(image_site) + "\n")
    probe = subprocess.run([str(python), "-c", "import torch, torchvision\ntry:\n import pandas\nexcept ImportError:\n"
                            " print('clean')"], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "clean", "the fresh environment must not see this project's packages"
    return python


def _can_isolate() -> bool:
    unshare = shutil.which("unshare")
    return bool(unshare) and subprocess.run([unshare, "-rmn", "true"], capture_output=True).returncode == 0


def _isolated(command: list[str], read_only: Path) -> list[str]:
    """``command`` without network and with ``read_only`` mounted read-only (Linux namespaces)."""
    script = f'mount --bind "{read_only}" "{read_only}" && mount -o remount,ro,bind "{read_only}" && exec "$@"'
    return ["unshare", "-rmn", "sh", "-c", script, "sh", *command]


def _kaggle(root: Path, notebook_python: Path, kernel: Path) -> subprocess.CompletedProcess:
    """Run the kernel's code file as Kaggle would: input read-only (chmod, and a read-only mount), no network."""
    for path in [root / "input", *(root / "input").rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o222)
    env = {"PATH": f"{notebook_python.parent}:/usr/bin:/bin", "HOME": str(root / "home"),
           "IMATERIALIST_KAGGLE_ROOT": str(root), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "DVC_NO_ANALYTICS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    command = _isolated([str(notebook_python), str(kernel / "run_kernel.py")], root / "input")
    try:
        return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    finally:
        for path in [root / "input", *(root / "input").rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)


def _kaggle_layout(root: Path, dataset: Path, competition_data: Path) -> None:
    shutil.copytree(competition_data, root / "input" / "competitions" / "imaterialist-fashion-2019-fgvc6")
    shutil.copytree(dataset, root / "input" / "imaterialist-2019-pipeline-code")
    (root / "working").mkdir()


def assert_valid_submission(working: Path, competition_data: Path) -> None:
    """The submission validator, run as a user runs it, on the notebook's /kaggle/working/submission.csv."""
    done = subprocess.run([sys.executable, "-m", "stages.validate_submission", str(working / "submission.csv"),
                           "--sample-submission", str(competition_data / "sample_submission.csv"),
                           "--test-images", str(competition_data / "test"),
                           "--labels", str(competition_data / "label_descriptions.json"),
                           "--tuned", str(working / "tuning" / "maskrcnn" / "postprocess.yaml")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not _can_isolate(), reason="needs unshare -rmn: without it the session would run online")
def test_two_sessions_install_offline_resume_training_and_submit(tmp_path, notebook_python):
    """Session 1 runs out of training time after one step yet submits; session 2, given session 1's output
    as a kernel source, continues from that step and finishes; both write a valid submission."""
    competition_data = tmp_path / "competition"
    write_dataset(competition_data, COMPETITION_DATA)
    kernel, dataset, _ = bundle(tmp_path / "cut", session={"time_budget_minutes": 0.001})
    first = tmp_path / "kaggle1"
    _kaggle_layout(first, dataset, competition_data)
    done = _kaggle(first, notebook_python, kernel)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Successfully installed" in done.stdout and "imaterialist-pipeline" in done.stdout
    record = json.loads((first / "working" / "kaggle-session.json").read_text())["sessions"]
    ran = yaml.safe_load((first / "working" / "params.yaml").read_text())
    planned = stage_order(read_stages(REPO / "dvc.yaml", ran))
    assert [s["name"] for s in record[0]["stages"]] == [s.name for s in planned]
    assert "train@maskrcnn" in [s["name"] for s in record[0]["stages"]]
    assert record[0]["train"]["step"] == 1 and record[0]["train"]["stopped_by"] == "deadline"
    assert (first / "working" / "models" / "maskrcnn" / "last.pt").is_file()
    assert_valid_submission(first / "working", competition_data)
    assert not (first / "working" / "data" / "raw").exists(), "links into the input are not kept as output"
    total = record[0]["train"]["total_steps"]
    assert total > 1 and f"training stopped at step 1 of {total}" in done.stdout

    kernel, dataset, _ = bundle(tmp_path / "full", session={"time_budget_minutes": 600})
    second = tmp_path / "kaggle2"
    _kaggle_layout(second, dataset, competition_data)
    shutil.copytree(first / "working", second / "input" / "imaterialist-2019-mask-rcnn")  # the kernel source
    done = _kaggle(second, notebook_python, kernel)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sessions = json.loads((second / "working" / "kaggle-session.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["resumed_from"].endswith("imaterialist-2019-mask-rcnn")
    assert "resuming models/maskrcnn/last.pt at epoch 1, step 1" in done.stderr
    assert sessions[1]["train"] | {"finished": True, "step": total, "resumed_from_step": 1} == sessions[1]["train"]
    assert (second / "working" / "models" / "maskrcnn" / "best.pt").is_file()
    assert_valid_submission(second / "working", competition_data)


def test_the_wheel_download_shows_each_distribution_on_a_progress_bar(tmp_path, monkeypatch, capsys):
    from pipeline.kaggle import bundle as bundle_module

    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nprintf 'Looking in indexes: x\\nCollecting dvc==3.67.1\\n  Downloading dvc.whl\\n"
                    "Processing /opt/files/six-1.17.0-py3-none-any.whl\\nSaved ./six.whl\\n'\nexit \"${FAIL:-0}\"\n")
    fake.chmod(0o755)
    monkeypatch.setattr(bundle_module.sys, "executable", str(fake))
    bundle_module._pip_counted(["wheel", "dvc==3.67.1", "six==1.17.0"], 2, "wheels for Python 3.11")
    shown = capsys.readouterr().err
    assert "wheels for Python 3.11: 100%" in shown and "2/2" in shown and "six-1.17.0-py3-none-any.whl" in shown
    monkeypatch.setenv("FAIL", "3")
    with pytest.raises(BundleError, match=r"pip wheel dvc==3.67.1 failed \(exit code 3\):\nLooking in indexes"):
        bundle_module._pip_counted(["wheel", "dvc==3.67.1", "six==1.17.0"], 2, "wheels")
