"""Training: the loop (resumable, one process or one per GPU) and its parts, each tested alone.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "loop": ["Job", "TrainResult", "TrainingDiverged", "train", "DEADLINE_ENV", "PROGRESS"],
        "validation": ["evaluate", "improves", "SCORE"],
        "resume": ["resume_key", "restore"],
        "schedule": ["lr_factor"],
        "meter": ["Meter"],
        "distributed": ["Context"],
        "tracking": ["open_live"],
    },
)
