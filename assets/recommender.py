"""Recommender, one instance of the family contract: monthly interaction sets (all history by
default) → implicit ALS challenger → blocking checks → champion → daily top-K for every known
user, each folded in from their history up to the day, with a popularity fallback for users
none of whose items the model knows."""

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.common import day_keys
from assets.family import Registration, Words, build_family_assets
from assets.keys import FAMILIES
from assets.per_day import day_key
from lifecycle.datasets import build_manifest
from lifecycle.family import (
    DailyCheck,
    Dataset,
    Fit,
    Loader,
    Needs,
    NotReady,
    Predictions,
    Reader,
    Trained,
    Verdict,
)
from lifecycle.interactions import from_table, to_table
from lifecycle.model_records import ModelVersion
from lifecycle.numbers import rounded_metadata
from lifecycle.out_of_time import Window, as_of, recommender_out_of_time
from lifecycle.plots import precision_plot
from lifecycle.rec_data import window_start
from lifecycle.rec_serving import daily_recommendations
from lifecycle.rec_training import (
    JUDGED_NOTE,
    judge_challenger,
    load_fit,
    save_fits,
    train_challenger,
    version_record,
)
from lifecycle.recommender import AlsParams, RecommenderBundle, Weighting, build_interaction_data
from lifecycle.registry import ModelRegistry
from lifecycle.settings import Settings

MODEL = "recommender"
KEYS = FAMILIES[MODEL]
INTERACTIONS = dg.AssetKey(["raw", "interactions"])
# Every gate judges the *judged* fit (trained without each user's gate slice) on the gate slice,
# which the grid search never saw; the served fit has trained on it and is not judged by it.
GATES = {
    "precision_floor": "Judged fit: precision@K on each user's gate slice (their most recent "
    "items, unseen by the search and by this fit) is at least the floor.",
    "beats_popularity": "Judged fit: precision@K on the gate slice is at least the configured "
    "factor × the popularity baseline's (counted on the same training pairs) on the same users.",
    "beats_champion": "Judged fit vs the champion's served fit: precision@K not worse beyond the "
    "tolerance, on the gate pairs neither model trained on (the first model passes).",
    "coverage_floor": "Judged fit: share of the catalogue recommended to gate users is above "
    "the floor.",
    "fallback_present": "Both fits' popularity fallback for unknown users holds at least K items.",
}
# 3: judged through fold-in serving (each user's history solved against the item factors).
CODE_VERSION = "recommender-als-3"
KINDS = {"implicit", "duckdb"}
SEED = 0
# An open-ended calendar has no last partition to count back from: a century reaches past any
# start date, and Dagster clamps a mapped window to the partitions that exist.
OPEN_ENDED_MONTHS, OPEN_ENDED_DAYS = 1200, 36525


def history_mappings(
    settings: Settings,
) -> tuple[dg.TimeWindowPartitionMapping, dg.TimeWindowPartitionMapping]:
    """(monthly training set → its window's days, daily recommendations → every day up to D).

    Offsets count partitions of the reader, so "all history" is as many months (days) as lie
    between the first partition and the last one.
    """
    p = settings.partitions
    start = pd.Timestamp(p.start_date)
    months = settings.recommender.lookback_months
    if months is None:
        end = pd.Timestamp(p.end_date) if p.end_date else None
        # The last monthly partition is the month holding the end day (see build_partitions).
        months = (end.to_period("M") - start.to_period("M")).n if end else OPEN_ENDED_MONTHS
    days = (pd.Timestamp(p.end_date) - start).days if p.end_date else OPEN_ENDED_DAYS
    return (
        dg.TimeWindowPartitionMapping(start_offset=-max(months, 1), end_offset=-1),
        dg.TimeWindowPartitionMapping(start_offset=-max(days, 1), end_offset=0),
    )


def load_model(reg: ModelRegistry, mv: ModelVersion, fit: Fit = "served") -> RecommenderBundle:
    """One fit of a version ("served" or "judged"); every file of the version is checked
    against its recorded sha256 before implicit reads any of them."""
    paths = reg.verify(mv)
    return load_fit(next(iter(paths.values())).parent, fit)


