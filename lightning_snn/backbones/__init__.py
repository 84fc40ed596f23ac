"""Spiking backbones, registered by name: ``create_backbone("resnet19", num_classes=10, ...)``."""
from .cifarnet import CifarNet, MNISTNet
from .layers import Flatten, SpikingBackbone, TimeDistributed, conv_bn, make_norm
from .registry import create_backbone, get_backbone_fn, list_backbones, register_backbone
from .resnet import SpikingBasicBlock, SpikingResNet, resnet18, resnet19
from .vgg import VGGSNN

__all__ = [
    "CifarNet",
    "Flatten",
    "MNISTNet",
    "SpikingBackbone",
    "SpikingBasicBlock",
    "SpikingResNet",
    "TimeDistributed",
    "VGGSNN",
    "conv_bn",
    "create_backbone",
    "get_backbone_fn",
    "list_backbones",
    "make_norm",
    "register_backbone",
    "resnet18",
    "resnet19",
]
