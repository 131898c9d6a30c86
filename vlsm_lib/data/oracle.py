"""Oracle prompts: prompt levels whose words are computed from the test mask.

The P0..PN generator (``prompts``) writes count, size and location from the mask itself, and
BUSI's template says "No tumor ..." at every level p1-p6 for an empty mask. A model given such a
prompt at test time is told part of the answer. Reports mark these levels (``is_oracle``) and
give Dice without empty truths beside the mean.
"""

from __future__ import annotations

# Per template family of ``prompts``, the levels written from the mask.
ORACLE_LEVELS = {
    "non_radiology": ("p4", "p5", "p6", "p8", "p9"),
    "busi": ("p1", "p2", "p3", "p4", "p5", "p6"),
    "camus": (),
    "chexlocalize": ("p4", "p5"),
    "referring": ("p3", "p4"),
}
# Which template family writes each known dataset's prompts (the paper's and MedShapes').
FAMILY = {
    **dict.fromkeys(
        (
            "kvasir_polyp",
            "clinicdb_polyp",
            "bkai_polyp",
            "cvc300_polyp",
            "colondb_polyp",
            "etis_polyp",
            "isic",
            "dfu",
            "synth_polyp",
            "synth_polyp_b",
            "synth_polyp_c",
            "synth_polyp_ref",
            "synth_skin",
        ),
        "non_radiology",
    ),
    "busi": "busi",
    "synth_ultrasound": "busi",
    "camus": "camus",
    "chexlocalize": "chexlocalize",
    "synth_xray": "chexlocalize",
    "synth_shapes": "referring",
}


def is_oracle(dataset: str, level: str) -> bool | None:
    """Whether prompt ``level`` of ``dataset`` is written from its masks; None when the
    dataset's template family is not known (a user's own data: say so, do not guess)."""
    family = FAMILY.get(dataset)
    return None if family is None else level in ORACLE_LEVELS[family]
