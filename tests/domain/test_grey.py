"""Grey release buckets: stable literal values, ratios that only add users, testers always in."""

from __future__ import annotations

import pytest

from miniport.domain.grey import (
    BUCKETS,
    UrlSettings,
    grey_bucket,
    replaces_a_url,
    route_for,
    serves_grey,
    serving_url,
    url_moves,
    validate_ratio,
    wakes_everyone,
)
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


M, G, G2 = "https://m/", "https://g/", "https://g2/"


def grey_at(ratio: int, grey_url: str | None = G, url: str = M) -> UrlSettings:
    return UrlSettings(url, True, grey_url, ratio)


def test_a_ratio_change_moves_only_the_buckets_between_the_two_ratios() -> None:
    # bucket 1472 is grey from 15 % on; 2123 from 22 %; 8065 from 81 %
    assert url_moves(grey_at(14), grey_at(15), 1472, tester=False)
    assert url_moves(grey_at(15), grey_at(14), 1472, tester=False)  # lowered: back to main
    assert not url_moves(grey_at(15), grey_at(22), 1472, tester=False)  # grey at both
    assert url_moves(grey_at(15), grey_at(22), 2123, tester=False)
    assert not url_moves(grey_at(15), grey_at(21), 2123, tester=False)  # main at both
    assert not url_moves(grey_at(1), grey_at(100), 0, tester=False)  # grey at both
    assert not url_moves(grey_at(0), grey_at(100), 8065, tester=True)  # a tester stays grey
    assert serving_url(grey_at(22), 2123, tester=False) == G
    assert serving_url(grey_at(21), 2123, tester=False) == M


def test_a_promote_moves_the_main_users_only() -> None:
    promoted = UrlSettings(G, True, None, None)
    assert url_moves(grey_at(20), promoted, 8065, tester=False)  # main -> the grey URL
    assert not url_moves(grey_at(20), promoted, 1472, tester=False)  # grey: the same URL
    assert not url_moves(grey_at(0), promoted, 8065, tester=True)


def test_a_grey_set_or_clear_moves_the_grey_users_only() -> None:
    cleared = UrlSettings(M, True, None, None)
    assert url_moves(grey_at(20), cleared, 1472, tester=False)
    assert url_moves(grey_at(20), cleared, 8065, tester=True)
    assert not url_moves(grey_at(20), cleared, 8065, tester=False)
    assert url_moves(cleared, grey_at(20), 1472, tester=False)  # a first grey URL
    assert not url_moves(cleared, grey_at(20), 8065, tester=False)
    assert url_moves(grey_at(20), grey_at(20, G2), 1472, tester=False)  # grey URL replaced
    assert not url_moves(grey_at(20), grey_at(20, G2), 8065, tester=False)


def test_a_tester_added_or_removed_moves_when_the_share_did_not_serve_them() -> None:
    at_10 = grey_at(10)
    assert url_moves(at_10, at_10, 8065, tester=False, tester_after=True)
    assert url_moves(at_10, at_10, 8065, tester=True, tester_after=False)
    assert not url_moves(at_10, at_10, 123, tester=False, tester_after=True)  # grey already
    no_grey = UrlSettings(M, True)
    assert not url_moves(no_grey, no_grey, 8065, tester=False, tester_after=True)


def test_main_url_changes_and_switches_concern_every_user() -> None:
    off = UrlSettings(M, False, G, 20)
    assert wakes_everyone(grey_at(20), off) and wakes_everyone(off, grey_at(20))
    assert wakes_everyone(grey_at(20), grey_at(20, url="https://m2/"))
    assert wakes_everyone(UrlSettings(None, False), UrlSettings(M, True))
    assert not wakes_everyone(grey_at(20), UrlSettings(G, True, None, None))  # promote
    assert not wakes_everyone(grey_at(20), grey_at(30))
    assert serving_url(off, 0, tester=True) is None


def test_only_a_ratio_change_keeps_the_urls_of_both_routes() -> None:
    assert not replaces_a_url(grey_at(20), grey_at(60))
    assert replaces_a_url(grey_at(20), grey_at(20, G2))
    assert replaces_a_url(UrlSettings(M, True), grey_at(0))
    assert replaces_a_url(grey_at(20), UrlSettings(G, True, None, None))
    assert replaces_a_url(grey_at(20), UrlSettings(M, False, G, 20))