class RecommenderFamily:
    """The recommender's hooks of the family contract (lifecycle.family.ModelFamily)."""

    name, code_version = MODEL, CODE_VERSION
    gates: Mapping[str, str] = GATES
    # Users none of whose items the model knows get the popularity list: a rising share is the
    # recommender's drift (new users, new items), and retraining is what fixes it.
    daily_check: DailyCheck | None = DailyCheck(
        "fallback_share",
        "Each day, the share of users served the popularity fallback stays under "
        "recommender.checks.max_fallback_share. One result per day, also in range runs.",
    )

    def __init__(self, settings: Settings) -> None:
        self.cfg = cfg = settings.recommender
        self.weighting = Weighting(scheme=cfg.weighting.scheme, alpha=cfg.weighting.alpha)
        self.grid = [AlsParams(**point.model_dump()) for point in cfg.grid]
        self.first_day = pd.Timestamp(settings.partitions.start_date)

    def days_before(self, month: pd.Timestamp) -> list[str]:
        return day_keys(window_start(month, self.cfg.lookback_months, self.first_day), month)

    def dataset_needs(self, month: pd.Timestamp) -> Needs:
        needed = self.days_before(month)
        if not needed:
            raise NotReady(
                f"month {month:%Y-%m-%d} has no days of interactions before it (partitions "
                f"start on {self.first_day.date()}): train from the next month on"
            )
        return {INTERACTIONS.to_user_string(): needed}

    def build_dataset(
        self, month: pd.Timestamp, inputs: Mapping[str, pd.DataFrame], reader: Reader
    ) -> Dataset:
        cfg, needed = self.cfg, self.days_before(month)
        start = window_start(month, cfg.lookback_months, self.first_day)
        interactions = reader.query(
            "select user_id, item_id, timestamp, weight from raw.interactions "
            "where event_date >= ? and event_date < ?",
            [start.to_pydatetime(), month.to_pydatetime()],
        )
        splits = build_interaction_data(
            interactions, cfg.holdout_k, cfg.min_user_interactions, self.weighting
        )
        table = to_table(splits)
        manifest = build_manifest(
            table.assign(verified=True),
            KEYS.dataset.path[-1],
            "interactions_ds",
            f"{month:%Y-%m-%d}",
            [f"holdout_k={cfg.holdout_k}", f"min_user_interactions={cfg.min_user_interactions}"],
            {"interactions": f"{needed[0]}…{needed[-1]}"},
        )
        summary = {
            **splits.summary(),
            "events": len(interactions),
            "window_start": str(start.date()),
            "window_end": needed[-1],
        }
        return Dataset(table.assign(dataset_month=month), manifest, summary)

    def train(self, dataset: pd.DataFrame, workdir: Path) -> Trained:
        cfg, weighting = self.cfg, self.weighting
        splits = from_table(dataset, weighting, KEYS.dataset.to_user_string())
        fits = train_challenger(splits, self.grid, cfg.k, SEED, cfg.fallback_size)
        params, metrics = version_record(
            fits, {"weighting": weighting.scheme, "alpha": weighting.alpha}
        )
        numbers = {
            **{f"{k}_at_k": float(v) for k, v in fits.gate.as_dict().items()},
            **{f"popularity_{k}_at_k": float(v) for k, v in fits.popularity.as_dict().items()},
            **{f"selection_{k}_at_k": float(v) for k, v in fits.selection.as_dict().items()},
            **{k: float(v) for k, v in metrics.items() if k.startswith("served_")},
        }

        def describe(version: str) -> dict[str, object]:
            gate, baseline = fits.gate.as_dict(), fits.popularity.as_dict()
            return {
                "plot_precision_at_k": precision_plot(gate, baseline, cfg.k, version),
                "judged_fit": JUDGED_NOTE,
                **rounded_metadata(numbers),
                "trials": fits.trials,
                "params": dict(asdict(fits.params)),
            }

        return Trained(save_fits(fits, workdir), params, metrics, describe)

    def load(self, paths: Mapping[str, Path], fit: Fit) -> RecommenderBundle:
        return load_fit(next(iter(paths.values())).parent, fit)

    def judge(
        self,
        dataset: pd.DataFrame,
        challenger: ModelVersion,
        champion: ModelVersion | None,
        load: Loader,
        reader: Reader,
    ) -> list[Verdict]:
        splits = from_table(dataset, self.weighting, KEYS.dataset.to_user_string())
        outcomes = judge_challenger(
            load(challenger, "judged"),
            load(challenger, "served"),
            load(champion, "served") if champion is not None else None,
            splits.judged,
            self.cfg.k,
            self.cfg.checks,
        )
        return [Verdict(outcome) for outcome in outcomes]

    def history(self, reader: Reader, before: pd.Timestamp) -> pd.DataFrame:
        """Every interaction before a day, ordered, so each pair's weights add up in one order
        on every run."""
        return reader.query(
            "select user_id, item_id, event_date, weight from raw.interactions "
            "where event_date < ? order by user_id, item_id, event_date, weight",
            [before.to_pydatetime()],
        )

    def prediction_needs(self, start: pd.Timestamp, end: pd.Timestamp) -> Needs:
        # Each user's whole history up to D is folded into the champion and filtered out.
        return {INTERACTIONS.to_user_string(): day_keys(self.first_day, end)}

    def predict(
        self,
        model: RecommenderBundle,
        version: ModelVersion,
        days: pd.DatetimeIndex,
        inputs: Mapping[str, pd.DataFrame],
        reader: Reader,
    ) -> Predictions:
        cfg = self.cfg
        events = self.history(reader, days[-1] + pd.Timedelta(days=1))
        table, counts = daily_recommendations(
            events, days, model, cfg.k, self.weighting, version.version, cfg.active_days
        )
        per_user = table.drop_duplicates(["as_of_date", "user_id"])
        user_days = per_user.groupby(day_key(per_user["as_of_date"]).to_numpy())
        share = float(per_user["is_fallback"].mean()) if len(per_user) else 0.0
        users, shares = user_days["user_id"].nunique(), user_days["is_fallback"].mean().round(4)
        bound = cfg.checks.max_fallback_share
        checks = {
            day: (
                bool(shares.get(day, 0.0) <= bound),
                {
                    "fallback_share": float(shares.get(day, 0.0)),
                    "bound": bound,
                    "users": int(users.get(day, 0)),
                },
            )
            for day in days.strftime("%Y-%m-%d")
        }
        return Predictions(
            table,
            per_day={"users": users, "fallback_share": shares},
            day_checks=checks,
            metadata={
                "range_users": int(per_user["user_id"].nunique()),
                "range_fallback_share": round(share, 4),
                **counts,
            },
        )

    def out_of_time_needs(self, window: Window) -> Needs:
        end = window.last_day + pd.Timedelta(days=1)
        return {INTERACTIONS.to_user_string(): day_keys(self.first_day, end)}

    def out_of_time(
        self,
        window: Window,
        challenger: RecommenderBundle,
        champion: RecommenderBundle | None,
        reader: Reader,
    ) -> Verdict:
        """Both models' lists as of the day before the month, against the new items users
        took in the window (items they already had do not count)."""
        cfg, day = self.cfg, as_of(window)
        seen = self.history(reader, day + pd.Timedelta(days=1))
        future = reader.query(
            "select user_id, item_id from raw.interactions where event_date between ? and ?",
            [window.first_day.to_pydatetime(), window.last_day.to_pydatetime()],
        )

        def lists(model: RecommenderBundle) -> pd.DataFrame:
            days = pd.DatetimeIndex([day])
            return daily_recommendations(
                seen, days, model, cfg.k, self.weighting, "", cfg.active_days
            )[0]

        old = lists(champion) if champion is not None else None
        outcome = recommender_out_of_time(
            lists(challenger),
            old,
            future,
            cfg.k,
            window,
            cfg.checks.out_of_time_tolerance,
            cfg.checks.n_boot,
            seen=seen,
        )
        return Verdict(outcome)


