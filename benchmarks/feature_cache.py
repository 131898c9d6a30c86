#!/usr/bin/env python
"""Speed-up of fit's feature cache: seconds per step with feature_cache "off" against "memory".

Decoder-only training of paper CLIPSeg (batch 8, 352 px, 24 training images; --quick: tiny
CLIPSeg, batch 16, 128 px, 32 images): fit's seconds per step (its history rows' train_seconds
/ steps) with feature_cache="off" (one epoch) and "memory" (the epochs after the first, which
fills the cache; that one is reported as "fill"), interleaved with a bare decoder-only step on
precomputed features (``train.step`` over ``model.decode``: no data loading, no cache lookup),
the floor of any cached step. At matmul precision "medium" (the reference's; fit runs it as
"highest" on a CPU without bf16 instructions,
``vlsm_lib.engine.runtime.matmul_precision``), "highest",
and "medium_forced": fit as on a CPU with bf16 units (``runtime.cpu_has_fast_bf16`` patched to
True), i.e. torch's own "medium" (emulated bf16 on a CPU without them). Then torch.profiler's
top operators of two bare decoder steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
from pathlib import Path
from unittest import mock

import common
import torch
from common import log, med

from vlsm_lib.engine import runtime
from vlsm_lib.engine.config import TrainConfig
from vlsm_lib.models import create_model

PRECISIONS = ("medium", "highest", "medium_forced")


def op_table(fn, top: int = 8) -> list[dict]:
    """torch.profiler: the ``top`` operators by self CPU time over ``fn()``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:top]
    ]


