"""Stage download's three sources: synthetic (see test_synthetic), kaggle (network stubbed), dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.data.download import DATASET_ENTRIES, DownloadError, find_dataset_root, link_dataset
from pipeline.kaggle.api import KaggleCredentialsError, authenticated_api
from pipeline.kaggle.download import kaggle_download
from pipeline.utils.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]


def read_only(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            os.chmod(Path(folder) / name, 0o444)
        os.chmod(folder, 0o555)


def test_dir_source_finds_nested_data_and_links_it_in_place(small_dataset, tmp_path):
    mount = tmp_path / "kaggle" / "input"
    data = mount / "competitions" / "imaterialist-fashion-2019-FGVC6"
    shutil.copytree(small_dataset, data)
    (mount / "some-weights").mkdir()
    read_only(mount)
    assert find_dataset_root(mount) == data
    out = tmp_path / "working" / "raw"
    link_dataset(data, out)
    for name in DATASET_ENTRIES:
        assert (out / name).is_symlink() and (out / name).resolve() == (data / name).resolve()
    assert (out / "train.csv").read_bytes() == (small_dataset / "train.csv").read_bytes()
    link_dataset(data, out)  # running again replaces the links and leaves the data alone
    assert sorted(os.listdir(data)) == sorted(DATASET_ENTRIES)


def test_dir_source_errors_say_what_to_do(small_dataset, tmp_path):
    with pytest.raises(DownloadError, match="no folder under .* holds both train.csv and label_descriptions.json"):
        find_dataset_root(tmp_path)
    shutil.copytree(small_dataset, tmp_path / "a")
    shutil.copytree(small_dataset, tmp_path / "b")
    with pytest.raises(DownloadError, match="several datasets .* set data.search_root"):
        find_dataset_root(tmp_path)
    (tmp_path / "a" / "sample_submission.csv").unlink()
    with pytest.raises(DownloadError, match="missing sample_submission.csv"):
        link_dataset(tmp_path / "a", tmp_path / "out")
    with pytest.raises(DownloadError, match="not a folder"):
        find_dataset_root(tmp_path / "nowhere")


class FakeKaggle:
    """Stands in for KaggleApi at the network boundary: 'downloads' a prepared archive."""

    def __init__(self, archive: Path):
        self.archive, self.calls = archive, []

    def competition_download_files(self, competition, path=None, quiet=True):
        self.calls.append(competition)
        shutil.copy(self.archive, Path(path) / f"{competition}.zip")


def zip_dataset(root: Path, archive: Path, nested: bool) -> Path:
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if nested and relative.parts[0] in ("train", "test"):
                continue
            if path.is_file():
                bundle.write(path, relative)
    if nested:
        for split in ("train", "test"):
            inner = archive.parent / f"{split}.zip"
            with zipfile.ZipFile(inner, "w") as bundle:
                for path in sorted((root / split).iterdir()):
                    bundle.write(path, Path(split) / path.name)
            with zipfile.ZipFile(archive, "a") as bundle:
                bundle.write(inner, inner.name)
    return archive


@pytest.mark.parametrize("nested", [False, True])
def test_kaggle_source_unpacks_the_archive(small_dataset, tmp_path, nested):
    api = FakeKaggle(zip_dataset(small_dataset, tmp_path / "bundle.zip", nested))
    out, archives = tmp_path / "raw", tmp_path / "downloads"
    kaggle_download(api, "imaterialist-fashion-2019-FGVC6", out, archives)
    assert api.calls == ["imaterialist-fashion-2019-FGVC6"]
    assert sorted(os.listdir(out)) == sorted(DATASET_ENTRIES)
    assert sorted(os.listdir(out / "train")) == sorted(os.listdir(small_dataset / "train"))
    assert not list(archives.iterdir()), "the archive is removed once unpacked"


def test_kaggle_source_reports_a_broken_archive(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(DownloadError, match="not a valid zip archive"):
        kaggle_download(FakeKaggle(broken), "c", tmp_path / "raw", tmp_path / "downloads")
    assert not (tmp_path / "raw").exists()


def without_credentials(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / ".kaggle"), XDG_CONFIG_HOME=str(tmp_path))
    return env


def test_missing_credentials_is_one_clear_error(tmp_path, monkeypatch, capsys):
    for key, value in without_credentials(tmp_path).items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith("KAGGLE_") and k != "KAGGLE_CONFIG_DIR"]:
        monkeypatch.delenv(key)
    with pytest.raises(KaggleCredentialsError, match="kaggle.json.*KAGGLE_USERNAME and KAGGLE_KEY"):
        authenticated_api()
    assert capsys.readouterr().out == ""


def test_download_stage_without_credentials_fails_at_once(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: kaggle\n")
    done = subprocess.run([sys.executable, "-m", "stages.download", "--params", str(params),
                           "--out", str(tmp_path / "raw"), "--archives", str(tmp_path / "downloads")],
                          cwd=REPO, env=without_credentials(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: Kaggle credentials not found")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "raw").exists()


def test_a_missing_kaggle_client_is_a_clear_error(monkeypatch):
    for name in ("kaggle", "kaggle.api", "kaggle.api.kaggle_api_extended"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(PipelineError, match="Kaggle client is not installed.*pip install kaggle"):
        authenticated_api()
