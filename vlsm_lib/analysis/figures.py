"""The study's findings as figures (each returns a matplotlib Figure; ``plots.save_figure``
writes PNG + SVG): prompt levels (the paper's Fig. 2), prompt perturbations (Fig. 3),
qualitative panels (Fig. 4), the prompt-use index, critical-difference diagrams, and the
transfer modes (Dice against trainable parameters; Dice against the training fraction).
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image


def house_style():
    """The project's seaborn theme (every figure of a run or a study uses it); returns seaborn."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    return sns


ORACLE_NOTE = "* oracle level: its words are computed from the test mask"


def _note(text: str, size=(6, 1)) -> plt.Figure:
    """A small figure that says why there is nothing to draw."""
    fig, ax = plt.subplots(figsize=size)
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return fig


def _label(row, cols) -> str:
    return " / ".join(str(row[c]) for c in cols if c in row and pd.notna(row[c]))


def prompt_level_curves(levels: pd.DataFrame, metric: str = "dice") -> plt.Figure:
    """``metric`` against prompt level (the paper's Fig. 2) from ``tables.prompt_levels``: one
    row of panels per setting and kind of curve, one panel per test set, one line per model
    and training, the 95 % CI as a band; oracle levels marked * on the axis."""
    house_style()
    if levels.empty:
        return _note("no prompt-level sweep in these runs")
    rows = list(dict.fromkeys(zip(levels["setting"], levels["curve"])))
    sets = list(dict.fromkeys(levels["test_set"]))
    fig, axes = plt.subplots(
        len(rows), len(sets), figsize=(4.6 * len(sets), 3.3 * len(rows)), squeeze=False
    )
    line_cols = [c for c in ("model", "trained_on", "trained_with") if c in levels]
    for (setting, curve), row_axes in zip(rows, axes):
        for test_set, ax in zip(sets, row_axes):
            panel = levels[
                (levels.setting == setting)
                & (levels.curve == curve)
                & (levels.test_set == test_set)
            ]
            for key, line in panel.groupby(line_cols, sort=False):
                x = line["prompt_key"].str[1:].astype(int).to_numpy()
                ax.plot(x, line[metric], marker="o", label=" / ".join(map(str, key)))
                ax.fill_between(x, line["ci_low"], line["ci_high"], alpha=0.2)
            ticks = sorted({int(k[1:]) for k in panel["prompt_key"]})
            oracle = set(panel.loc[panel["oracle"].fillna(False).astype(bool), "prompt_key"])
            ax.set_xticks(ticks, [f"p{t}*" if f"p{t}" in oracle else f"p{t}" for t in ticks])
            ax.set_title(f"{setting}, {curve}: {test_set}", fontsize=8)
            ax.set_ylim(0, 1)
            ax.set_xlabel("prompt level")
            ax.set_ylabel(metric)
            if len(panel):
                ax.legend(fontsize=6)
    fig.text(0.01, 0.005, ORACLE_NOTE, fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


# a point's colour says what its comparison may claim (``stats.claims``); whiskers are the CI
# the claim rests on
_CLAIM_COLOURS = {"replicated across seeds": "#d55e00", "fixed models only": "#cc79a7"}


def _claims(group: pd.DataFrame) -> list[str]:
    if "claim" in group:
        return list(group["claim"].fillna(""))
    flags = group["significant"].fillna(False) if "significant" in group else [False] * len(group)
    return ["fixed models only" if f else "" for f in flags]


def _effect_panels(effect: pd.DataFrame, y_cols: list[str], value: str, title: str):
    """Horizontal dot-and-whisker panels, one per compared configuration and test set: red, a
    difference replicated across seeds; purple, a difference of these fixed models only; blue,
    no practical difference or inconclusive."""
    house_style()
    panel_cols = [
        c for c in ("setting", "model", "trained_on", "trained_with", "test_set") if c in effect
    ]
    panels = list(effect.groupby(panel_cols, sort=False, dropna=False))
    n_rows = max(len(g) for _, g in panels)
    # one x scale for every panel: an effect of 1e-5 must not look as large as one of 0.4
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.2 * len(panels), 0.9 + 0.32 * n_rows),
        squeeze=False,
        sharex=True,
    )
    for ax, (key, group) in zip(axes[0], panels):
        y = np.arange(len(group))[::-1]
        low = group.get("claim_ci_low", group["ci_low"]).fillna(group["ci_low"])
        high = group.get("claim_ci_high", group["ci_high"]).fillna(group["ci_high"])
        err = [group[value] - low, high - group[value]]
        colours = [_CLAIM_COLOURS.get(str(c).split(" (")[0], "C0") for c in _claims(group)]
        ax.errorbar(group[value], y, xerr=err, fmt="none", ecolor="grey", capsize=2)
        ax.scatter(group[value], y, c=colours, zorder=3, s=18)
        ax.axvline(0, color="black", lw=0.8)
        labels = [" ".join(str(r[c]) for c in y_cols) for _, r in group.iterrows()]
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_title(textwrap.fill(" / ".join(map(str, key)), 48), fontsize=8)
        ax.set_xlabel(title, fontsize=8)
    fig.tight_layout()
    return fig


