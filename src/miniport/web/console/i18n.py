"""UI text: one JSON catalog per language (``i18n/en.json``, ``i18n/zh-CN.json``), used by the
templates and, for keys starting with ``js.``, by the pages' scripts. The language comes from
``?lang=`` (remembered in a cookie), then the cookie, then the browser's Accept-Language."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from fastapi import Request

LANGUAGES = {"en": "English", "zh-CN": "简体中文"}
DEFAULT = "en"
LANG_COOKIE = "mp_lang"
Translate = Callable[..., str]


@cache
def catalog(lang: str) -> dict[str, str]:
    text = resources.files(__package__).joinpath("i18n", f"{lang}.json").read_text("utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def normalize(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value in LANGUAGES:
        return value
    if value.lower().startswith("zh"):
        return "zh-CN"
    if value.lower().startswith("en"):
        return "en"
    return None


def pick_language(request: Request) -> str:
    chosen = normalize(request.query_params.get("lang")) or normalize(
        request.cookies.get(LANG_COOKIE)
    )
    if chosen:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        found = normalize(part.split(";")[0])
        if found:
            return found
    return DEFAULT


def translator(lang: str) -> Translate:
    table = catalog(lang)
    fallback = catalog(DEFAULT)

    def t(key: str, **params: Any) -> str:
        text = table.get(key) or fallback.get(key) or key
        return text.format(**params) if params else text

    return t


def js_catalog(lang: str) -> dict[str, str]:
    merged = {**catalog(DEFAULT), **catalog(lang)}
    return {k: v for k, v in merged.items() if k.startswith("js.")}
