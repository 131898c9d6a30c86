"""A suite's results as a Markdown page, generated from its statistics run's result files.

The statistics notebook writes its tables (``results/<name>.md``) and figures
(``results/<name>.png``); ``write_results_page`` sets them in reading order on one page (the
demo's is ``docs/results/demo.md``, written again by every ``make study``) and copies the
figures beside it. Nothing on the page is typed by hand: a number that is not in a result file
is not on the page.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vlsm_lib.files import write_text

# (heading, what it shows, tables, figures): the page's sections in reading order; a section
# whose files the statistics run did not write is left out.
SECTIONS = (
    (
        "Findings",
        "One line per comparison, with the CI and Holm p its claim rests on and its label: "
        "replicated across seeds (three seeds for every side that trains; tested over "
        "seeds and clusters together), fixed models only (these trained models on these "
        "images), no practical difference (CI inside the declared margin) or inconclusive.",
        ["findings"],
        [],
    ),
    (
        "Table 2",
        "Mean Dice [95 % CI] per training set, model and prompt (rows) and test set (columns), "
        "the mean over non-empty truths where a set has empty ones, and a flag on a "
        "configuration that predicts empty masks. Bold: a column's best where it beats the "
        "runner-up as a recipe (three seeds for every side that trains); a column "
        "of single-seed or untrained models has no bold.",
        ["table2_grid"],
        [],
    ),
    (
        "Finetuned against zero-shot",
        "Each finetuned configuration against the zero-shot run of the same model, prompt and "
        "weights, on the images both scored: Wilcoxon signed-rank, Holm, rank-biserial r.",
        ["finetune_vs_zero_shot"],
        [],
    ),
    (
        "Prompt levels (the paper's Fig. 2)",
        "Dice at each prompt level, zero-shot and finetuned; * marks oracle levels, whose words "
        "are computed from the test mask.",
        [],
        ["prompt_levels"],
    ),
    (
        "What the prompt adds",
        "Each configuration finetuned with a prompt against the same one finetuned with the "
        "empty prompt.",
        ["prompt_effect"],
        [],
    ),
    (
        "Perturbed prompts (the paper's Fig. 3)",
        "Change of Dice when one attribute of the prompt is replaced by a wrong value or a "
        "random word, over the images whose prompt changed.",
        ["perturbation"],
        ["perturbation"],
    ),
    (
        "Prompt-use index",
        "Dice with the right prompt minus Dice with a control prompt; near zero, the model does "
        "not read its text.",
        ["prompt_use_index"],
        ["prompt_use_index"],
    ),
    (
        "Robustness of wording",
        "Change of Dice when the prompt is written as a person might (synonyms and paraphrase, "
        "word order, typos, abbreviations and case, attributes dropped, irrelevant clauses "
        "added, no location, a contradicting attribute) instead of as the template wrote it, "
        "over the images whose prompt changed. Read it beside the prompt-use index: a model "
        "that does not read its text is robust to any wording.",
        ["wording"],
        ["wording"],
    ),
    (
        "Qualitative examples (the paper's Fig. 4)",
        "Test images drawn at random (seeded) with a non-empty truth: truth and predictions "
        "with the right, a perturbed and the empty prompt.",
        [],
        ["qualitative"],
    ),
    (
        "Domain shift",
        "Per checkpoint: in-distribution Dice, Dice on each unseen set, and the drop.",
        ["domain_shift"],
        [],
    ),
    (
        "Transfer modes",
        "Each train policy beside the zero-shot run of the same weights, against trainable "
        "parameters and the fraction of the training split; then the policies' paired tests.",
        ["policy_tests"],
        ["transfer_modes", "train_fraction"],
    ),
    (
        "What the reference's faults cost",
        "Each declared fault: the run with the reference's behaviour against the run that "
        "differs from it in that behaviour alone (one seed each).",
        ["reference_faults"],
        [],
    ),
    (
        "Models against each other",
        "Pairwise Wilcoxon between models per test set and setting (Holm); across blocks, "
        "Friedman's omnibus test and mean ranks, drawn as critical-difference diagrams whose "
        "bars join the models the pairwise tests do not separate.",
        ["wilcoxon_models"],
        ["cd_diagram"],
    ),
)


def write_results_page(
    statistics_run: str | Path, page: str | Path, title: str, runs: int, note: str = ""
) -> Path:
    """Write ``page`` (Markdown) from the result files of ``statistics_run`` (a run folder of
    the statistics notebook, which gathered ``runs`` runs), its figures copied into
    ``<page folder>/<page stem>/``. ``note``: a paragraph under the title (what the numbers
    are, e.g. tiny models on synthetic data)."""
    run, page = Path(statistics_run), Path(page)
    results, figures = run / "results", page.parent / page.stem
    if not (results / "summary.csv").is_file():
        raise FileNotFoundError(f"{results} holds no statistics results: run the notebook first")
    lines = [f"# {title}", ""]
    lines += [
        f"Generated by the statistics run `{run.name}` of the suite `{run.parent.parent.name}` "
        f"from the result files of {runs} runs; `make study` writes this page again. Do "
        "not edit it by hand.",
        "",
    ]
    if note:
        lines += [note.strip(), ""]
    lines += [
        "Every row is one configuration (a run's identity without its seed) on one test set; "
        "`seeds` (`seeds_a`, `seeds_b`) says how many trained models a row averages: a test "
        "over one seed per side compares two trained models, not two recipes. The full tables "
        "(CSV, LaTeX) are in the run's `results/` folder.",
        "",
    ]
    shutil.rmtree(figures, ignore_errors=True)
    for heading, text, tables, pictures in SECTIONS:
        have_tables = [t for t in tables if (results / f"{t}.md").is_file()]
        have_figures = [f for f in pictures if (results / f"{f}.png").is_file()]
        if not have_tables and not have_figures:
            continue
        lines += [f"## {heading}", "", text, ""]
        for name in have_figures:
            figures.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results / f"{name}.png", figures / f"{name}.png")
            lines += [f"![{heading}: {name}]({figures.name}/{name}.png)", ""]
        for name in have_tables:
            table = (results / f"{name}.md").read_text(encoding="utf-8").strip()
            lines += [table if table else "(no rows)", ""]
    return write_text(page, "\n".join(lines).rstrip() + "\n")
