"""What the OpenAPI document says the API answers besides success: the shared error body and the
error statuses every router declares, so a schema-based client (or fuzzer) finds no response the
document does not describe. The shapes here are the ones ``deps.error_body``, the validation
handler in ``app`` and the body-size limit produce."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    """Every error the API answers: a stable code, a readable message, and for the runtime
    API WeChat's ``errMsg`` ("<api>:fail <message>")."""

    error: str = Field(description="Stable error code, e.g. not_found, invalid_input")
    message: str
    errMsg: str | None = Field(default=None, description="Runtime API only")
    detail: list[Problem] | None = Field(default=None, description="Validation problems")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Bad request"),
    401: _error("Missing or invalid credentials"),
    403: _error("The caller's role does not allow this"),
    404: _error("Not found"),
    409: _error("Conflicts with the current state"),
    410: _error("Gone: a confirmation code used or expired"),
    413: _error("Request body over the size limit"),
    422: _error("Invalid input"),
}
CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "CSV, a header row first",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