def perturbation(effect: pd.DataFrame, metric: str = "dice") -> plt.Figure:
    """Change of ``metric`` per perturbed attribute and mode with its 95 % CI (the paper's
    Fig. 3), one panel per configuration and test set (``tables.readable`` of
    ``effects.perturbation_effect``); red: replicated across seeds, purple: fixed models only
    (``_effect_panels``)."""
    if effect.empty:
        return _note("no perturbation sweep in these runs")
    return _effect_panels(
        effect, ["attribute", "mode"], "delta", f"change of {metric} (perturbed - right)"
    )


def wording(effect: pd.DataFrame, metric: str = "dice") -> plt.Figure:
    """Change of ``metric`` per rewording of the prompt with its 95 % CI, one panel per
    configuration and test set (``tables.readable`` of ``effects.wording_effect``)."""
    if effect.empty:
        return _note("no wording sweep in these runs")
    return _effect_panels(
        effect, ["variant"], "delta", f"change of {metric} (reworded - as written)"
    )


def prompt_use(index: pd.DataFrame, metric: str = "dice") -> plt.Figure:
    """The prompt-use index against each control with its 95 % CI, one panel per
    configuration and test set (``tables.readable`` of ``effects.prompt_use_index``)."""
    if index.empty:
        return _note("no prompt-use sweep in these runs")
    return _effect_panels(index, ["control"], "use_index", f"{metric}: right prompt - control")


