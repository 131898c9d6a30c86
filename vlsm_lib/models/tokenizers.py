"""Tokenizers behind the data layer's ``Tokenizer`` interface, all usable offline.

``tokenizer(texts, context_length) -> (input_ids (N, L) int64, attention_mask (N, L) int64)``

- ``ClipBPETokenizer``: CLIP's byte-level BPE (vocabulary 49408) read from the vocabulary file
  that open_clip ships, so no download. Sequences are ``<start> tokens <end>`` truncated to L with
  the end token kept, as HF's ``CLIPTokenizer(truncation=True)`` does, and padded with ``pad_id``:
  49407 (the end token) like the CLIPSeg tokenizer the reference used for CLIPSeg and CRIS.
- ``WordPieceTokenizer``: a BERT-style WordPiece tokenizer. At paper size it is PubMedBERT's
  vocabulary through ``transformers.AutoTokenizer`` (hub or local folder); at tiny size a small
  fixed vocabulary of the words the prompt templates use (``tiny_wordpiece``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache

import torch

from vlsm_lib.data import prompts as P

CLIP_VOCAB_SIZE = 49408
CLIP_EOT = 49407


@lru_cache(maxsize=1)
def clip_bpe():
    """open_clip's BPE, its vocabulary read once per process (parsing it takes ~2 s): every
    model of the CLIP family shares it (encoding is a pure function of the text). A fork
    server loads it before forking the grid's kernels (``models.warm_up``)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


class ClipBPETokenizer:
    """CLIP BPE from open_clip's bundled vocabulary; see the module docstring."""

    def __init__(self, pad_id: int = CLIP_EOT) -> None:
        self._bpe = clip_bpe()
        self.sot, self.eot, self.pad_id = self._bpe.sot_token_id, self._bpe.eot_token_id, pad_id
        self.vocab_size = self._bpe.vocab_size

    def __call__(
        self, texts: Sequence[str], context_length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.full((len(texts), context_length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), context_length), dtype=torch.long)
        for i, text in enumerate(texts):
            tokens = [self.sot, *self._bpe.encode(text)[: context_length - 2], self.eot]
            ids[i, : len(tokens)] = torch.tensor(tokens)
            mask[i, : len(tokens)] = 1
        return ids, mask


class WordPieceTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` or a HF tokenizer: [CLS] ... [SEP] [PAD]=0 ..."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.vocab_size = (
            backend.get_vocab_size() if hasattr(backend, "get_vocab_size") else len(backend)
        )

    def __call__(
        self, texts: Sequence[str], context_length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self.backend, "encode_batch"):  # a tokenizers.Tokenizer
            self.backend.enable_truncation(context_length)
            self.backend.enable_padding(length=context_length, pad_id=0, pad_token="[PAD]")
            enc = self.backend.encode_batch(list(texts))
            ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
            mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
            return ids, mask
        out = self.backend(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=context_length,
            return_tensors="pt",
        )
        return out["input_ids"].long(), out["attention_mask"].long()


def _template_corpus() -> list[str]:
    """Sentences covering the words of every prompt family (the tiny vocabulary's corpus)."""
    words = [
        " ".join(P.SIZE_ORDER),
        " ".join(w for row in P.LOCATIONS for w in row),
        " ".join(P.number_word(n) for n in range(100)),
        "pink red white brown black yellow green blue purple round oval irregular circle square "
        "triangle star hexagon lobulated spiculated crescent regular benign malignant tumor tumors "
        "polyp skin melanoma foot ulcer object located in of the image at which is",
        "no tumor in the breast ultrasound image. airspace opacity lung lesion pleural effusion "
        "in a chest xray. in the frontal lateral view of a chest xray. of shape and located in "
        "are present. lung opacity",
        "left ventricular cavity myocardium left atrium cavity of the heart in the cardiac "
        "ultrasound in two four chamber view at end of the diastole systole cycle of a male "
        "female year old with good medium poor image quality",
    ]
    for descriptions in P.CLASS_DESCRIPTIONS.values():
        words.extend(descriptions)
    return words


@lru_cache(maxsize=1)
def tiny_wordpiece() -> WordPieceTokenizer:
    """A small uncased WordPiece vocabulary over the words of the prompt templates, offline.

    The vocabulary is written out, not trained: every character, every character as a ``##``
    continuation, and every template word, in sorted order. Trained vocabularies (the
    ``tokenizers`` trainer) differ between processes (Rust hash-map order breaks ties), and a
    checkpoint must load in another process. Words outside the templates fall back to pieces.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = {w for text in _template_corpus() for w in re.findall(r"\w+|[^\w\s]", text.lower())}
    chars = sorted(
        {c for w in words for c in w}
        | set(string.ascii_lowercase + string.digits)
        | set(string.punctuation)
    )
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = special + chars + [f"##{c}" for c in chars] + sorted(words - set(chars))
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return WordPieceTokenizer(tok)


def pretrained_wordpiece(name_or_path: str) -> WordPieceTokenizer:
    """PubMedBERT's tokenizer from the hub cache or a local folder (see weights errors)."""
    from transformers import AutoTokenizer

    return WordPieceTokenizer(AutoTokenizer.from_pretrained(name_or_path))
