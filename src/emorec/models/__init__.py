"""Backbones for emotion recognition: plain-torch MobileNetV2 and EfficientNet-Lite0 that
load the ImageNet weight files as they are, behind one timm-style interface.

    model = create_model("mobilenet_v2", num_classes=5, pretrained=True, in_chans=1)
    set_trainable(model, 0)  # head only; later set_trainable(model, 8) for fine-tuning
"""
from emorec.models.base import Backbone, set_trainable
from emorec.models.registry import create_model, list_models, register_model
from emorec.models import efficientnet_lite, mobilenet_v2  # noqa: F401  (register the models)
from emorec.models.weights import find_weights, load_pretrained

__all__ = ["Backbone", "create_model", "find_weights", "list_models", "load_pretrained", "register_model", "set_trainable"]
