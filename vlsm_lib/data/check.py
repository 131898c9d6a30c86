"""``vlsm data check ROOT/NAME [ROOT/OTHER ...]``: is a dataset what it claims to be?

Per dataset (errors unless said otherwise):

- annotation files present and well formed; every record's image and mask exist and decode;
  masks binary (two levels) and of their image's size;
- prompt keys complete: every record has the same keys p0..pN;
- no image in two splits: the same file name, or the same bytes under another name, in two
  splits is a **leak**; near-duplicates across splits (perceptual hashes within ``NEAR`` bits,
  imagehash: re-encoded copies, neighbouring video frames) are listed as warnings;
- split counts against the paper's for the 11 known datasets (warning).

Across the datasets given: two datasets whose annotation files are copies of each other, or
most of whose images are, are flagged (this is what catches the reference's CVC-300, a copy of
ColonDB); near-duplicate images shared by two datasets are listed as warnings.

``check`` returns a ``Report`` and writes it to ``<dataset>/check.json``; the finetune and
zero-shot notebooks refuse a dataset whose check found a leak (``refuse_leaks``) unless told
otherwise.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from vlsm_lib.data.dataset import load_records
from vlsm_lib.data.io import DataError, read_image
from vlsm_lib.files import write_json

NEAR = 4  # Hamming distance between 64-bit perceptual hashes that counts as a near-duplicate
COPY_SHARE = 0.5  # share of one dataset's images found in another that makes it a copy
SHOWN = 10  # files or pairs listed per finding
CHECK_JSON = "check.json"


@dataclass
class Finding:
    level: str  # "error" or "warning"
    dataset: str
    what: str
    items: list = field(default_factory=list)

    def line(self) -> str:
        more = f" (+{len(self.items) - SHOWN} more)" if len(self.items) > SHOWN else ""
        listed = f": {self.items[:SHOWN]}{more}" if self.items else ""
        return f"{self.level.upper():7} {self.dataset}: {self.what}{listed}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # dataset -> {split: records}

    def add(self, level, dataset, what, items=()) -> None:
        self.findings.append(Finding(level, dataset, what, list(items)))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def leaks(self, dataset: str) -> list[Finding]:
        return [f for f in self.errors if f.dataset == dataset and "leak" in f.what]

    def text(self) -> str:
        lines = [
            f"{name}: " + ", ".join(f"{s} {n}" for s, n in c.items())
            for name, c in self.counts.items()
        ]
        lines += [f.line() for f in self.findings] or ["no errors, no warnings"]
        n_err, n_warn = len(self.errors), len(self.findings) - len(self.errors)
        return "\n".join(lines + [f"{n_err} error(s), {n_warn} warning(s)"])


def _phash(image) -> int:
    import imagehash  # slow to import; only the check needs it

    return int(str(imagehash.phash(image)), 16)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64."""
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def near_pairs(a: np.ndarray, b: np.ndarray, near: int = NEAR, same=False) -> list[tuple]:
    """(i, j, distance) with Hamming(a[i], b[j]) <= near; ``same``: a is b, pairs i < j."""
    out = []
    for i, h in enumerate(a):
        dist = _popcount(np.bitwise_xor(b, h))
        js = np.nonzero(dist <= near)[0]
        out += [(i, int(j), int(dist[j])) for j in js if not same or j > i]
    return out


def _scan(folder: Path, report: Report) -> list[dict] | None:
    """Every record of every split with its image's hashes; None when no annotation file."""
    name, rows = folder.name, []
    splits = sorted(p.stem for p in (folder / "anns").glob("*.json"))
    if not splits:
        report.add("error", name, f"no annotation files in {folder / 'anns'}")
        return None
    hashed: dict[str, tuple] = {}
    missing, broken, sizes, keys = [], [], [], {}
    for split in splits:
        try:
            records = load_records(folder / "anns" / f"{split}.json")
        except DataError as err:
            report.add("error", name, str(err))
            continue
        report.counts.setdefault(name, {})[split] = len(records)
        for rec in records:
            keys.setdefault(tuple(sorted(rec["prompts"])), []).append(rec["mask_name"])
            image, mask = folder / "images" / rec["img_name"], folder / "masks" / rec["mask_name"]
            if not image.is_file() or not mask.is_file():
                missing.append(str(image if not image.is_file() else mask))
                continue
            try:
                if rec["img_name"] not in hashed:
                    img = read_image(image)
                    data = image.read_bytes()
                    hashed[rec["img_name"]] = (
                        hashlib.sha1(data).hexdigest(),
                        _phash(img),
                        img.size,
                    )
                shape = _mask_shape(mask)
            except DataError as err:
                broken.append(str(err))
                continue
            sha, ph, (w, h) = hashed[rec["img_name"]]
            if shape != (h, w):
                sizes.append(f"{rec['mask_name']} {shape[1]}x{shape[0]} vs image {w}x{h}")
            rows.append(
                {
                    "split": split,
                    "img_name": rec["img_name"],
                    "sha": sha,
                    "phash": ph,
                    "mask_name": rec["mask_name"],
                }
            )
    for what, items in (
        ("files missing", missing),
        ("files that do not decode or masks that are not binary", broken),
        ("masks not of their image's size", sizes),
    ):
        if items:
            report.add("error", name, what, items)
    if len(keys) > 1:
        shapes = {", ".join(k): len(v) for k, v in keys.items()}
        report.add("error", name, f"prompt keys differ between records: {shapes}")
    return rows


