"""Are two outputs folders the same study? Every per-image table and every statistics table of
one suite compared with the other's: byte for byte, else value for value over the columns both
hold (a column only one side has is named, not hidden).

    .venv/bin/python benchmarks/compare_outputs.py OLD_OUTPUTS NEW_OUTPUTS [--suite demo]

Use it around a change that must not move a number (a refactor, a speed-up): run ``make study``
before and after on the same machine, keep the first outputs folder aside, compare. Exit 1 when
any value differs or a table is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pandas as pd


def _same_bytes(a: Path, b: Path) -> bool:
    return hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def compare(old: pd.DataFrame, new: pd.DataFrame) -> tuple[str, list[str]]:
    """("" when every shared value is equal, else what differs; the columns only one side has)."""
    shared = [c for c in old.columns if c in new.columns]
    only = sorted(set(old.columns) ^ set(new.columns))
    try:
        pd.testing.assert_frame_equal(
            old[shared].reset_index(drop=True),
            new[shared].reset_index(drop=True),
            check_exact=True,
            check_dtype=False,  # 15360.0 and 15360 are one value
        )
    except AssertionError as err:
        return str(err).splitlines()[0][:300], only
    return "", only


def _tables(old_root: Path, new_root: Path, pattern: str, read) -> dict:
    counts = {"files": 0, "identical bytes": 0, "identical values": 0, "rows": 0}
    problems, extra = [], {}
    for old in sorted(old_root.rglob(pattern)):
        new = new_root / old.relative_to(old_root)
        counts["files"] += 1
        if not new.is_file():
            problems.append(f"missing: {new}")
            continue
        frame = read(old)
        counts["rows"] += len(frame)
        if _same_bytes(old, new):
            counts["identical bytes"] += 1
            continue
        why, only = compare(frame, read(new))
        for column in only:
            extra.setdefault(column, []).append(old.relative_to(old_root).as_posix())
        if why:
            problems.append(f"{old.relative_to(old_root)}: {why}")
        else:
            counts["identical values"] += 1
    return {"counts": counts, "problems": problems, "columns on one side": extra}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--suite", default="demo")
    args = parser.parse_args(argv)
    old, new = args.old / args.suite, args.new / args.suite
    bad = False
    for name, pattern, read in (
        ("per-image tables", "per_image.parquet", pd.read_parquet),
        ("statistics tables", "statistics/*/results/*.csv", pd.read_csv),
    ):
        found = _tables(old, new, pattern, read)
        print(f"{name}: {found['counts']}")
        for column, files in found["columns on one side"].items():
            print(f"  column {column!r} on one side only, in {len(files)} file(s): {files[0]}, ...")
        for problem in found["problems"]:
            print(f"  DIFFERS {problem}")
        bad |= bool(found["problems"]) or not found["counts"]["files"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
