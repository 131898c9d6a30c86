"""Image-only CNN baselines from segmentation_models_pytorch: UNet, UNet++, DeepLabv3+ (ResNet-50).

The reference trains these without text; their ``forward`` ignores
``input_ids`` and ``attention_mask`` so that every model keeps one calling contract.

Departure from the reference: the input is a square 256x256. The reference's ``Resize(256)``
resized the shorter side only, kept the aspect ratio and so could not batch images of different
shapes; squashing to a square is what every other model here does.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch

from vlsm_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from vlsm_lib.models.base import SegModel
from vlsm_lib.models.weights import load_checked, read_state, weights_error

ARCHS = {"unet": smp.Unet, "unetpp": smp.UnetPlusPlus, "deeplabv3plus": smp.DeepLabV3Plus}
# arch -> size -> smp keyword arguments (besides encoder_weights and classes=1).
_UNET_PAPER = {
    "encoder_name": "resnet50",
    "encoder_depth": 5,
    "decoder_channels": (256, 128, 64, 32, 16),
}
_UNET_TINY = {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": (32, 16, 8)}
CONFIGS = {
    "unet": {"paper": _UNET_PAPER, "tiny": _UNET_TINY},
    "unetpp": {"paper": _UNET_PAPER, "tiny": _UNET_TINY},
    "deeplabv3plus": {
        "paper": {
            "encoder_name": "resnet50",
            "encoder_depth": 5,
            "encoder_output_stride": 16,
            "decoder_channels": 256,
            "decoder_atrous_rates": (12, 24, 36),
            "upsampling": 4,
        },
        "tiny": {
            "encoder_name": "resnet18",
            "encoder_depth": 3,
            "encoder_output_stride": 8,
            "decoder_channels": 32,
            "decoder_atrous_rates": (1, 2, 3),
            "upsampling": 4,
        },
    },
}
IMAGE_SIZE = {"paper": (256, 256), "tiny": (64, 64)}  # tiny: a quarter of the CPU cost
ENCODER = "net.encoder."


class CNNSegModel(SegModel):
    """An smp model behind the ``SegModel`` contract; the text inputs are ignored.

    Policies: ``all`` trains everything (the reference); ``decoder`` freezes the encoder. A frozen
    encoder runs under ``torch.no_grad`` and stays in eval mode, so its BatchNorm running
    statistics do not drift either.
    """

    train_policies = {"all": ("",), "decoder": ("net.decoder.", "net.segmentation_head.")}
    default_policy = "all"

    def __init__(self, net: smp.base.SegmentationModel, preprocess: Preprocess, size: str):
        super().__init__(preprocess, threshold=0.5, size=size)
        self.net = net
        self.encoder_frozen = False

    def set_train_policy(self, policy: str) -> CNNSegModel:
        super().set_train_policy(policy)
        self.encoder_frozen = self.frozen(ENCODER)
        return self.train(self.training)

    def train(self, mode: bool = True) -> CNNSegModel:
        super().train(mode)
        if self.encoder_frozen:
            self.net.encoder.eval()
        return self

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """pixel_values (B, 3, H, W) -> logits (B, 1, H, W); H, W multiples of the encoder stride.

        ``input_ids`` and ``attention_mask`` (B, L) are accepted and ignored (image-only model).
        """
        self.net.check_input_shape(pixel_values)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            features = self.net.encoder(pixel_values)
        logits = self.net.segmentation_head(self.net.decoder(features))
        return self.to_input_size(logits, tuple(pixel_values.shape[-2:]))


def _drop_unused_stages(net: smp.base.SegmentationModel, depth: int) -> None:
    """smp keeps ResNet stages deeper than ``encoder_depth``; drop them (they would never train)."""
    for stage in range(depth + 1, 6):  # encoder stage s (2..5) is torchvision's layer{s-1}
        if stage >= 2 and hasattr(net.encoder, f"layer{stage - 1}"):
            delattr(net.encoder, f"layer{stage - 1}")


def _load_whole(net: smp.base.SegmentationModel, path: str, what: str) -> None:
    """A whole state dict (keys of ``CNNSegModel``, ``net.*``, or of the bare smp model)."""
    state = read_state(path, f"{what} weights")
    if state and all(k.startswith("net.") for k in state):
        state = {k.removeprefix("net."): v for k, v in state.items()}
    fix = f"Expected a whole {what} state dict (every key of the model, same shapes)."
    load_checked(net, state, f"state dict {path!r}", fix)


def build(size: str = "paper", weights: str | None = None, arch: str = "unet") -> CNNSegModel:
    """Build a CNN baseline.

    size: "paper" (ResNet-50 encoder, 256x256 input) or "tiny" (ResNet-18 cut to 3 stages,
    small decoder, 64x64 input, random weights). weights: None (random), "pretrained" (ImageNet
    encoder through smp's hub download; paper size only) or a path to a full state dict
    (``.safetensors`` or a ``torch.save`` file).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    cfg = CONFIGS[arch][size]
    what = f"{arch} {cfg['encoder_name']} ({size})"
    if weights == "pretrained" and size == "tiny":
        raise ValueError("size='tiny' has no pretrained weights; use weights=None")
    try:
        net = ARCHS[arch](
            **cfg, classes=1, encoder_weights="imagenet" if weights == "pretrained" else None
        )
    except Exception as err:
        if weights != "pretrained":
            raise
        settings = smp.encoders.encoders[cfg["encoder_name"]]["pretrained_settings"]
        repo = settings["imagenet"]["repo_id"]  # smp-hub/resnet50.imagenet in smp 0.6
        raise weights_error(f"ImageNet {cfg['encoder_name']} encoder", repo, err) from err
    _drop_unused_stages(net, cfg["encoder_depth"])
    if weights not in (None, "pretrained"):
        _load_whole(net, str(weights), what)
    preprocess = Preprocess(IMAGE_SIZE[size], IMAGENET_MEAN, IMAGENET_STD, tokenizer=None)
    return CNNSegModel(net, preprocess, size)
