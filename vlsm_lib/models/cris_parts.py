"""CRIS's building blocks (RN50 variant): the dense attention pool, the sentence-gated FPN
neck, the vision-language decoder and the dynamic-kernel projector. ``cris.py`` assembles them.

Parameter names follow the CRIS.pytorch release, so its checkpoints load unchanged; shapes at
paper size are listed in ``cris.py``'s module docstring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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
