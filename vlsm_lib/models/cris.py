"""CRIS, CLIP-driven referring image segmentation (Wang et al., CVPR 2022), RN50 variant.

Written from the architecture description. Shapes at paper size (416x416 input, 77 tokens)::

    image  -> CLIP ModifiedResNet   -> v3 (B,512,52,52)  v4 (B,1024,26,26)  v5 (B,1024,13,13)
    tokens -> CLIP text transformer -> words (B,77,512)  state (B,1024)
    neck(v3, v4, v5, state)         -> (B,512,26,26)   sentence-gated FPN + CoordConv
    decoder(visual tokens, words)   -> (B,512,26,26)   vision-language transformer decoder
    proj(x, state)                  -> (B,1,104,104)   per-sample dynamic 3x3 kernel
    bicubic, align_corners=True     -> (B,1,416,416)   logits; threshold 0.35

Parameter names follow the CRIS.pytorch release (``backbone.visual.*``, ``backbone.transformer.*``,
``neck.*``, ``decoder.*``, ``proj.*``), so its RefCOCO checkpoint loads with strict=True once a
DataParallel ``module.`` prefix is stripped (``models.weights.read_state`` does that).

Choices that differ from the reference, all deliberate:

- Cross-attention padding mask: ``mask_padding=True`` (default) ignores the padded text positions
  (``attention_mask == 0``). ``mask_padding=False`` reproduces the reference, ``input_ids == 0``,
  which masks nothing here because the tokenizer pads with the end token 49407.
- A training batch of one: BatchNorm1d in ``neck.txt_proj`` normalises with its running statistics
  (and leaves them unchanged) instead of raising; weight and bias still train.
- A frozen backbone (train policy "decoder") runs without autograd and with its BatchNorms in eval
  mode, so its running statistics do not drift either; so does a frozen ResNet alone.
- Tuning policies (``tuning``): ``lora`` (CLIP text attention, the dense pool's projections),
  ``adapter`` (text blocks; the ResNet outputs v3, v4 and the pool's v5), ``text_prompt`` (context
  after the start token). No ``visual_prompt``: the ResNet has no token sequence to extend.
- ``encode_image``/``encode_text``/``decode`` split the forward for the frozen-encoder feature
  cache; the text output packs words, sentence state and padding mask into one tensor.
- CLIP's ``logit_scale`` is unused by CRIS: it is kept as a buffer (not a parameter) so that
  checkpoints still load strictly and every trainable parameter receives a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from vlsm_lib.data.transforms import CLIP_MEAN, CLIP_STD, Preprocess
from vlsm_lib.models.base import SegModel
from vlsm_lib.models.cris_parts import DenseAttnPool, Projector, TextGatedFPN, VLDecoder
from vlsm_lib.models.tokenizers import ClipBPETokenizer
from vlsm_lib.models.tuning import Sites, shifted_positions, with_context
from vlsm_lib.models.weights import WeightsUnavailable, load_checked, read_state, weights_error

OPENAI_RN50_URL = open_clip.pretrained.get_pretrained_url("RN50", "openai")
CLIP_META_KEYS = ("input_resolution", "context_length", "vocab_size")  # in OpenAI's RN50.pt
CRIS_HINT = (
    "The CRIS RefCOCO RN50 checkpoint is not on any model hub: download it by hand from the link "
    "the CRIS authors give (https://github.com/DerrickWang005/CRIS.pytorch, README and issues) "
    "and pass the file's path as weights=. weights=None gives a random neck, decoder and projector."
)


@dataclass(frozen=True)
class CRISConfig:
    """Dimensions; the neck's channel lists are derived from them (see ``fpn_in``/``fpn_out``)."""

    embed_dim: int  # CLIP joint dim: attention-pool output channels and sentence state size
    vision_layers: tuple[int, int, int, int]
    vision_width: int  # ResNet stem width; stage outputs have 4x, 8x, 16x, 32x channels
    clip_image_size: int  # CLIP pre-training resolution: attention-pool grid = this // 32
    text_width: int  # also the decoder width: the words enter the decoder unprojected
    text_heads: int
    text_layers: int
    num_layers: int  # decoder layers
    num_heads: int
    dim_ffn: int
    image_size: int  # square network input
    dropout: float = 0.2
    context_length: int = 77
    vocab_size: int = 49408

    @property
    def fpn_in(self) -> tuple[int, int, int]:  # paper: (512, 1024, 1024)
        return (self.vision_width * 8, self.vision_width * 16, self.embed_dim)

    @property
    def fpn_out(self) -> tuple[int, int, int]:  # paper: (256, 512, 1024)
        return (self.text_width // 2, self.text_width, self.embed_dim)


CONFIGS = {
    "paper": CRISConfig(1024, (3, 4, 6, 3), 64, 224, 512, 8, 12, 3, 8, 2048, 416),
    "tiny": CRISConfig(64, (1, 1, 1, 1), 8, 128, 32, 2, 1, 2, 2, 64, 128),
}


def build_clip(cfg: CRISConfig) -> nn.Module:
    """open_clip's CLIP (ModifiedResNet + text transformer, QuickGELU) adapted for CRIS."""
    clip = open_clip.model.CLIP(
        cfg.embed_dim,
        vision_cfg=dict(
            layers=cfg.vision_layers,
            width=cfg.vision_width,
            image_size=cfg.clip_image_size,
            patch_size=None,
        ),
        text_cfg=dict(
            context_length=cfg.context_length,
            vocab_size=cfg.vocab_size,
            width=cfg.text_width,
            heads=cfg.text_heads,
            layers=cfg.text_layers,
        ),
        quick_gelu=True,
    )
    old = clip.visual.attnpool
    pool = DenseAttnPool(
        cfg.clip_image_size // 32, old.q_proj.in_features, old.num_heads, cfg.embed_dim
    )
    pool.load_state_dict(old.state_dict(), strict=False)  # keep CLIP's init; connect is new
    clip.visual.attnpool = pool
    scale = clip.logit_scale.detach().clone()
    del clip.logit_scale
    clip.register_buffer("logit_scale", scale)  # unused; kept for strict checkpoint loading
    return clip


class CRIS(SegModel):
    """``forward(pixel_values (B,3,H,W), input_ids (B,L), attention_mask (B,L)) -> (B,1,H,W)``.

    H and W should be multiples of 32. ``mask_padding``: True masks ``attention_mask == 0`` in the
    cross-attention; False is the reference's ``input_ids == 0`` (masks nothing when padding is
    49407). See the module docstring for the other choices.
    """

    _head = ("neck.", "decoder.", "proj.")
    train_policies = {
        "all": ("",),
        "decoder": _head,
        **dict.fromkeys(("lora", "adapter", "shallow_adapter", "text_prompt"), _head),
    }
    default_policy = "all"  # the reference fine-tuned everything
    encoder_prefixes = ("backbone.",)  # frozen under "decoder": outputs can be cached
    vision_prefix = "backbone.visual."
    text_prefix = tuple(
        f"backbone.{n}"
        for n in ("token_embedding", "positional_embedding", "transformer.", "ln_final", "text_")
    )

    def __init__(
        self,
        cfg: CRISConfig,
        preprocess: Preprocess,
        threshold: float = 0.35,
        size: str = "tiny",
        mask_padding: bool = True,
    ):
        super().__init__(preprocess, threshold, size)
        self.cfg, self.mask_padding = cfg, mask_padding
        self.backbone = build_clip(cfg)
        self.neck = TextGatedFPN(cfg.fpn_in, cfg.fpn_out)
        self.decoder = VLDecoder(
            cfg.num_layers, cfg.text_width, cfg.num_heads, cfg.dim_ffn, cfg.dropout
        )
        self.proj = Projector(cfg.embed_dim, cfg.text_width // 2)

    def train(self, mode: bool = True) -> CRIS:
        super().train(mode)
        if mode and self.frozen("backbone."):
            self.backbone.eval()  # frozen: BatchNorm uses and keeps its running statistics
        elif mode and self.frozen(self.vision_prefix):
            self.backbone.visual.eval()  # the same for the ResNet alone (text_prompt)
        return self

    def set_train_policy(self, policy: str, **options) -> CRIS:
        super().set_train_policy(policy, **options)
        return self.train(self.training)

    def tuning_sites(self) -> Sites:
        cfg, text = self.cfg, "backbone.transformer.resblocks."
        blocks = [f"{text}{i}." for i in range(cfg.text_layers)]
        pool = "backbone.visual.attnpool."
        attention = {r: [f"{b}attn" for b in blocks] for r in "qkvo"}  # fused in/out projections
        for role, name in zip("qkvo", ("q_proj", "k_proj", "v_proj", "c_proj")):
            attention[role].append(f"{pool}{name}")
        adapters = [
            (f"{b}{m}", cfg.text_width, "token") for b in blocks for m in ("attn", "mlp.c_proj")
        ]
        # the last bottleneck of the stages that give v3 and v4 (a Sequential cannot host one)
        last = [
            len(stage) - 1 for stage in (self.backbone.visual.layer2, self.backbone.visual.layer3)
        ]
        maps = [  # what the decoder reads: v3, v4, v5
            (f"backbone.visual.layer2.{last[0]}", cfg.fpn_in[0], "map"),
            (f"backbone.visual.layer3.{last[1]}", cfg.fpn_in[1], "map"),
            ("backbone.visual.attnpool", cfg.embed_dim, "map"),
        ]
        text = ("backbone.transformer", cfg.text_width)
        return Sites(attention, adapters + maps, maps, text, None)

    def feature_config(self) -> dict:
        return {"mask_padding": bool(self.mask_padding)}

    def encode_image(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """(B,3,H,W) -> [v3 (B,8w,H/8,W/8), v4 (B,16w,H/16,W/16), v5 (B,embed,H/32,W/32)]."""
        vis = self.backbone.visual
        v3 = vis.layer2(vis.layer1(vis.stem(pixel_values)))
        v4 = vis.layer3(v3)
        return [v3, v4, vis.attnpool(vis.layer4(v4))]

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """(B,L) -> (B, L*width + embed + L), packing for the feature cache (``unpack_text``):
        words (B,L,width) = ln_final output; state (B,embed) = EOT hidden state @ text_projection
        (the EOT is the first argmax of the ids); the key padding mask (B,L) as 0/1."""
        clip, n = self.backbone, input_ids.shape[1]
        if self.mask_padding and attention_mask is not None:
            pad = attention_mask == 0
        else:  # the reference's mask
            pad = input_ids == 0
        # text_prompt: learnable context after the start token (CoOp); the length stays n
        context = getattr(clip.transformer, "prompt_context", None)
        x, keep, m = with_context(clip.token_embedding(input_ids), (~pad).long(), context)
        pad = keep == 0
        x = x + clip.positional_embedding[:n]
        words = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:n, :n]))
        at = shifted_positions(input_ids.argmax(dim=-1), m, n)
        eot = words[torch.arange(words.shape[0], device=words.device), at]
        pad = pad & ~pad.all(dim=1, keepdim=True)  # an all-masked row would give NaN attention
        parts = [words.flatten(1), eot @ clip.text_projection, pad.to(words.dtype)]
        return torch.cat(parts, dim=1)

    def unpack_text(self, text: torch.Tensor):
        """encode_text's output -> words (B,L,width), state (B,embed), pad (B,L) bool."""
        width, embed = self.cfg.text_width, self.cfg.embed_dim
        n = (text.shape[1] - embed) // (width + 1)
        words, state, pad = text.split([n * width, embed, n], dim=1)
        return words.reshape(-1, n, width), state, pad > 0.5

    def decode(
        self, image_features: list[torch.Tensor], text_features: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """Encoder outputs -> logits (B,1,*size): neck, decoder, projector, upsampling."""
        v3, v4, v5 = image_features
        words, state, pad = self.unpack_text(text_features)
        # 3. Sentence-gated FPN: (B, 512, H/16, W/16).
        fq = self.neck(v3, v4, v5, state)
        # 4. Vision-language decoder: visual tokens attend to the unpadded words; same shape.
        fq = self.decoder(fq, words, pad)
        # 5. Projector with the per-sample dynamic kernel: (B, 1, H/4, W/4).
        logits = self.proj(fq, state)
        # 6. Bicubic (align_corners=True) to the input size: (B, 1, H, W).
        return F.interpolate(logits, size=size, mode="bicubic", align_corners=True)

    def forward(self, pixel_values, input_ids, attention_mask):
        grad = torch.is_grad_enabled()
        # 1. CLIP ResNet: v3, v4 and the dense attention pool's v5 (no autograd if frozen).
        with torch.set_grad_enabled(grad and not self.frozen(self.vision_prefix)):
            image_features = self.encode_image(pixel_values)
        # 2. CLIP text: words, sentence state and key padding mask, packed in one tensor.
        with torch.set_grad_enabled(grad and not self.frozen(self.text_prefix)):
            text_features = self.encode_text(input_ids, attention_mask)
        # 3.-6. Neck, decoder, projector, upsampling (``decode``; also used on cached features).
        return self.decode(image_features, text_features, tuple(pixel_values.shape[-2:]))


def load_cris_checkpoint(model: CRIS, path) -> None:
    """Load a whole-model CRIS checkpoint (CRIS.pytorch key names), every key required."""
    state = read_state(path, "CRIS checkpoint", CRIS_HINT)
    fix = (
        f"Expected a CRIS RN50 checkpoint (keys backbone.*, neck.*, decoder.*, proj.*, an "
        f"optional 'module.' prefix) for size={model.size!r}; the released RefCOCO "
        "checkpoint needs size='paper'."
    )
    load_checked(model, state, f"CRIS checkpoint {str(path)!r}", fix)


def load_clip_weights(backbone: nn.Module, source: str) -> None:
    """CLIP RN50 weights into ``backbone``: "openai" (open_clip download) or a local file."""
    hint = (
        f"Pass clip_weights='openai' (an open_clip download) or the path of OpenAI's "
        f"RN50.pt ({OPENAI_RN50_URL}) or of a CLIP RN50 state dict."
    )
    if source == "openai":
        try:
            cfg = open_clip.pretrained.get_pretrained_cfg("RN50", "openai")
            source = open_clip.pretrained.download_pretrained(cfg)
            if not source:
                raise FileNotFoundError("open_clip returned no file")
        except Exception as err:
            error = weights_error("OpenAI CLIP RN50 weights", "timm/resnet50_clip.openai", err)
            raise WeightsUnavailable(f"{error} For CRIS's CLIP: {hint}") from err
    state = read_state(source, "CLIP weights", hint)
    state = {k: v for k, v in state.items() if k not in CLIP_META_KEYS}
    # CRIS's own additions to CLIP (the dense pool's residual) and CLIP's unused logit scale
    # need not be in a CLIP file.
    optional = ("visual.attnpool.connect.", "logit_scale")
    required = [k for k in backbone.state_dict() if not k.startswith(optional)]
    required = [k for k in required if not k.endswith("num_batches_tracked")]
    fix = "Expected CLIP RN50 (OpenAI layout); they only fit size='paper'."
    load_checked(backbone, state, f"CLIP weights {str(source)!r}", fix, required)


def build(
    size: str = "paper",
    weights: str | None = None,
    clip_weights: str | None = None,
    mask_padding: bool = True,
) -> CRIS:
    """CRIS at ``size`` "paper" (RN50, 416x416) or "tiny" (same classes, small dims, 128x128).

    clip_weights: None (random), "openai" (open_clip download of OpenAI's RN50) or a local file
        (TorchScript RN50.pt, state dict, or safetensors).
    weights: None (random neck/decoder/projector) or the path of a CRIS checkpoint, which then
        replaces every weight (as the reference did). "pretrained" is not available from a hub.
    """
    if size not in CONFIGS:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(CONFIGS)}")
    if weights == "pretrained":
        raise WeightsUnavailable(f"weights='pretrained' is not available for CRIS. {CRIS_HINT}")
    cfg = CONFIGS[size]
    preprocess = Preprocess(
        image_size=(cfg.image_size, cfg.image_size),
        mean=CLIP_MEAN,
        std=CLIP_STD,
        tokenizer=ClipBPETokenizer(),
        context_length=cfg.context_length,
    )
    model = CRIS(cfg, preprocess, threshold=0.35, size=size, mask_padding=mask_padding)
    if clip_weights is not None:
        load_clip_weights(model.backbone, clip_weights)
    if weights is not None:
        load_cris_checkpoint(model, weights)
    return model
