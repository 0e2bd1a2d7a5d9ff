"""Parts of the platform built at first use: the analytics service is not built by
``create_platform`` (most CLI commands never touch it), is built once whichever threads ask
for it at the same time, and is closed with the platform only if it was built."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from miniport.config import Settings
from miniport.platform import create_platform


async def test_analytics_is_built_once_at_first_use(tmp_path: Path) -> None:
    platform = create_platform(Settings(data_dir=tmp_path, dev=True))
    built = []
    make = platform.make_analytics

    def counting() -> object:
        built.append(1)
        return make()

    platform.make_analytics = counting  # type: ignore[assignment]
    try:
        assert platform._analytics is None
        with ThreadPoolExecutor(8) as pool:
            services = list(pool.map(lambda _: platform.analytics, range(32)))
        assert len(built) == 1 and all(s is services[0] for s in services)
        assert platform.analytics is services[0]
    finally:
        await platform.close()
    assert services[0]._appenders._shutdown  # closed with the platform


async def test_a_platform_that_never_used_analytics_closes_without_building_it(
    tmp_path: Path,
) -> None:
    platform = create_platform(Settings(data_dir=tmp_path, dev=True))
    await platform.start(fetcher=False)
    assert await platform.db.read(platform.registry.list_apps) == []
    await platform.close()
    assert platform._analytics is None
    assert not (tmp_path / "events.duckdb").exists()
