"""Tests for vlsm_lib.data.dataset: loading, prompt draws and one test per bad input
(how single mask files are read: test_io.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlsm_lib.data.dataset import ImageTextMaskDataset, load_dataset, load_records
from vlsm_lib.data.io import DataError, read_image
from vlsm_lib.data.pooled import POOLED, PooledDataset, members
from vlsm_lib.data.transforms import Preprocess

H, W = 16, 24  # original image size on disk
CTX = 10


def fake_tokenizer(texts, context_length):
    """Characters -> ids (1 + code point % 1000), zero-padded / truncated to context_length."""
    ids = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        codes = [1 + ord(c) % 1000 for c in text][:context_length]
        ids[row, : len(codes)] = torch.tensor(codes, dtype=torch.long)
    return ids, (ids > 0).long()


PRE = Preprocess(image_size=(8, 12), tokenizer=fake_tokenizer, context_length=CTX)
PRE_NO_TEXT = Preprocess(image_size=(8, 12))


def mask_array(h: int = H, w: int = W) -> np.ndarray:
    """(h, w) uint8 0/255 with an 8-aligned foreground block (little JPEG ringing)."""
    m = np.zeros((h, w), np.uint8)
    m[: h // 2, w // 3 : 2 * w // 3] = 255
    return m


def write_image(path: Path, h: int = H, w: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def write_mask(path: Path, img: Image.Image | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (img if img is not None else Image.fromarray(mask_array())).save(path)


def default_prompts(i: int) -> dict:
    return {
        "p0": "",
        "p1": f"polyp {i}",
        "p2": ["small polyp", "round polyp", "pink polyp"],
        "p3": f"a polyp in image {i}",
    }


def make_dataset(
    root: Path,
    name: str = "toy",
    split: str = "train",
    n: int = 3,
    mask_ext: str = "png",
    records: list | None = None,
) -> Path:
    """Write <root>/<name>/{images,masks,anns} with n items; returns the dataset folder."""
    base = root / name
    if records is None:
        records = [
            {
                "img_name": f"sub/img_{i}.png",
                "mask_name": f"sub/mask_{i}.{mask_ext}",
                "prompts": default_prompts(i),
            }
            for i in range(n)
        ]
    for rec in records:
        write_image(base / "images" / rec["img_name"])
        write_mask(base / "masks" / rec["mask_name"])
    write_split(base, split, records)
    return base


def write_split(base: Path, split: str, records) -> Path:
    path = base / "anns" / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


def one_item_dataset(tmp_path: Path, mask: Image.Image, ext: str = "png") -> Path:
    """A 1-record dataset whose mask file is ``mask``; returns the mask path."""
    base = make_dataset(tmp_path, n=1, mask_ext=ext)
    path = base / "masks" / "sub" / f"mask_0.{ext}"
    mask.save(path)
    return path


# --- good data -------------------------------------------------------------------------------


def test_good_dataset_keys_shapes_dtypes(tmp_path):
    make_dataset(tmp_path)
    ds = load_dataset(tmp_path, "toy", "train", PRE, prompt="p1")
    assert isinstance(ds, ImageTextMaskDataset) and len(ds) == 3
    s = ds[1]
    assert set(s) == {
        "pixel_values",
        "mask",
        "input_ids",
        "attention_mask",
        "prompt",
        "image_id",
        "cluster",
        "img_path",
        "mask_path",
        "height",
        "width",
        "dataset",
    }
    assert s["cluster"] == ds.records[1]["img_name"]  # no cluster key: the image is one
    assert s["pixel_values"].shape == (3, 8, 12) and s["pixel_values"].dtype == torch.float32
    assert s["mask"].shape == (1, 8, 12) and s["mask"].dtype == torch.float32
    assert set(s["mask"].unique().tolist()) == {0.0, 1.0}
    assert s["input_ids"].shape == (CTX,) and s["input_ids"].dtype == torch.int64
    assert s["attention_mask"].shape == (CTX,) and s["attention_mask"].dtype == torch.int64
    assert s["attention_mask"].sum() == len("polyp 1")
    assert (s["height"], s["width"]) == (H, W)
    assert s["prompt"] == "polyp 1" and s["image_id"] == "sub/mask_1.png"
    assert s["dataset"] == "toy" and s["img_path"].endswith("img_1.png")
    assert ds.prompt_keys == ["p0", "p1", "p2", "p3"] and ds.name == "toy"
    assert ds.split == "train" and len(ds.records) == 3


def test_sample_cache_gives_the_same_samples_and_reads_each_file_once(tmp_path, monkeypatch):
    import vlsm_lib.data.dataset as dataset_module

    make_dataset(tmp_path, n=4)
    plain = ImageTextMaskDataset(tmp_path, "toy", "train", PRE, prompt="random", cache_mb=0)
    cached = ImageTextMaskDataset(tmp_path, "toy", "train", PRE, prompt="random")
    reads = []
    real_read = dataset_module.read_image
    monkeypatch.setattr(dataset_module, "read_image", lambda p: reads.append(p) or real_read(p))
    for epoch in range(3):  # prompts change with the epoch; pixels, masks and tokens must follow
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            assert set(a) == set(b)
            for key in a:
                if torch.is_tensor(a[key]):
                    assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
                else:
                    assert a[key] == b[key], key
    assert len(reads) == 3 * 4 + 4  # the uncached set reads every epoch, the cached one once
    tight = ImageTextMaskDataset(tmp_path, "toy", "train", PRE, cache_mb=1e-9)
    tight[0]
    assert not tight._samples  # over its RAM cap the cache keeps nothing


def test_no_tokenizer_omits_text_tensors(tmp_path):
    make_dataset(tmp_path)
    s = load_dataset(tmp_path, "toy", "train", PRE_NO_TEXT)[0]
    assert "input_ids" not in s and "attention_mask" not in s and s["prompt"] == ""


def test_prompt_keys_sorted_numerically(tmp_path):
    prompts = {f"p{k}": f"text {k}" for k in (0, 10, 2, 1, 9)}
    make_dataset(
        tmp_path, records=[{"img_name": "a.png", "mask_name": "a.png", "prompts": prompts}]
    )
    ds = load_dataset(tmp_path, "toy", "train", PRE, prompt="p10")
    assert ds.prompt_keys == ["p0", "p1", "p2", "p9", "p10"]
    assert ds[0]["prompt"] == "text 10"


def test_jpeg_mask_loads_binary(tmp_path):
    one_item_dataset(tmp_path, Image.fromarray(mask_array()), ext="jpg")
    s = load_dataset(tmp_path, "toy", "train", PRE)[0]
    assert set(s["mask"].unique().tolist()) <= {0.0, 1.0} and s["mask"].sum() > 0


def test_reference_record_with_extra_keys(tmp_path):
    rec = {
        "img_name": "train/images/x.png",
        "mask_name": "train/mask_1/x.png",
        "bbox": [1, 2, 3, 4],
        "cat": 1,
        "segment_id": 7,
        "sentences": [{"idx": 0, "sent_id": 0, "sent": "a polyp"}],
        "sentences_num": 1,
        "prompts": {"p0": "", "p1": "polyp", "p2": ["pink polyp", "round polyp"]},
    }
    make_dataset(tmp_path, records=[rec])
    ds = load_dataset(tmp_path, "toy", "train", PRE, prompt="p1")
    assert ds.records[0]["bbox"] == [1, 2, 3, 4] and ds.records[0]["segment_id"] == 7
    s = ds[0]
    assert s["image_id"] == "train/mask_1/x.png" and s["prompt"] == "polyp"


def test_list_prompt_alternatives(tmp_path):
    make_dataset(tmp_path, n=20)
    ds = load_dataset(tmp_path, "toy", "train", PRE, prompt="p2")
    seen = {ds.prompt_text(i) for i in range(len(ds))}
    assert seen <= {"small polyp", "round polyp", "pink polyp"} and len(seen) > 1


def test_random_prompt_never_p0_and_deterministic(tmp_path):
    make_dataset(tmp_path, n=10)
    ds = load_dataset(tmp_path, "toy", "train", PRE, prompt="random", seed=3)
    twin = load_dataset(tmp_path, "toy", "train", PRE, prompt="random", seed=3)
    per_epoch = []
    for epoch in range(5):
        ds.set_epoch(epoch)
        twin.set_epoch(epoch)
        texts = [ds.prompt_text(i) for i in range(len(ds))]
        assert all(t != "" for t in texts)  # p0 is the empty prompt
        # same (seed, epoch) -> same draw, whatever the access order
        assert texts == [twin.prompt_text(i) for i in reversed(range(len(ds)))][::-1]
        per_epoch.append(texts)
    assert len({tuple(t) for t in per_epoch}) > 1
    ds.set_epoch(0)
    assert [ds.prompt_text(i) for i in range(len(ds))] == per_epoch[0]


def test_prompt_text_matches_sample(tmp_path):
    make_dataset(tmp_path, n=4)
    ds = load_dataset(tmp_path, "toy", "train", PRE, prompt="random")
    ds.set_epoch(2)
    for i in range(len(ds)):
        assert ds[i]["prompt"] == ds.prompt_text(i)
    assert ds[-1]["prompt"] == ds.prompt_text(3)


def test_pooled_dataset(tmp_path):
    make_dataset(tmp_path, "kvasir_polyp", n=2)
    make_dataset(tmp_path, "busi", n=3)
    ds = load_dataset(tmp_path, ["kvasir_polyp", "busi"], "train", PRE, prompt="random")
    assert isinstance(ds, PooledDataset) and len(ds) == 5
    assert ds.sources == ["kvasir_polyp", "busi"]
    assert [ds[i]["dataset"] for i in range(5)] == ["kvasir_polyp"] * 2 + ["busi"] * 3
    ds.set_epoch(4)
    assert all(d.epoch == 4 for d in ds.datasets)
    assert [ds[i]["prompt"] for i in range(5)] == [ds.prompt_text(i) for i in range(5)]


def test_pooled_names_expand_to_their_members():
    assert members("synth_pooled") == POOLED["synth_pooled"]
    assert members("synth_polyp") == ["synth_polyp"] and members("a+b") == ["a", "b"]


# --- one test per bad input --------------------------------------------------------------------


def test_missing_image(tmp_path):
    base = make_dataset(tmp_path)
    (base / "images" / "sub" / "img_2.png").unlink()
    with pytest.raises(DataError, match="img_2.png") as e:
        load_dataset(tmp_path, "toy", "train", PRE)
    assert "VLSM_DATA" in str(e.value) and "1 image/mask" in str(e.value)
    with pytest.raises(DataError, match="img_2.png"):
        read_image(base / "images" / "sub" / "img_2.png")


def test_missing_mask(tmp_path):
    base = make_dataset(tmp_path)
    (base / "masks" / "sub" / "mask_0.png").unlink()
    with pytest.raises(DataError, match="mask_0.png"):
        load_dataset(tmp_path, "toy", "train", PRE)


def test_mask_size_differs_from_image(tmp_path):
    path = one_item_dataset(tmp_path, Image.fromarray(mask_array(H, W + 4)))
    ds = load_dataset(tmp_path, "toy", "train", PRE)
    with pytest.raises(DataError, match="size mismatch") as e:
        ds[0]
    msg = str(e.value)
    assert str(path) in msg and "img_0.png" in msg and f"{W}x{H}" in msg and f"{W + 4}x{H}" in msg


def test_corrupt_image(tmp_path):
    base = make_dataset(tmp_path, n=1)
    path = base / "images" / "sub" / "img_0.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes())
    ds = load_dataset(tmp_path, "toy", "train", PRE)
    with pytest.raises(DataError, match=re.escape(str(path))) as e:
        ds[0]
    assert "re-export or delete" in str(e.value)


def test_unknown_prompt_key(tmp_path):
    make_dataset(tmp_path, "kvasir_polyp")
    with pytest.raises(DataError, match="unknown prompt key 'p12'") as e:
        load_dataset(tmp_path, "kvasir_polyp", "train", PRE, prompt="p12")
    assert "kvasir_polyp; available: p0, p1, p2, p3, random" in str(e.value)


def test_empty_split(tmp_path):
    base = make_dataset(tmp_path)
    write_split(base, "val", [])
    with pytest.raises(DataError, match="empty split .*val.json") as e:
        load_dataset(tmp_path, "toy", "val", PRE)
    assert "test.json" in str(e.value)


def test_missing_split_lists_available(tmp_path):
    base = make_dataset(tmp_path, split="testB")
    with pytest.raises(DataError, match="val.json") as e:
        load_records(base / "anns" / "val.json")
    assert "testB" in str(e.value)


def test_malformed_json(tmp_path):
    base = make_dataset(tmp_path)
    path = base / "anns" / "train.json"
    path.write_text('[\n  {"img_name": "a.png",\n  "mask_name": }\n]')
    with pytest.raises(DataError, match=re.escape(str(path))) as e:
        load_records(path)
    assert "line 3" in str(e.value) and "column" in str(e.value)


def test_record_missing_key(tmp_path):
    base = make_dataset(tmp_path)
    recs = json.loads((base / "anns" / "train.json").read_text())
    del recs[1]["mask_name"]
    path = write_split(base, "train", recs)
    with pytest.raises(DataError, match="record 1") as e:
        load_records(path)
    assert "'mask_name'" in str(e.value) and "img_1.png" in str(e.value)


def test_missing_dataset_folder(tmp_path):
    make_dataset(tmp_path, "busi")
    with pytest.raises(DataError, match="kvasir_polyp") as e:
        load_dataset(tmp_path, ["busi", "kvasir_polyp"], "train", PRE)
    msg = str(e.value)
    assert "busi" in msg and "vlsm data synth" in msg and "VLSM_DATA" in msg
