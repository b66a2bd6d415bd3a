"""The third family and the out-of-time gate as a reviewer sees them in the Dagster UI (headless
Chromium): the value family's lineage, and the champion's `out_of_time` check naming the days
after training it judged. Screenshots as in test_ui_browser."""

from __future__ import annotations

import os
from collections.abc import Iterator

import dagster as dg
import pytest

from assets.keys import FAMILIES, Selection
from assets.promotion import OUT_OF_TIME
from lifecycle.settings import Settings
from tests.test_value_family import APRIL, MARCH, ValueWorld
from tests.ui_support import (
    REQUIRED_ENV,
    browser_page,
    missing_browser,
    screenshot_dir,
    served,
)

KEYS = FAMILIES["value"]
WAIT_MS = 45_000

_why_not = missing_browser()
if _why_not and not os.environ.get(REQUIRED_ENV):
    pytest.skip(_why_not, allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

expect.set_options(timeout=WAIT_MS)


def _judged_world(world: ValueWorld) -> dg.AssetCheckEvaluation:
    """March promoted on its gates; April judged on 2026-04-01…14 by the promotion job."""
    ingest = Selection(("transactions",)).ingest
    assert world.run(ingest, partition_range=("2026-01-01", "2026-04-14")).success
    for month in (MARCH, APRIL):
        assert world.run(KEYS.monthly, partition=month).success
        promote = world.defs.resolve_job_def("promote_champions")
        result = promote.execute_in_process(
            instance=world.instance, asset_selection=[KEYS.champion], raise_on_error=False
        )
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == OUT_OF_TIME]
    return check


@pytest.fixture(scope="module")
def url_and_check(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dg.AssetCheckEvaluation]]:
    if _why_not:  # only reached where UI_BROWSER_REQUIRED is set (CI): a failure, not a skip
        pytest.fail(_why_not)
    root = tmp_path_factory.mktemp("ui_value")

    def play(instance: dg.DagsterInstance) -> tuple[Settings, dg.AssetCheckEvaluation]:
        world = ValueWorld(root, instance, "value")
        return world.settings, _judged_world(world)

    with served(root, play) as served_world:
        yield served_world


@pytest.fixture(scope="module")
def page(url_and_check) -> Iterator[Page]:
    with browser_page(WAIT_MS) as tab:
        yield tab


def test_the_champion_shows_the_out_of_time_verdict_and_its_days(url_and_check, page: Page) -> None:
    url, check = url_and_check
    page.goto(f"{url}/assets/models/value_champion?view=checks")
    verdict = "Succeeded" if check.passed else "Failed"
    expect(page.locator(f'span:has(> div[title="{OUT_OF_TIME}"])')).to_contain_text(verdict)
    page.locator(f'div[title="{OUT_OF_TIME}"]').click()
    panel = page.get_by_text("Latest execution", exact=True).locator("xpath=ancestor::*[6]")
    # What was measured and over which days, as the check recorded it.
    expect(panel).to_contain_text("2026-04-01…2026-04-14")
    expect(panel).to_contain_text("first_day")
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot_dir() / "05_out_of_time.png"), full_page=True)


def test_the_value_family_has_its_own_lineage(url_and_check, page: Page) -> None:
    url, _ = url_and_check
    page.goto(f"{url}/asset-groups")
    expect(page.get_by_text("value", exact=True).first).to_be_visible()
    page.mouse.click(1000, 950)
    page.keyboard.press("Alt+e")  # expand every group
    for name in ("value_training_set", "value_challenger", "value_champion", "customer_value"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(screenshot_dir() / "06_value_lineage.png"), full_page=True)
