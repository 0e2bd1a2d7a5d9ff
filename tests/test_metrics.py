"""The metrics a platform exposes: per-platform registries, the fetch hook, and the sample
Grafana dashboard in docs/ naming only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from miniport.metrics import Metrics
from miniport.platform import create_platform
from miniport.storage.fetches import FetchRecord
from tests.conftest import make_settings

DASHBOARD = Path(__file__).parents[1] / "docs" / "grafana-dashboard.json"


def _record(verdict: str, kind: str = "periodic") -> FetchRecord:
    return FetchRecord("mpa", "u1", kind, "schedule", 0.0, "https://x.example/", verdict,
                       status=200, bytes=2048, latency_ms=30.0)  # fmt: skip


def test_each_platform_counts_alone() -> None:
    one, two = Metrics(), Metrics()
    one.fetched([_record("cached"), _record("timeout"), _record("cached", "pre")])
    one.events_checked(3, 1)
    text = one.exposition().decode()
    assert 'miniport_fetches_total{kind="periodic",verdict="cached"} 1.0' in text
    assert 'miniport_fetches_total{kind="periodic",verdict="timeout"} 1.0' in text
    assert 'miniport_fetch_body_bytes_bucket{kind="pre",le="4096.0"} 1.0' in text
    assert 'miniport_events_total{result="rejected"} 1.0' in text
    assert "miniport_fetches_total{" not in two.exposition().decode()


async def test_the_sample_dashboard_names_only_real_metrics(tmp_path: Path) -> None:
    platform = create_platform(make_settings(tmp_path))  # its gauges and counters as served
    await platform.close()
    m = platform.metrics
    m.fetched([_record("cached")])
    m.launched()
    m.prefetch_waited(0.1)
    m.events_checked(1, 1)
    exposed = set(re.findall(r"^(miniport_\w+)", m.exposition().decode(), re.M))
    panels = json.loads(DASHBOARD.read_text())["panels"]
    used = {n for p in panels for t in p["targets"] for n in re.findall(r"miniport_\w+", t["expr"])}
    assert used and used <= exposed, used - exposed
