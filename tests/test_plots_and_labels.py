"""What a reviewer reads in the UI: plots legible at the size Dagster shows them, numbers
rounded to what matters, gate texts that read naturally, and promotion records that say
promote or rollback at a glance, with links to runs when the webserver URL is configured."""

import base64
import io
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from assets.keys import CHURN_CHALLENGER, CHURN_CHAMPION, CHURN_DATASET
from definitions import build_defs
from jobs import rollback_run_config
from lifecycle import gates, plots
from lifecycle.features import feature_columns, lifetime_columns
from lifecycle.metrics import roc_auc
from lifecycle.numbers import rounded, rounded_metadata, sig, signed
from tests.conftest import World, run, small_settings, world_in

APRIL, MAY = "2026-04-01", "2026-05-01"
URL = "http://dagster.example:3000/"
MAX_PNG_BYTES = 80_000
LONG = "a_really_long_feature_name_that_goes_on_and_on_90d"


def png_of(markdown: str) -> tuple[Image.Image, int, str]:
    """(image, PNG size in bytes, alt text) of a ``![alt](data:image/png;base64,...)`` entry."""
    alt, _, rest = markdown.partition("](data:image/png;base64,")
    assert alt.startswith("![") and rest.endswith(")"), markdown[:80]
    data = base64.b64decode(rest[:-1], validate=True)
    return Image.open(io.BytesIO(data)), len(data), alt[2:]


def assert_readable(markdown: str) -> str:
    """Wide enough for the ~800 px markdown modal, small enough for the event log, and nothing
    drawn on the outer 2 px (a label or title cut by the figure edge touches it)."""
    image, size, alt = png_of(markdown)
    assert image.width >= 700 and image.height >= 450, image.size
    assert size < MAX_PNG_BYTES, size
    rgb = np.asarray(image.convert("RGB")).astype(int)
    background = rgb[0, 0]
    for edge in (rgb[:, :2], rgb[:, -2:], rgb[:2, :], rgb[-2:, :]):
        assert (np.abs(edge - background).sum(axis=-1) < 30).all(), "something touches the edge"
    return alt


@pytest.fixture(scope="module")
def scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    new = np.clip(0.2 + 0.35 * (y - 0.2) + rng.normal(0, 0.15, y.size), 0, 1)
    old = np.clip(new + rng.normal(0, 0.1, y.size), 0, 1)
    return y, new, old


def test_every_plot_is_readable_and_names_its_number(scores) -> None:
    y, new, old = scores
    features = feature_columns([7, 30, 90])
    psi = {c: 0.01 * i for i, c in enumerate(features)} | {
        "spend_30d": 0.4,
        "txn_count_7d": math.nan,
    }
    alts = {
        "roc": plots.roc_plot(y, new, "v_new", baseline=(old, "v_old")),
        "calibration": plots.calibration_plot(y, new, label="v_new"),
        "importance": plots.importance_plot({c: 1.0 / (i + 1) for i, c in enumerate(features)}),
        "scores": plots.histogram_plot({"churned": new[y == 1], "stayed": new[y == 0]}),
        "precision": plots.precision_plot(
            {"precision": 0.12, "recall": 0.2, "coverage": 0.3}, {"precision": 0.04}, 10, "v_new"
        ),
        "psi": plots.psi_plot(psi, 0.25, lifetime_columns()),
        "empty": plots.importance_plot({}),
    }
    alts = {name: assert_readable(markdown) for name, markdown in alts.items()}
    assert alts["roc"] == f"ROC AUC {roc_auc(y, new):.3f} v_new"
    assert alts["precision"] == "precision@10 0.120 vs popularity 0.040"
    # The worst *gated* feature decides: a NaN counts as the worst.
    assert alts["psi"] == "input drift worst PSI n/a (txn_count_7d)"


def test_long_feature_names_are_cut_with_an_ellipsis_not_by_the_edge() -> None:
    assert plots.short_label(LONG) == LONG[:29] + "…" and len(plots.short_label(LONG)) == 30
    assert plots.short_label("spend_30d") == "spend_30d"
    many = {f"{LONG}_{i}": 1.0 / (i + 1) for i in range(25)}
    markdown = plots.importance_plot(many, top=25)
    assert_readable(markdown)
    image, _, _ = png_of(markdown)
    assert image.height > 500  # taller for 25 bars, so 12 pt labels do not overlap


def test_numbers_are_rounded_but_stay_numbers() -> None:
    assert sig(0.0019333287653779951) == 0.001933
    assert sig(0.94312345) == 0.9431 and sig(1234.5678) == 1235.0 and sig(0.0) == 0.0
    assert math.isnan(sig(math.nan))
    assert rounded("psi_spend_30d", 0.123456) == 0.123 and rounded("score_psi", 0.98765) == 0.988
    assert rounded("holdout_rows", 1200) == 1200 and rounded("passed", True) is True
    meta = rounded_metadata({"roc_auc": 0.943123, "detail": "text", "n": 3})
    assert meta == {"roc_auc": 0.9431, "detail": "text", "n": 3}
    assert isinstance(meta["roc_auc"], float)
    assert signed(0.00291) == "+0.0029" and signed(-0.0012) == "−0.0012"


