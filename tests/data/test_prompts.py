"""Tests for vlsm_lib.data.prompts: mask attributes and the P0..PN prompt templates.

Every expected value below is worked out by hand from the module docstring and from the
reference templates as the reference implementation writes them, never by calling the code
under test.
Masks are small and deliberately non-square so that a mix-up of H and W shows.
"""

from __future__ import annotations

import numpy as np
import pytest

from vlsm_lib.data.prompts import (
    busi_prompts,
    camus_prompts,
    chexlocalize_prompts,
    location_of,
    mask_attributes,
    non_radiology_prompts,
    number_word,
    referring_prompts,
    size_class,
)

BUSI_TAIL = "in the breast ultrasound image."
POLYP_DESCRIPTIONS = (
    "a projecting growth of tissue",
    "often a bumpy flesh in rectum",
    "a small lump in the lining of colon",
    "a tissue growth that often resemble mushroom like stalks",
    "an abnormal growth of tissues projecting from a mucuos membrane",
)


def blank(h: int = 30, w: int = 90) -> np.ndarray:
    return np.zeros((h, w), bool)


def with_boxes(h: int, w: int, *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """Mask with filled boxes (y0, y1, x0, x1), end-exclusive."""
    mask = blank(h, w)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


# --------------------------------------------------------------------------- number_word


@pytest.mark.parametrize(
    "n, word",
    [
        (0, "zero"),
        (1, "one"),
        (2, "two"),
        (19, "nineteen"),
        (20, "twenty"),
        (21, "twenty-one"),
        (45, "forty-five"),
        (73, "seventy-three"),
        (90, "ninety"),
        (100, "one hundred"),
        (102, "one hundred and two"),
        (1000, "1000"),
    ],
)
def test_number_word(n, word):
    # num2words' spelling (the reference wrote counts and ages with it); digits from 1000 on.
    assert number_word(n) == word


# --------------------------------------------------------------------------- size_class


@pytest.mark.parametrize(
    "coverage, expected",
    [
        (1.0, "large"),
        (0.3000001, "large"),
        (0.30, "medium"),  # large is exclusive
        (0.2999999, "medium"),
        (0.0800001, "medium"),
        (0.08, "small"),  # medium is exclusive
        (0.0799999, "small"),
        (0.0010001, "small"),
        (0.001, "small"),  # tiny is exclusive
        (0.0009999, "tiny"),
        (0.0, "tiny"),
    ],
)
def test_size_class_thresholds(coverage, expected):
    assert size_class(coverage) == expected


# --------------------------------------------------------------------------- mask_attributes


@pytest.mark.parametrize(
    "pixels, expected",
    [
        # 30 x 60 image = 1800 pixels: 144 px = 0.08 exactly, 540 px = 0.30 exactly.
        (144, "small"),
        (145, "medium"),
        (540, "medium"),
        (541, "large"),
    ],
)
def test_mask_size_at_thresholds(pixels, expected):
    mask = blank(30, 60).ravel()
    mask[:pixels] = True  # a run of rows from the top: one 4-connected component
    attrs = mask_attributes(mask.reshape(30, 60))
    assert attrs.count == 1
    assert attrs.sizes == (expected,)


@pytest.mark.parametrize("pixels, expected", [(2, "tiny"), (3, "small")])
def test_mask_size_at_tiny_threshold(pixels, expected):
    # 30 x 100 = 3000 pixels: 3 px = 0.001 exactly (small), 2 px = 0.00067 (tiny, > 1e-4).
    mask = blank(30, 100)
    mask[10, 40 : 40 + pixels] = True
    assert mask_attributes(mask).sizes == (expected,)


def test_mask_sizes_deduplicated_and_ordered():
    # 30 x 60 = 1800 px. In label (raster) order: medium (200 px), small (9 px), tiny (1 px),
    # small again (4 px). Expected: ordered tiny, small, medium with "small" once.
    mask = with_boxes(
        30,
        60,
        (0, 10, 0, 20),  # 200 px -> 0.111 medium
        (2, 5, 30, 33),  # 9 px -> 0.005 small
        (20, 21, 50, 51),  # 1 px -> 0.00056 tiny (> 1e-4, so it counts for size)
        (25, 27, 5, 7),  # 4 px -> 0.0022 small
    )
    attrs = mask_attributes(mask)
    assert attrs.count == 4
    assert attrs.sizes == ("tiny", "small", "medium")
    assert attrs.size == "tiny, small, medium"


def test_mask_sizes_skip_components_at_or_below_1e4_but_count_them():
    # 100 x 100 = 10000 px: a single pixel covers exactly 1e-4 -> skipped for size only.
    mask = with_boxes(100, 100, (5, 6, 5, 6), (50, 70, 50, 70))  # 1 px + 400 px (0.04 small)
    attrs = mask_attributes(mask)
    assert attrs.count == 2
    assert attrs.count_word == "two"
    assert attrs.sizes == ("small",)
    assert attrs.locations == ("top left", "center")


def test_mask_only_skipped_components_has_count_but_no_size():
    # 100 x 120 = 12000 px: 1 px = 8.3e-5 <= 1e-4.
    mask = with_boxes(100, 120, (0, 1, 0, 1), (99, 100, 119, 120))
    attrs = mask_attributes(mask)
    assert attrs.count == 2
    assert attrs.sizes == ()
    assert attrs.size is None
    assert attrs.location == "top left, bottom right"


def test_mask_count_uses_4_connectivity():
    mask = blank(30, 60)
    mask[10, 10] = True
    mask[11, 11] = True  # touches the first only diagonally
    attrs = mask_attributes(mask)
    assert attrs.count == 2
    assert attrs.count_word == "two"


def test_mask_count_4_connected_pixels_are_one():
    mask = blank(30, 60)
    mask[10, 10] = mask[10, 11] = mask[11, 11] = True  # an L of three edge-touching pixels
    assert mask_attributes(mask).count == 1


def test_mask_uint8_255_same_as_bool():
    mask = with_boxes(30, 90, (0, 5, 0, 5), (20, 25, 70, 80))
    as_uint8 = mask.astype(np.uint8) * 255
    assert mask_attributes(as_uint8) == mask_attributes(mask)


def test_mask_locations_not_deduplicated_and_in_label_order():
    # 30 x 90: first (raster order) a blob in the top-right cell, then two in the bottom-left.
    mask = with_boxes(30, 90, (1, 4, 70, 73), (22, 25, 2, 5), (22, 25, 10, 13))
    attrs = mask_attributes(mask)
    assert attrs.count == 3
    assert attrs.count_word == "three"
    assert attrs.locations == ("top right", "bottom left", "bottom left")
    assert attrs.location == "top right, bottom left, bottom left"


def test_mask_attributes_reference_location_flag():
    # 30 x 90: a blob at x = 40..42 is in the middle column by width, but past 2H/3 = 20.
    mask = with_boxes(30, 90, (13, 16, 40, 43))
    assert mask_attributes(mask).locations == ("center",)
    assert mask_attributes(mask, reference_location=True).locations == ("right",)


def test_empty_mask():
    attrs = mask_attributes(blank(30, 60))
    assert attrs.count == 0
    assert attrs.sizes == ()
    assert attrs.locations == ()
    assert attrs.count_word == "zero"
    assert attrs.size is None
    assert attrs.location is None


# --------------------------------------------------------------------------- location_of

# 30 x 90 image: rows cut at y = 10, 20; columns cut at x = 30, 60 (thirds of W).
NINE_CELLS = [
    (5, 15, "top left"),
    (5, 45, "top"),
    (5, 75, "top right"),
    (15, 15, "left"),
    (15, 45, "center"),
    (15, 75, "right"),
    (25, 15, "bottom left"),
    (25, 45, "bottom"),
    (25, 75, "bottom right"),
]


@pytest.mark.parametrize("y, x, expected", NINE_CELLS)
def test_location_nine_cells_non_square(y, x, expected):
    mask = with_boxes(30, 90, (y - 1, y + 2, x - 1, x + 2))
    assert location_of(mask) == expected


@pytest.mark.parametrize(
    "y, x, expected",
    [
        (9, 29, "top left"),  # last pixel before both cuts
        (10, 30, "center"),  # first pixel after both cuts
        (19, 59, "center"),
        (20, 60, "bottom right"),
        (0, 89, "top right"),
        (29, 0, "bottom left"),
    ],
)
def test_location_cut_lines_single_pixel(y, x, expected):
    mask = blank(30, 90)
    mask[y, x] = True
    assert location_of(mask) == expected


@pytest.mark.parametrize(
    "y, x, expected",
    [
        # reference: columns also cut at H/3 = 10 and 2H/3 = 20 on a 30 x 90 image
        (5, 5, "top left"),
        (5, 15, "top"),
        (5, 40, "top right"),
        (15, 40, "right"),
        (25, 75, "bottom right"),
        (25, 15, "bottom"),
    ],
)
def test_location_reference_cuts_columns_at_height_thirds(y, x, expected):
    mask = blank(30, 90)
    mask[y, x] = True
    assert location_of(mask, reference=True) == expected


def test_location_blob_at_x40_right_under_reference_center_normally():
    mask = with_boxes(30, 90, (14, 17, 39, 42))  # x = 39..41
    assert location_of(mask) == "center"
    assert location_of(mask, reference=True) == "right"


def test_location_portrait_image_rows_cut_at_height_thirds():
    # 90 x 30: rows cut at y = 30, 60; columns at x = 10, 20.
    mask = blank(90, 30)
    mask[40, 25] = True
    assert location_of(mask) == "right"
    mask = blank(90, 30)
    mask[70, 15] = True
    assert location_of(mask) == "bottom"


def test_location_several_big_cells_uses_bbox_centre_even_if_empty():
    # L shape on 30 x 90: vertical bar x = 5, y = 0..29 (30 px: 10 each in top left / left /
    # bottom left) + horizontal bar y = 29, x = 6..89 (84 px: 24 bottom left, 30 bottom,
    # 30 bottom right). 114 px: top left 8.8 %, left 8.8 %, bottom left 29.8 %, bottom 26.3 %,
    # bottom right 26.3 % -> three cells >= 10 % -> bbox centre (14.5, 47) -> "center",
    # a cell that holds no pixel at all.
    mask = blank(30, 90)
    mask[:, 5] = True
    mask[29, 6:] = True
    assert location_of(mask) == "center"


def test_location_bbox_centre_for_straddling_blob():
    # 2 x 2 blob across the four cells meeting at (10, 30): 25 % each -> bbox centre
    # (9.5, 29.5) -> row 0, col 0.
    mask = with_boxes(30, 90, (9, 11, 29, 31))
    assert location_of(mask) == "top left"


def test_location_bbox_centre_reference_columns():
    # Horizontal bar y = 15, x = 0..89. Normal: thirds of 30 px each -> bbox centre x = 44.5
    # -> center. Reference: x < 10 (11 %), 10..19 (11 %), >= 20 (78 %) -> several big cells ->
    # bbox centre 44.5 * 3 // 30 = 4 -> clipped to the last column -> right.
    mask = blank(30, 90)
    mask[15, :] = True
    assert location_of(mask) == "center"
    assert location_of(mask, reference=True) == "right"


def test_location_exactly_one_big_cell_wins_over_bbox_centre():
    # Block y 0..9, x 0..29 (300 px, top left) + tail along y = 9, x = 30..89 (30 top,
    # 30 top right) + down x = 89, y = 10..29 (10 right, 10 bottom right). 380 px:
    # top left 78.9 %, others 7.9 % / 7.9 % / 2.6 % / 2.6 % -> "top left", although the bbox
    # centre (14.5, 44.5) is in the center cell.
    mask = blank(30, 90)
    mask[0:10, 0:30] = True
    mask[9, 30:90] = True
    mask[10:30, 89] = True
    assert int(mask.sum()) == 380
    assert location_of(mask) == "top left"


# --------------------------------------------------------------------------- non-radiology


def one_small_right_blob() -> np.ndarray:
    # 30 x 90 = 2700 px; 6 x 10 = 60 px -> 0.022 small; y 12..17, x 70..79 -> "right".
    return with_boxes(30, 90, (12, 18, 70, 80))


def test_non_radiology_full_structure():
    prompts = non_radiology_prompts(
        mask_attributes(one_small_right_blob()), "polyp", shape="round", colour="pink"
    )
    assert list(prompts) == [f"p{k}" for k in range(10)]
    assert prompts["p0"] == ""
    assert prompts["p1"] == "polyp"
    assert prompts["p2"] == "round polyp"
    assert prompts["p3"] == "pink round polyp"
    assert prompts["p4"] == "small pink round polyp"
    assert prompts["p5"] == "one small pink round polyp"
    assert prompts["p6"] == "one small pink round polyp, located in right of the image"
    assert prompts["p7"] == [f"polyp which is {d}" for d in POLYP_DESCRIPTIONS]
    assert prompts["p8"] == [f"one small pink round polyp which is {d}" for d in POLYP_DESCRIPTIONS]
    assert prompts["p9"] == [
        f"one small pink round polyp which is {d} located in right of the image"
        for d in POLYP_DESCRIPTIONS
    ]


def test_non_radiology_p9_first_alternative_has_no_comma():
    prompts = non_radiology_prompts(
        mask_attributes(one_small_right_blob()), "polyp", shape="round", colour="pink"
    )
    assert prompts["p9"][0] == (
        "one small pink round polyp which is a projecting growth of tissue "
        "located in right of the image"
    )
    for key in ("p7", "p8", "p9"):
        assert isinstance(prompts[key], list)
        assert len(prompts[key]) == 5


def test_non_radiology_missing_shape_and_colour_no_double_spaces():
    prompts = non_radiology_prompts(mask_attributes(one_small_right_blob()), "polyp")
    assert prompts["p1"] == "polyp"
    assert prompts["p2"] == "polyp"
    assert prompts["p3"] == "polyp"
    assert prompts["p4"] == "small polyp"
    assert prompts["p5"] == "one small polyp"
    assert prompts["p6"] == "one small polyp, located in right of the image"
    assert prompts["p9"][0] == (
        "one small polyp which is a projecting growth of tissue located in right of the image"
    )
    for value in prompts.values():
        for text in value if isinstance(value, list) else [value]:
            assert "  " not in text
            assert text == text.strip()


def test_non_radiology_two_components_other_class():
    # 30 x 90: a medium blob (300 px = 0.111) top left, a small one (9 px) bottom right.
    mask = with_boxes(30, 90, (0, 10, 0, 30), (24, 27, 80, 83))
    prompts = non_radiology_prompts(
        mask_attributes(mask), "foot ulcer", shape="oval", colour="brown"
    )
    assert prompts["p5"] == "two small, medium brown oval foot ulcer"
    assert prompts["p6"] == (
        "two small, medium brown oval foot ulcer, located in top left, bottom right of the image"
    )
    assert prompts["p7"][3] == "foot ulcer which is an abnormailty in foot and toes"


def test_non_radiology_unknown_class_raises_key_error_naming_class():
    with pytest.raises(KeyError, match="'kidney stone'"):
        non_radiology_prompts(mask_attributes(one_small_right_blob()), "kidney stone")


def test_non_radiology_unknown_class_with_descriptions():
    prompts = non_radiology_prompts(
        mask_attributes(one_small_right_blob()),
        "kidney stone",
        descriptions=("a hard deposit", "a calculus"),
    )
    assert prompts["p7"] == [
        "kidney stone which is a hard deposit",
        "kidney stone which is a calculus",
    ]
    assert (
        prompts["p9"][1]
        == "one small kidney stone which is a calculus located in right of the image"
    )


# --------------------------------------------------------------------------- BUSI


def one_small_top_right_blob() -> np.ndarray:
    # 30 x 90: 6 x 10 = 60 px (0.022 small) at y 2..7, x 70..79 -> "top right".
    return with_boxes(30, 90, (2, 8, 70, 80))


def test_busi_empty_mask_all_no_tumor():
    prompts = busi_prompts(mask_attributes(blank()), "benign", regularity="regular", shape="oval")
    assert prompts["p0"] == ""
    for k in range(1, 7):
        assert prompts[f"p{k}"] == "No tumor in the breast ultrasound image."
    assert list(prompts) == [f"p{k}" for k in range(7)]


def test_busi_one_benign_regular_oval_tumour():
    prompts = busi_prompts(
        mask_attributes(one_small_top_right_blob()), "benign", regularity="regular", shape="oval"
    )
    assert list(prompts) == [f"p{k}" for k in range(7)]
    assert prompts["p0"] == ""
    assert prompts["p1"] == "Tumor in the breast ultrasound image."
    assert prompts["p2"] == [
        "Benign tumor in the breast ultrasound image.",
        "Regular-shaped tumor in the breast ultrasound image.",
    ]
    assert prompts["p3"] == [
        f"One benign tumor {BUSI_TAIL}",
        f"One regular-shaped tumor {BUSI_TAIL}",
    ]
    assert prompts["p4"] == [
        f"One small benign tumor {BUSI_TAIL}",
        f"One small regular-shaped tumor {BUSI_TAIL}",
    ]
    assert prompts["p5"] == [
        f"One small benign tumor at the top right {BUSI_TAIL}",
        f"One small regular-shaped tumor at the top right {BUSI_TAIL}",
    ]
    assert prompts["p6"] == [
        f"One small oval-shaped benign tumor at the top right {BUSI_TAIL}",
        f"One small oval-shaped regular tumor at the top right {BUSI_TAIL}",
    ]


def test_busi_p5_contains_at_location():
    prompts = busi_prompts(
        mask_attributes(one_small_top_right_blob()), "malignant", regularity="irregular"
    )
    for text in prompts["p5"]:
        assert "at the top right" in text
    assert prompts["p2"][0] == "Malignant tumor in the breast ultrasound image."
    assert prompts["p2"][1] == "Irregular-shaped tumor in the breast ultrasound image."


def test_busi_two_tumours_plural():
    mask = with_boxes(30, 90, (2, 8, 2, 12), (2, 8, 70, 80))  # two 60 px small blobs
    prompts = busi_prompts(mask_attributes(mask), "benign", regularity="regular", shape="oval")
    assert prompts["p3"] == [
        f"Two benign tumors {BUSI_TAIL}",
        f"Two regular-shaped tumors {BUSI_TAIL}",
    ]
    assert prompts["p6"][0] == (
        f"Two small oval-shaped benign tumors at the top left, top right {BUSI_TAIL}"
    )
    assert prompts["p1"] == "Tumor in the breast ultrasound image."


# --------------------------------------------------------------------------- CAMUS

CAMUS_ARGS = dict(view="two", cycle="diastole", sex="male", age=45, quality="good", shape="oval")


def test_camus_keys_and_alternatives():
    prompts = camus_prompts("mask_2", **CAMUS_ARGS)
    assert list(prompts) == [f"p{k}" for k in range(8)]
    assert prompts["p0"] == ""
    for k in range(1, 8):
        value = prompts[f"p{k}"]
        assert isinstance(value, list) and len(value) == 2
        assert all(isinstance(text, str) for text in value)
        assert "of the heart" in value[0]
        assert "in the cardiac ultrasound" in value[1]
        assert value[0].endswith(".") and value[1].endswith(".")


def test_camus_p1():
    prompts = camus_prompts("mask_2", **CAMUS_ARGS)
    assert prompts["p1"] == ["Myocardium of the heart.", "Myocardium in the cardiac ultrasound."]


@pytest.mark.parametrize(
    "structure, name",
    [
        ("mask_1", "Left ventricular cavity"),
        ("mask_2", "Myocardium"),
        ("mask_3", "Left atrium cavity"),
        ("Myocardium", "Myocardium"),
    ],
)
def test_camus_structure_names(structure, name):
    assert camus_prompts(structure)["p1"] == [
        f"{name} of the heart.",
        f"{name} in the cardiac ultrasound.",
    ]


def test_camus_p7_has_shape():
    prompts = camus_prompts("mask_2", **CAMUS_ARGS)
    for text in prompts["p7"]:
        assert text.startswith("Myocardium of oval shape ")
    for k in range(1, 7):
        assert all("oval" not in text for text in prompts[f"p{k}"])


def test_camus_age_written_in_words():
    # The reference writes the age with num2words: "seventy-three-year-old" (spec Appendix A).
    prompts = camus_prompts("mask_2", **CAMUS_ARGS)
    for text in prompts["p5"] + prompts["p6"] + prompts["p7"]:
        assert "of a forty-five-year-old male" in text


def test_camus_word_order_matches_reference():
    # Spec Appendix A: the view comes before "of the heart" / "in the cardiac ultrasound", e.g.
    # "Myocardium in two-chamber view of the heart at end of the diastole cycle."
    prompts = camus_prompts("mask_2", view="two", cycle="diastole", sex="male")
    assert prompts["p2"] == [
        "Myocardium in two-chamber view of the heart.",
        "Myocardium in two-chamber view in the cardiac ultrasound.",
    ]
    assert prompts["p3"] == [
        "Myocardium in two-chamber view of the heart at end of the diastole cycle.",
        "Myocardium in two-chamber view in the cardiac ultrasound at end of the diastole cycle.",
    ]
    assert prompts["p4"] == [
        "Myocardium in two-chamber view of the heart at end of the diastole cycle of a male.",
        "Myocardium in two-chamber view in the cardiac ultrasound at end of the diastole cycle "
        "of a male.",
    ]


def test_camus_reference_record_appendix_a():
    # The first CAMUS record of the reference test.json (spec Appendix A), p5..p7.
    prompts = camus_prompts(
        "mask_1", view="two", cycle="diastole", sex="male", age=73, quality="good", shape="oval"
    )
    lv = "Left ventricular cavity"
    cycle = "at end of the diastole cycle of a seventy-three-year-old male"
    assert prompts["p5"] == [
        f"{lv} in two-chamber view of the heart {cycle}.",
        f"{lv} in two-chamber view in the cardiac ultrasound {cycle}.",
    ]
    assert prompts["p6"] == [
        f"{lv} in two-chamber view of the heart {cycle} with good image quality.",
        f"{lv} in two-chamber view in the cardiac ultrasound {cycle} with good image quality.",
    ]
    assert prompts["p7"] == [
        f"{lv} of oval shape in two-chamber view of the heart {cycle} with good image quality.",
        f"{lv} of oval shape in two-chamber view in the cardiac ultrasound {cycle} "
        "with good image quality.",
    ]


# --------------------------------------------------------------------------- CheXlocalize

FINDINGS = ("Enlarged Cardiomediastinum", "Lung Opacity", "Atelectasis")


def center_blob() -> np.ndarray:
    return with_boxes(30, 90, (12, 18, 40, 50))  # y 12..17, x 40..49 -> "center"


def test_chexlocalize_reference_record_appendix_a():
    prompts = chexlocalize_prompts(
        mask_attributes(center_blob()),
        "Atelectasis",
        view="lateral",
        shape="oval",
        findings=FINDINGS,
    )
    p4 = "Atelectasis of shape oval, and located in center of the lateral view of a Chest Xray."
    assert prompts == {
        "p0": "",
        "p1": "Atelectasis in a chest Xray.",
        "p2": "Atelectasis in the lateral view of a Chest Xray.",
        "p3": "Atelectasis of shape oval in the lateral view of a Chest Xray.",
        "p4": p4,
        "p5": p4 + " Enlarged Cardiomediastinum, Lung Opacity, Atelectasis are present.",
        "p6": (
            "Atelectasis in a Chest Xray. "
            "Enlarged Cardiomediastinum, Lung Opacity, Atelectasis are present. "
        ),
    }


def test_chexlocalize_default_frontal_view_and_capitalised_pathology():
    prompts = chexlocalize_prompts(
        mask_attributes(center_blob()), "airspace Opacity", shape="square", findings=FINDINGS
    )
    assert prompts["p1"] == "Airspace Opacity in a chest Xray."
    assert prompts["p4"].endswith(", and located in center of the frontal view of a Chest Xray.")
    assert prompts["p4"] == (
        "Airspace Opacity of shape square, and located in center of the frontal view of a "
        "Chest Xray."
    )
    assert prompts["p5"] == prompts["p4"] + " " + ", ".join(FINDINGS) + " are present."
    assert prompts["p6"].endswith("are present. ")


def test_chexlocalize_two_components_location_list():
    mask = with_boxes(30, 90, (12, 18, 2, 12), (12, 18, 70, 80))  # left, right
    prompts = chexlocalize_prompts(mask_attributes(mask), "Edema", shape="oval")
    assert prompts["p4"] == (
        "Edema of shape oval, and located in left, right of the frontal view of a Chest Xray."
    )
    assert prompts["p5"] == prompts["p4"]  # no findings
    assert prompts["p6"] == "Edema in a Chest Xray. "


# --------------------------------------------------------------------------- referring


def test_referring_small_red_triangle_top_left():
    # 30 x 90: 4 x 5 = 20 px (0.0074 small) at y 2..5, x 3..7 -> "top left".
    attrs = mask_attributes(with_boxes(30, 90, (2, 6, 3, 8)))
    prompts = referring_prompts(attrs, "triangle", colour="red")
    assert prompts == {
        "p0": "",
        "p1": "triangle",
        "p2": "red triangle",
        "p3": "small red triangle",
        "p4": "small red triangle, located in top left of the image",
    }


def test_referring_without_colour():
    attrs = mask_attributes(with_boxes(30, 90, (2, 6, 3, 8)))
    prompts = referring_prompts(attrs, "circle")
    assert prompts["p2"] == "circle"
    assert prompts["p4"] == "small circle, located in top left of the image"
