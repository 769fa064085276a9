"""The two Kaggle sections of ``params.yaml``: what the kernel build makes, and how a notebook session runs."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from pipeline.config.params import ParamsSection

# Kaggle's slugs: lowercase letters, digits and dashes (what ``slugify`` of a title gives).
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def check_slug(value: str) -> str:
    if not _SLUG.fullmatch(value) or not 5 <= len(value) <= 50:
        raise ValueError(f"{value!r} is not a Kaggle slug: 5-50 lowercase letters, digits and single dashes")
    return value


class KernelBuildParams(ParamsSection):
    """``make kaggle-kernel``: the push-ready kernel folder and the code dataset it installs from."""

    owner: str = Field("", description="Kaggle username; empty: $KAGGLE_USERNAME or ~/.kaggle/kaggle.json")
    kernel_slug: str
    code_dataset_slug: str
    enable_internet: bool = Field(description="false: an offline notebook, as many competitions require")
    accelerator: str = Field(description="the kernel's machine_shape, e.g. NvidiaTeslaT4 (two T4s)")
    weights_dataset: str = Field("", description="owner/slug of a dataset with pretrained weights, or empty")
    resume: bool = Field(description="list the kernel as its own source: a new version resumes the last one")
    python_versions: tuple[str, ...] = Field(min_length=1, description="Pythons the bundled wheels are for")
    params_overrides: str = Field(description="YAML merged over params.yaml for the notebook")

    @field_validator("kernel_slug", "code_dataset_slug")
    @classmethod
    def _slugs(cls, value: str) -> str:
        return check_slug(value)

    @field_validator("python_versions")
    @classmethod
    def _versions(cls, versions: tuple[str, ...]) -> tuple[str, ...]:
        for version in versions:
            if not re.fullmatch(r"3\.\d+", version):
                raise ValueError(f"python_versions: {version!r} is not of the form 3.N")
        return versions


class SessionParams(ParamsSection):
    """One notebook session (``kaggle_kernel.session``): its time limit and what it keeps."""

    time_budget_minutes: float = Field(gt=0, description="how long the session may run in all")
    reserve_minutes: float = Field(ge=0, description="kept after training for predict ... submission")
    launcher: str = Field(description="auto: torchrun on all GPUs when there are several; else a command")
    weights_file: str = Field("", description="file name searched under the input root; becomes the family's weights")
    discard: tuple[str, ...] = Field((), description="project paths deleted at the end: regenerated, not output")
    after_training: tuple[str, ...] = Field((), description="stages of dvc.yaml run only in the session where "
                                                            "training finishes (their time would cut every other's)")
