"""The Python API: a trained run folder in, a model that segments photos, names their items and finds similar ones.

  from pipeline import load
  model = load("models/maskrcnn")
  result = model("photo.jpg")          # a path, a PIL image or a numpy array; a list or a folder gives a list
  result.items, result.plot(), result.to_json(), result.similar(k=8)

A run folder ``<project>/models/<family>`` is read with the project around it: the family from the
run's own ``params.yaml`` (written by stage train), the TTA views and mask grid from the project's
``params.yaml``, the post-processing from ``tuning/<family>/postprocess.yaml`` when stage tune has
written it (else the params' ``postprocess`` section), and the catalogue from ``index/``. Each can
be given instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config.inference import PostprocessParams, PredictParams
from pipeline.config.model import ModelParams
from pipeline.config.params import ParamsError, load_section
from pipeline.config.shop import SegmentParams
from pipeline.config.tuned import load_tuned
from pipeline.data.labels import BUNDLED_LABELS, load_labels
from pipeline.inference.predict import Inference, make_views
from pipeline.inference.trained import open_model
from pipeline.models import registry
from pipeline.shop.model import FashionModel
from pipeline.shop.segment import Segmenter
from pipeline.training.resume import RESOLVED

log = logging.getLogger(__name__)


def load(run_dir: Path | str = "models/maskrcnn", *, params: Path | str | None = None,
         tuned: Path | str | None = None, index: Path | str | None = None, labels: Path | str = BUNDLED_LABELS,
         family: str | None = None, device: str | None = None, checkpoint: str = "best",
         project: Path | str | None = None) -> FashionModel:
    """The trained model of ``run_dir`` (any family) with its project's inference settings.

    ``params`` (default ``<project>/params.yaml``, the project being the folder that holds ``models/``) gives
    the model sections, ``predict``'s TTA views and ``segment``'s mask grid and device; ``tuned`` (default
    ``<project>/tuning/<family>/postprocess.yaml`` when it exists, else the params' ``postprocess``) the
    post-processing; ``index`` (default ``<project>/index``) the catalogue of similar items. ``family`` defaults to
    the run's (its own ``params.yaml``, else the params' ``model.family``); ``device`` (``auto``, ``cpu``,
    ``cuda``) overrides ``segment.device``; ``checkpoint`` is ``best`` or ``last``. ``project`` (default the folder
    that holds ``models/``) is where stage index ran: a catalogue's relative image folder is read there.
    """
    run_dir = Path(run_dir)
    project = Path(project) if project is not None else run_dir.parent.parent
    params = Path(params) if params is not None else project / "params.yaml"
    if not params.is_file():
        raise ParamsError(f"{params}: no params file for the run {run_dir}; pass params= the project's params.yaml")
    family = family or _family(run_dir, params)
    config = registry.load(params, family)
    segment = load_section(params, "segment", SegmentParams)
    predict = load_section(params, "predict", PredictParams)
    postprocess = _postprocess(Path(tuned) if tuned is not None else project / "tuning" / family / "postprocess.yaml",
                               tuned is not None, params, family, run_dir)
    names = load_labels(labels)
    trained = open_model(run_dir, config, len(names.attributes), device or segment.device, checkpoint_name=checkpoint,
                         device_setting="segment.device", doing="segmenting")
    views = make_views(predict.scales, predict.hflip)
    inference = Inference(trained.model, views, config.model, trained.device,
                          segment.precision if trained.device.type == "cuda" else "fp32")
    info = {"family": family, "checkpoint": str(trained.checkpoint), "views": [v.name for v in views]}
    return FashionModel(Segmenter(inference, postprocess, names, segment.max_side), config, trained.checkpoint, info,
                        Path(index) if index is not None else project / "index", project)


def _family(run_dir: Path, params: Path) -> str:
    """The family the run was trained as (its own resolved params), else the params file's ``model.family``."""
    resolved = run_dir / RESOLVED
    return load_section(resolved if resolved.is_file() else params, "model", ModelParams).family


def _postprocess(path: Path, given: bool, params: Path, family: str, run_dir: Path) -> PostprocessParams:
    """The tuned post-processing of ``path`` (required when ``given``), else the params' untuned section."""
    if given or path.is_file():
        tuned = load_tuned(path)
        tuned.require_family(family, path, f"the model of {run_dir}")
        return tuned.postprocess
    log.warning("%s does not exist (stage tune has not run): using the untuned postprocess section of %s", path,
                params)
    return load_section(params, "postprocess", PostprocessParams)
