"""BiomedCLIPSeg and BiomedCLIPSeg-D: BiomedCLIP towers (open_clip) feeding a CLIPSeg decoder.

- Vision: BiomedCLIP's timm ViT-B/16 at 224 px. The activations of three blocks feed the
  decoder. Default blocks 3, 6, 9 (0-based), the blocks HF CLIPSeg reads; the reference read
  4, 7, 10 because its "+1 for embeddings" index was applied to a list without the embedding
  output. ``extract_blocks=(4, 7, 10)`` reproduces it.
- Text: PubMedBERT (context 256), CLS token of the last hidden state, MLP projection to 512: the
  FiLM conditioning vector. Padding is masked through the attention mask.
- Decoder: HF's ``CLIPSegDecoder`` with rd64-refined's settings, randomly initialised
  (BiomedCLIPSeg) or, with ``weights="pretrained"``, BiomedCLIPSeg-D's pretrained CLIPSeg decoder
  (trained on CLIP ViT-B/16 features, an initialisation here).
- ``train="decoder"`` (default, what the reference trained: it ran the vision tower under
  ``inference_mode`` and froze the towers) or ``train="all"`` (both towers too; blocks deeper
  than the last extracted one and the pooled heads do not influence the mask and stay frozen).

Offline, the towers are assembled with open_clip's ``CustomTextCLIP`` from BiomedCLIP's
configuration; ``weights="pretrained"`` loads the public model through open_clip's hub loader.
"""

from __future__ import annotations

import math
import tempfile

import torch
from torch import nn
from transformers import BertConfig, CLIPSegConfig
from transformers.models.clipseg.modeling_clipseg import CLIPSegDecoder

from vlsm_lib import runtime  # noqa: F401  (CPU settings; see runtime.py)
from vlsm_lib.data.transforms import CLIP_MEAN, CLIP_STD, Preprocess
from vlsm_lib.models import clipseg
from vlsm_lib.models.base import SegModel, stable_head_init, weights_error
from vlsm_lib.models.tokenizers import pretrained_wordpiece, tiny_wordpiece

HUB_ID = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
TOKENIZER_ID = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
CONTEXT = 256


def _towers(bert: BertConfig, timm_name: str, embed_dim: int, image_size: int) -> nn.Module:
    """open_clip CustomTextCLIP with BiomedCLIP's layout, built without the network."""
    from open_clip.model import CustomTextCLIP

    with tempfile.TemporaryDirectory() as bert_dir:  # HFTextEncoder reads a config folder
        bert.save_pretrained(bert_dir)
        return CustomTextCLIP(
            embed_dim=embed_dim,
            vision_cfg={
                "timm_model_name": timm_name,
                "timm_model_pretrained": False,
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": image_size,
            },
            text_cfg={
                "hf_model_name": bert_dir,
                "hf_model_pretrained": False,
                "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": CONTEXT,
            },
        )


def paper_towers() -> nn.Module:
    bert = BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
    return _towers(bert, "vit_base_patch16_224", 512, 224)


def tiny_towers(vocab_size: int) -> nn.Module:
    """Same classes at toy width: a 5-block, 48-wide ViT and a 2-layer, 32-wide BERT."""
    from timm.models.vision_transformer import VisionTransformer

    bert = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=CONTEXT,
    )
    towers = _towers(bert, "vit_tiny_patch16_224", 32, 128)
    towers.visual.trunk = VisionTransformer(
        img_size=128,
        patch_size=16,
        embed_dim=48,
        depth=5,
        num_heads=4,
        mlp_ratio=2.0,
        num_classes=0,
    )
    towers.visual.head.proj = nn.Linear(48, 32, bias=False)
    return towers


def decoder_config(vision_width: int, projection_dim: int, tiny: bool) -> CLIPSegConfig:
    """rd64-refined's decoder settings over the given vision width and embedding size."""
    cfg = clipseg.tiny_config() if tiny else clipseg.paper_config()
    cfg.vision_config.hidden_size = vision_width
    cfg.projection_dim = projection_dim
    cfg._attn_implementation = "sdpa"  # what CLIPSeg's own decoder uses; unset, HF warns
    return cfg