def test_gate_details_read_naturally(scores) -> None:
    y, new, old = scores
    versus = gates.beats_champion_auc(y, new, old, tolerance=0.01, n_boot=100)
    assert versus.detail.startswith(
        f"AUC {roc_auc(y, new):.4f} vs champion {roc_auc(y, old):.4f}: +0."
    )
    assert "95% CI [" in versus.detail and versus.detail.endswith("(tolerance −0.010)")
    assert "−tolerance" not in versus.detail and "-0.0100" not in versus.detail
    worse = gates.beats_champion_auc(y, old, new, tolerance=0.01, n_boot=100)
    assert not worse.passed and "lower end is below the tolerance" in worse.detail
    assert gates.at_least("auc_floor", 0.94312, 0.7, "ROC-AUC").detail == (
        "ROC-AUC 0.9431 ≥ floor 0.7"
    )
    assert gates.not_worse_than_champion(0.12, 0.125, 0.005, "precision@K").detail == (
        "precision@K: 0.1200 vs champion 0.1250: −0.0050 (tolerance −0.005)"
    )


# ----------------------------------------------------- real materialisations in the small world


class LabelWorld(World):
    def with_url(self) -> dg.Definitions:
        """The same warehouse and registry, with ``alerts.webserver_url`` configured."""
        root = Path(self.settings.warehouse.database).parent
        return build_defs(small_settings(root, {"alerts": {"webserver_url": URL}}))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelWorld]:
    root = tmp_path_factory.mktemp("labels")
    with world_in(root, "churn", "2026-04-30", "2026-04-16", LabelWorld) as w:
        yield w  # type: ignore[misc]


def values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def champion_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (mat,) = result.asset_materializations_for_node(CHURN_CHAMPION.to_python_identifier())
    return dict(mat.metadata)


def test_challenger_plots_come_first_and_metrics_are_rounded(world: LabelWorld) -> None:
    result = world.run([CHURN_DATASET, CHURN_CHALLENGER], partition=APRIL)
    (mat,) = result.asset_materializations_for_node(CHURN_CHALLENGER.to_python_identifier())
    names = list(mat.metadata)
    plot_names = ["plot_roc", "plot_calibration", "plot_importance", "plot_score_distribution"]
    assert names[:4] == plot_names
    for name in plot_names:
        assert_readable(mat.metadata[name].value)  # type: ignore[arg-type]
    version = world.registry.latest_for_partition("churn", APRIL)
    assert version is not None
    alt = png_of(mat.metadata["plot_roc"].value)[2]  # type: ignore[arg-type]
    assert alt == f"ROC AUC {version.metrics['roc_auc']:.3f} {version.version}"
    auc = mat.metadata["roc_auc"]
    assert isinstance(auc, dg.FloatMetadataValue) and auc.value == sig(version.metrics["roc_auc"])
    assert auc.value != version.metrics["roc_auc"]  # the registry keeps the exact number
    checks = {e.check_name: values(e.metadata) for e in result.get_asset_check_evaluations()}
    assert checks["auc_floor"]["observed"] == sig(checks["auc_floor"]["observed"])


def test_promotion_is_labelled_with_plain_run_ids_without_a_url(world: LabelWorld) -> None:
    version = world.registry.latest_for_partition("churn", APRIL)
    meta = champion_metadata(world.run([CHURN_CHAMPION]))
    assert next(iter(meta)) == "event"
    assert meta["event"].value == f"PROMOTE none → {version.version}"
    assert meta["action"].value == "promote"
    assert meta["challenger_run_id"].value == version.run_id
    assert "run" not in meta and "challenger_run" not in meta
    assert not any(isinstance(v, dg.UrlMetadataValue) for v in meta.values())


def test_second_challenger_shows_drift_and_roc_against_the_champion(world: LabelWorld) -> None:
    champion = world.champion()
    result = world.run([CHURN_DATASET, CHURN_CHALLENGER], partition=MAY)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    drift = checks["input_drift"].metadata
    assert next(iter(drift)) == "plot_psi"
    assert_readable(drift["plot_psi"].value)  # type: ignore[arg-type]
    psis = [v.value for k, v in drift.items() if k.startswith("psi_")]
    assert psis and all(round(p, 3) == p for p in psis)  # type: ignore[arg-type]
    versus = checks["beats_champion"]
    alt = assert_readable(versus.metadata["plot_roc"].value)  # type: ignore[arg-type]
    assert alt.startswith("ROC AUC ")
    assert "vs champion " in versus.description and "(tolerance −0.010)" in versus.description
    assert versus.metadata["against_champion"].value == champion


def test_promotion_and_rollback_link_runs_when_the_url_is_configured(world: LabelWorld) -> None:
    defs = world.with_url()
    april = world.registry.latest_for_partition("churn", APRIL)
    may = world.registry.latest_for_partition("churn", MAY)
    promoted = run(defs, world.instance, [CHURN_CHAMPION])
    meta = champion_metadata(promoted)
    assert meta["event"].value == f"PROMOTE {april.version} → {may.version}"
    assert meta["run"] == dg.MetadataValue.url(f"{URL}runs/{promoted.run_id}")
    assert meta["challenger_run"] == dg.MetadataValue.url(f"{URL}runs/{may.run_id}")

    job = defs.resolve_job_def("churn_rollback")
    result = job.execute_in_process(
        instance=world.instance,
        run_config=rollback_run_config("churn", april.version, "May scores drifted"),
    )
    meta = champion_metadata(result)
    assert meta["event"].value == f"ROLLBACK {may.version} → {april.version}: May scores drifted"
    assert meta["action"].value == "rollback" and meta["reason"].value == "May scores drifted"
    assert meta["run"] == dg.MetadataValue.url(f"{URL}runs/{result.run_id}")
    assert meta["challenger_run"] == dg.MetadataValue.url(f"{URL}runs/{april.run_id}")
