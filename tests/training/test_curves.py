"""The training curves grouped into four charts, as tables DVC draws and as PNG files that open anywhere."""

from __future__ import annotations

import pandas as pd

from pipeline.training.curves import CURVES, FIGURES, write_curves


def _log(live, split, name, values):
    folder = live / "plots" / "metrics" / split
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": range(5, 5 * len(values) + 1, 5), name: values}).to_csv(folder / f"{name}.tsv", sep="\t",
                                                                                 index=False)


def test_the_curves_are_grouped_by_chart_and_drawn(tmp_path):
    for name, values in (("loss", [3, 2, 1]), ("loss_mask", [1, 0.8, 0.5]), ("lr", [0.1, 0.1, 0.05]),
                         ("images_per_second", [1.0, 1.1, 1.2]), ("instances_dropped", [0, 0, 0])):
        _log(tmp_path, "train", name, values)
    for name, values in (("score", [0.0, 0.1]), ("mask_ap", [0.01, 0.05]), ("attribute_f1", [0.1, 0.2])):
        _log(tmp_path, "val", name, values)
    written = write_curves(tmp_path, "maskrcnn")
    assert sorted(p.name for p in written) == ["learning_rate.png", "losses.png", "throughput.png", "validation.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    assert sorted(p.name for p in (tmp_path / FIGURES).iterdir()) == sorted(p.name for p in written)
    losses = pd.read_csv(tmp_path / CURVES / "losses.tsv", sep="\t")
    assert list(losses.columns) == ["step", "curve", "value"] and set(losses.curve) == {"loss", "loss_mask"}
    validation = pd.read_csv(tmp_path / CURVES / "validation.tsv", sep="\t")
    assert set(validation.curve) == {"score", "mask_ap"} and len(validation) == 4


def test_a_run_too_short_to_log_still_has_every_chart_dvc_declares(tmp_path):
    _log(tmp_path, "val", "score", [0.0])  # one validation, no training interval logged yet
    written = write_curves(tmp_path, "unet")
    assert sorted(p.name for p in written) == ["learning_rate.png", "losses.png", "throughput.png", "validation.png"]
    assert pd.read_csv(tmp_path / CURVES / "losses.tsv", sep="\t").empty
    assert len(pd.read_csv(tmp_path / CURVES / "validation.tsv", sep="\t")) == 1
