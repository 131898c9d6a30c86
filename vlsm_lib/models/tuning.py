"""Parameter-efficient train policies of the VLSMs: ``lora``, ``adapter``, ``text_prompt``,
``visual_prompt``. Each adds a few parameters to the frozen towers; the decoder trains too.

===============  ================================================================================
policy           what trains (besides the decoder)
===============  ================================================================================
lora             low-rank updates (the ``peft`` library) of the attention projections of both
                 towers; ``lora_rank`` (8), ``lora_alpha`` (16), ``lora_targets`` ("q,v": any of
                 q, k, v, o; a fused qkv projection takes LoRA when any of q, k, v is named)
adapter          dense bottleneck adapters (down, GELU, up; residual; up zero-initialised) on the
                 output of every attention and MLP sub-block of both towers, before the block's
                 residual sum (VLSM-Adapter's dense placement), and on CRIS's ResNet stage
                 outputs (1x1 convolutions); ``adapter_dim`` (64, VLSM-Adapter's dense width)
shallow_adapter  one such adapter on each hidden state the decoder reads: the output of each
                 extracted ViT block (VLSM-Adapter's shallow vision placement; the adapted state
                 also feeds the next block), CRIS's three visual maps; the text tower stays
                 frozen; ``adapter_dim`` (512, VLSM-Adapter's shallow width)
text_prompt      ``prompt_tokens`` (8) learnable context vectors after the start token of every
                 prompt (CoOp); the text keeps its length, so the last words of a prompt longer
                 than the context minus the tokens are cut
visual_prompt    ``prompt_tokens`` (8) learnable tokens after the ViT's class token (VPT-shallow),
                 dropped again before the decoder reads the blocks; ViT models only (CRIS's
                 ResNet has no token sequence)
===============  ================================================================================

Every addition starts as the identity (LoRA's B and the adapters' up-projections are zero) except
the prompts, which are new tokens by design. Only blocks that influence the mask get additions
(CLIPSeg reads ViT blocks up to its deepest extracted one; deeper blocks never run).

A family says where the additions go with ``tuning_sites()`` (``Sites``); ``apply`` builds them
and returns the names of the parameters it added, which ``SegModel.set_train_policy`` trains.
LoRA renames the layers it wraps (``q_proj.weight`` -> ``q_proj.base_layer.weight``), so a
checkpoint of a LoRA run loads into a model built with ``train="lora"`` and its options, which is
what ``load_checkpoint`` does from ``model.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

POLICIES = ("lora", "adapter", "shallow_adapter", "text_prompt", "visual_prompt")
ADAPTERS = {"adapter": 64, "shallow_adapter": 512}  # policy -> default adapter_dim
# option -> (the policies it applies to, default)
OPTIONS: dict[str, tuple[tuple[str, ...], object]] = {
    "lora_rank": (("lora",), 8),
    "lora_alpha": (("lora",), 16),
    "lora_targets": (("lora",), "q,v"),
    "adapter_dim": (tuple(ADAPTERS), None),  # None: the policy's ADAPTERS width
    "prompt_tokens": (("text_prompt", "visual_prompt"), 8),
}
ROLES = ("q", "k", "v", "o")


@dataclass
class Sites:
    """Where a family's additions go (module names from the model's root).

    attention: role ("q", "k", "v", "o") -> modules (a fused qkv module may appear under q, k, v)
    adapters: (module, width, kind): an adapter on the module's output; kind "token" (width is
        the last dimension; a tuple output adapts its first element) or "map" (channel dim 1)
    tapped: the same, for the modules whose outputs the decoder reads (``shallow_adapter``)
    text_host / vision_host: module that holds the prompt parameter and its width; the family's
        ``encode_text`` / ``encode_image`` read ``prompt_context`` / ``prompt_tokens`` from it
    """

    attention: dict[str, list[str]] = field(default_factory=dict)
    adapters: list[tuple[str, int, str]] = field(default_factory=list)
    tapped: list[tuple[str, int, str]] = field(default_factory=list)
    text_host: tuple[str, int] | None = None
    vision_host: tuple[str, int] | None = None


def policy_options(policy: str, options: dict) -> dict:
    """The tuning options of ``policy`` with defaults filled in; an option of another policy, or
    an unknown option name, is an error that says which options ``policy`` takes."""
    mine = {k: d for k, (owners, d) in OPTIONS.items() if policy in owners}
    wrong = sorted(set(options) - set(mine))
    if wrong:
        raise TypeError(
            f"option(s) {', '.join(map(repr, wrong))} do not apply to train={policy!r}; "
            f"it takes: {', '.join(mine) or 'none'}"
        )
    values = {**mine, **options}
    if policy in ADAPTERS and values.get("adapter_dim") is None:
        values["adapter_dim"] = ADAPTERS[policy]
    for key in ("lora_rank", "adapter_dim", "prompt_tokens"):
        if key in values and (not isinstance(values[key], int) or values[key] < 1):
            raise ValueError(f"{key} must be a positive integer, got {values[key]!r}")
    if "lora_targets" in values:
        roles = [r.strip() for r in str(values["lora_targets"]).split(",") if r.strip()]
        if not roles or set(roles) - set(ROLES):
            raise ValueError(
                f"lora_targets={values['lora_targets']!r}: name some of {', '.join(ROLES)}, "
                "comma-separated (e.g. 'q,v')"
            )
    return values


def apply(model: nn.Module, policy: str, options: dict) -> set[str]:
    """Add ``policy``'s parameters to ``model`` (see the module docstring); returns their names."""
    before = {n for n, _ in model.named_parameters()}
    sites: Sites = model.tuning_sites()
    if policy == "lora":
        _add_lora(model, sites, options)
    elif policy in ADAPTERS:
        for name, width, kind in sites.adapters if policy == "adapter" else sites.tapped:
            host = model.get_submodule(name)
            if isinstance(host, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
                # a container's children are its layers: an adapter added there would run
                raise TypeError(f"adapter site {name} is a {type(host).__name__}; name a layer")
            host.add_module("adapter", Adapter(width, options["adapter_dim"], kind))
            host.register_forward_hook(_adapter_hook)
    elif policy in ("text_prompt", "visual_prompt"):
        where = sites.text_host if policy == "text_prompt" else sites.vision_host
        if where is None:
            raise ValueError(f"train={policy!r} needs a token sequence; {model.name} has none")
        attr = "prompt_context" if policy == "text_prompt" else "prompt_tokens"
        tokens = torch.randn(options["prompt_tokens"], where[1]) * 0.02
        model.get_submodule(where[0]).register_parameter(attr, nn.Parameter(tokens))
    else:
        raise ValueError(f"unknown tuning policy {policy!r}; valid: {', '.join(POLICIES)}")
    added = {n for n, _ in model.named_parameters()} - before
    # LoRA also renames the layers it wraps (x.weight -> x.base_layer.weight): frozen, not new
    return {n for n in added if ".lora_" in n} if policy == "lora" else added


def _add_lora(model: nn.Module, sites: Sites, options: dict) -> None:
    from peft import LoraConfig, inject_adapter_in_model  # imported only when LoRA is used

    roles = [r.strip() for r in str(options["lora_targets"]).split(",") if r.strip()]
    targets = sorted({m for r in roles for m in sites.attention.get(r, [])})
    if not targets:
        raise ValueError(f"{model.name} has no attention projections for roles {roles}")
    config = LoraConfig(
        r=options["lora_rank"], lora_alpha=options["lora_alpha"], target_modules=targets
    )
    inject_adapter_in_model(config, model)


class Adapter(nn.Module):
    """x -> up(GELU(down(x))): (..., width) tokens or (B, width, H, W) maps; ``up`` starts at
    zero, so the adapted block starts as the original one."""

    def __init__(self, width: int, bottleneck: int, kind: str = "token"):
        super().__init__()
        if kind == "token":
            self.down, self.up = nn.Linear(width, bottleneck), nn.Linear(bottleneck, width)
        elif kind == "map":
            self.down, self.up = nn.Conv2d(width, bottleneck, 1), nn.Conv2d(bottleneck, width, 1)
        else:
            raise ValueError(f"adapter kind must be 'token' or 'map', got {kind!r}")
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(nn.functional.gelu(self.down(x)))


def _adapter_hook(module: nn.Module, args, output):
    """Forward hook of an adapted module: output + adapter(output) (first element of a tuple)."""
    if isinstance(output, tuple):
        return (output[0] + module.adapter(output[0]), *output[1:])
    return output + module.adapter(output)


def with_context(
    embeds: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor | None, first: int = 1
):
    """Insert learnable ``context`` (M, D) after the first ``first`` positions of token
    embeddings (B, L, D), keeping length L (the last M positions are cut).

    Returns (embeds (B, L, D), mask (B, L) or None, M). With no context, the inputs unchanged.
    """
    if context is None:
        return embeds, mask, 0
    b, length, _ = embeds.shape
    m = context.shape[0]
    if m >= length - first:
        raise ValueError(f"{m} prompt tokens leave no room in a context of {length}")
    ctx = context.to(embeds.dtype).unsqueeze(0).expand(b, -1, -1)
    embeds = torch.cat([embeds[:, :first], ctx, embeds[:, first : length - m]], dim=1)
    if mask is not None:
        ones = torch.ones(b, m, dtype=mask.dtype, device=mask.device)
        mask = torch.cat([mask[:, :first], ones, mask[:, first : length - m]], dim=1)
    return embeds, mask, m


def shifted_positions(positions: torch.Tensor, m: int, length: int) -> torch.Tensor:
    """Where a token at ``positions`` (B,) sits after ``with_context`` inserted m tokens before
    it (clamped to the last position when it was cut)."""
    return (positions + m).clamp(max=length - 1)
