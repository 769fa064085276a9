"""The scale run's report (``benchmarks/scale.py``): each stage's growth, its cost at the real data's size, and
whether it fits a Kaggle session.

Each cost (seconds, peak memory, output bytes) is taken against the count the stage handles
(``COUNT``). A stage's fixed cost (starting Python, importing torch, starting workers) hides how
its variable part grows, so the growth is read from the marginal costs: the cost per item between
the two smallest sizes and between the two largest. If the marginal cost grows as ``x^k``, the
variable part grows as ``x^(k+1)``: that is the growth reported (1 is linear, 2 quadratic), and
the extrapolation integrates the marginal cost from the largest size to the real count (as linear
below a growth of 1.15: measurement noise). Where the cost hardly changes between the two smallest
sizes (under 10 %), or with two sizes, the growth is not measured and the extrapolation is linear;
one size is not extrapolated.

A Kaggle session (pipeline/kaggle/session.py) runs every stage once: prepare, folds and cache on
the CPU, training until ``time_budget_minutes - reserve_minutes``, then predict, tune, evaluate,
submission and compare in the reserve; the stages of ``kaggle_session.after_training`` only in a
session that starts with training finished. CPU stages with a worker per core take between their
time here scaled by the cores (here over Kaggle's 4) and their time here; their memory is taken
as growing with the workers. The GPU stages' time on Kaggle's T4s is an estimate from docs/gpu.md
(1-6 training images/s per T4; inference taken as a third of a training image's work).
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.config.params import with_overrides

REAL_TRAIN, REAL_TEST, REAL_INSTANCES = 45_625, 3_200, 333_401
GIB = 2**30
#: What Kaggle states for a GPU notebook (not measured here), in bytes.
KAGGLE = {"cores": 4, "memory": 30e9, "output": 20e9}
#: The count each stage's cost grows with.
COUNT = {"download": "images", "prepare": "instances", "folds": "images", "cache": "instances",
         "train": "train_steps", "predict": "predicted_images", "tune": "tuned_images",
         "evaluate": "val_detections", "submission": "test_detections", "compare": "train_steps",
         "index": "catalogue_items"}
PER_CORE = {"cache", "tune", "evaluate", "submission"}  # a worker process per core
DATA = ("prepare", "folds", "cache")  # before training, every session
AFTER_TRAINING = ("predict", "tune", "evaluate", "submission", "compare", "index")  # in dvc.yaml's order
T4_TRAIN_IMAGES_PER_S = (1.0, 6.0)  # docs/gpu.md, "Settings to start from (estimates)"
SUPERLINEAR = 1.15
NOISE = 0.1  # a cost's change between two sizes that tells its growth: 10 % of the cost, above the runs' spread


def kaggle_params(repo: Path) -> dict:
    return with_overrides(repo / "params.yaml", repo / "kaggle_kernel" / "params.kaggle.yaml")


def real_counts(largest: dict, train_images: int, params: dict) -> dict[str, float]:
    """Each count at the real data's size: proportional ones scaled from the largest run, the rest as set."""
    val = REAL_TRAIN / params["folds"]["n_folds"]
    counts = {"images": REAL_TRAIN, "instances": REAL_INSTANCES, "val_images": val, "test_images": REAL_TEST,
              "predicted_images": val + REAL_TEST, "train_steps": largest["train_steps"],
              "tuned_images": min(val, params["tune"]["max_images"]),
              "catalogue_items": largest.get("catalogue_items", 0) * REAL_TRAIN / train_images}
    for kind, images, real in (("val_detections", largest["val_images"], val),
                               ("test_detections", largest["test_images"], REAL_TEST)):
        counts[kind] = largest.get(kind, 0) / max(1, images) * real
    return counts


def fit(x: list[float], y: list[float], target: float) -> dict:
    """The growth of the variable part (None: not measurable) and the value at ``target`` (None: one size). A count
    that did not change with the size (a fixed number of training steps) keeps the largest value measured."""
    points = sorted(zip(x, y, strict=True))
    if len({p[0] for p in points}) < 2:
        return {"growth": None, "real": points[-1][1] if len(points) > 1 else None, "line": None}
    (x2, y2), (x3, y3) = points[-2:]
    slope = max((y3 - y2) / (x3 - x2), 0.0)
    power, growth = 0.0, None
    x1, y1 = points[-3] if len(points) >= 3 else (x2, y2)
    if x1 < x2 and y2 - y1 > NOISE * y1 and slope > 0:  # a first step lost in the noise says nothing of growth
        power = min(max(math.log(slope / ((y2 - y1) / (x2 - x1))) / math.log((x2 + x3) / (x1 + x2)), 0.0), 3.0)
        growth = power + 1
    if growth is not None and growth <= SUPERLINEAR:
        power = 0.0  # within the noise of linear: a small measured excess must not compound over a 10x step
    line = {"x": x3, "y": y3, "slope": slope, "power": power, "middle": (x2 + x3) / 2}
    return {"growth": growth, "real": at(target, line), "line": line}


