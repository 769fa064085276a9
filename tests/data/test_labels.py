"""The label set and ClassId strings."""

from __future__ import annotations

import json

import pytest

from pipeline.data.labels import BUNDLED_LABELS, SHORT_NAME, ClassId, LabelError, load_labels, short_name


@pytest.fixture(scope="module")
def labels():
    return load_labels()


def test_bundled_label_set_is_the_real_one(labels):
    assert len(labels.categories) == 46 and len(labels.attributes) == 92
    assert labels.category_name(10) == "dress"
    assert labels.attributes[7].name == "midi"


def test_parse_and_format(labels):
    assert labels.parse("6") == ClassId(6, ())
    assert labels.parse("10_7_20") == ClassId(10, (7, 20))
    assert labels.parse("10_20_7") == ClassId(10, (7, 20))
    assert labels.format(ClassId(10, (20, 7))) == "10_7_20"
    assert labels.format(labels.parse("10_88_7_20_24_60_61")) == "10_7_20_24_60_61_88"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("46", "category 46"),
        ("-1", "not integers"),
        ("10_92", "attribute(s) [92]"),
        ("10_7_7", "repeat"),
        ("", "not integers"),
        ("10__7", "not integers"),
        ("shirt", "not integers"),
        ("1 0", "not integers"),
    ],
)
def test_rejects_ids_outside_the_label_set(labels, text, says):
    with pytest.raises(LabelError, match=None) as caught:
        labels.parse(text)
    assert says in str(caught.value)


def test_format_rejects_unknown_ids(labels):
    with pytest.raises(LabelError):
        labels.format(ClassId(3, (100,)))


def test_broken_label_file_names_the_file(tmp_path):
    data = json.loads(BUNDLED_LABELS.read_text())
    del data["attributes"][5]
    path = tmp_path / "label_descriptions.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LabelError, match="label_descriptions.json.*'attributes' ids must be"):
        load_labels(path)
    path.write_text("{")
    with pytest.raises(LabelError, match="cannot read"):
        load_labels(path)


def test_pictures_name_things_by_one_short_rule(labels):
    assert short_name("headband, head covering, hair accessory") == "headband"
    assert short_name("above-the-hip (length)") == "above-the-hip"
    cut = short_name("no special manufacturing technique")
    assert cut == "no special manu…" and len(cut) == SHORT_NAME
    assert labels.short_names(labels.parse("10_0_18")) == ("dress", ("above-the-hip", "no opening"))
