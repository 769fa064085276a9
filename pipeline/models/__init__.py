"""Model families: the contract they all follow, the registry that picks one, and the built-in families.

Each built-in family is a package of its own (``maskrcnn``, ``unet``, ``yolact``), imported only when a run uses
it: a change to one family's code changes neither another family's DVC stages nor its checkpoints' keys.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "contract": ["DetectionModel", "MaskFormat", "MaskKind"],
        "registry": ["Family", "FamilyError", "ModelConfig", "family", "load", "register"],
        "weights": ["WeightsError", "load_matching", "load_resnet", "read_state_dict"],
        "batching": ["padded_batch"],
        "layout": ["backbone_of", "speed_up"],
    },
)
