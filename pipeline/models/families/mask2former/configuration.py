"""The Hugging Face configuration of a Mask2Former, built in code from the ``mask2former`` section: never fetched.

Importing this module sets the Hugging Face hub offline (unless the environment says otherwise) before
transformers loads: the family builds its configuration here and reads weights from local files, and nothing
of it may reach the network (tests/models/test_mask2former.py blocks every socket to prove it).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from transformers import Mask2FormerConfig, ResNetConfig, SwinConfig  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from pipeline.models.families.mask2former.params import Mask2FormerParams  # noqa: E402

STAGES = ["stage1", "stage2", "stage3", "stage4"]  # strides 4, 8, 16, 32: the pixel decoder's inputs
#: ResNets as torchvision shapes them: block type, channels of each stage's output, blocks per stage.
RESNETS = {"resnet18": ("basic", [64, 128, 256, 512], [2, 2, 2, 2]),
           "resnet50": ("bottleneck", [256, 512, 1024, 2048], [3, 4, 6, 3])}
#: The Swins of the public Mask2Former COCO checkpoints: embedding width, blocks and heads per stage, window.
SWINS = {"swin-tiny": (96, [2, 2, 6, 2], [3, 6, 12, 24], 7),
         "swin-small": (96, [2, 2, 18, 2], [3, 6, 12, 24], 7),
         "swin-base": (128, [2, 2, 18, 2], [4, 8, 16, 32], 12),
         "swin-large": (192, [2, 2, 18, 2], [6, 12, 24, 48], 12)}


def backbone_config(name: str) -> ResNetConfig | SwinConfig:
    if name in RESNETS:
        layer_type, widths, depths = RESNETS[name]
        return ResNetConfig(embedding_size=64, hidden_sizes=widths, depths=depths, layer_type=layer_type,
                            out_features=STAGES)
    width, depths, heads, window = SWINS[name]
    return SwinConfig(embed_dim=width, depths=depths, num_heads=heads, window_size=window, drop_path_rate=0.3,
                      out_features=STAGES)


def mask2former_config(settings: Mask2FormerParams, categories: int) -> Mask2FormerConfig:
    """The configuration of a Mask2Former for ``categories`` foreground categories (its no-object class apart)."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # it warns that only Swin is "supported": its ResNet path works alike
    try:
        return Mask2FormerConfig(
            backbone_config=backbone_config(settings.backbone), num_labels=categories,
            num_queries=settings.num_queries, hidden_dim=settings.hidden_dim, feature_size=settings.hidden_dim,
            mask_feature_size=settings.hidden_dim, encoder_layers=settings.encoder_layers,
            decoder_layers=settings.decoder_layers, num_attention_heads=settings.num_heads,
            encoder_feedforward_dim=settings.encoder_feedforward_dim, dim_feedforward=settings.decoder_feedforward_dim,
            train_num_points=settings.train_num_points, class_weight=settings.class_weight,
            mask_weight=settings.mask_weight, dice_weight=settings.dice_weight,
            no_object_weight=settings.no_object_weight, use_auxiliary_loss=True)
    finally:
        hf_logging.set_verbosity(verbosity)