def qualitative(examples: list[dict], max_rows: int = 6) -> plt.Figure:
    """The paper's Fig. 4 from ``qualitative.load_examples``: per example, the image, its
    truth and the predictions with the right, a perturbed and the empty prompt (prompt and
    Dice under each). At most ``max_rows`` examples, taken run by run."""
    if not examples:
        return _note("no saved qualitative examples in these runs")
    examples = examples[:max_rows]
    cols = ["image", "truth", "right", "perturbed", "empty"]
    fig, axes = plt.subplots(
        len(examples), len(cols), figsize=(2.3 * len(cols), 2.7 * len(examples)), squeeze=False
    )
    for row, ex in zip(axes, examples):
        for ax, col in zip(row, cols):
            ax.imshow(Image.open(ex["paths"][col]), cmap="gray" if col != "image" else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == "image":
                ax.set_ylabel(textwrap.fill(ex["run_id"], 28), fontsize=6)
                ax.set_title(ex["image_id"], fontsize=7)
            elif col == "truth":
                ax.set_title("truth", fontsize=7)
            else:
                text = ex["prompts"][col] or "(empty prompt)"
                ax.set_title(f"{col}: Dice {ex['dice'][col]:.2f}", fontsize=7)
                ax.set_xlabel(textwrap.fill(text, 30), fontsize=6)
    fig.tight_layout()
    return fig


def cd_diagrams(results: dict, alpha: float = 0.05) -> plt.Figure:
    """Critical-difference diagrams (scikit-posthocs' drawing), one panel per setting of
    ``ranking.friedman_ranks``: mean ranks (1 = best) on the axis, bars joining contestants
    that the pairwise Wilcoxon-Holm table does not separate at ``alpha`` (the same tests as
    ``wilcoxon_models``); the title gives Friedman's omnibus test."""
    import scikit_posthocs as sp

    house_style()
    if not results:
        return _note("no setting with 3+ models and 2+ complete blocks", (7, 1))
    fig, axes = plt.subplots(len(results), 1, figsize=(7, 2.2 * len(results)), squeeze=False)
    for ax, (setting, r) in zip(axes[:, 0], results.items()):
        sp.critical_difference_diagram(r["mean_rank"], r["separated"], alpha=alpha, ax=ax)
        f = r["friedman"]
        ax.set_title(
            f"{setting}: Friedman chi2 {f['statistic']:.1f}, p {f['p']:.1e} "
            f"({f['blocks']} blocks, {f['contestants']} models)",
            fontsize=8,
        )
    fig.tight_layout()
    return fig


def _transfer_panels(transfer: pd.DataFrame):
    sets = list(dict.fromkeys(transfer["test_set"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 3.8), squeeze=False)
    return fig, zip(axes[0], sets)


def dice_vs_trainable(transfer: pd.DataFrame, metric: str = "dice") -> plt.Figure:
    """One point per model and policy (full training set) from ``transfer.transfer_table``:
    ``metric`` with its 95 % CI against trainable parameters (log axis; zero-shot at 1); colour
    = policy, marker = model."""
    import seaborn as sns

    house_style()
    if transfer.empty:
        return _note("no transfer-mode runs")
    full = transfer[transfer["train_fraction"].isna() | (transfer["train_fraction"] == 1.0)]
    if full.empty:
        return _note("no transfer-mode runs")
    fig, panels = _transfer_panels(full)
    policies = list(dict.fromkeys(full["policy"]))
    colours = dict(zip(policies, sns.color_palette("colorblind", len(policies))))
    models = list(dict.fromkeys(full["model"]))
    markers = dict(zip(models, "osD^v<>"))
    for ax, test_set in panels:
        for _, r in full[full.test_set == test_set].iterrows():
            n = r["trainable_params"]
            x = max(float(n), 1.0) if pd.notna(n) else 1.0
            err = [[r[metric] - r["ci_low"]], [r["ci_high"] - r[metric]]]
            label = r["policy"] if len(models) == 1 else f"{r['model']} / {r['policy']}"
            ax.errorbar(x, r[metric], yerr=err, fmt=markers[r["model"]], capsize=3,
                        color=colours[r["policy"]], label=label)  # fmt: skip
        ax.set_xscale("log")
        title = (
            f"{models[0]}, tested on {test_set}" if len(models) == 1 else f"tested on {test_set}"
        )
        ax.set(title=title, xlabel="trainable parameters (zero-shot at 1)", ylabel=metric)
        handles, labels = ax.get_legend_handles_labels()
        keep = dict(zip(labels, handles))
        ax.legend(keep.values(), keep.keys(), fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def dice_vs_fraction(transfer: pd.DataFrame, metric: str = "dice") -> plt.Figure:
    """``metric`` (95 % CI as error bars) against the training fraction, one line per model
    and policy trained at more than one fraction, from ``transfer.transfer_table``."""
    house_style()
    if transfer.empty:
        return _note("no transfer-mode runs")
    runs = transfer[transfer["train_fraction"].notna()]
    several = runs.groupby(["model", "policy"])["train_fraction"].transform("nunique") > 1
    runs = runs[several]
    if runs.empty:
        return _note("no policy trained at more than one training fraction")
    fig, panels = _transfer_panels(runs)
    for ax, test_set in panels:
        rows = runs[runs.test_set == test_set]
        for (model, policy), line in rows.groupby(["model", "policy"], sort=False):
            line = line.sort_values("train_fraction")
            err = [line[metric] - line["ci_low"], line["ci_high"] - line[metric]]
            ax.errorbar(line["train_fraction"], line[metric], yerr=err, marker="o", capsize=3,
                        label=f"{model} / {policy}")  # fmt: skip
        ax.set_xscale("log")
        ticks = sorted(rows["train_fraction"].unique())
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set(title=f"tested on {test_set}", xlabel="fraction of the training split",
               ylabel=metric)  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
