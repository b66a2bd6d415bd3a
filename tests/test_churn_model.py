"""Churn model training, persistence and the metadata plots built from it."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lifecycle.churn_model import (
    SearchSpace,
    TrainedChurnModel,
    feature_importance,
    load_booster,
    predict_scores,
    save_booster,
    train_churn_model,
)
from lifecycle.plots import (
    calibration_plot,
    figure_to_markdown,
    histogram_plot,
    importance_plot,
    roc_plot,
)

FEATURES = ("tenure", "spend", "tickets", "noise", "constant")
LABEL = "churned"
# A fast, aggressive space so early stopping reliably triggers on a few thousand rows.
SPACE = SearchSpace(
    max_depth=(3, 4),
    learning_rate=(0.3, 0.5),
    min_child_weight=(1.0,),
    subsample=(0.8, 1.0),
    colsample_bytree=(1.0,),
    n_trials=3,
    num_boost_round=300,
    early_stopping_rounds=10,
    seed=7,
)


def _frame(n: int, seed: int) -> pd.DataFrame:
    """Logistic ground truth on three features, plus a noise and a constant column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.8 * x[:, 2] - 0.5
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(x, columns=list(FEATURES[:4]))
    frame.loc[rng.random(n) < 0.05, "spend"] = np.nan  # XGBoost routes missing natively
    frame["constant"] = 1.0
    frame[LABEL] = y
    return frame


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return _frame(4_000, 1), _frame(1_500, 2), _frame(2_000, 3)


