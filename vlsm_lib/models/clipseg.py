"""CLIPSeg (HF ``CLIPSegForImageSegmentation``) with a forward that trains what it says.

HF's forward runs the CLIP vision tower and the text tower under ``torch.no_grad()``, so the
reference's "unfrozen" CLIPSeg trained only its decoder (about 1.13 M parameters). Here the same
three steps run with autograd wherever a parameter is trainable:

- ``train="decoder"`` (the default, faithful to the paper): FiLM, projections, decoder layers and
  the transposed-convolution head train; both CLIP towers run without a graph.
- ``train="all"``: every parameter that takes part in the forward trains, the CLIP vision blocks
  up to the deepest extracted layer and the text tower included. Blocks deeper than the last
  extracted layer, the pooled-output layer norm, the visual projection and the logit scale never
  influence the mask; they are not run and stay frozen.
- ``lora``, ``adapter``, ``text_prompt``, ``visual_prompt``: the decoder and the parameters the
  policy adds to the towers (``tuning``); visual prompts enter after the pre-layer-norm, text
  context after the start token (the end token, whose state is pooled, moves with it).

Logits equal HF's forward on the same inputs (tested).
"""

from __future__ import annotations

import torch
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation
from transformers.initialization import no_init_weights
from transformers.masking_utils import create_causal_mask

from vlsm_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from vlsm_lib.models.base import TwoTowerSeg, stable_head_init
from vlsm_lib.models.tokenizers import ClipBPETokenizer
from vlsm_lib.models.tuning import Sites, shifted_positions, with_context
from vlsm_lib.models.weights import WeightsMismatch, weights_error

HUB_ID = "CIDAS/clipseg-rd64-refined"
PAPER_SIZE = 352


def paper_config() -> CLIPSegConfig:
    """rd64-refined: CLIP ViT-B/16 (768 wide, 12 blocks), 512-d text, reduce 64, layers 3/6/9."""
    return CLIPSegConfig(
        text_config={
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_attention_heads": 8,
            "num_hidden_layers": 12,
            "max_position_embeddings": 77,
            "vocab_size": 49408,
        },
        vision_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "patch_size": 16,
            "image_size": 224,
        },
        projection_dim=512,
        extract_layers=[3, 6, 9],
        reduce_dim=64,
        conditional_layer=0,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=2048,
        use_complex_transposed_convolution=True,
    )


def tiny_config() -> CLIPSegConfig:
    """The same structure at toy width: 5 vision blocks (layers 1/2/3 extracted), 2 text blocks."""
    return CLIPSegConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "vocab_size": 49408,
        },
        vision_config={
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_attention_heads": 4,
            "num_hidden_layers": 5,
            "patch_size": 16,
            "image_size": 128,
        },
        projection_dim=32,
        extract_layers=[1, 2, 3],
        reduce_dim=16,
        conditional_layer=0,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        use_complex_transposed_convolution=True,
    )