def at(target: float, line: dict) -> float:
    """The fitted cost at ``target``: the largest size's plus the marginal cost, ``slope`` at the middle of the
    last interval and growing as ``x^power``, integrated from the largest size to ``target``."""
    x, power = line["x"], line["power"]
    integral = (target ** (power + 1) - x ** (power + 1)) / (power + 1)
    return line["y"] + line["slope"] * integral / line["middle"] ** power


def gpu_minutes(stage: str, params: dict) -> tuple[float, float] | None:
    """The stage's GPU time on Kaggle's two T4s at the real data's size, in minutes (low, high): an estimate."""
    train_images = REAL_TRAIN * (1 - 1 / params["folds"]["n_folds"])
    views = (1 + params["predict"]["hflip"]) * len(params["predict"]["scales"])
    infer = tuple(3 * rate for rate in T4_TRAIN_IMAGES_PER_S)  # one T4: predict and index run one process
    work = {"train": (params["train"]["epochs"] * train_images, tuple(2 * r for r in T4_TRAIN_IMAGES_PER_S)),
            "predict": ((REAL_TRAIN / params["folds"]["n_folds"] + REAL_TEST) * views, infer),
            "index": (REAL_TRAIN, infer)}
    if stage not in work:
        return None
    amount, (slow, fast) = work[stage]
    return amount / fast / 60, amount / slow / 60


def stage_report(stage: str, sizes: dict[int, dict], params: dict) -> dict:
    ran = sorted(size for size, row in sizes.items() if stage in row["stages"])
    target = real_counts(sizes[ran[-1]]["counts"], ran[-1], params)[COUNT[stage]]
    x = [float(sizes[size]["counts"][COUNT[stage]]) for size in ran]
    fits = {cost: fit(x, [sizes[size]["stages"][stage][cost] for size in ran], target)
            for cost in ("seconds", "peak_bytes", "output_bytes")}
    cpus = sizes[ran[-1]].get("cpus", 2)
    if stage in PER_CORE and fits["peak_bytes"]["real"] is not None:
        fits["peak_bytes"]["real"] *= max(1.0, KAGGLE["cores"] / cpus)  # a worker per core, at most as large
    gpu = gpu_minutes(stage, params)
    seconds = fits["seconds"]["real"]
    # An untrained model scores 0 under every setting: tune's search stops after its first round, where a trained
    # model's may run them all.
    rounds = params["tune"]["rounds"] if stage == "tune" else 1
    cpu = None if seconds is None else (seconds / 60 * (cpus / KAGGLE["cores"] if stage in PER_CORE else 1),
                                        seconds / 60 * rounds)
    return {"count": COUNT[stage], "measured_counts": x, "real_count": target, "fits": fits,
            "kaggle_minutes": gpu or cpu, "gpu_estimate": gpu is not None}


def _time_limits(stages: dict[str, dict], params: dict) -> tuple[dict[str, float], dict]:
    """The minutes each stage has in a session, and the session's plan: training time, reserve, sessions."""
    settings = params["kaggle_session"]
    reserve, budget, later = settings["reserve_minutes"], settings["time_budget_minutes"], settings["after_training"]
    in_reserve = [n for n in AFTER_TRAINING if n in stages and n not in later]
    high = {name: (row["kaggle_minutes"] or (0.0, 0.0))[1] for name, row in stages.items()}
    before = sum(high.get(name, 0.0) for name in DATA)
    needed = [sum((stages[n]["kaggle_minutes"] or (0.0, 0.0))[i] for n in in_reserve) for i in (0, 1)]
    training = budget - reserve - before
    train = stages.get("train", {}).get("kaggle_minutes")
    sessions = [math.ceil(m / training) + bool(later) for m in train] if train and training > 0 else None
    limits = {name: reserve if name in in_reserve else budget - before - needed[1] if name in later
              else budget - reserve for name in stages}
    return limits, {"reserve_minutes": reserve, "reserve_needed": needed, "in_reserve": in_reserve,
                    "reserve_fits": needed[1] <= reserve, "training_minutes_per_session": training,
                    "versions": sessions}


