"""The baseline for bench/read_api.py: a bare endpoint of the same framework (FastAPI under
uvicorn) returning a constant of the same shape as getBackgroundFetchData."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()
BODY = {
    "fetchedData": '{"goods":[{"name":"Tea","price":12}],"ok":true}',
    "timeStamp": 1,
    "errMsg": "getBackgroundFetchData:ok",
}


@app.get("/const")
async def const() -> dict[str, Any]:
    return BODY
