"""The label set (``label_descriptions.json``) and ClassId strings such as ``"10_7_20"``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipeline.utils.errors import PipelineError

#: The real ``label_descriptions.json`` of the competition, shipped with the package.
BUNDLED_LABELS = resources.files("pipeline") / "data" / "label_descriptions.json"


class LabelError(PipelineError, ValueError):
    """A label file or ClassId string that does not fit the label set."""


@dataclass(frozen=True)
class Label:
    id: int
    name: str
    supercategory: str
    level: int


@dataclass(frozen=True)
class ClassId:
    """A category with its (sorted, distinct) attribute ids."""

    category: int
    attributes: tuple[int, ...] = ()

    def __str__(self) -> str:
        """The submission form, ``"10_7_20"``: category, then attributes in increasing order."""
        return "_".join(str(i) for i in (self.category, *sorted(self.attributes)))


@dataclass(frozen=True)
class LabelSet:
    categories: tuple[Label, ...]
    attributes: tuple[Label, ...]

    def parse(self, class_id: str) -> ClassId:
        """``"10_7_20"`` -> ClassId(10, (7, 20)); raises LabelError for ids outside the label set."""
        parts = str(class_id).split("_")
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise LabelError(f"ClassId {class_id!r} is not integers joined by '_'")
        category, *attributes = (int(part) for part in parts)
        return self.make(category, attributes)

    def make(self, category: int, attributes: list[int] | tuple[int, ...] = ()) -> ClassId:
        """A validated ClassId; attributes are sorted."""
        if not 0 <= category < len(self.categories):
            raise LabelError(f"category {category} is not in the label set (0-{len(self.categories) - 1})")
        unknown = [a for a in attributes if not 0 <= a < len(self.attributes)]
        if unknown:
            raise LabelError(
                f"attribute(s) {unknown} not in the label set (0-{len(self.attributes) - 1})"
            )
        if len(set(attributes)) != len(attributes):
            raise LabelError(f"attributes {list(attributes)} repeat an id")
        return ClassId(category, tuple(sorted(attributes)))

    def format(self, class_id: ClassId) -> str:
        """ClassId(10, (20, 7)) -> ``"10_7_20"`` (validated, attributes sorted)."""
        return str(self.make(class_id.category, class_id.attributes))

    def category_name(self, category: int) -> str:
        return self.categories[category].name

    def short_names(self, class_id: ClassId) -> tuple[str, tuple[str, ...]]:
        """What the pictures say of a ClassId: its category's and its attributes' ``short_name``."""
        return (short_name(self.categories[class_id.category].name),
                tuple(short_name(self.attributes[a].name) for a in class_id.attributes))


#: The longest short name: longer ones are cut, with "…".
SHORT_NAME = 16


def short_name(name: str) -> str:
    """One rule for every picture: the first of a comma-separated list, without a parenthesised qualifier,
    at most ``SHORT_NAME`` characters (``"no special manufacturing technique"`` -> ``"no special manuf…"``)."""
    text = name.split(",")[0].split(" (")[0].strip() or name.strip()
    return text if len(text) <= SHORT_NAME else text[: SHORT_NAME - 1].rstrip() + "…"


def _entries(data: dict, key: str, path: Path | str) -> tuple[Label, ...]:
    try:
        entries = tuple(
            Label(int(e["id"]), str(e["name"]), str(e["supercategory"]), int(e["level"])) for e in data[key]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelError(f"{path}: '{key}' must be a list of {{id, name, supercategory, level}}: {exc!r}") from exc
    ids = [e.id for e in entries]
    if ids != list(range(len(ids))):
        raise LabelError(f"{path}: '{key}' ids must be 0..{len(ids) - 1} in order, got {ids[:10]}...")
    return entries


def load_labels(path: Path | str = BUNDLED_LABELS) -> LabelSet:
    """Read and check a ``label_descriptions.json``."""
    source = Path(path) if isinstance(path, str) else path
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LabelError(f"{path}: cannot read label descriptions: {exc}") from exc
    return LabelSet(_entries(data, "categories", path), _entries(data, "attributes", path))
