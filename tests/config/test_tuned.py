"""The tuned post-processing file: written whole by stage tune, refused when cut short, incomplete or another
family's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config.inference import PostprocessParams
from pipeline.config.params import ParamsError
from pipeline.config.tuned import Tuned, load_tuned

REPO = Path(__file__).resolve().parents[2]
TUNED = Tuned("maskrcnn", PostprocessParams.model_validate({
    **yaml.safe_load((REPO / "params.yaml").read_text())["postprocess"], "category_policy": {2: "drop"},
    "group_thresh": {"length": 0.35}}))
TEXT = TUNED.text()


def test_what_tune_writes_reads_back_the_same(tmp_path):
    (tmp_path / "t.yaml").write_text(TEXT)
    assert load_tuned(tmp_path / "t.yaml") == TUNED


def test_a_file_cut_anywhere_is_refused_or_reads_as_the_whole(tmp_path):
    """Every cut, tried one by one. ``head -c 499 tuning/maskrcnn/postprocess.yaml`` ended ``grid: 512x5``, and a
    submission was made on a 512 x 5 grid that the validator called valid."""
    path = tmp_path / "t.yaml"
    assert TEXT.endswith("  grid: 512x512\n"), "the grid is written last, so a cut falls in it or before it"
    read_as_whole = []
    for cut in range(len(TEXT)):
        path.write_text(TEXT[:cut])
        try:
            loaded = load_tuned(path)
        except ParamsError:
            continue
        assert loaded == TUNED, f"cut at byte {cut} of {len(TEXT)} reads as other settings"
        read_as_whole.append(cut)
    assert read_as_whole == [len(TEXT) - 1], "only the cut of the final line break leaves the settings whole"


@pytest.mark.parametrize("key", sorted(PostprocessParams.model_fields))
def test_a_setting_left_out_is_refused_not_defaulted(tmp_path, key):
    data = yaml.safe_load(TEXT)
    del data["postprocess"][key]
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match=rf"t.yaml: section 'postprocess' lacks {key}"):
        load_tuned(tmp_path / "t.yaml")


@pytest.mark.parametrize(("change", "says"), [
    (lambda d: d.pop("family"), "no 'family'"),
    (lambda d: d.update(family=""), "no 'family'"),
    (lambda d: d.update(tune={"rounds": 2}), r"unknown key\(s\) tune"),
    (lambda d: d["postprocess"].update(grid="1024x1024"), "grid"),
    (lambda d: d["postprocess"].update(score_thresh=True), "holds a boolean"),
])
def test_a_file_that_is_not_what_tune_writes_is_refused(tmp_path, change, says):
    data = yaml.safe_load(TEXT)
    change(data)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match=says):
        load_tuned(tmp_path / "t.yaml")


def test_a_file_tuned_for_another_family_is_refused_for_these_predictions():
    TUNED.require_family("maskrcnn", "t.yaml", "predictions/maskrcnn/test")
    with pytest.raises(ParamsError, match="t.yaml: tuned for family maskrcnn, not for predictions/unet/test "
                                          r"\(family unet\); use tuning/unet/postprocess.yaml"):
        TUNED.require_family("unet", "t.yaml", "predictions/unet/test")
