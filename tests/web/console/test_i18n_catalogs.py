"""The console's two languages stay complete: the same keys in en and zh-CN, every key the
templates, pages and scripts use present in both (including keys built from a verdict, a
trigger or a field type), and no English left in a Chinese text but names that stay as
they are (AppID, setBackgroundFetchToken, …)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from miniport.domain.acceptance import Verdict

WEB = Path(__file__).parents[3] / "src" / "miniport" / "web"
CATALOGS = WEB / "console" / "i18n"
TRIGGERS = ("schedule", "launch", "devtools")
FIELD_TYPES = ("int", "string")
STAYS_ENGLISH = re.compile(r"AppID|AppSecret|setBackgroundFetchToken|UTF-8|HTTP|URL|token|int|"
                           r"string|Miniport|ID|JSON|CSV|QR|API|ms|KB|IANA|SDK|OK|appid|\{\w+\}")


def _catalog(lang: str) -> dict[str, str]:
    return json.loads((CATALOGS / f"{lang}.json").read_text())  # type: ignore[no-any-return]


def _used_keys() -> set[str]:
    sources = [*WEB.rglob("*.html"), *WEB.rglob("*.js"), *WEB.rglob("*.py")]
    used: set[str] = set()
    for source in sources:
        used |= set(re.findall(r"\bt\(\s*['\"]([a-zA-Z0-9_.-]+)['\"]", source.read_text()))
    used = {k for k in used if not k.endswith(".")}  # a prefix completed at run time
    used |= {f"js.verdict.{v.value}" for v in Verdict} | {"js.verdict.error"}
    used |= {f"js.fetch_error.{v.value}" for v in Verdict if not v.ok} | {"js.fetch_error.error"}
    used |= {f"js.trigger.{name}" for name in TRIGGERS}
    used |= {f"js.type.{name}" for name in FIELD_TYPES}
    return used


def test_both_languages_have_the_same_keys() -> None:
    en, zh = _catalog("en"), _catalog("zh-CN")
    assert sorted(set(en) - set(zh)) == [], "missing in zh-CN"
    assert sorted(set(zh) - set(en)) == [], "missing in en"


def test_every_key_in_use_is_in_both_languages() -> None:
    used = _used_keys()
    for lang in ("en", "zh-CN"):
        catalog = _catalog(lang)
        assert sorted(k for k in used if k not in catalog) == [], lang


def test_no_english_is_left_in_chinese_texts() -> None:
    left = {}
    for key, text in _catalog("zh-CN").items():
        if key == "app.name":
            continue
        words = re.findall(r"[A-Za-z]{3,}", STAYS_ENGLISH.sub("", text))
        if words and not re.search(r"[\u4e00-\u9fff]", text):
            left[key] = text
    assert left == {}
