"""The OpenAPI document describes what the API answers: schemathesis generates requests from it
(seeded, derandomized, bounded to some seconds) against the real server on 127.0.0.1 and finds
no server error and no status code, content type or body the document does not describe."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (  # the checks of `st run`'s response conformance
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import LiveServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 15
STREAMS = (  # never end by themselves
    "/runtime/v1/events", "/analytics/tests/{test_id}/events", "/analytics/realtime/events",
)


def _strategy(operation: Any, appid: str) -> Any:
    """Valid and invalid requests, and valid ones for a real app (past the app's 404)."""
    modes = [operation.as_strategy(GenerationMode.POSITIVE),
             operation.as_strategy(GenerationMode.NEGATIVE)]
    if "{appid}" in operation.path:
        modes.append(operation.as_strategy(GenerationMode.POSITIVE,
                                           path_parameters={"appid": appid}))
    return st.one_of(modes)


def _fuzz_operation(operation: Any, strategy: Any, session: requests.Session, base_url: str,
                    bearer: str) -> None:
    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, session=session,
                             headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
        case.validate_response(response, checks=CHECKS)

    run()


def _fuzz(spec: dict[str, Any], base_url: str, auth: dict[str, str], appid: str) -> list[str]:
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path.endswith(STREAMS):
                continue
            bearer = next(v for k, v in auth.items() if operation.path.startswith(k))
            try:
                _fuzz_operation(operation, _strategy(operation, appid), session, base_url, bearer)
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failure
                failures.append(f"{operation.label}: {str(exc)[:1500]}")
    return failures


@pytest.mark.timeout(300)
async def test_a_schema_based_fuzzer_finds_no_undocumented_response(
    live_server: LiveServer,
) -> None:
    p = live_server.platform
    app = await p.apps.create("fuzz", "test")
    host_key = (await p.auth.create_key("host", "fuzz-host"))["key"]
    auth = {
        "/runtime/": p.auth.runtime_token("alice"),
        "/host/": str(host_key),
        "/": live_server.admin_key,
    }
    async with aiohttp.ClientSession() as s, s.get(live_server.url + "/openapi.json") as r:
        spec = await r.json()
    failures = await asyncio.to_thread(_fuzz, spec, live_server.url, auth, app.appid)
    assert not failures, "\n\n".join(failures)
