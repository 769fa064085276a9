"""params.yaml sections: typed, validated, and errors that name the file and the key."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from pipeline.config.comparison import CompareParams
from pipeline.config.params import (
    DataParams,
    FoldsParams,
    ParamsError,
    SyntheticParams,
    load_section,
    with_overrides,
)
from pipeline.config.sections import SECTIONS as CONFIG_SECTIONS
from pipeline.models import registry
from pipeline.models.families.unet.params import UNetParams
from pipeline.utils.io import as_json

REPO = Path(__file__).resolve().parents[2]
#: Every section with its schema: the config's, and each model family's (named like the family).
SECTIONS = {**CONFIG_SECTIONS, **registry.sections()}


def test_every_section_of_params_yaml_has_a_schema_and_validates_to_what_the_file_says():
    written = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(written) == set(SECTIONS), "a section without a schema would never be checked"
    for name, model in SECTIONS.items():
        loaded = load_section(REPO / "params.yaml", name, model)
        dumped = loaded.model_dump(mode="json") if hasattr(loaded, "model_dump") else as_json(asdict(loaded))
        assert {key: dumped[key] for key in written[name]} == as_json(written[name]), f"{name}: a value was changed"


def numeric_fields() -> list[tuple[str, str]]:
    """(section, key) of every key of params.yaml whose value is a number or a list of numbers."""
    written = yaml.safe_load((REPO / "params.yaml").read_text())

    def numeric(value) -> bool:
        items = value if isinstance(value, list) else [value]
        return bool(items) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)

    return [(section, key) for section, values in written.items() for key, value in values.items() if numeric(value)]


@pytest.mark.parametrize(("section", "key"), numeric_fields())
def test_a_boolean_is_never_read_as_a_number(tmp_path, section, key):
    """pydantic alone reads ``epochs: true`` as 1 epoch."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    value = params[section][key]
    params[section][key] = [True, *value[1:]] if isinstance(value, list) else True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=rf"section '{section}': {key}: .*true.* holds a boolean, but the field"):
        load_section(tmp_path / "params.yaml", section, SECTIONS[section])


def test_booleans_still_set_boolean_fields(tmp_path):
    (tmp_path / "params.yaml").write_text("synthetic: {seed: 1, train_images: 2, test_images: 1, min_side: 100,"
                                          " max_side: 200, attribute_rate: 0.2, size_defect: true}\n")
    assert load_section(tmp_path / "params.yaml", "synthetic", SyntheticParams).size_defect is True


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("folds:\n  n_folds: 5\n  seed: 1\n  shuffle: true\n", "shuffle"),
        ("folds:\n  n_folds: 1\n  seed: 1\n", "n_folds"),
        ("folds:\n  n_folds: five\n  seed: 1\n", "n_folds"),
        ("other: {}\n", "no 'folds' section"),
        ("folds: [\n", "cannot read params"),
    ],
)
def test_bad_params_name_the_file_and_the_problem(tmp_path, text, says):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=None) as caught:
        load_section(path, "folds", FoldsParams)
    assert str(path) in str(caught.value) and says in str(caught.value)


def test_choices_and_cross_field_rules_are_checked(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  source: s3\n")
    with pytest.raises(ParamsError, match="synthetic"):
        load_section(path, "data", DataParams)
    path.write_text("synthetic: {seed: 1, train_images: 2, test_images: 1, min_side: 300, max_side: 200,"
                    " attribute_rate: 0.2, size_defect: false}\n")
    with pytest.raises(ParamsError, match="min_side 300 exceeds max_side 200"):
        load_section(path, "synthetic", SyntheticParams)


def test_overrides_replace_values_and_reject_unknown_keys(tmp_path):
    base, overrides = tmp_path / "params.yaml", tmp_path / "o.yaml"
    base.write_text(yaml.safe_dump({"train": {"epochs": 7, "lr": 0.001}, "predict": {"scales": [1.0, 1.25]}}))
    overrides.write_text(yaml.safe_dump({"train": {"epochs": 12}, "predict": {"scales": [1.0]}}))
    assert with_overrides(base, overrides) == {"train": {"epochs": 12, "lr": 0.001}, "predict": {"scales": [1.0]}}
    overrides.write_text(yaml.safe_dump({"train": {"epoch": 12}}))
    with pytest.raises(ParamsError, match=r"o.yaml: train.epoch is not in params.yaml"):
        with_overrides(base, overrides)
    overrides.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match=r"o.yaml: cannot read the overrides"):
        with_overrides(base, overrides)


@pytest.mark.parametrize(("families", "says"), [([], "at least 1"), (["unet", "unet"], "must be distinct")])
def test_the_compared_families_are_a_list_of_distinct_names(tmp_path, families, says):
    path = tmp_path / "params.yaml"
    section = {**yaml.safe_load((REPO / "params.yaml").read_text())["compare"], "families": families}
    path.write_text(yaml.safe_dump({"compare": section}))
    with pytest.raises(ParamsError, match=says):
        load_section(path, "compare", CompareParams)


def test_the_unet_section_refuses_a_decoder_of_the_wrong_depth(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("unet: {decoder_channels: [64, 32, 16]}\n")
    with pytest.raises(ParamsError, match="decoder_channels needs 5 positive channel counts"):
        load_section(path, "unet", UNetParams)


def test_a_misspelt_setting_suggests_the_closest_one(tmp_path):
    import yaml

    from pipeline.config.params import ParamsError, load_section
    from pipeline.config.training import TrainParams

    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    params["train"]["epoch"] = params["train"].pop("epochs")
    params["train"]["zzz"] = 1
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as raised:
        load_section(tmp_path / "p.yaml", "train", TrainParams)
    message = str(raised.value)
    assert "no setting 'epoch' (did you mean 'epochs'?)" in message
    assert "no setting 'zzz' (the settings are: " in message and "epochs" in message