class CLIPSeg(TwoTowerSeg):
    """CLIPSeg over an HF ``CLIPSegForImageSegmentation`` held as ``self.net``."""

    default_policy = "decoder"
    encoder_prefixes = ("net.clip.",)
    vision_prefix, text_prefix = "net.clip.vision_model.", "net.clip.text"

    def __init__(self, net: CLIPSegForImageSegmentation, image_size: int, size: str):
        pre = Preprocess(
            (image_size, image_size),
            IMAGENET_MEAN,
            IMAGENET_STD,
            ClipBPETokenizer(),
            net.config.text_config.max_position_embeddings,
        )
        super().__init__(pre, threshold=0.5, size=size)
        self.net = net
        self.extract_layers = list(net.config.extract_layers)
        vision = "net.clip.vision_model."
        self.train_policies = self.tower_policies(
            decoder="net.decoder.",
            stem=(f"{vision}embeddings.", f"{vision}pre_layrnorm."),
            blocks=f"{vision}encoder.layers.",
            deepest=max(self.extract_layers),
            text=("net.clip.text_model.", "net.clip.text_projection."),
        )

    def tuning_sites(self) -> Sites:
        clip = "net.clip."
        vision = [
            f"{clip}vision_model.encoder.layers.{i}." for i in range(max(self.extract_layers) + 1)
        ]
        text = [
            f"{clip}text_model.encoder.layers.{i}."
            for i in range(len(self.net.clip.text_model.encoder.layers))
        ]
        blocks = vision + text
        width = {b: self.net.config.vision_config.hidden_size for b in vision}
        width |= {b: self.net.config.text_config.hidden_size for b in text}
        return Sites(
            attention={
                r: [f"{b}self_attn.{'out' if r == 'o' else r}_proj" for b in blocks] for r in "qkvo"
            },
            adapters=[
                (f"{b}{m}", width[b], "token")
                for b in blocks
                for m in ("self_attn.out_proj", "mlp.fc2")
            ],
            tapped=[
                (f"{clip}vision_model.encoder.layers.{i}", width[vision[0]], "token")
                for i in self.extract_layers
            ],
            text_host=(f"{clip}text_model", self.net.config.text_config.hidden_size),
            vision_host=(f"{clip}vision_model", self.net.config.vision_config.hidden_size),
        )

    def feature_config(self) -> dict:
        return {"extract": list(self.extract_layers)}

    def encode_image(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> outputs of the extracted ViT blocks, each (B, 1 + N, D)."""
        vm = self.net.clip.vision_model
        hidden = vm.pre_layrnorm(vm.embeddings(pixel_values, interpolate_pos_encoding=True))
        prompts = getattr(vm, "prompt_tokens", None)
        return self.extracted(
            hidden, vm.encoder.layers, self.extract_layers, prompts, attention_mask=None
        )

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        """(B, L) tokens -> (B, projection_dim) conditional embedding (FiLM input)."""
        tm = self.net.clip.text_model
        context = getattr(tm, "prompt_context", None)
        if context is None:
            if attention_mask is not None:
                # Causal attention: no token after the batch's longest prompt reaches an end
                # token HF pools, so the shared padding is not computed (3-4x less text work for
                # P0-P9's 77-token contexts). Exact in arithmetic; the rounding of sums over a
                # shorter sequence differs in the last bits from the full-length forward.
                n = int(attention_mask.sum(dim=1).max())
                input_ids, attention_mask = input_ids[:, :n], attention_mask[:, :n]
            return self.net.clip.get_text_features(
                input_ids, attention_mask=attention_mask
            ).pooler_output
        # CoOp: HF's text forward in steps, the learnable context after the start token.
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = tm.embeddings.token_embedding(input_ids)
        embeds, attention_mask, m = with_context(embeds, attention_mask, context)
        length = embeds.shape[1]
        hidden = embeds + tm.embeddings.position_embedding(tm.embeddings.position_ids[:, :length])
        mask = create_causal_mask(
            config=tm.config, inputs_embeds=hidden, attention_mask=attention_mask, cache=None
        )
        hidden = tm.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True)
        hidden = tm.final_layer_norm(hidden.last_hidden_state)
        # the end token's first position: the highest id, what HF pools
        eot = shifted_positions(input_ids.argmax(dim=-1), m, length)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eot]
        return self.net.clip.text_projection(pooled)

    def decode(
        self, activations: list[torch.Tensor], conditional: torch.Tensor, size
    ) -> torch.Tensor:
        """Decoder + head: activations and (B, P) embedding -> (B, 1, H, W) logits."""
        logits = self.net.decoder(activations, conditional).logits
        return self.to_input_size(logits.view(conditional.shape[0], 1, *logits.shape[-2:]), size)


def build(size: str = "paper", weights: str | None = None, head_init: str = "stable"):
    """CLIPSeg at paper size (352 px; ``weights="pretrained"`` = rd64-refined) or tiny (128 px).

    Args:
        head_init: for random weights only, "stable" (``stable_head_init``) or "hf" (HF's
            default initialisation, whose huge initial logits stall training from scratch).
    """
    if head_init not in ("stable", "hf"):
        raise ValueError(f"head_init must be 'stable' or 'hf', got {head_init!r}")
    if size == "tiny" or weights is None:
        if size == "tiny" and weights is not None:
            raise ValueError("tiny CLIPSeg has no public weights; use weights=None")
        if size == "tiny":
            net = CLIPSegForImageSegmentation(tiny_config())
        else:  # HF's initialisation overwrites torch's defaults: skip those (half the build)
            with no_init_weights():
                net = CLIPSegForImageSegmentation(paper_config())
            net.init_weights()
        if head_init == "stable":
            stable_head_init(net.decoder.transposed_convolution)
        return CLIPSeg(net.eval(), 128 if size == "tiny" else PAPER_SIZE, size)
    source = HUB_ID if weights == "pretrained" else str(weights)
    return CLIPSeg(pretrained_net(source), PAPER_SIZE, size)


def pretrained_net(source: str) -> CLIPSegForImageSegmentation:
    """rd64-refined (or a local folder in its layout), complete: a file that lacks or mis-shapes
    any of the model's tensors is an error, never a partly random model."""
    try:  # offline, not cached, or a bad folder
        net, info = CLIPSegForImageSegmentation.from_pretrained(source, output_loading_info=True)
    except Exception as err:
        raise weights_error("CLIPSeg rd64-refined weights", source, err) from err
    faults = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if faults:
        raise WeightsMismatch(f"CLIPSeg weights {source!r} are incomplete: {faults}")
    return net.eval()