def registration(settings: Settings) -> Registration:
    cfg = settings.recommender
    window_months, history_days = history_mappings(settings)
    window = (
        "all history since the first partition"
        if cfg.lookback_months is None
        else f"the {cfg.lookback_months} months before M"
    )
    who = (
        "every user with any interaction on or before D"
        if cfg.active_days is None
        else f"every user active in the last {cfg.active_days} days (the others are counted)"
    )
    return Registration(
        RecommenderFamily(settings),
        KEYS,
        Words(
            dataset=f"Month M's user × item pairs from {window}, ids verbatim, with the summed "
            f"raw weight and a `split`: each user's last {cfg.holdout_k} items are `gate` (what "
            f"the promotion gates judge), the {cfg.holdout_k} before them `selection` (what the "
            "grid search picks on), the rest `train`. Long format: the id maps are the rows.",
            challenger="Month M's implicit ALS challenger. The grid point is chosen on the "
            "`selection` slice; the *judged* fit (that point refit without the `gate` slice) is "
            "what the gates score on the gate slice; the *served* fit (refit on the whole "
            "window) is what the champion serves. Both fits, each with a popularity fallback, "
            "are saved with implicit's .npz (no pickle) in one version, registered with sha256.",
            gates="Gates on the challenger's judged fit, each on the same per-user gate slice.",
            predictions=f"For day D, the champion's top-{cfg.k} items for {who}. Each user's "
            "history up to D is folded into the champion (their factor solved against its item "
            "factors), so events and users newer than the fit count; items a user already had "
            "are never shown. Users none of whose items the champion knows get the popularity "
            "fallback, flagged `is_fallback`.",
            shadow=f"The challenger's top-{cfg.k} lists for the same users, before promotion, "
            "so a reviewer can compare them with the champion's.",
        ),
        kinds=KINDS,
        dataset_kinds={"duckdb", "scipy"},
        # Read by SQL (only the columns needed); the mapping is the lineage: M reads every day
        # of its window, which ends the day before M.
        dataset_deps=[dg.AssetDep(INTERACTIONS, partition_mapping=window_months)],
        prediction_deps=[dg.AssetDep(INTERACTIONS, partition_mapping=history_days)],
    )


def build_recommender_assets(partitions, settings: Settings) -> list:
    return build_family_assets(registration(settings), partitions, settings)