def verdicts(stages: dict[str, dict], params: dict) -> dict:
    """Per stage: memory against the session's and time against the part of the session it runs in (None: one
    size, not extrapolated); then the reserve as a whole, the versions of the notebook, and the output folder."""
    limits, plan = _time_limits(stages, params)
    found = {}
    for name, row in stages.items():
        memory = row["fits"]["peak_bytes"]["real"]
        if memory is None or row["kaggle_minutes"] is None:
            found[name] = {"fits": None}
            continue
        time_ok = name == "train" or row["kaggle_minutes"][1] <= limits[name]
        found[name] = {"fits": memory <= KAGGLE["memory"] and time_ok and limits[name] > 0,
                       "memory_share": memory / KAGGLE["memory"], "minutes_limit": limits[name]}
    written = [row["fits"]["output_bytes"]["real"] for name, row in stages.items() if name != "download"]
    fullest = None if None in written else sum(written)
    return {"stages": found, **plan, "output_bytes": fullest,
            "output_share": None if fullest is None else fullest / KAGGLE["output"]}


def report(sizes: dict[int, dict], repo: Path) -> dict:
    params = kaggle_params(repo)
    names = [name for name in COUNT if any(name in row["stages"] for row in sizes.values())]
    stages = {name: stage_report(name, sizes, params) for name in names}
    return {"stages": stages, "kaggle": verdicts({n: r for n, r in stages.items() if n != "download"}, params)}


def _cell(row: dict) -> str:
    return f"{row['seconds']:.0f} s, {row['peak_bytes'] / GIB:.2f} GiB, {row['output_bytes'] / 2**20:.1f} MiB"


def _growth(fits: dict) -> str:
    named = (("seconds", "time"), ("peak_bytes", "memory"), ("output_bytes", "disk"))
    shown = [f"{name} {fits[cost]['growth']:.1f}" for cost, name in named if fits[cost]["growth"] is not None]
    return ", ".join(shown) or "–"


def _minutes(span: tuple[float, float] | None) -> str:
    if span is None:
        return "–"
    low, high = span
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}–{high:.0f}"


def _real(value: float | None, unit: float, digits: int) -> str:
    return "–" if value is None else f"{value / unit:.{digits}f} GiB"


def _verdict(name: str, verdict: dict | None, kaggle: dict) -> str:
    if verdict is None:
        return "set-up"
    if verdict["fits"] is None:
        return "not extrapolated"
    if not verdict["fits"]:
        return "**does not fit**"
    return f"fits, {'–'.join(map(str, dict.fromkeys(kaggle['versions'])))} versions" if name == "train" and \
        kaggle["versions"] else "fits"


def markdown(sizes: dict[int, dict], result: dict) -> str:
    """The table of docs/benchmarks.md: each stage at each size, its growth, and its cost at real scale on Kaggle."""
    columns = sorted(sizes)
    lines = ["| stage | " + " | ".join(f"{size:,} images" for size in columns)
             + " | growth | at real scale | Kaggle minutes | peak memory | written | Kaggle |",
             "| --- |" + " --- |" * (len(columns) + 6)]
    kaggle = result["kaggle"]
    for name, row in result["stages"].items():
        cells = [_cell(sizes[size]["stages"][name]) if name in sizes[size]["stages"] else "" for size in columns]
        minutes = _minutes(row["kaggle_minutes"]) + (" (GPU, estimate)" if row["gpu_estimate"] else "")
        fits, verdict = row["fits"], _verdict(name, kaggle["stages"].get(name), kaggle)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_growth(fits)} | {row['real_count']:,.0f} "
                     f"{row['count'].replace('_', ' ')} | {minutes} | {_real(fits['peak_bytes']['real'], GIB, 1)} | "
                     f"{_real(fits['output_bytes']['real'], GIB, 2)} | {verdict} |")
    low, high = kaggle["reserve_needed"]
    lines += ["", f"After training, the reserve of {kaggle['reserve_minutes']:.0f} minutes must hold "
              f"{_minutes((low, high))} minutes ({', '.join(kaggle['in_reserve'])}): "
              f"{'it fits' if kaggle['reserve_fits'] else '**it does not fit**'}."]
    if kaggle["output_bytes"] is not None:
        lines.append(f"The working folder at its fullest, before a session deletes what it regenerates, holds "
                     f"{kaggle['output_bytes'] / GIB:.1f} GiB: {100 * kaggle['output_share']:.0f} % of the "
                     f"{KAGGLE['output'] / 1e9:.0f} GB output.")
    if kaggle["versions"]:
        lines.append(f"A session trains for {kaggle['training_minutes_per_session']:.0f} minutes after its data "
                     f"stages: {'–'.join(map(str, dict.fromkeys(kaggle['versions'])))} versions of the notebook "
                     "in all, the last one for the stages after training.")
    return "\n".join(lines) + "\n"
