"""Grey release buckets: stable literal values, ratios that only add users, testers always in."""

from __future__ import annotations

import pytest

from miniport.domain.grey import BUCKETS, grey_bucket, route_for, serves_grey, validate_ratio
from miniport.errors import InvalidInput


def test_buckets_are_stable_literal_values() -> None:
    # fixed forever: changing the hash would move users between the main and the grey URL
    assert grey_bucket("mpa", "o1") == 1472
    assert grey_bucket("mpa", "o2") == 2123
    assert grey_bucket("wx123", "oABC") == 2299
    assert grey_bucket("mpa", "") == 8065


def test_the_same_openid_lands_apart_in_other_apps() -> None:
    assert grey_bucket("mpa", "o1") != grey_bucket("mpb", "o1")


def test_the_ratio_bounds_the_bucket() -> None:
    assert not serves_grey(1472, 14, tester=False)  # 14 % = buckets 0..1399
    assert serves_grey(1472, 15, tester=False)  # 15 % = buckets 0..1499
    assert not serves_grey(0, 0, tester=False)
    assert serves_grey(BUCKETS - 1, 100, tester=False)
    assert serves_grey(9999, 0, tester=True)  # 0 %: only the testers


def test_raising_the_ratio_only_adds_users() -> None:
    buckets = [grey_bucket("mpa", f"o{i}") for i in range(2000)]
    previous: set[int] = set()
    for ratio in range(0, 101, 5):
        grey = {i for i, b in enumerate(buckets) if serves_grey(b, ratio, tester=False)}
        assert previous <= grey
        previous = grey
    assert len(previous) == 2000
    half = sum(serves_grey(b, 50, tester=False) for b in buckets)
    assert 900 < half < 1100  # about half the users at 50 %


def test_route_names_the_serving_url() -> None:
    assert route_for("https://m/", "https://g/", 15, 1472, tester=False) == ("https://g/", "grey")
    assert route_for("https://m/", "https://g/", 14, 1472, tester=False) == ("https://m/", "main")
    assert route_for("https://m/", None, 100, 0, tester=True) == ("https://m/", "main")


@pytest.mark.parametrize("bad", [-1, 101, 2.5, "50", True, None])
def test_a_ratio_is_a_whole_percentage(bad: object) -> None:
    with pytest.raises(InvalidInput):
        validate_ratio(bad)
    assert validate_ratio(0) == 0 and validate_ratio(100) == 100