def _mask_shape(path: Path) -> tuple[int, int]:
    from vlsm_lib.data.build import decode_mask

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decode_mask raises on more than two levels
        return decode_mask(path, jpeg=path.suffix.lower() in (".jpg", ".jpeg")).shape


def _splits(name: str, rows: list[dict], report: Report, near: int) -> None:
    """Leaks: an image (name, bytes or perceptual hash) in two splits; near-duplicates."""
    by_image: dict[str, set] = {}
    for key in ("img_name", "sha"):
        for r in rows:
            by_image.setdefault(f"{key}:{r[key]}", set()).add(r["split"])
    leaked = sorted(
        {k.split(":", 1)[1] for k, s in by_image.items() if len(s) > 1 and k.startswith("img_name")}
    )
    same = sorted({k for k, s in by_image.items() if len(s) > 1 and not k.startswith("img_name")})
    if leaked:
        report.add("error", name, "leak: images in two splits", leaked)
    elif same:
        report.add("error", name, "leak: the same file under two names in two splits", same)
    images = list({r["img_name"]: r for r in rows}.values())
    hashes = np.array([r["phash"] for r in images], dtype=np.uint64)
    pairs = [(images[i], images[j], d) for i, j, d in near_pairs(hashes, hashes, near, True)]
    cross = [
        f"{a['split']}/{a['img_name']} ~ {b['split']}/{b['img_name']} ({d} bits)"
        for a, b, d in pairs
        if a["split"] != b["split"] and d > 0
    ]
    if cross:
        report.add("warning", name, f"near-duplicate images across splits (<= {near} bits)", cross)


def _paper_sizes(name: str, report: Report) -> None:
    from vlsm_lib.data import sources

    if name not in sources.SOURCES or name not in report.counts:
        return
    paper = sources.SOURCES[name].sizes
    have = report.counts[name]
    if all(float(v).is_integer() for v in paper.values()) and paper != {
        s: have.get(s, 0) for s in paper
    }:
        report.add("warning", name, f"split sizes {have} differ from the paper's {paper}")


def _across(scanned: dict[str, list[dict]], folders: dict[str, Path], report: Report, near: int):
    names = list(scanned)
    anns = {
        n: {p.name: p.read_bytes() for p in (folders[n] / "anns").glob("*.json")} for n in names
    }
    for k, a in enumerate(names):
        for b in names[k + 1 :]:
            same = sorted(s for s in anns[a] if anns[b].get(s) == anns[a][s])
            if same:
                report.add(
                    "error", b, f"copy: its annotation files {same} are {a}'s, byte for byte"
                )
            ha = {r["phash"] for r in scanned[a]}
            hb = {r["phash"] for r in scanned[b]}
            shared = len(ha & hb)
            if ha and hb and shared >= COPY_SHARE * min(len(ha), len(hb)):
                report.add(
                    "error",
                    b,
                    f"copy: {shared} of its {len(hb)} images are {a}'s ({len(ha)} images)",
                )
            elif shared:
                report.add("warning", b, f"{shared} images also in {a}")


def check(folders: list[str | Path], near: int = NEAR, write: bool = True) -> Report:
    """Check each dataset folder and the set of them (module docstring); writes each one's
    findings to ``<folder>/check.json`` unless ``write`` is False."""
    report, scanned, paths = Report(), {}, {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            report.add("error", folder.name, f"{folder} is not a folder")
            continue
        rows = _scan(folder, report)
        if rows is not None:
            scanned[folder.name], paths[folder.name] = rows, folder
            _splits(folder.name, rows, report, near)
            _paper_sizes(folder.name, report)
    _across(scanned, paths, report, near)
    if write:
        for name, folder in paths.items():
            mine = [f.__dict__ for f in report.findings if f.dataset == name]
            write_json(
                folder / CHECK_JSON,
                {
                    "checked": datetime.now(UTC).isoformat(timespec="seconds"),
                    "with": sorted(paths),
                    "leak": bool(report.leaks(name)),
                    "findings": mine,
                },
            )
    return report


def refuse_leaks(data_root: str | Path, names: list[str], allow: bool = False) -> None:
    """DataError when a dataset's last check (its check.json) found a train/test leak, unless
    ``allow``; a dataset never checked passes."""
    for name in names:
        path = Path(data_root) / name / CHECK_JSON
        if allow or not path.is_file():
            continue
        found = json.loads(path.read_text(encoding="utf-8"))
        if found.get("leak"):
            leaks = [f["what"] for f in found["findings"] if "leak" in f["what"]]
            raise DataError(
                f"{name}: its check ({path}) found {leaks}; fix the splits and run `vlsm data "
                "check` again, or pass allow_leaks=True to use it anyway"
            )
