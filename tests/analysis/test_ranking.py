"""vlsm_lib.analysis.ranking: models compared within one setting, against scipy; the diagram's
bars from the pairwise table's own tests."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vlsm_lib.analysis import figures, ranking

RNG = np.random.default_rng(1)
SCORES = {"unet": RNG.uniform(0.6, 1.0, 15), "cris": RNG.uniform(0.4, 0.9, 15)}
SCORES["clipseg"] = RNG.uniform(0.1, 0.6, 15)


def rows(model, dice, dataset="kvasir", run_id=None, test_set="kvasir"):
    return pd.DataFrame(
        {
            "run_id": run_id or f"finetune__{model}__{dataset}__p6",
            "study": "finetune",
            "model": model,
            "dataset": dataset,
            "prompt": "p6",
            "seed": 42,
            "test_set": test_set,
            "image_id": [f"img{i}" for i in range(len(dice))],
            "dice": dice,
        }
    )


TABLE = pd.concat([rows(m, d) for m, d in SCORES.items()])


def test_friedman_is_scipys_and_the_diagram_separates_what_the_pairwise_table_does():
    pairwise = ranking.pairwise_models(TABLE)
    got = ranking.friedman_ranks(TABLE, pairwise)
    (result,) = got.values()
    wide = pd.DataFrame(SCORES)[sorted(SCORES)]
    assert result["friedman"]["p"] == pytest.approx(sps.friedmanchisquare(*wide.T.values).pvalue)
    assert result["friedman"]["blocks"] == 15 and result["friedman"]["contestants"] == 3
    separated = result["separated"]
    for row in pairwise.itertuples():  # one post-hoc procedure: the table's own Holm p
        assert separated.loc[row.model_a, row.model_b] == separated.loc[row.model_b, row.model_a]
        assert separated.loc[row.model_a, row.model_b] == pytest.approx(row.p_holm)
    assert np.diag(separated.to_numpy()).tolist() == [1.0, 1.0, 1.0]
    assert figures.cd_diagrams(got).axes
    ranks = wide.rank(axis=1, ascending=False).mean()
    pd.testing.assert_series_equal(result["mean_rank"], ranks.sort_values(), check_names=False)
    assert list(ranking.friedman_table(got)["contestant"]) == list(ranks.sort_values().index)


def test_pairwise_models_pair_images_within_one_setting():
    other = rows("unet", SCORES["unet"] * 0.9, dataset="pooled", test_set="kvasir")
    got = ranking.pairwise_models(pd.concat([TABLE, other]))
    kvasir = got[got.setting.str.contains("/ kvasir /")]
    assert len(kvasir) == 3 and set(kvasir["n_clusters"]) == {
        15
    }  # the pooled run is another setting
    assert "p_holm" in got and (got["p_holm"] >= got["p"]).all()


def test_two_configurations_of_one_model_stay_apart():
    slow = rows("cris", SCORES["cris"] - 0.1, run_id="finetune__cris__kvasir__p6__lr-0.1")
    images = ranking.contestants(pd.concat([TABLE, slow]))
    assert images["contestant"].nunique() == 4
    assert images["contestant"].str.startswith("cris [").sum() == 30


def test_too_few_models_give_no_ranking_and_an_empty_diagram():
    two = TABLE[TABLE.model != "clipseg"]
    assert ranking.friedman_ranks(two, ranking.pairwise_models(two)) == {}
    assert figures.cd_diagrams({}).axes  # a figure that says why, not an error
    with pytest.raises(ValueError, match="block must be"):
        ranking.rank_blocks(TABLE.assign(contestant=TABLE.model), "dice", "patient")
