"""`miniport app settings`, `app alerts`, `app api-trust` and `devtools prefetch-report` through
the real executable, each printing one JSON object with --json."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.test_cli import miniport, ok, together


@pytest.mark.timeout(300)  # a dozen CLI processes
async def test_settings_alerts_and_reports_from_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    appid = (await ok("app", "create", "Shop", data_dir=data))["appid"]
    shown = await ok("app", "settings", appid, "--interval", "6h", "--timeout", "5s",
                     "--header", "X-Api-Key: sk-live-0123456789", data_dir=data)
    assert (shown["interval_s"], shown["timeout_s"]) == (21600, 5)
    assert shown["headers"] == {"X-Api-Key": "sk…89"}
    human = await miniport("app", "settings", appid, data_dir=data)
    assert human.code == 0 and "6 h" in human.out and "sk-live" not in human.out
    bad = await miniport("app", "settings", appid, "--interval", "30m", "--json", data_dir=data)
    assert bad.code == 1 and bad.json["error"] == "invalid_input"

    alerts, trust, report, history = await together(
        ok("app", "alerts", appid, "--webhook", "https://hooks.example/a", "--threshold", "90",
           "--window", "10m", "--min-fetches", "5", data_dir=data),
        ok("app", "api-trust", appid, data_dir=data),
        ok("devtools", "prefetch-report", appid, "--from", "2026-01-01", data_dir=data),
        ok("app", "alerts", appid, "--history", data_dir=data),
    )  # fmt: skip
    assert (alerts["webhook"], alerts["threshold"], alerts["window_s"], alerts["min_fetches"]) == (
        "https://hooks.example/a", 90, 600, 5)  # fmt: skip
    assert trust == {"appid": appid, "api_changes_trusted": True}
    assert report == {"rows": []}
    assert history["alerts"] == []
    cleared = await ok("app", "settings", appid, "--clear-headers", data_dir=data)
    assert cleared["headers"] == {} and cleared["interval_s"] == 21600