class BiomedCLIPSeg(SegModel):
    """BiomedCLIP encoders (``self.towers``) + CLIPSeg decoder (``self.decoder``)."""

    default_policy = "decoder"
    encoder_prefixes = ("towers.",)

    def __init__(self, towers, decoder, tokenizer, image_size, extract_blocks, size):
        pre = Preprocess((image_size, image_size), CLIP_MEAN, CLIP_STD, tokenizer, CONTEXT)
        super().__init__(pre, threshold=0.5, size=size)
        self.towers, self.decoder = towers, decoder
        depth = len(towers.visual.trunk.blocks)
        if len(extract_blocks) != 3 or max(extract_blocks) >= depth:
            raise ValueError(
                f"extract_blocks must be 3 block indices below {depth}, got {extract_blocks}"
            )
        self.extract_blocks = tuple(extract_blocks)
        trunk = "towers.visual.trunk."
        self.train_policies = {
            "decoder": ("decoder.",),
            "all": (
                f"{trunk}patch_embed.",
                f"{trunk}cls_token",
                f"{trunk}pos_embed",
                f"{trunk}norm_pre.",
                *(f"{trunk}blocks.{i}." for i in range(max(self.extract_blocks) + 1)),
                "towers.text.transformer.",
                "towers.text.proj.",
                "decoder.",
            ),
        }

    def encode_image(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> outputs of the extracted blocks, each (B, 1 + N, D)."""
        trunk = self.towers.visual.trunk
        x = trunk.norm_pre(trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(pixel_values))))
        outputs = []
        for block in trunk.blocks[: max(self.extract_blocks) + 1]:
            x = block(x)
            outputs.append(x)
        return [outputs[i] for i in self.extract_blocks]

    def encode_text(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, L) WordPiece tokens -> (B, P) conditional embedding (CLS, MLP projection)."""
        text = self.towers.text
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        out = text.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return text.proj(text.pooler(out, attention_mask))

    def forward(self, pixel_values, input_ids, attention_mask=None) -> torch.Tensor:
        grad = torch.is_grad_enabled()
        # step 1: ViT block activations, with a graph only if the vision tower trains
        with torch.set_grad_enabled(grad and not self.frozen("towers.visual.")):
            activations = self.encode_image(pixel_values)
        # step 2: the BERT sentence embedding conditions the decoder (FiLM)
        with torch.set_grad_enabled(grad and not self.frozen("towers.text.")):
            conditional = self.encode_text(input_ids, attention_mask)
        # step 3: CLIPSeg decoder; 14 x 14 tokens at 224 px come back x16 to the input size
        return self.decode(activations, conditional, tuple(pixel_values.shape[-2:]))

    def decode(self, activations: list[torch.Tensor], conditional: torch.Tensor, size):
        """Decoder + head: activations and (B, P) embedding -> (B, 1, H, W) logits."""
        logits = self.decoder(activations, conditional).logits
        side = int(math.isqrt(logits[0].numel()))
        logits = logits.view(conditional.shape[0], 1, side, side)
        return self.to_input_size(logits, tuple(size))


def _pretrained_towers() -> nn.Module:
    import open_clip

    try:
        return open_clip.create_model(f"hf-hub:{HUB_ID}")
    except Exception as err:
        raise weights_error("BiomedCLIP", HUB_ID, err) from err


def _pretrained_decoder(decoder: CLIPSegDecoder, source: str) -> None:
    from transformers import CLIPSegForImageSegmentation

    try:
        state = CLIPSegForImageSegmentation.from_pretrained(source).decoder.state_dict()
    except Exception as err:
        raise weights_error("the CLIPSeg rd64-refined decoder", source, err) from err
    decoder.load_state_dict(state)


def _decoder_from_checkpoint(decoder: CLIPSegDecoder, folder: str) -> None:
    from vlsm_lib.checkpoint import load_checkpoint

    donor = load_checkpoint(folder)
    if donor.name != "clipseg":
        raise ValueError(f"decoder_weights={folder!r} holds a {donor.name}, not a clipseg model")
    try:
        decoder.load_state_dict(donor.net.decoder.state_dict())
    except RuntimeError as err:
        raise ValueError(
            f"the CLIPSeg decoder in {folder} does not fit this BiomedCLIPSeg "
            f"(sizes differ): {str(err)[:300]}"
        ) from err


def build(
    size="paper",
    weights=None,
    pretrained_decoder=False,
    extract_blocks=None,
    head_init="stable",
    decoder_weights=None,
    **_,
):
    """BiomedCLIPSeg(-D). Paper: 224 px, BiomedCLIP; tiny: 128 px, random, offline.

    Args:
        weights: None (random towers and decoder) or "pretrained" (BiomedCLIP; with
            ``pretrained_decoder`` also CLIPSeg rd64-refined's decoder, i.e. BiomedCLIPSeg-D).
        extract_blocks: ViT blocks read by the decoder; default (3, 6, 9) at paper size,
            (1, 2, 3) at tiny size; the reference's off-by-one is (4, 7, 10) / (2, 3, 4).
        head_init: for a random decoder, "stable" (``base.stable_head_init``, default) or "hf"
            (HF's default initialisation, as the reference; it stalls training from scratch).
        decoder_weights: a CLIPSeg checkpoint folder of this library whose decoder initialises
            ours: BiomedCLIPSeg-D at tiny size (the demo's CLIPSeg pretrained on synth_shapes).
    """
    tiny = size == "tiny"
    if tiny and weights is not None:
        raise ValueError("tiny BiomedCLIPSeg has no public weights; use weights=None")
    if weights not in (None, "pretrained"):
        raise ValueError(f"weights must be None or 'pretrained', got {weights!r}")
    if tiny:
        tokenizer = tiny_wordpiece()
        towers = tiny_towers(tokenizer.vocab_size)
    elif weights == "pretrained":
        towers = _pretrained_towers()
        try:
            tokenizer = pretrained_wordpiece(TOKENIZER_ID)
        except Exception as err:
            raise weights_error("the PubMedBERT tokenizer", TOKENIZER_ID, err) from err
    else:
        # Random towers offline; PubMedBERT's vocabulary is not at hand, so a small WordPiece
        # vocabulary stands in (the architecture, and so the parameter count, is unchanged).
        towers, tokenizer = paper_towers(), tiny_wordpiece()
    width = towers.visual.trunk.embed_dim
    decoder = CLIPSegDecoder(decoder_config(width, towers.text.output_dim, tiny))
    if pretrained_decoder and weights == "pretrained":
        _pretrained_decoder(decoder, clipseg.HUB_ID)
    elif decoder_weights:
        _decoder_from_checkpoint(decoder, decoder_weights)
    elif head_init == "stable":
        stable_head_init(decoder.transposed_convolution)
    blocks = extract_blocks or ((1, 2, 3) if tiny else (3, 6, 9))
    model = BiomedCLIPSeg(towers, decoder, tokenizer, 128 if tiny else 224, blocks, size)
    return model.eval()