@pytest.fixture(scope="module")
def model(frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> TrainedChurnModel:
    train, valid, _ = frames
    return train_churn_model(train, valid, FEATURES, LABEL, SPACE)


def test_model_generalises_to_holdout(
    model: TrainedChurnModel, frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    _, _, test = frames
    scores = predict_scores(model.booster, test, FEATURES)
    assert scores.dtype == np.float64
    assert scores.shape == (len(test),)
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    assert roc_auc_score(test[LABEL], scores) > 0.8
    assert model.features == FEATURES


def test_trials_and_early_stopping(model: TrainedChurnModel) -> None:
    trials = model.trials
    assert len(trials) == SPACE.n_trials
    for col in ("max_depth", "learning_rate", "valid_logloss", "valid_auc", "best_iteration"):
        assert col in trials.columns
    winner = trials.loc[trials["selected"]]
    assert len(winner) == 1
    assert winner["valid_logloss"].iloc[0] == trials["valid_logloss"].min()
    assert model.best_iteration == int(winner["best_iteration"].iloc[0])
    assert model.best_iteration + 1 < SPACE.num_boost_round
    # The booster is truncated: scoring needs no iteration_range or other side state.
    assert model.booster.num_boosted_rounds() == model.best_iteration + 1
    assert model.params["max_depth"] == winner["max_depth"].iloc[0]
    assert model.params["tree_method"] == "hist"
    assert (trials["valid_auc"] > 0.75).all()


def test_valid_auc_matches_final_booster(
    model: TrainedChurnModel, frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    _, valid, _ = frames
    scores = predict_scores(model.booster, valid, FEATURES)
    selected = model.trials.loc[model.trials["selected"], "valid_auc"].iloc[0]
    assert roc_auc_score(valid[LABEL], scores) == pytest.approx(selected, abs=1e-9)


def test_training_is_deterministic(
    model: TrainedChurnModel, frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    train, valid, test = frames
    again = train_churn_model(train, valid, list(FEATURES), LABEL, SPACE)
    pd.testing.assert_frame_equal(again.trials, model.trials)
    np.testing.assert_array_equal(
        predict_scores(again.booster, test, FEATURES),
        predict_scores(model.booster, test, FEATURES),
    )


def test_search_space_sampling() -> None:
    picks = SPACE.sample()
    assert picks == SPACE.sample()
    assert len({tuple(p.values()) for p in picks}) == len(picks) == SPACE.n_trials
    full = SearchSpace(max_depth=(3,), learning_rate=(0.1,), subsample=(1.0,), n_trials=50)
    assert len(full.sample()) == 4  # the whole 1x1x2x1x2x1 grid, not 50 repeats
    with pytest.raises(ValueError, match="max_depth"):
        SearchSpace(max_depth=())


def test_save_load_round_trip(
    model: TrainedChurnModel,
    frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
) -> None:
    _, _, test = frames
    path = tmp_path / "nested" / "churn.ubj"
    save_booster(model.booster, path)
    assert path.read_bytes()[:1] == b"{"  # UBJ object marker, not a pickle stream
    assert [p.name for p in path.parent.iterdir()] == ["churn.ubj"]  # no temp file left
    loaded = load_booster(path)
    assert loaded.num_boosted_rounds() == model.best_iteration + 1
    np.testing.assert_array_equal(
        predict_scores(loaded, test, FEATURES), predict_scores(model.booster, test, FEATURES)
    )
    with pytest.raises(ValueError, match=r"\.ubj"):
        save_booster(model.booster, tmp_path / "churn.json")
    with pytest.raises(FileNotFoundError):
        load_booster(tmp_path / "absent.ubj")


def test_predict_validates_columns(
    model: TrainedChurnModel, frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    _, _, test = frames
    with pytest.raises(ValueError, match="feature order"):
        predict_scores(model.booster, test, FEATURES[::-1])
    with pytest.raises(KeyError, match="tenure"):
        predict_scores(model.booster, test.drop(columns=["tenure"]), FEATURES)
    assert predict_scores(model.booster, test.iloc[:0], FEATURES).shape == (0,)


def test_feature_importance(model: TrainedChurnModel) -> None:
    imp = feature_importance(model.booster, FEATURES)
    assert list(imp) == list(FEATURES)
    assert sum(imp.values()) == pytest.approx(1.0)
    assert imp["constant"] == 0.0  # never split on, still reported
    assert imp["tenure"] == max(imp.values())
    assert imp["noise"] < imp["tickets"]


def test_training_rejects_bad_labels(
    frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> None:
    train, valid, _ = frames
    one_class = valid.assign(**{LABEL: 0})
    with pytest.raises(ValueError, match="single class"):
        train_churn_model(train, one_class, FEATURES, LABEL, SPACE)
    with pytest.raises(KeyError, match="missing"):
        train_churn_model(train, valid, (*FEATURES, "absent"), LABEL, SPACE)


# ------------------------------------------------------------------------------ plots


def _png_bytes(markdown: str) -> bytes:
    assert markdown.startswith("![")
    prefix = "](data:image/png;base64,"
    assert prefix in markdown
    assert markdown.endswith(")")
    png = base64.b64decode(markdown.split(prefix, 1)[1][:-1], validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) < 80_000  # an 800 px wide paletted PNG; the event log keeps it
    return png


def test_plots_are_small_pngs(
    model: TrainedChurnModel, frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    _, _, test = frames
    y = test[LABEL].to_numpy()
    challenger = predict_scores(model.booster, test, FEATURES)
    champion = np.clip(challenger + np.random.default_rng(0).normal(0, 0.2, len(y)), 0, 1)
    outputs = [
        roc_plot(y, challenger, label="challenger", baseline=(champion, "champion")),
        roc_plot(y, challenger),
        calibration_plot(y, challenger, bins=10),
        importance_plot(feature_importance(model.booster, FEATURES), top=3),
        importance_plot({f"a_rather_long_feature_name_{i}": i / 10 for i in range(20)}),
        importance_plot({}),
        histogram_plot({"champion": champion, "challenger": challenger}, title="scores"),
        histogram_plot({"constant": np.ones(10), "empty": np.array([])}),
        histogram_plot({}),
    ]
    for markdown in outputs:
        _png_bytes(markdown)


def test_figure_to_markdown_sanitises_alt() -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=30)
    fig.add_subplot().plot([0, 1], [0, 1])
    markdown = figure_to_markdown(fig, "a [b]\nc")
    assert markdown.startswith("![a (b) c](data:image/png;base64,")
    _png_bytes(markdown)
