"""Judging the platform's and the reference's output at day D on what happened after D.

Both sides are compared on the *same* customers/users (the intersection of who each covered),
and each side's coverage is reported against everyone it should have covered: a model that
scores only the easy customers must not look better for it. Ids are compared as the text the
export had, so a platform that turns "00000042" into 42 shows up as lost coverage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from benchmarks.reference import (
    ChurnReference,
    RecReference,
    churned_after,
    popular_unseen,
    rfm_snapshot,
)
from lifecycle.metrics import paired_bootstrap_auc_diff

K = 10
NEXT_ITEMS = 5


def auc(labels: pd.Series, scores: pd.Series) -> float | None:
    """ROC-AUC by the rank formula (ties count one half); None without both classes."""
    y = labels.to_numpy(dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores.to_numpy(dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _coverage(covered: int, total: int) -> dict[str, Any]:
    return {"covered": covered, "of": total, "share": round(covered / total, 4) if total else None}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def evaluate_churn(
    tx_all: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon: int,
    platform: pd.DataFrame | None,
    reference: ChurnReference,
) -> dict[str, Any]:
    """AUC of churn scores at D against "no purchase in (D, D+H]", on customers both scored."""
    rfm = rfm_snapshot(tx_all, as_of)
    known = rfm.index
    truth = churned_after(tx_all, known, as_of, horizon)
    ref = reference.scores[reference.scores.index.isin(known)]
    out: dict[str, Any] = {
        "known_customers": len(known),
        "churn_rate": round(float(truth.mean()), 4),
        "reference_coverage": _coverage(len(ref), len(known)),
    }
    if platform is None or platform.empty:
        out["platform"] = "no churn scores at D"
        common = ref.index
        plat = pd.Series(dtype=float)
    else:
        ids = platform["customer_id"].astype(str)
        plat = pd.Series(platform["score"].to_numpy(dtype=float), index=ids)
        plat = plat[~plat.index.duplicated()]
        out["platform_versions"] = sorted(platform["model_version"].astype(str).unique())
        out["platform_unknown_ids"] = int((~plat.index.isin(known)).sum())
        plat = plat[plat.index.isin(known)]
        out["platform_coverage"] = _coverage(len(plat), len(known))
        common = plat.index.intersection(ref.index)
    groups = {"known": common, "active_90d": common[rfm.loc[common, "count_90"].to_numpy() > 0]}
    for group, ids in groups.items():
        y = truth.loc[ids]
        out[group] = {
            "customers": len(ids),
            "churn_rate": _r(float(y.mean())) if len(ids) else None,
            "platform_auc": _r(auc(y, plat.loc[ids])) if len(plat) else None,
            "reference_auc": _r(auc(y, ref.loc[ids])),
            "recency_auc": _r(auc(y, rfm.loc[ids, "recency"])),
            "diff_ci": _diff(y, plat, ref, ids) if len(plat) else None,
        }
    return out


def _diff(y: pd.Series, plat: pd.Series, ref: pd.Series, ids: pd.Index) -> list[float] | None:
    """AUC(platform) − AUC(reference) on the same customers with a 95% paired-bootstrap CI."""
    if len(ids) < 20 or y.nunique() < 2:
        return None
    d = paired_bootstrap_auc_diff(
        y.to_numpy(), plat.loc[ids].to_numpy(), ref.loc[ids].to_numpy(), n_boot=500
    )
    return [round(d.estimate, 4), round(d.lower, 4), round(d.upper, 4)]


def next_new_items(
    before: pd.DataFrame, after: pd.DataFrame, n: int = NEXT_ITEMS
) -> dict[str, set[str]]:
    """Each known user's first ``n`` distinct items after D that they had not touched by D."""
    seen = pd.MultiIndex.from_frame(before[["user_id", "item_id"]])
    later = after.sort_values("timestamp", kind="stable")
    later = later[later["user_id"].isin(before["user_id"])]
    pairs = pd.MultiIndex.from_frame(later[["user_id", "item_id"]])
    later = later[~pairs.isin(seen)].drop_duplicates(["user_id", "item_id"])
    later = later[later.groupby("user_id").cumcount() < n]
    return {str(u): set(items) for u, items in later.groupby("user_id")["item_id"]}


def precision_at_k(recs: pd.DataFrame, relevant: dict[str, set[str]], users: pd.Index) -> float:
    top = recs[recs["rank"] <= K].groupby("user_id")["item_id"].apply(list)
    hits = [len(set(top.get(u, [])) & relevant[u]) for u in users]
    return float(np.mean(hits) / K) if hits else float("nan")


