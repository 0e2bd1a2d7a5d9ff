"""Which data URLs may be configured (pure)."""

from __future__ import annotations

import re

import pytest

from miniport.domain.address_guard import AddressPolicy
from miniport.domain.urls import MAX_URL_LENGTH, validate_fetch_url
from miniport.errors import InvalidURL


@pytest.mark.parametrize("kind", ["periodic", "pre"])
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/data", "scheme 'ftp' is not allowed"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("example.com/data", "scheme '(none)' is not allowed"),
        ("https:///data", "no host"),
        ("https://user:pw@example.com/data", "credentials"),
        ("https://user@example.com/data", "credentials"),
        ("https://example.com/data#frag", "fragment"),
        ("https://example.com:0/data", "port 0"),
        ("https://example.com:99999/data", "cannot be parsed"),
        ("https://exa mple.com/", "white space"),
        ("https://example.com/\x00", "control characters"),
        ("https://example.com/\u202egpj.exe", "direction-changing character (U+202E)"),
        ("https://evil.example\u202e/moc.elpmaxe", "U+202E"),
        ("https://example.com/a\u2066b\u2069", "U+2066"),
        ("https://exa\u200bmple.com/", "U+200B"),
        ("https://example.com/\u200f", "U+200F"),
        ("https://example.com/\x7f", "U+007F"),
        ("https://example.com/\x9b", "U+009B"),
        ("", "empty"),
        ("   ", "empty"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, "longer than"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(kind: str, url: str, message: str) -> None:
    with pytest.raises(InvalidURL, match=re.escape(message)):
        validate_fetch_url(kind, url, dev=True)


def test_a_non_string_url_is_refused() -> None:
    with pytest.raises(InvalidURL, match="empty"):
        validate_fetch_url("pre", None, dev=True)  # type: ignore[arg-type]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidURL, match="unknown kind 'weekly'"):
        validate_fetch_url("weekly", "https://example.com/", dev=True)


@pytest.mark.parametrize("dev", [False, True])
def test_https_urls_with_their_own_query_are_accepted(dev: bool) -> None:
    url = "https://api.example.com/v1/data?lang=zh_CN&x=1"
    assert validate_fetch_url("pre", url, dev=dev) == url
    assert validate_fetch_url("periodic", url, dev=dev) == url


def test_surrounding_blanks_are_trimmed() -> None:
    assert validate_fetch_url("pre", "  https://example.com/x \n", dev=False) == \
        "https://example.com/x"


@pytest.mark.parametrize("url", ["http://example.com/pre", "http://127.0.0.1:8000/pre",
                                 "http://localhost:8000/pre", "http://[::1]:8000/pre"])
def test_pre_fetch_url_must_be_https_outside_dev_mode(url: str) -> None:
    with pytest.raises(InvalidURL, match="must use https"):
        validate_fetch_url("pre", url, dev=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/pre", "http://localhost:8000/pre",
                                 "http://[::1]:8000/pre", "http://api.localhost/pre",
                                 "http://localhost.:8000/pre"])
def test_dev_mode_accepts_http_pre_fetch_on_loopback(url: str) -> None:
    assert validate_fetch_url("pre", url, dev=True) == url


@pytest.mark.parametrize("url", ["http://example.com/pre", "http://10.0.0.5/pre",
                                 "http://localhost.example.com/pre"])
def test_dev_mode_still_refuses_http_pre_fetch_off_loopback(url: str) -> None:
    with pytest.raises(InvalidURL, match="must use https"):
        validate_fetch_url("pre", url, dev=True)


@pytest.mark.parametrize("kind", ["periodic", "pre"])
def test_one_scheme_rule_for_every_kind(kind: str) -> None:
    messages = []
    for url in ("http://example.com/p", "http://10.0.0.5/p"):
        with pytest.raises(InvalidURL, match="must use https") as caught:
            validate_fetch_url(kind, url, dev=False)
        messages.append(str(caught.value))
    assert len(set(messages)) == 1
    assert validate_fetch_url(kind, "http://127.0.0.1:8000/p", dev=True)


@pytest.mark.parametrize("kind", ["periodic", "pre"])
@pytest.mark.parametrize(("url", "klass"), [
    ("https://10.0.0.1/x", "private"), ("https://192.168.1.2/x", "private"),
    ("https://169.254.169.254/latest", "metadata"), ("https://127.0.0.1/x", "loopback"),
    ("https://localhost/x", "loopback"), ("https://[::ffff:10.0.0.1]/x", "private"),
    ("https://localhost./x", "loopback"), ("https://a.localhost./x", "loopback"),
])
def test_addresses_the_fetcher_refuses_are_refused_when_set(kind: str, url: str,
                                                            klass: str) -> None:
    with pytest.raises(InvalidURL, match=f"is {klass} and not allowed: a data URL must reach"):
        validate_fetch_url(kind, url, dev=False)


def test_allow_listed_networks_and_dev_loopback_are_accepted() -> None:
    policy = AddressPolicy.build(dev=False, allow=("10.0.0.0/8",))
    assert validate_fetch_url("pre", "https://10.0.0.1/x", dev=False, policy=policy)
    assert validate_fetch_url("periodic", "https://127.0.0.1:9/x", dev=True)
    with pytest.raises(InvalidURL, match="metadata"):
        validate_fetch_url("pre", "https://169.254.169.254/x", dev=True)


def test_visible_non_ascii_urls_are_still_accepted() -> None:
    url = "https://例え.jp/数据?q=é"
    assert validate_fetch_url("pre", url, dev=False) == url


def test_a_url_is_shown_with_its_invisible_characters_written_out() -> None:
    from miniport.domain.urls import shown_url

    assert shown_url("https://evil.example/\u202egpj.atad") == (
        "https://evil.example/<U+202E>gpj.atad")
    assert shown_url("https://a.example/\u200b\u2066x\u2069\t") == (
        "https://a.example/<U+200B><U+2066>x<U+2069><U+0009>")
    assert shown_url("https://例え.jp/数据?q=é") == "https://例え.jp/数据?q=é"


@pytest.mark.parametrize("kind", ["periodic", "pre"])
@pytest.mark.parametrize("url", ["https://0x7f.0.0.1/x", "https://2130706433/x",
                                 "https://127.1/x", "https://8.8.8.8./x", "https://010.0.0.1/x"])
def test_an_ipv4_address_in_a_non_canonical_form_is_refused_when_set(kind: str, url: str) -> None:
    """The fetcher refuses every such host (blocked_address at each fetch): the URL was
    accepted and confirmed, then failed every time."""
    with pytest.raises(InvalidURL, match="non-canonical form"):
        validate_fetch_url(kind, url, dev=True)
