"""Pooled training sets: their names and the dataset that concatenates the members.

A pooled set trains one model on several datasets at once; each member keeps its own prompts and
its samples their own ``dataset`` name, so that test results are reported per member.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from torch.utils.data import ConcatDataset, Dataset

# Named pooled training sets: name -> member datasets.
POOLED = {
    "synth_pooled": ["synth_polyp", "synth_skin", "synth_ultrasound", "synth_xray"],
    "pooled_polyp": ["kvasir_polyp", "clinicdb_polyp", "bkai_polyp"],
    "pooled_all": [
        "kvasir_polyp",
        "clinicdb_polyp",
        "bkai_polyp",
        "dfu",
        "isic",
        "camus",
        "busi",
        "chexlocalize",
    ],
}


def members(dataset: str) -> list[str]:
    """A dataset name, a pooled name (``POOLED``) or names joined by '+' -> dataset names."""
    if dataset in POOLED:
        return list(POOLED[dataset])
    return [d for d in dataset.split("+") if d]


class PooledDataset(ConcatDataset):
    """Several datasets concatenated; each sample keeps its own ``dataset`` name.

    The members are ``ImageTextMaskDataset``s (anything with ``name``, ``set_epoch`` and
    ``prompt_text``); ``load_dataset`` builds a pooled set from dataset names.
    """

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        super().__init__(datasets)
        self.sources = [d.name for d in datasets]

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)

    def prompt_text(self, i: int) -> str:
        """Prompt of pooled item i at the current epoch."""
        i = range(len(self))[i]
        k = bisect_right(self.cumulative_sizes, i)
        start = self.cumulative_sizes[k - 1] if k else 0
        return self.datasets[k].prompt_text(i - start)
