"""What every model shares: the forward contract, train policies, preprocessing facts."""

from __future__ import annotations

import torch
from torch import nn

from vlsm_lib.data.transforms import Preprocess, to_device
from vlsm_lib.models import tuning


def stable_head_init(head: nn.Module, prior: float = 0.1) -> None:
    """Re-initialise a randomly initialised convolutional mask head so training can start.

    HF's default initialisation of the CLIPSeg decoder head gives initial logits with a
    standard deviation of ~45: the loss saturates, the ReLUs of the head die after the first
    clipped steps and training from scratch stalls (measured on MedShapes). Kaiming-normal
    convolutions and a last layer with small weights and bias log(prior / (1 - prior)) start
    every pixel near ``prior`` foreground probability instead. Only for random decoders:
    pretrained heads are left alone.
    """
    convs = [m for m in head.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    for conv in convs[:-1]:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    nn.init.normal_(convs[-1].weight, std=0.01)
    if convs[-1].bias is not None:
        nn.init.constant_(convs[-1].bias, float(torch.logit(torch.tensor(prior))))


class SegModel(nn.Module):
    """Base of every model: ``model(pixel_values, input_ids, attention_mask) -> logits``.

    Inputs: pixel_values (B, 3, H, W) normalised with ``preprocess``; input_ids and
    attention_mask (B, L) from ``preprocess.tokenizer`` (ignored by image-only models).
    Output: logits (B, 1, H, W) at the input resolution.

    Subclasses set ``train_policies``: policy name -> parameter-name prefixes that train under
    it ("" = everything). ``set_train_policy`` makes exactly those parameters require grad, and
    subclasses run frozen towers without building a graph. The parameter-efficient policies of
    ``tuning.POLICIES`` (``lora``, ``adapter``, ``shallow_adapter``, ``text_prompt``,
    ``visual_prompt``) also train the parameters they add (the family says where with
    ``tuning_sites()``).
    """

    name: str = ""
    train_policies: dict[str, tuple[str, ...]] = {}
    default_policy: str = "all"  # what the reference effectively trained
    # Parameter prefixes of the encoders. A model that sets them also offers
    # encode_image(pixel_values) -> list of tensors, encode_text(input_ids, attention_mask) ->
    # tensor and decode(image_features, text_features, size) -> logits, so that frozen
    # encoders' outputs can be cached (vlsm_lib.engine.feature_cache).
    encoder_prefixes: tuple[str, ...] = ()
    # Prefixes of the vision and the text tower: a frozen tower's outputs can be cached even
    # when the other tower trains (text_prompt keeps vision features cacheable, and so on).
    vision_prefix: str | tuple[str, ...] = ()
    text_prefix: str | tuple[str, ...] = ()

    def __init__(self, preprocess: Preprocess, threshold: float = 0.5, size: str = "tiny"):
        super().__init__()
        self.preprocess = preprocess
        self.threshold = threshold
        self.size = size
        self.policy = ""
        self.tuned: tuple[str, frozenset[str], dict] | None = None  # (policy, added, options)

    def set_train_policy(self, policy: str, **options) -> SegModel:
        """Make exactly ``policy``'s parameters trainable; a tuning policy first adds its
        parameters (once: a model tuned one way cannot switch to another tuning policy).
        ``options``: the tuning options (``tuning.OPTIONS``)."""
        if policy not in self.train_policies:
            raise ValueError(
                f"unknown train policy {policy!r} for {self.name}; valid: "
                f"{', '.join(self.train_policies)}"
            )
        values = (
            tuning.policy_options(policy, options) if options or policy in tuning.POLICIES else {}
        )
        added: frozenset[str] = frozenset()
        if policy in tuning.POLICIES:
            if self.tuned is None:
                self.tuned = (policy, frozenset(tuning.apply(self, policy, values)), values)
            elif self.tuned[0] != policy or self.tuned[2] != values:
                raise ValueError(
                    f"{self.name} already carries train={self.tuned[0]!r} parameters "
                    f"({self.tuned[2]}); build a new model for train={policy!r} ({values})"
                )
            added = self.tuned[1]
        prefixes = self.train_policies[policy]
        for n, p in self.named_parameters():
            p.requires_grad_(n in added or any(n.startswith(x) for x in prefixes))
        self.policy = policy
        return self

    def tuning_sites(self) -> tuning.Sites:
        """Where the tuning policies add parameters; families that offer them override this."""
        raise ValueError(f"{self.name} offers no parameter-efficient train policies")

    def trainable_parameter_names(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.requires_grad}

    def frozen(self, prefix: str | tuple[str, ...]) -> bool:
        """True when no parameter under ``prefix`` (one or several) trains (its forward can
        skip autograd)."""
        return not any(p.requires_grad for n, p in self.named_parameters() if n.startswith(prefix))

    def cacheable(self) -> bool:
        """True when the encoders are frozen and split out, so their outputs can be cached."""
        return bool(self.encoder_prefixes) and all(self.frozen(p) for p in self.encoder_prefixes)

    def cacheable_parts(self) -> set[str]:
        """Which encoder outputs can be cached: "image" when the vision tower is frozen, "text"
        when the text tower is (e.g. {"image"} under text_prompt, {"text"} under visual_prompt)."""
        if not self.encoder_prefixes:
            return set()
        towers = {"image": self.vision_prefix, "text": self.text_prefix}
        return {part for part, prefix in towers.items() if prefix and self.frozen(prefix)}

    def feature_config(self) -> dict:
        """What, besides the towers' weights and inputs, decides the encoders' outputs (which
        blocks are read, how padding is masked): part of the shared feature store's keys
        (``feature_store.tower_key``). Families with such options override it."""
        return {}

    def describe(self) -> dict:
        """Facts for run records and the README's model table."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        tok = self.preprocess.tokenizer
        return {
            "name": self.name,
            "size": self.size,
            "train": self.policy,
            "params": total,
            "trainable_params": trainable,
            "tuning": dict(self.tuned[2]) if self.tuned else None,
            "image_size": list(self.preprocess.image_size),
            "mean": list(self.preprocess.mean),
            "std": list(self.preprocess.std),
            "threshold": self.threshold,
            "tokenizer": type(tok).__name__ if tok else None,
            "context_length": self.preprocess.context_length if tok else None,
        }

    def forward_batch(self, batch: dict) -> torch.Tensor:
        """(B, 1, H, W) logits of a collated batch (keys of ``data.dataset`` samples), on the
        model's device."""
        batch = to_device(batch, self.device)
        return self(batch["pixel_values"], batch.get("input_ids"), batch.get("attention_mask"))

    def binarize(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> bool mask of the same shape: sigmoid above ``threshold`` (0.5; CRIS 0.35)."""
        return torch.sigmoid(logits.float()) > self.threshold

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @staticmethod
    def to_input_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, 1, h, w) -> (B, 1, H, W) bilinear, only when the sizes differ."""
        if tuple(logits.shape[-2:]) == tuple(size):
            return logits
        return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class TwoTowerSeg(SegModel):
    """A model whose vision and text towers feed a decoder (CLIPSeg, BiomedCLIPSeg).

    Subclasses give ``vision_prefix`` / ``text_prefix`` (parameter-name prefixes of the towers)
    and ``encode_image``, ``encode_text`` and ``decode``. A tower runs with autograd only when
    some of its parameters train, so a frozen tower builds no graph.
    """

    @staticmethod
    def tower_policies(
        decoder: str, stem: tuple[str, ...], blocks: str, deepest: int, text: tuple[str, ...]
    ) -> dict[str, tuple[str, ...]]:
        """``decoder``: the decoder alone (what the paper trained); ``all``: the decoder, the
        text tower and the vision tower up to block ``deepest``. Deeper blocks and the pooled
        heads never influence the mask, so they stay frozen. The tuning policies train the
        decoder and what they add."""
        vision = (*stem, *(f"{blocks}{i}." for i in range(deepest + 1)))
        tuned = {policy: (decoder,) for policy in tuning.POLICIES}
        return {"decoder": (decoder,), "all": (*vision, *text, decoder), **tuned}

    @staticmethod
    def extracted(
        hidden: torch.Tensor, blocks, extract, prompts: torch.Tensor | None = None, **kwargs
    ) -> list[torch.Tensor]:
        """Run ``blocks`` in order up to the deepest index in ``extract`` (the rest are never
        run); returns the outputs of the blocks in ``extract``, each (B, 1 + N, D).

        ``prompts`` (M, D): VPT-shallow tokens inserted after the class token before the first
        block and dropped from every returned output."""
        m = 0 if prompts is None else prompts.shape[0]
        if m:
            batch = prompts.to(hidden.dtype).unsqueeze(0).expand(hidden.shape[0], -1, -1)
            hidden = torch.cat([hidden[:, :1], batch, hidden[:, 1:]], dim=1)
        outputs = []
        for block in blocks[: max(extract) + 1]:
            hidden = block(hidden, **kwargs)
            outputs.append(hidden)
        if m:
            outputs = [torch.cat([o[:, :1], o[:, 1 + m :]], dim=1) for o in outputs]
        return [outputs[i] for i in extract]

    def forward(self, pixel_values, input_ids, attention_mask=None) -> torch.Tensor:
        """(B, 3, H, W) images, (B, L) tokens and mask -> (B, 1, H, W) logits."""
        grad = torch.is_grad_enabled()
        # step 1: activations of the extracted vision blocks, each (B, 1 + N, D)
        with torch.set_grad_enabled(grad and not self.frozen(self.vision_prefix)):
            activations = self.encode_image(pixel_values)
        # step 2: the text tower gives the (B, P) conditional embedding (FiLM input)
        with torch.set_grad_enabled(grad and not self.frozen(self.text_prefix)):
            conditional = self.encode_text(input_ids, attention_mask)
        # step 3: FiLM-conditioned decoder and transposed-convolution head, at the input size
        return self.decode(activations, conditional, tuple(pixel_values.shape[-2:]))