class CacheBench:
    """One model and data set: fit with and without the cache, and the bare decoder step."""

    def __init__(self, model, train_set, val_set, cfg: TrainConfig, cached_epochs: int):
        self.model, self.train_set, self.cfg = model, train_set, cfg
        self.val_small = torch.utils.data.Subset(val_set, [0])  # fit needs one; not counted
        self.steps, self.cached_epochs = -(-len(train_set) // cfg.batch_size), cached_epochs
        self.batch = common.preload(train_set, cfg)[0]
        with torch.no_grad():  # float32, as FeatureCache stores them
            feats = model.encode_image(self.batch["pixel_values"])
            self.feats = [f.float() for f in feats]
            ids, mask = self.batch["input_ids"], self.batch["attention_mask"]
            self.text = model.encode_text(ids, mask).float()

    def decoder(self, n: int | None = None) -> float:
        """Seconds per bare decoder-only step (``train.step`` over ``model.decode``)."""
        n = n or self.steps
        setup = common.step_setup(self.model, self.cfg)
        size = tuple(self.batch["mask"].shape[-2:])
        forward = lambda _: self.model.decode(self.feats, self.text, size)
        return common.bare_steps(self.model, [self.batch] * n, setup, forward) / n

    def fit(self, cfg: TrainConfig, mode: str, epochs: int) -> list[float]:
        """Seconds per step of each epoch of a fit with ``feature_cache=mode``."""
        cfg = dataclasses.replace(cfg, feature_cache=mode, max_epochs=epochs, min_epochs=epochs)
        result, _, _ = common.run_fit(self.model, self.train_set, self.val_small, cfg)
        if result.cache != mode:
            raise RuntimeError(f"feature cache {mode!r} asked, fit used {result.cache!r}")
        return common.per_step_s(result)

    def precision(self, precision: str, rounds: int) -> dict:
        """off / memory / decoder interleaved at one matmul precision (see the docstring)."""
        requested, forced = precision.removesuffix("_forced"), precision.endswith("_forced")
        cfg = dataclasses.replace(self.cfg, matmul_precision=requested)
        fills: list[float] = []

        def memory() -> float:
            per = self.fit(cfg, "memory", 1 + self.cached_epochs)
            fills.append(per[0])
            return med(per[1:])

        variants = {"off": lambda: self.fit(cfg, "off", 1)[0], "memory": memory}
        as_bf16 = mock.patch.object(runtime, "cpu_has_fast_bf16", lambda: True)
        with as_bf16 if forced else contextlib.nullcontext():
            applied = runtime.matmul_precision(requested, "cpu")
            torch.set_float32_matmul_precision(applied)  # for the decoder step; fit sets its own
            got = common.interleave({**variants, "decoder": self.decoder}, rounds, precision)
        m = {k: med(v) for k, v in got.items()}
        return {
            "requested": requested,
            "applied": applied,
            **{f"{k}_s_per_step": v for k, v in got.items()},
            "fill_s_per_step": fills,
            **{f"{k}_median_s": v for k, v in m.items()},
            "fill_median_s": med(fills),
            "speedup": m["off"] / m["memory"],
            "speedup_bound": m["off"] / m["decoder"],
            "memory_vs_decoder": m["memory"] / m["decoder"],
        }

    def run(self, rounds: int) -> dict:
        self.decoder(1)  # warm-up
        out = {p: self.precision(p, rounds) for p in PRECISIONS}
        applied = runtime.matmul_precision("medium", "cpu")  # fit's choice for the reference's
        torch.set_float32_matmul_precision(applied)
        log(f"torch.profiler of 2 decoder steps at {applied}")
        ops = {"matmul_precision": applied, "steps": 2, "ops": op_table(lambda: self.decoder(2))}
        return {"results": out, "decoder_profile": ops}


def markdown(res: dict) -> str:
    lines = [
        f"# feature cache speed-up ({'quick' if res['quick'] else 'full'} run)",
        "",
        common.header(res),
        f"## {res['label']}, {res['train_images']} training images (s/step, median)",
        "",
        "off and memory: fit's train_seconds / steps (memory: the epochs after the first, which "
        "fills the cache: fill); decoder: the bare decoder-only step on precomputed features "
        "(train.step over model.decode; no data loading), the floor of a cached step.",
        "",
        "Precision: asked for (TrainConfig.matmul_precision) -> applied "
        '(vlsm_lib.engine.runtime.matmul_precision: "highest" for reduced precisions on a CPU '
        'without bf16 instructions); medium_forced: torch\'s own "medium" regardless.',
        "",
        "| matmul precision | off | memory | fill epoch | decoder | **off / memory** | "
        "off / decoder (bound) | memory / decoder |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for precision, r in res["results"].items():
        lines.append(
            f"| {precision} -> {r['applied']} | {r['off_median_s']:.3f} | "
            f"{r['memory_median_s']:.3f} | {r['fill_median_s']:.3f} | "
            f"{r['decoder_median_s']:.3f} | **{r['speedup']:.2f}x** | "
            f"{r['speedup_bound']:.2f}x | {r['memory_vs_decoder']:.2f} |"
        )
    prof = res["decoder_profile"]
    lines += [
        "",
        f"### torch.profiler of {prof['steps']} bare decoder steps ({prof['matmul_precision']}): "
        "top operators by self CPU time",
        "",
        "| operator | calls | self ms | share |",
        "|---|---|---|---|",
    ]
    for op in prof["ops"]:
        lines.append(f"| {op['op']} | {op['calls']} | {op['self_ms']:.0f} | {op['share']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__, "outputs/benchmarks/feature_cache.json").parse_args(argv)
    res = common.start(args)
    with tempfile.TemporaryDirectory(prefix="feature_cache_") as tmp_name:
        tmp = Path(tmp_name)
        if args.quick:
            data = common.write_data(tmp / "d128", 128, 32, 8)
            model = create_model("clipseg", size="tiny", train="decoder")
            label, batch, cached_epochs = "tiny CLIPSeg, decoder, b16, 128px", 16, 2
        else:
            data = common.write_data(tmp / "d352", 352, 24, 8)
            model = common.paper_clipseg(tmp)
            label, batch, cached_epochs = "paper CLIPSeg, decoder, b8, 352px", 8, 4
        train_set, val_set = common.datasets(data, model)
        bench = CacheBench(model, train_set, val_set, TrainConfig(batch_size=batch), cached_epochs)
        rounds = args.rounds or (1 if args.quick else 2)
        res.update(label=label, train_images=len(train_set), batch=batch)
        res.update(cached_epochs=cached_epochs, rounds=rounds, **bench.run(rounds))
    common.finish(res, args.out, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
