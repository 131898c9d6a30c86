"""vlsm_lib.analysis.findings: one labelled line per comparison, never a replicated claim that
rests on one seed a side."""

import numpy as np
import pandas as pd
import pytest

from vlsm_lib.analysis import findings, stats


def _runs(study, prompt, means, n=200, seed0=42, noise=0.01):
    rng = np.random.default_rng(len(prompt) + int(means[0] * 100))
    frames = []
    for k, mean in enumerate(means):
        seed = seed0 + k
        frames.append(
            pd.DataFrame(
                {
                    "run_id": f"{study}__cris__ref__{prompt}__s{seed}",
                    "study": study,
                    "model": "cris",
                    "dataset": "ref",
                    "prompt": prompt,
                    "seed": seed,
                    "test_set": "ref",
                    "image_id": [f"i{j}" for j in range(n)],
                    "dice": mean + rng.normal(0, noise, n),
                }
            )
        )
    return frames


def test_each_comparison_is_one_labelled_line_and_one_seed_is_never_replicated():
    table = pd.concat(
        [
            *_runs("finetune", "p6", [0.80, 0.81, 0.82]),
            *_runs("finetune", "p0", [0.40, 0.41, 0.42]),
            *_runs("zero_shot", "p6", [0.30]),
        ]
    )
    text_use = stats.prompt_effect(table, margin=0.01)
    one_seed = stats.prompt_effect(table[table.seed == 42], margin=0.01)
    versus_zero = stats.finetune_vs_zero_shot(table, margin=0.01)
    got = findings.findings(
        text_use=pd.concat([text_use, one_seed]), finetuned_vs_zero_shot=versus_zero
    )
    assert list(got.columns) == findings.COLUMNS
    assert len(got) == 3  # p6 vs p0 (three seeds, then one); p6 vs zero-shot p6
    replicated = got[got.claim == stats.REPLICATED]
    assert set(replicated.area) == {"text use", "finetuned vs zero-shot"}
    assert (
        replicated.seeds_a.ge(1).all() and (replicated.test == "seeds x clusters (bootstrap)").all()
    )
    single = got[(got.area == "text use") & (got.seeds_a == 1)].iloc[0]
    assert single.claim == "fixed models only (1 seed)" and single.test == "clusters (Wilcoxon)"
    first = got[got.area == "text use"].iloc[0]
    assert first.finding == "cris finetuned on ref with p6 vs with prompt p0"
    assert first.effect == pytest.approx(0.40, abs=0.01) and first.ci_low > 0.3
    assert (got.clusters == 200).all()


def test_unknown_areas_are_refused_and_unlabelled_tables_left_out():
    with pytest.raises(KeyError, match="unknown finding area.*valid: .*'text_use'"):
        findings.findings(text_uses=pd.DataFrame())
    unlabelled = pd.DataFrame([{"model": "cris", "mean_diff": 0.1}])
    assert findings.findings(text_use=unlabelled, models=pd.DataFrame()).empty
