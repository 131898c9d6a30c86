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
DataParallel ``module.`` prefix is stripped (``load_cris_checkpoint`` does that).

Choices that differ from the reference, all deliberate:

- Cross-attention padding mask: ``mask_padding=True`` (default) ignores the padded text positions
  (``attention_mask == 0``). ``mask_padding=False`` reproduces the reference, ``input_ids == 0``,
  which masks nothing here because the tokenizer pads with the end token 49407.
- A training batch of one: BatchNorm1d in ``neck.txt_proj`` normalises with its running statistics
  (and leaves them unchanged) instead of raising; weight and bias still train.
- A frozen backbone (train policy "decoder") runs without autograd and with its BatchNorms in eval
  mode, so its running statistics do not drift either.
- ``encode_image``/``encode_text``/``decode`` split the forward for the frozen-encoder feature
  cache; the text output packs words, sentence state and padding mask into one tensor.
- CLIP's ``logit_scale`` is unused by CRIS: it is kept as a buffer (not a parameter) so that
  checkpoints still load strictly and every trainable parameter receives a gradient.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from vlsm_lib import runtime  # noqa: F401  (CPU settings; see runtime.py)
from vlsm_lib.data.transforms import CLIP_MEAN, CLIP_STD, Preprocess
from vlsm_lib.models.base import SegModel, WeightsUnavailable, weights_error
from vlsm_lib.models.tokenizers import ClipBPETokenizer

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


def conv_bn_relu(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    """Conv kxk ("same" padding, no bias) + BatchNorm + ReLU; keys ``0.weight``, ``1.*``."""
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(True))


class BatchNorm1dAnyBatch(nn.BatchNorm1d):
    """BatchNorm1d that accepts a training batch of one by using its running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


def sine_1d(length: int, dim: int) -> torch.Tensor:
    """(length, dim) fixed encoding: channel 2i = sin(p * f_i), 2i+1 = cos(p * f_i)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


def sine_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """(h*w, dim), row-major: the first dim/2 channels encode x (column), the rest y (row)."""
    half = dim // 2
    x_enc = sine_1d(w, half)[None].expand(h, w, half)
    y_enc = sine_1d(h, half)[:, None].expand(h, w, half)
    return torch.cat([x_enc, y_enc], dim=-1).reshape(h * w, dim)


