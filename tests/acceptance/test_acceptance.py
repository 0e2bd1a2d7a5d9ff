"""Accepting a developer server's response: streamed body limit, text decoding, status (pure)."""

from __future__ import annotations

import pytest

from miniport.domain.acceptance import (
    BodyLimit,
    BodyTooLarge,
    Verdict,
    content_type_is_text,
    declared_charset,
    decode_body,
    status_verdict,
)

KB = 1024


def test_body_limit_collects_up_to_the_limit() -> None:
    limit = BodyLimit(256 * KB)
    for _ in range(4):
        limit.feed(b"x" * (64 * KB))
    assert limit.size == 256 * KB
    assert limit.body() == b"x" * (256 * KB)


def test_body_limit_refuses_the_chunk_that_passes_it_and_drops_what_it_held() -> None:
    limit = BodyLimit(256 * KB)
    limit.feed(b"x" * (200 * KB))
    with pytest.raises(BodyTooLarge, match="exceeds 262144 bytes"):
        limit.feed(b"x" * (57 * KB))
    assert limit.size == 257 * KB
    assert limit.body() == b""  # nothing kept once refused


def test_body_limit_one_byte_over() -> None:
    limit = BodyLimit(10)
    limit.feed(b"0123456789")
    with pytest.raises(BodyTooLarge):
        limit.feed(b"!")


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "text/html; charset=utf-8",
                                          "application/json", "application/json; charset=UTF-8",
                                          "application/javascript", "application/xml",
                                          "application/ld+json", "image/svg+xml", "TEXT/PLAIN"])
def test_text_content_types(content_type: str | None) -> None:
    assert content_type_is_text(content_type)


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream",
                                          "application/pdf", "video/mp4", "application/zip",
                                          "font/woff2"])
def test_binary_content_types_are_bad_encoding(content_type: str) -> None:
    decoded = decode_body(b"\x89PNG\r\n", content_type)
    assert decoded.text is None
    assert decoded.error is not None and "is not text" in decoded.error


@pytest.mark.parametrize(("content_type", "charset"),
                         [("text/plain; charset=UTF-8", "utf-8"),
                          ('text/plain; charset="gbk"', "gbk"),
                          ("text/plain;CHARSET=iso-8859-1", "iso-8859-1"),
                          ("text/plain; format=flowed", None), ("text/plain", None), (None, None)])
def test_declared_charset(content_type: str | None, charset: str | None) -> None:
    assert declared_charset(content_type) == charset


@pytest.mark.parametrize("content_type", ["text/plain; charset=gbk",
                                          "text/plain; charset=iso-8859-1",
                                          "application/json; charset=utf-16",
                                          "text/html; charset=shift_jis"])
def test_a_non_utf8_charset_is_bad_encoding(content_type: str) -> None:
    decoded = decode_body(b"plain ascii", content_type)
    assert decoded.text is None and "is not UTF-8" in (decoded.error or "")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=utf-8",
                                          "text/plain; charset=utf8",
                                          "text/plain; charset=us-ascii"])
def test_utf8_bodies_are_accepted_as_they_came(content_type: str | None) -> None:
    body = '{"greeting": "你好", "emoji": "🙂"}'.encode()
    if content_type and "ascii" in content_type:
        body = b'{"a": 1}'
    decoded = decode_body(body, content_type)
    assert decoded.error is None
    assert decoded.text == body.decode("utf-8")


def test_invalid_utf8_is_bad_encoding_with_the_byte_offset() -> None:
    decoded = decode_body(b"abc\xff\xfe", "text/plain")
    assert decoded.text is None
    assert decoded.error == "body is not valid UTF-8 (byte 3)"
    assert decode_body("你好".encode("gbk"), None).text is None


def test_empty_body_is_valid_text() -> None:
    assert decode_body(b"", "text/plain").text == ""


@pytest.mark.parametrize(("status", "verdict"),
                         [(200, None), (201, None), (204, None), (299, None),
                          (304, Verdict.NOT_MODIFIED), (404, Verdict.HTTP_ERROR),
                          (500, Verdict.HTTP_ERROR), (503, Verdict.HTTP_ERROR),
                          (100, Verdict.HTTP_ERROR), (302, Verdict.HTTP_ERROR)])
def test_status_verdict(status: int, verdict: Verdict | None) -> None:
    assert status_verdict(status) is verdict


def test_only_cached_and_not_modified_are_ok_and_verdicts_are_distinct() -> None:
    assert {v for v in Verdict if v.ok} == {Verdict.CACHED, Verdict.NOT_MODIFIED}
    assert len({v.value for v in Verdict}) == len(Verdict)