def evaluate_recommender(
    before: pd.DataFrame,
    after: pd.DataFrame,
    as_of: pd.Timestamp,
    platform: pd.DataFrame | None,
    reference: RecReference,
) -> dict[str, Any]:
    """precision@10 on each user's next 5 new items after D, on users both recommended to."""
    before = before[before["day"] <= as_of]
    relevant = next_new_items(before, after[after["day"] > as_of])
    users = pd.Index(sorted(relevant))
    ref = reference.recommendations
    ref_users = users.intersection(pd.Index(ref["user_id"].unique()))
    out: dict[str, Any] = {
        "known_users": int(before["user_id"].nunique()),
        "users_with_next_items": len(users),
        "reference_coverage": _coverage(len(ref_users), len(users)),
    }
    if platform is None or platform.empty:
        out["platform"] = "no recommendations at D"
        plat = None
        common = ref_users
    else:
        plat = platform.assign(
            user_id=platform["user_id"].astype(str), item_id=platform["item_id"].astype(str)
        )
        plat_users = pd.Index(plat["user_id"].unique())
        out["platform_versions"] = sorted(plat["model_version"].astype(str).unique())
        out["platform_users_at_d"] = len(plat_users)
        out["platform_unknown_ids"] = int((~plat_users.isin(before["user_id"])).sum())
        out["platform_coverage"] = _coverage(len(users.intersection(plat_users)), len(users))
        common = users.intersection(plat_users).intersection(ref_users)
        mine = plat[plat["user_id"].isin(common)]
        if "is_fallback" in mine:
            out["platform_fallback_share"] = _r(float(mine["is_fallback"].mean()))
    popular = popular_unseen(before, reference.popular, list(common), K)
    out["same_users"] = {
        "users": len(common),
        "platform_precision": _r(precision_at_k(plat, relevant, common))
        if plat is not None
        else None,
        "reference_precision": _r(precision_at_k(ref, relevant, common)),
        "popularity_precision": _r(precision_at_k(popular, relevant, common)),
    }
    return out


def _pct(cov: dict[str, Any] | None) -> str:
    if not cov:
        return "—"
    share = f" ({cov['share']:.1%})" if cov["share"] is not None else ""
    return f"{cov['covered']:,} / {cov['of']:,}{share}"


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        if not value:
            return "—"
        spread = f", {min(value):.1f}–{max(value):.1f}" if len(value) > 1 else ""
        return f"{np.median(value):.1f}{unit} (median of {len(value)}{spread})"
    return f"{value:.4f}" if isinstance(value, float) and not unit else f"{value}{unit}"


def markdown(result: dict[str, Any]) -> str:
    """One table per data set: family, metric, platform, reference, floor, coverage."""
    c, r, t = result["churn"], result["recommender"], result["training_seconds"]
    run = result["platform_run"]
    lines = [
        f"### {result['data']}: D = {result['as_of']}, churn horizon {result['horizon_days']} days",
        "",
        "sizes: " + ", ".join(f"{k} {v}" for k, v in result["sizes"].items()),
        f"platform: `{run['command']}` exit {run['returncode']} in {run['seconds']} s",
        "",
        "| family | metric | platform | reference | floor | platform covers | reference covers |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for group, label in (
        ("known", "every customer known at D"),
        ("active_90d", "of them, bought in last 90 days"),
    ):
        g = c[group]
        lines.append(
            f"| churn | ROC-AUC, {label} (n={g['customers']:,}, churn {_num(g['churn_rate'])}) "
            f"| {_num(g['platform_auc'])} | {_num(g['reference_auc'])} "
            f"| {_num(g['recency_auc'])} recency | "
            + (
                f"{_pct(c.get('platform_coverage'))} | {_pct(c['reference_coverage'])} |"
                if group == "known"
                else "| |"
            )
        )
    for group, label in (("known", "known at D"), ("active_90d", "bought in last 90 days")):
        ci = c[group].get("diff_ci")
        if ci:
            lines.append(
                f"| churn | AUC platform − reference, {label}, 95% paired-bootstrap CI "
                f"| {ci[0]:+.4f} [{ci[1]:+.4f}, {ci[2]:+.4f}] | | | | |"
            )
    s = r["same_users"]
    lines.append(
        f"| recommender | precision@{K}, next {NEXT_ITEMS} new items after D (n={s['users']:,} users) "
        f"| {_num(s['platform_precision'])} | {_num(s['reference_precision'])} "
        f"| {_num(s['popularity_precision'])} popularity "
        f"| {_pct(r.get('platform_coverage'))} | {_pct(r['reference_coverage'])} |"
    )
    lines.append(
        f"| churn | training seconds | {_num(t['platform_churn_challenger'], ' s')} "
        f"| {_num(t['reference_churn'], ' s')} | | | |"
    )
    lines.append(
        f"| recommender | training seconds | {_num(t['platform_recommender_challenger'], ' s')} "
        f"| {_num(t['reference_recommender'], ' s')} | | | |"
    )
    notes = []
    for family, block in (("churn", c), ("recommender", r)):
        if "platform" in block:
            notes.append(f"- {family}: platform wrote {block['platform']}")
        if block.get("platform_unknown_ids"):
            notes.append(
                f"- {family}: {block['platform_unknown_ids']:,} platform ids match no id in the "
                "export (ids changed on the way?)"
            )
        if block.get("platform_versions"):
            notes.append(f"- {family}: scored at D by {', '.join(block['platform_versions'])}")
    notes.append(f"- platform runs (exit {run['returncode']}):")
    notes += [f"      {line}" for line in result["platform_steps"]]
    return "\n".join(lines + (["", *notes] if notes else []))
