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

from .rate_bp_vgg import RateBPVGG, vggsnn_cifar, vggsnn_dvs  # noqa: E402  (Rate-BP VGGs)

__all__ += ["RateBPVGG", "vggsnn_cifar", "vggsnn_dvs"]

from .reversible import ReversibleBlock, ReversibleSequence, is_reversible, set_reversible  # noqa: E402  (RevSNN)
from .revs_former import RevSFormer, revsformer_2_256, revsformer_2_384, revsformer_4_384  # noqa: E402
from .revs_resnet import RevSResNet, revs_resnet21, revs_resnet24, revs_resnet37  # noqa: E402

__all__ += [
    "RevSFormer",
    "RevSResNet",
    "ReversibleBlock",
    "ReversibleSequence",
    "is_reversible",
    "revs_resnet21",
    "revs_resnet24",
    "revs_resnet37",
    "revsformer_2_256",
    "revsformer_2_384",
    "revsformer_4_384",
    "set_reversible",
]

from .dsr_vgg import DSRVGG, dsr_vgg11  # noqa: E402  (DSR's DVS-CIFAR10 VGG-11)
from .preact_resnet import PreActBlock, PreActResNet, preact_resnet18, preact_resnet18_imagenet  # noqa: E402  (DSR)

__all__ += ["DSRVGG", "PreActBlock", "PreActResNet", "dsr_vgg11", "preact_resnet18", "preact_resnet18_imagenet"]

from .stbp_resnet import stbp_resnet18  # noqa: E402  (the STBP repository's "ResNet18")

__all__ += ["stbp_resnet18"]

from .feedback import FeedbackSNN, ide_alexnet_f, ide_cifarnet_f, ide_conv, ide_fc  # noqa: E402  (IDE feedback SNNs)

__all__ += ["FeedbackSNN", "ide_alexnet_f", "ide_cifarnet_f", "ide_conv", "ide_fc"]

from .ottt_vgg import OTTTVGG, ottt_vgg11_ws  # noqa: E402  (OTTT's weight-standardised VGG)

__all__ += ["OTTTVGG", "ottt_vgg11_ws"]

from .nf_resnet import SpikingNFResNet, nf_resnet34, nf_resnet50, nf_resnet101  # noqa: E402  (SLTT / OTTT ImageNet NF-ResNets)

__all__ += ["SpikingNFResNet", "nf_resnet34", "nf_resnet50", "nf_resnet101"]

from .sew_resnet import (  # noqa: E402  (SEW ResNets, Fang et al. NeurIPS 2021)
    SEWDVSNet,
    SEWResNet,
    sew_resnet18,
    sew_resnet34,
    sew_resnet50,
    sew_resnet_cifar10dvs,
    sew_resnet_gesture,
)

__all__ += ["SEWDVSNet", "SEWResNet", "sew_resnet18", "sew_resnet34", "sew_resnet50", "sew_resnet_cifar10dvs", "sew_resnet_gesture"]

from .ms_resnet import MSResNet, ms_resnet18, ms_resnet34  # noqa: E402  (MS-ResNet, Hu et al. TNNLS 2024)

__all__ += ["MSResNet", "ms_resnet18", "ms_resnet34"]

from .spikformer import Spikformer, spikformer_4_384, spikformer_8_384, spikformer_dvs  # noqa: E402  (Spikformer, ICLR 2023)
from .spike_driven_transformer import SpikeDrivenTransformer, spike_driven_transformer_2_512  # noqa: E402  (NeurIPS 2023)

__all__ += ["SpikeDrivenTransformer", "Spikformer", "spike_driven_transformer_2_512", "spikformer_4_384", "spikformer_8_384", "spikformer_dvs"]

from .rlif import LeakyIntegratorReadout, RecurrentLIFLayer, RecurrentLIFNet, rlif_snn  # noqa: E402  (sparch's RLIF, 1-D input)

__all__ += ["LeakyIntegratorReadout", "RecurrentLIFLayer", "RecurrentLIFNet", "rlif_snn"]