class DenseAttnPool(nn.Module):
    """CLIP's attention pool applied at every position (no class/mean token) plus a residual.

    (B, C, H, W) -> (B, out_dim, H, W) = ReLU(attn(x + pos) + connect(x)). The pretrained
    (grid*grid + 1, C) positional embedding loses its class entry and is resized bicubically to
    H x W. q/k/v/c_proj and ``positional_embedding`` keep the names of CLIP's ``AttentionPool2d``,
    so its weights load unchanged; ``connect`` (conv1x1 without bias + BN) is new in CRIS.
    """

    def __init__(self, grid: int, dim: int, heads: int, out_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, dim) / dim**0.5)
        self.k_proj, self.q_proj, self.v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.c_proj = nn.Linear(dim, out_dim)
        self.num_heads = heads
        self.connect = nn.Sequential(
            nn.Conv2d(dim, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grid = round((self.positional_embedding.shape[0] - 1) ** 0.5)
        pos = self.positional_embedding[1:].t().reshape(1, c, grid, grid)
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        tokens = (x + pos).flatten(2).transpose(1, 2)  # (B, HW, C)

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, HW, C) -> (B, heads, HW, C/heads)
            return t.reshape(b, h * w, self.num_heads, -1).transpose(1, 2)

        q, k, v = heads(self.q_proj(tokens)), heads(self.k_proj(tokens)), heads(self.v_proj(tokens))
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        out = self.c_proj(att).transpose(1, 2).reshape(b, -1, h, w)
        return F.relu(out + self.connect(x))


class CoordConv(nn.Module):
    """Appends x and y coordinate maps in [-1, 1], then conv3x3+BN+ReLU: (B,C,H,W)->(B,out,H,W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = conv_bn_relu(cin + 2, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        coords = torch.stack([gx, gy])[None].expand(b, -1, -1, -1)
        return self.conv1(torch.cat([x, coords], dim=1))


class TextGatedFPN(nn.Module):
    """Multi-modal FPN: fuses v3/v4/v5 at stride 16, gated by the sentence state; returns
    (B, o4, H/16, W/16). Paper: in (c3, c4, c5) = (512, 1024, 1024), out (256, 512, 1024)."""

    def __init__(self, fpn_in: tuple[int, int, int], fpn_out: tuple[int, int, int]):
        super().__init__()
        (c3, c4, c5), (o3, o4, o5) = fpn_in, fpn_out
        self.txt_proj = nn.Sequential(
            nn.Linear(c5, o5, bias=False), BatchNorm1dAnyBatch(o5), nn.ReLU(True)
        )
        self.f1_v_proj = conv_bn_relu(c5, o5, 1)
        self.norm_layer = nn.Sequential(nn.BatchNorm2d(o5), nn.ReLU(True))
        self.f2_v_proj = conv_bn_relu(c4, o4, 3)
        self.f2_cat = conv_bn_relu(o4 + o5, o4, 1)
        self.f3_v_proj = conv_bn_relu(c3, o3, 3)
        self.f3_cat = conv_bn_relu(o3 + o4, o4, 1)
        self.f4_proj5 = conv_bn_relu(o5, o4, 3)
        self.f4_proj4 = conv_bn_relu(o4, o4, 3)
        self.f4_proj3 = conv_bn_relu(o4, o4, 3)
        self.aggr = conv_bn_relu(3 * o4, o4, 1)
        self.coordconv = nn.Sequential(CoordConv(o4, o4), conv_bn_relu(o4, o4, 3))

    def forward(self, v3, v4, v5, state: torch.Tensor) -> torch.Tensor:
        """v3 (B,c3,H/8,W/8), v4 (B,c4,H/16,W/16), v5 (B,c5,H/32,W/32), state (B,c5)."""
        size4 = v4.shape[-2:]

        def up(t: torch.Tensor) -> torch.Tensor:  # stride 32 -> 16, bilinear
            return F.interpolate(t, size=size4, mode="bilinear", align_corners=False)

        gate = self.txt_proj(state)[:, :, None, None]  # (B, o5, 1, 1)
        f5 = self.norm_layer(self.f1_v_proj(v5) * gate)  # (B, o5, H/32, W/32)
        f4 = self.f2_cat(torch.cat([self.f2_v_proj(v4), up(f5)], dim=1))  # (B, o4, H/16, W/16)
        f3 = F.adaptive_avg_pool2d(self.f3_v_proj(v3), size4)  # avg-pool 2: stride 8 -> 16
        f3 = self.f3_cat(torch.cat([f3, f4], dim=1))
        fq = [self.f4_proj3(f3), self.f4_proj4(f4), up(self.f4_proj5(f5))]
        return self.coordconv(self.aggr(torch.cat(fq, dim=1)))


class DecoderLayer(nn.Module):
    """Pre-norm layer: self-attention, cross-attention to the words, FFN; extra post-attn norms."""

    def __init__(self, d: int, heads: int, dim_ffn: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.self_attn_norm, self.cross_attn_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, dim_ffn),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.LayerNorm(dim_ffn),
            nn.Linear(dim_ffn, d),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, vis, words, vis_pos, word_pos, pad_mask):
        """vis (B,N,D), words (B,L,D), vis_pos (N,D), word_pos (L,D), pad_mask (B,L) True=skip."""
        x = self.norm1(vis)
        sa = self.self_attn(x + vis_pos, x + vis_pos, x, need_weights=False)[0]
        vis = vis + self.drop(self.self_attn_norm(sa))
        x = self.norm2(vis)
        ca = self.multihead_attn(
            x + vis_pos, words + word_pos, words, key_padding_mask=pad_mask, need_weights=False
        )[0]
        vis = vis + self.drop(self.cross_attn_norm(ca))
        return vis + self.drop(self.ffn(self.norm3(vis)))


class VLDecoder(nn.Module):
    """(B,D,h,w) visual map + (B,L,D) words -> (B,D,h,w); sine positions, final LayerNorm."""

    def __init__(self, num_layers: int, d: int, heads: int, dim_ffn: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(d, heads, dim_ffn, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d)

    def forward(self, vis, words, pad_mask):
        b, d, h, w = vis.shape
        vis_pos = sine_2d(h, w, d).to(vis)
        word_pos = sine_1d(words.shape[1], words.shape[2]).to(words)
        x = vis.flatten(2).transpose(1, 2)  # (B, h*w, D): the visual tokens are the queries
        for layer in self.layers:
            x = layer(x, words, vis_pos, word_pos, pad_mask)
        return self.norm(x).transpose(1, 2).reshape(b, d, h, w)


class Projector(nn.Module):
    """(B,2c,h,w) map -> up x4 -> (B,c,4h,4w); the state gives each sample's 3x3 kernel + bias."""

    def __init__(self, word_dim: int, c: int, k: int = 3):
        super().__init__()
        self.k = k
        self.vis = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_bn_relu(2 * c, 2 * c, 3),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_bn_relu(2 * c, c, 3),
            nn.Conv2d(c, c, 1),
        )
        self.txt = nn.Linear(word_dim, c * k * k + 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """x (B,2c,h,w), state (B,word_dim) -> logits (B,1,4h,4w)."""
        x = self.vis(x)
        b, c, h, w = x.shape
        params = self.txt(state)  # (B, c*k*k + 1)
        kernel, bias = params[:, :-1].reshape(b, c, self.k, self.k), params[:, -1]
        # one group per sample: (1, B*c, h, w) conv (B, c, k, k) -> (1, B, h, w)
        out = F.conv2d(x.reshape(1, b * c, h, w), kernel, bias, padding=self.k // 2, groups=b)
        return out.reshape(b, 1, h, w)


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

    train_policies = {"all": ("",), "decoder": ("neck.", "decoder.", "proj.")}
    default_policy = "all"  # the reference fine-tuned everything
    encoder_prefixes = ("backbone.",)  # frozen under "decoder": outputs can be cached

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
        return self

    def set_train_policy(self, policy: str) -> CRIS:
        super().set_train_policy(policy)
        return self.train(self.training)

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
        x = clip.token_embedding(input_ids) + clip.positional_embedding[:n]
        words = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:n, :n]))
        eot = words[torch.arange(words.shape[0], device=words.device), input_ids.argmax(dim=-1)]
        if self.mask_padding and attention_mask is not None:
            pad = attention_mask == 0
        else:  # the reference's mask
            pad = input_ids == 0
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
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen("backbone.")):
            # 1. CLIP ResNet: v3, v4 and the dense attention pool's v5 (no autograd if frozen).
            image_features = self.encode_image(pixel_values)
            # 2. CLIP text: words, sentence state and key padding mask, packed in one tensor.
            text_features = self.encode_text(input_ids, attention_mask)
        # 3.-6. Neck, decoder, projector, upsampling (``decode``; also used on cached features).
        return self.decode(image_features, text_features, tuple(pixel_values.shape[-2:]))


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding ``constants.pkl``; torch.save zips are not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") for n in archive.namelist())


