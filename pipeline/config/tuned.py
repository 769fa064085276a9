"""The tuned post-processing file, ``tuning/<family>/postprocess.yaml``: what stage tune writes and the others read.

It is read more strictly than ``params.yaml``. Every setting of the ``postprocess`` section must
be written out, since a default standing in for a setting that was tuned changes the
submission without a word; the grid is one of the known ones (a file cut short mid-line reads
``512x512`` as ``512x5``); and the file names the model family whose predictions it was tuned
on, which a stage checks against the predictions it applies it to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.config.inference import PostprocessParams
from pipeline.config.params import ParamsError, read_params, validate_section

HEADER = "# Written by stage tune: the best post-processing on the validation fold of the family's predictions.\n"
_KEYS = ("family", "postprocess")


@dataclass(frozen=True)
class Tuned:
    """A tuned file's content: the family it was tuned for and the whole post-processing section."""

    family: str
    postprocess: PostprocessParams

    def text(self) -> str:
        """The file as stage tune writes it: the family first, then every setting, the grid last."""
        return HEADER + yaml.safe_dump({"family": self.family, "postprocess": self.postprocess.model_dump(mode="json")},
                                       sort_keys=False)

    def require_family(self, family: str, path: Path | str, applied_to: str) -> None:
        """A :class:`ParamsError` unless ``applied_to`` (a prediction folder, a trained model) is of this file's
        family, ``family``."""
        if family != self.family:
            raise ParamsError(f"{path}: tuned for family {self.family}, not for {applied_to} (family {family}); "
                              f"use tuning/{family}/postprocess.yaml")


def load_tuned(path: Path | str) -> Tuned:
    """The tuned file at ``path``; a :class:`ParamsError` naming the file for a missing, unknown or invalid key."""
    data = read_params(path)
    if unknown := sorted(set(data) - set(_KEYS)):
        raise ParamsError(f"{path}: unknown key(s) {', '.join(map(str, unknown))}; a tuned file holds "
                          f"{' and '.join(_KEYS)} (stage tune writes it)")
    family = data.get("family")
    if not isinstance(family, str) or not family:
        raise ParamsError(f"{path}: no 'family' naming the model family it was tuned for; rerun stage tune")
    return Tuned(family, validate_section(data, "postprocess", PostprocessParams, path, complete=True))
