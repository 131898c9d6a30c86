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
  than the last extracted one and the pooled heads do not influence the mask and stay frozen);
  ``lora`` / ``adapter`` / ``text_prompt`` / ``visual_prompt`` (``tuning``): the decoder and
  what the policy adds (LoRA on the ViT's fused qkv and BERT's query/key/value; text context
  after [CLS], whose state is pooled; visual prompts after the class token).

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

from vlsm_lib.data.transforms import CLIP_MEAN, CLIP_STD, Preprocess
from vlsm_lib.models import clipseg
from vlsm_lib.models.base import TwoTowerSeg, stable_head_init
from vlsm_lib.models.tokenizers import pretrained_wordpiece, tiny_wordpiece
from vlsm_lib.models.tuning import Sites, with_context
from vlsm_lib.models.weights import (
    load_checked,
    read_checkpoint,
    require_hub_file,
    weights_error,
)

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


class BiomedCLIPSeg(TwoTowerSeg):
    """BiomedCLIP encoders (``self.towers``) + CLIPSeg decoder (``self.decoder``)."""

    default_policy = "decoder"
    encoder_prefixes = ("towers.",)
    vision_prefix, text_prefix = "towers.visual.", "towers.text."

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
        self.train_policies = self.tower_policies(
            decoder="decoder.",
            stem=(
                f"{trunk}patch_embed.",
                f"{trunk}cls_token",
                f"{trunk}pos_embed",
                f"{trunk}norm_pre.",
            ),
            blocks=f"{trunk}blocks.",
            deepest=max(self.extract_blocks),
            text=("towers.text.transformer.", "towers.text.proj."),
        )

    def tuning_sites(self) -> Sites:
        trunk, bert = "towers.visual.trunk.", "towers.text.transformer."
        vision = [f"{trunk}blocks.{i}." for i in range(max(self.extract_blocks) + 1)]
        layers = len(self.towers.text.transformer.encoder.layer)
        text = [f"{bert}encoder.layer.{i}." for i in range(layers)]
        vw = self.towers.visual.trunk.embed_dim
        tw = self.towers.text.transformer.config.hidden_size
        attention = {r: [f"{b}attn.qkv" for b in vision] for r in "qkv"}
        attention["o"] = [f"{b}attn.proj" for b in vision]
        names = {"q": "self.query", "k": "self.key", "v": "self.value", "o": "output.dense"}
        for role, name in names.items():
            attention[role] += [f"{b}attention.{name}" for b in text]
        adapters = [(f"{b}{m}", vw, "token") for b in vision for m in ("attn.proj", "mlp.fc2")]
        adapters += [
            (f"{b}{m}", tw, "token")
            for b in text
            for m in ("attention.output.dense", "output.dense")
        ]
        tapped = [(f"{trunk}blocks.{i}", vw, "token") for i in self.extract_blocks]
        return Sites(attention, adapters, tapped, ("towers.text", tw), ("towers.visual.trunk", vw))

    def feature_config(self) -> dict:
        return {"extract": list(self.extract_blocks)}

    def encode_image(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> outputs of the extracted blocks, each (B, 1 + N, D)."""
        trunk = self.towers.visual.trunk
        x = trunk.norm_pre(trunk.patch_drop(trunk._pos_embed(trunk.patch_embed(pixel_values))))
        prompts = getattr(trunk, "prompt_tokens", None)
        return self.extracted(x, trunk.blocks, self.extract_blocks, prompts)

    def encode_text(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, L) WordPiece tokens -> (B, P) conditional embedding (CLS, MLP projection)."""
        text = self.towers.text
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        context = getattr(text, "prompt_context", None)
        if context is None:
            out = text.transformer(input_ids=input_ids, attention_mask=attention_mask)
        else:  # CoOp: the learnable context after [CLS]
            embeds = text.transformer.embeddings.word_embeddings(input_ids)
            embeds, attention_mask, _ = with_context(embeds, attention_mask, context)
            out = text.transformer(inputs_embeds=embeds, attention_mask=attention_mask)
        return text.proj(text.pooler(out, attention_mask))

    def decode(self, activations: list[torch.Tensor], conditional: torch.Tensor, size):
        """Decoder + head: activations and (B, P) embedding -> (B, 1, H, W) logits."""
        logits = self.decoder(activations, conditional).logits
        side = int(math.isqrt(logits[0].numel()))
        logits = logits.view(conditional.shape[0], 1, side, side)
        return self.to_input_size(logits, tuple(size))


def _pretrained_towers() -> nn.Module:
    """BiomedCLIP through open_clip, complete or not at all.

    Its own files are looked up first, so the error names BiomedCLIP's missing file (open_clip
    would first fail on the BiomedBERT configuration its text tower names). ``require_pretrained``
    makes open_clip refuse a build whose CLIP weights did not load (it otherwise returns towers
    initialised from BiomedBERT's and timm's weights, with a logged warning only).
    """
    import open_clip
    from open_clip.constants import HF_CONFIG_NAME, HF_WEIGHTS_NAME

    require_hub_file(HUB_ID, HF_CONFIG_NAME, "the BiomedCLIP configuration")
    try:
        open_clip.pretrained.download_pretrained_from_hf(HUB_ID)  # safetensors or .bin
    except Exception as err:
        raise weights_error(f"the BiomedCLIP weights ({HF_WEIGHTS_NAME})", HUB_ID, err) from err
    try:
        return open_clip.create_model(f"hf-hub:{HUB_ID}", require_pretrained=True)
    except Exception as err:
        raise weights_error("BiomedCLIP", HUB_ID, err) from err


def _decoder_from_checkpoint(decoder: CLIPSegDecoder, folder: str) -> None:
    """The decoder of a CLIPSeg checkpoint of ours (it trains under every policy, so it is
    always stored) loaded into ``decoder``."""
    meta, state = read_checkpoint(folder)
    if meta.get("name") != "clipseg":
        raise ValueError(f"decoder_weights={folder!r} holds a {meta.get('name')}, not a clipseg")
    prefix = "net.decoder."
    state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    fix = "Use a CLIPSeg checkpoint of the same size as this BiomedCLIPSeg."
    load_checked(decoder, state, f"the CLIPSeg decoder in {folder}", fix)


def build(
    size="paper",
    weights=None,
    pretrained_decoder=False,
    extract_blocks=None,
    head_init="stable",
    decoder_weights=None,
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
        decoder.load_state_dict(clipseg.pretrained_net(clipseg.HUB_ID).decoder.state_dict())
    elif decoder_weights:
        _decoder_from_checkpoint(decoder, decoder_weights)
    elif head_init == "stable":
        stable_head_init(decoder.transposed_convolution)
    blocks = extract_blocks or ((1, 2, 3) if tiny else (3, 6, 9))
    model = BiomedCLIPSeg(towers, decoder, tokenizer, 128 if tiny else 224, blocks, size)
    return model.eval()