def _read_state(path, what: str, hint: str) -> dict[str, torch.Tensor]:
    """A state dict from a TorchScript archive (OpenAI's RN50.pt), safetensors or torch.save
    file; takes ``["state_dict"]`` when present and strips a DataParallel ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"{what} file {str(path)!r} does not exist. {hint}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(path)
        elif _is_torchscript(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        return {k.removeprefix("module."): v for k, v in obj.items()}
    except Exception as err:
        raise WeightsUnavailable(
            f"could not read {what} from {str(path)!r} ({type(err).__name__}: {str(err)[:300]})"
        ) from err


def _load_checked(
    module: nn.Module, state: dict, what: str, fix: str, optional: tuple[str, ...] = ()
) -> None:
    """load_state_dict that names missing/unexpected/mis-shaped keys; ``optional`` may be absent
    (as may BatchNorm's num_batches_tracked, which torch fills in)."""
    own = module.state_dict()
    missing = [
        k
        for k in own
        if k not in state and not k.endswith("num_batches_tracked") and not k.startswith(optional)
    ]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{name} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for name, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", shapes),
            )
            if keys
        ]
        raise WeightsUnavailable(f"{what} does not match the model. {'; '.join(parts)}. {fix}")
    module.load_state_dict(state, strict=False)


def load_cris_checkpoint(model: CRIS, path) -> None:
    """Load a whole-model CRIS checkpoint (CRIS.pytorch key names), every key required."""
    state = _read_state(path, "CRIS checkpoint", CRIS_HINT)
    fix = (
        f"Expected a CRIS RN50 checkpoint (keys backbone.*, neck.*, decoder.*, proj.*, an "
        f"optional 'module.' prefix) for size={model.size!r}; the released RefCOCO "
        "checkpoint needs size='paper'."
    )
    _load_checked(model, state, f"CRIS checkpoint {str(path)!r}", fix)


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
    state = _read_state(source, "CLIP weights", hint)
    state = {k: v for k, v in state.items() if k not in CLIP_META_KEYS}
    _load_checked(
        backbone,
        state,
        f"CLIP weights {str(source)!r}",
        "Expected CLIP RN50 (OpenAI layout); they only fit size='paper'.",
        optional=("visual.attnpool.connect.", "logit_scale"),
    )


def build(
    size: str = "paper",
    weights: str | None = None,
    clip_weights: str | None = None,
    mask_padding: bool = True,
    **_,
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
