"""What the OpenAPI document says the API answers besides success: the shared error body and the
error statuses every router declares, so a schema-based client (or fuzzer) finds no response the
document does not describe. The shape here is the one ``deps.error_body`` renders for every
``MiniportError`` (the validation handler in ``app`` goes through it too, adding ``detail``);
the body-size limit answers its ``error``/``message`` subset."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ProblemOut(BaseModel):
    """One thing wrong with the input (``errors.Problem``)."""

    path: str = Field(description="Where, e.g. events[2].actions[0].element; empty: the input")
    message: str


class ValidationDetail(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    """Every error the API answers (``deps.error_body``): a stable code, a readable message,
    the problems with the input when there are several, and for the runtime API WeChat's
    ``errMsg`` ("<api>:fail <message>")."""

    error: str = Field(description="Stable error code, e.g. not_found, invalid_input")
    message: str
    problems: list[ProblemOut] | None = Field(default=None, description="Each problem found")
    errors: list[ProblemOut] | None = Field(
        default=None, description="The same list as problems (the name clients used first)"
    )
    errMsg: str | None = Field(default=None, description="Runtime API only")
    detail: list[ValidationDetail] | None = Field(
        default=None, description="Request validation only: FastAPI's locations and messages"
    )


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
