"""Pure promotion and data gates: each returns the number a reviewer decides on."""

import numpy as np
import pandas as pd
import pytest

from lifecycle import gates


def _scores(days: int, customers: int) -> pd.DataFrame:
    index = pd.MultiIndex.from_product(
        [pd.date_range("2026-04-01", periods=days), range(1, customers + 1)],
        names=["as_of_date", "customer_id"],
    )
    frame = index.to_frame(index=False)
    return frame.assign(score=np.linspace(0.01, 0.99, len(frame)))


def test_scores_complete_over_a_range_of_days() -> None:
    """The same customer scored on several days is not a duplicate."""
    population = _scores(3, 50)[["as_of_date", "customer_id"]]
    outcome = gates.scores_complete(_scores(3, 50), population)
    assert outcome.passed and outcome.observed == outcome.threshold == 150


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda f: f.iloc[1:], "1 missing"),
        (lambda f: pd.concat([f, f.iloc[:2]]), "2 duplicated"),
        (lambda f: f.assign(score=f["score"].where(f.index != 5, np.nan)), "1 missing"),
    ],
)
def test_scores_complete_names_what_is_wrong(mutate, needle: str) -> None:
    population = _scores(2, 20)[["as_of_date", "customer_id"]]
    outcome = gates.scores_complete(mutate(_scores(2, 20)), population)
    assert not outcome.passed and needle in outcome.detail


def test_input_drift_treats_nan_psi_as_worst() -> None:
    reference = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0)})
    candidate = pd.DataFrame({"a": np.arange(100.0), "b": np.full(100, np.nan)})
    outcome = gates.input_drift(reference, candidate, ["a", "b"], max_psi=0.25)
    assert not outcome.passed and "b" in outcome.detail


def test_input_drift_shows_but_does_not_gate_informational_features() -> None:
    """Tenure-like features drift with the age of the history: measured, shown, not gated;
    the same shift on a gated feature blocks."""
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"tenure": rng.normal(0, 1, 500), "spend_30d": rng.normal(0, 1, 500)})
    candidate = reference.assign(tenure=reference["tenure"] + 3)
    outcome = gates.input_drift(reference, candidate, ["tenure", "spend_30d"], 0.25, ["tenure"])
    assert outcome.passed and outcome.extra["psi_tenure"] > 0.25
    assert outcome.extra["not_gated"] == "tenure"
    gated = gates.input_drift(reference, candidate, ["tenure", "spend_30d"], 0.25)
    assert not gated.passed and "tenure" in gated.detail


def test_beats_champion_first_model_passes_and_says_so() -> None:
    y = np.array([0, 1] * 50)
    outcome = gates.beats_champion_auc(y, np.linspace(0, 1, 100), None, 0.01, 50)
    assert outcome.passed and "first model" in outcome.detail


def test_beats_champion_blocks_a_clearly_worse_challenger() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    good = np.clip(y * 0.6 + rng.normal(0.2, 0.2, 2000), 0, 1)
    noise = rng.random(2000)
    outcome = gates.beats_champion_auc(y, noise, good, tolerance=0.01, n_boot=200)
    assert not outcome.passed and outcome.extra["auc_champion"] > outcome.extra["auc_challenger"]
