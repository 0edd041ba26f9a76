"""``POST /v1/ceilometer/samples``: the route Ceilometer's http:// publisher is pointed at.

The publisher authenticates with the ``user:password@`` of its URL, which it
sends as HTTP Basic: a configured API token in the password authenticates
it, and an authenticated publisher may send unsigned samples (it never
signs them) even when ``telemetry_secret`` is set.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from telemetry.api.auth import publisher_trusted
from telemetry.collect.ceilometer import HTTP_PATH, BusUnavailable, CeilometerHttpInput

router = APIRouter(tags=["ceilometer publishers"])


def _input(request: Request) -> CeilometerHttpInput:
    found = request.app.state.runtime.ceilometer_http
    if found is None:
        raise HTTPException(503, "the Ceilometer http:// input is off (sources.ceilometer.http is false)")
    return found


@router.post(HTTP_PATH)
async def receive_samples(request: Request) -> dict[str, int]:
    trusted = publisher_trusted(request)
    body = await request.body()
    try:
        accepted, rejected = await _input(request).receive(body, trusted)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    except BusUnavailable:
        raise HTTPException(status_code=503, detail="the bus is unavailable; retry") from None
    return {"accepted": accepted, "rejected": rejected}
