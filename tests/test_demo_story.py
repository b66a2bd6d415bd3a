"""The demo tells the whole story on a small world: a planted tracking bug blocks one churn
challenger with its numbers, its promotion is refused, a rollback is recorded with its reason,
the month after it promotes again, and the demo still exits 0."""

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from jobs.cli import demo
from lifecycle.registry import ModelRegistry
from lifecycle.settings import Settings
from lifecycle.synthetic import Incident, SyntheticConfig, generate_shop

# Six months, so four challengers (April to July); every customer's amounts are x100 from
# 25 April: the July challenger trains on those days, June's does not.
STORY = {
    "partitions": {"start_date": "2026-01-01", "end_date": "2026-07-01"},
    "source": {
        "synthetic": {"incident": {"start": "2026-04-25", "end": "2026-06-01", "share": 1.0}}
    },
}


def test_incident_changes_only_the_hit_amounts() -> None:
    """The bug multiplies amounts inside its days for the hit customers; every other value
    (and the behaviour the ground truth describes) is that of the shop without it."""
    base = dict(start=pd.Timestamp("2026-01-01").date(), end=pd.Timestamp("2026-03-01").date())
    clean = generate_shop(SyntheticConfig(**base, n_customers=300, n_items=50))
    bug = Incident(pd.Timestamp("2026-02-01").date(), pd.Timestamp("2026-02-15").date(), 0.5)
    shop = generate_shop(SyntheticConfig(**base, n_customers=300, n_items=50, incident=bug))
    tx, ref = shop.transactions, clean.transactions
    inside = (tx["timestamp"] >= "2026-02-01") & (tx["timestamp"] < "2026-02-15")
    hit = inside & tx["customer_id"].isin(shop.incident_customers)
    assert len(shop.incident_customers) == 150 and hit.any()
    np.testing.assert_allclose(tx.loc[hit, "amount"], (ref.loc[hit, "amount"] * 100).round(2))
    pd.testing.assert_frame_equal(tx.loc[~hit], ref.loc[~hit])
    pd.testing.assert_frame_equal(shop.interactions, clean.interactions)
    pd.testing.assert_frame_equal(shop.customers, clean.customers)
    assert clean.incident_customers.size == 0


def test_demo_blocks_refuses_rolls_back_and_promotes_again(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    settings = make_settings(STORY)
    assert demo(settings, 4) == 0  # a champion exists, so a blocked month is not a failure
    out = capsys.readouterr().out
    story = out[out.index("What happened:") :]

    registry = ModelRegistry(settings.warehouse.database, settings.warehouse.artifact_root)
    churn = {v.partition_key: v.version for v in registry.versions("churn")}
    assert sorted(churn) == ["2026-04-01", "2026-05-01", "2026-06-01", "2026-07-01"]
    # July's challenger is blocked by input drift, with the numbers in the summary.
    blocked = [line for line in story.splitlines() if line.startswith("  blocked")]
    assert any(
        churn["2026-07-01"] in line and "input_drift (observed" in line and "PSI" in line
        for line in blocked
    ), story
    # The promotion was attempted and refused; the rollback is recorded with its reason.
    assert "  refused  " in story and "refused" in out
    events = registry.events("churn")
    rollbacks = [e for e in events if e.event == "rollback"]
    assert len(rollbacks) == 1 and "drill" in rollbacks[0].reason
    assert (rollbacks[0].from_version, rollbacks[0].to_version) == (
        churn["2026-05-01"],
        churn["2026-04-01"],
    )
    assert f"reason: {rollbacks[0].reason}" in story
    # After the rollback the next month promotes again; July's never becomes champion.
    last = [e for e in events if e.alias == "champion"][-1]
    assert last.to_version == churn["2026-06-01"] and last.event != "rollback"
    assert registry.alias("churn", "champion").version == churn["2026-06-01"]
    assert not registry.ever_alias("churn", "champion", churn["2026-07-01"])
    assert f"champion churn: {churn['2026-06-01']}" in story
    # The failed gate is also in the Dagster instance, where the UI reads it.
    with dg.DagsterInstance.get() as instance:
        check = dg.AssetCheckKey(dg.AssetKey(["models", "churn_challenger"]), "input_drift")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])
        assert record[check].evaluation is not None
        assert not record[check].evaluation.passed
