"""The request sent to the developer's server (SPEC section 1's table) and its signature (pure)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniport.domain.requests import (
    Launch,
    Validators,
    build_periodic_request,
    build_prefetch_request,
    merge_query,
    merge_target,
    request_target,
)
from miniport.verify import APPID_HEADER, SIGNATURE_HEADER, parse_signature, sign, verify_request

SECRET = "s3cret"
T = 1_767_225_600  # 2026-01-01T00:00:00Z, Unix seconds


def params(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def names(url: str) -> list[str]:
    return [k for k, _ in params(url)]


def test_periodic_request_has_exactly_appid_token_timestamp() -> None:
    req = build_periodic_request(base_url="https://dev.example/data", appid="mpA",
                                 secret=SECRET, token="tok 1&2", timestamp=T)
    assert req.method == "GET"
    assert urlsplit(req.url)[:3] == ("https", "dev.example", "/data")
    assert params(req.url) == [("appid", "mpA"), ("token", "tok 1&2"), ("timestamp", str(T)),
                               ("version", ""), ("envVersion", "")]


def test_timestamp_is_unix_seconds() -> None:
    req = build_periodic_request(base_url="https://d.example/", appid="a", secret=SECRET,
                                 token="t", timestamp=T)
    stamp = dict(params(req.url))["timestamp"]
    assert stamp == "1767225600" and len(stamp) == 10


def test_the_urls_own_parameters_are_kept_and_a_same_named_one_is_replaced() -> None:
    base = "https://d.example/api?lang=zh_CN&token=CONFIGURED&v=2&appid=old&empty="
    req = build_periodic_request(base_url=base, appid="mpA", secret=SECRET, token="real",
                                 timestamp=T)
    assert params(req.url) == [("lang", "zh_CN"), ("v", "2"), ("empty", ""),
                               ("appid", "mpA"), ("token", "real"), ("timestamp", str(T)),
                               ("version", ""), ("envVersion", "")]
    assert names(req.url).count("token") == 1
    assert names(req.url).count("appid") == 1


def test_pre_fetch_request_with_a_token_has_no_code() -> None:
    launch = Launch(path="pages/goods/detail", query="id=42&from=share", scene=1007)
    req = build_prefetch_request(base_url="https://d.example/pre?src=mp", appid="mpA",
                                 secret=SECRET, timestamp=T, launch=launch, token="tok")
    assert params(req.url) == [
        ("src", "mp"), ("appid", "mpA"), ("token", "tok"), ("timestamp", str(T)),
        ("path", "pages/goods/detail"), ("query", "id=42&from=share"), ("scene", "1007"),
        ("version", ""), ("envVersion", ""),
    ]
    assert "code" not in names(req.url)


def test_pre_fetch_request_without_a_token_carries_a_login_code() -> None:
    req = build_prefetch_request(base_url="https://d.example/pre", appid="mpA", secret=SECRET,
                                 timestamp=T, launch=Launch(), code="c0de")
    assert names(req.url) == ["appid", "code", "timestamp", "path", "query", "scene",
                              "version", "envVersion"]
    assert dict(params(req.url))["code"] == "c0de"
    assert "token" not in names(req.url)


def test_a_configured_token_or_code_never_sits_beside_the_platforms_choice() -> None:
    base = "https://d.example/pre?code=X&token=Y&keep=1"
    with_code = build_prefetch_request(base_url=base, appid="a", secret=SECRET, timestamp=T,
                                       launch=Launch(), code="fresh")
    assert ("keep", "1") in params(with_code.url)
    assert ("code", "fresh") in params(with_code.url)
    assert "token" not in names(with_code.url)
    with_token = build_prefetch_request(base_url=base, appid="a", secret=SECRET, timestamp=T,
                                        launch=Launch(), token="tok")
    assert ("token", "tok") in params(with_token.url)
    assert "code" not in names(with_token.url)
    periodic = build_periodic_request(base_url=base, appid="a", secret=SECRET, token="tok",
                                      timestamp=T)
    assert params(periodic.url) == [("keep", "1"), ("appid", "a"), ("token", "tok"),
                                    ("timestamp", str(T)), ("version", ""), ("envVersion", "")]


@pytest.mark.parametrize(("token", "code"), [("t", "c"), (None, None)])
def test_token_and_code_are_never_both_or_neither(token: str | None, code: str | None) -> None:
    with pytest.raises(ValueError, match="exactly one of token and code"):
        build_prefetch_request(base_url="https://d.example/", appid="a", secret=SECRET,
                               timestamp=T, launch=Launch(), token=token, code=code)


def test_conditional_headers_only_with_validators() -> None:
    plain = build_periodic_request(base_url="https://d.example/", appid="a", secret=SECRET,
                                   token="t", timestamp=T)
    assert "If-None-Match" not in plain.headers and "If-Modified-Since" not in plain.headers
    cond = build_periodic_request(
        base_url="https://d.example/", appid="a", secret=SECRET, token="t", timestamp=T,
        validators=Validators(etag='"v7"', last_modified="Thu, 01 Jan 2026 00:00:00 GMT"),
    )
    assert cond.headers["If-None-Match"] == '"v7"'
    assert cond.headers["If-Modified-Since"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    only_etag = build_periodic_request(base_url="https://d.example/", appid="a", secret=SECRET,
                                       token="t", timestamp=T, validators=Validators(etag="e"))
    assert only_etag.headers["If-None-Match"] == "e"
    assert "If-Modified-Since" not in only_etag.headers


def test_pre_fetch_requests_are_not_conditional() -> None:
    req = build_prefetch_request(base_url="https://d.example/", appid="a", secret=SECRET,
                                 timestamp=T, launch=Launch(), token="t")
    assert "If-None-Match" not in req.headers and "If-Modified-Since" not in req.headers


@pytest.mark.parametrize("kind", ["periodic", "pre"])
def test_every_request_is_signed_over_its_exact_target(kind: str) -> None:
    if kind == "periodic":
        req = build_periodic_request(base_url="https://d.example/p/q?x=1", appid="mpA",
                                     secret=SECRET, token="t", timestamp=T)
    else:
        req = build_prefetch_request(base_url="https://d.example/p/q?x=1", appid="mpA",
                                     secret=SECRET, timestamp=T, launch=Launch("a/b", "k=v", 1),
                                     token="t")
    assert req.headers[APPID_HEADER] == "mpA"
    header = req.headers[SIGNATURE_HEADER]
    assert parse_signature(header) is not None
    assert parse_signature(header)[0] == T  # type: ignore[index]
    target = request_target(req.url)
    assert target.startswith("/p/q?x=1&appid=mpA")
    assert verify_request(SECRET, header, "GET", target, now=T + 10)
    assert not verify_request("other", header, "GET", target, now=T + 10)


def test_merge_query_keeps_order_and_blank_values() -> None:
    assert merge_query("https://h/p?b=2&a=1&flag", [("a", "9"), ("c", "3")]) == \
        "https://h/p?b=2&flag=&a=9&c=3"


def test_request_target_of_a_bare_host_is_slash() -> None:
    assert request_target("https://h") == "/"
    assert request_target("https://h/x?y=1") == "/x?y=1"


# --- verify.py: the helper for developer servers ---

def test_sign_and_verify_round_trip() -> None:
    header = sign(SECRET, T, "get", "/data?appid=a&timestamp=1")
    assert header.startswith(f"t={T},v1=")
    assert verify_request(SECRET, header, "GET", "/data?appid=a&timestamp=1", now=T)


def _lets_another_thread_run(fn: Callable[[], object], calls: int) -> bool:
    """Whether ``fn`` gave up the interpreter lock to another thread within ``calls`` calls: a
    spinning thread counts while it holds it, and with a long switch interval it can only run
    when ``fn`` releases the lock (it may not get a core in time at every release)."""
    import sys
    import threading

    count, stop = [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    thread = threading.Thread(target=spin)
    try:
        thread.start()
        stop.wait(0.05)  # the spinner runs; waiting on the event takes the lock back after
        for _ in range(calls):
            before = count[0]
            fn()
            if count[0] != before:
                return True
        return False
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)


def test_signing_keeps_the_interpreter_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """hmac.digest releases the lock for a microsecond of work, and getting it back waits for
    another running thread (up to the switch interval, 5 ms): each fetch the engine signed
    while its recorder thread wrote stalled the event loop. Measured by a spinning thread
    (a probe that sees a release only when the machine gives the spinner a core at once, so
    on a busy machine it may miss one: it can only fail code that releases), and pinned by
    making hmac.digest unusable."""
    import hmac

    assert not _lets_another_thread_run(lambda: sign(SECRET, T, "GET", "/data?appid=a"), 200)

    def releases(*args: object) -> bytes:
        raise AssertionError("hmac.digest gives up the interpreter lock")

    monkeypatch.setattr(hmac, "digest", releases)
    assert sign(SECRET, T, "GET", "/d").startswith(f"t={T},v1=")


@pytest.mark.parametrize(
    ("method", "target"),
    [("POST", "/data?appid=a"), ("GET", "/data?appid=b"), ("GET", "/other?appid=a"),
     ("GET", "/data?appid=a&extra=1")],
)
def test_a_tampered_request_fails(method: str, target: str) -> None:
    header = sign(SECRET, T, "GET", "/data?appid=a")
    assert not verify_request(SECRET, header, method, target, now=T)


def test_a_tampered_signature_or_timestamp_fails() -> None:
    header = sign(SECRET, T, "GET", "/d")
    digest = header.split("v1=")[1]
    flipped = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    assert not verify_request(SECRET, f"t={T},v1={flipped}", "GET", "/d", now=T)
    assert not verify_request(SECRET, f"t={T + 1},v1={digest}", "GET", "/d", now=T)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "v1=00", f"t={T}"])
def test_missing_or_malformed_headers_fail(header: str | None) -> None:
    assert not verify_request(SECRET, header, "GET", "/d", now=T)


def test_replay_window() -> None:
    header = sign(SECRET, T, "GET", "/d")
    assert verify_request(SECRET, header, "GET", "/d", now=T + 300)
    assert verify_request(SECRET, header, "GET", "/d", now=T - 300)
    assert not verify_request(SECRET, header, "GET", "/d", now=T + 301)
    assert not verify_request(SECRET, header, "GET", "/d", now=T - 301)
    assert verify_request(SECRET, header, "GET", "/d", now=T + 3600, tolerance_s=3600)


def test_the_logged_url_masks_the_token_and_the_code_only() -> None:
    from miniport.domain.requests import redact_url

    url = "https://dev.example/x?mytoken=keep&appid=a&token=se%20c&timestamp=1&code=c.d&path=p"
    assert redact_url(url) == (
        "https://dev.example/x?mytoken=keep&appid=a&token=***&timestamp=1&code=***&path=p"
    )
    assert redact_url("https://dev.example/x") == "https://dev.example/x"


def test_version_and_env_version_are_sent_and_signed() -> None:
    launch = Launch(path="p", version="1.2.0", env_version="trial")
    req = build_prefetch_request(base_url="https://d.example/pre", appid="mpA", secret=SECRET,
                                 timestamp=T, launch=launch, token="tok")
    assert dict(params(req.url))["version"] == "1.2.0"
    assert dict(params(req.url))["envVersion"] == "trial"
    target = request_target(req.url)
    assert req.headers[SIGNATURE_HEADER] == sign(SECRET, T, "GET", target)
    assert "envVersion=trial" in target  # covered by the signature


def test_the_apps_headers_are_sent_but_shown_masked() -> None:
    req = build_periodic_request(base_url="https://d.example/", appid="mpA", secret=SECRET,
                                 token="t", timestamp=T,
                                 headers={"X-Api-Key": "sk-live-0123456789", SIGNATURE_HEADER: "x"})
    assert req.headers["X-Api-Key"] == "sk-live-0123456789"
    assert req.headers[SIGNATURE_HEADER] != "x"  # the platform's own header always wins
    shown = req.as_dict()["headers"]
    assert shown["X-Api-Key"] == "sk…89"  # type: ignore[index]
    assert "sk-live-0123456789" not in str(req.as_dict())


@given(st.text(max_size=40))
def test_query_values_are_quoted_exactly_as_quote_plus_quotes_them(value: str) -> None:
    """The fast path (a value quote_plus would leave alone is sent as it is) changes nothing."""
    from urllib.parse import quote_plus

    from miniport.domain.requests import _q

    assert _q(value) == quote_plus(value)


@given(st.lists(st.sampled_from(["token", "code", "mytoken", "xcode", "a", "token_"]), max_size=5),
       st.lists(st.text("ab=&#?%.", max_size=6), min_size=5, max_size=5))  # fmt: skip
def test_the_log_masks_token_and_code_values_wherever_they_sit(
    names: list[str], values: list[str]
) -> None:
    """Against the rule written out by hand: after ? or &, a parameter named token or code has
    its value (up to the next & or #) replaced by ***."""
    import re

    from miniport.domain.requests import redact_url

    pairs = zip(names, values, strict=False)
    url = "https://dev.example/x?" + "&".join(f"{n}={v}" for n, v in pairs)
    expected = re.sub(r"(?<=[?&])(token|code)=[^&#]*", r"\1=***", url)
    assert redact_url(url) == expected


def test_the_signature_is_hmac_sha256_of_time_method_and_target() -> None:
    import hashlib
    import hmac

    digest = hmac.new(SECRET.encode(), f"{T}\nGET\n/d?a=1".encode(), hashlib.sha256).hexdigest()
    assert sign(SECRET, T, "get", "/d?a=1") == f"t={T},v1={digest}"


def test_an_internationalised_host_and_path_go_out_in_their_ascii_forms() -> None:
    url, target = merge_target("https://例え.jp:8443/数据/a%20b?city=北京", [("appid", "a")])
    assert url == ("https://xn--r8jz45g.jp:8443/%E6%95%B0%E6%8D%AE/a%20b"
                   "?city=%E5%8C%97%E4%BA%AC&appid=a")  # fmt: skip
    assert target == "/%E6%95%B0%E6%8D%AE/a%20b?city=%E5%8C%97%E4%BA%AC&appid=a"
    assert merge_target("https://example.com/p?x=1", [("a", "b")])[0] == (
        "https://example.com/p?x=1&a=b")  # ASCII URLs as they were
