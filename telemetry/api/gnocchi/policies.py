"""Archive policies and archive policy rules (``/v1/archive_policy``, ``/v1/archive_policy_rule``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from telemetry.api.gnocchi.common import body_of, call, reply, service

router = APIRouter()


@router.get("/v1/archive_policy")
def list_policies(request: Request) -> Response:
    svc = service(request)
    return reply([p.render() for p in sorted(svc.cat.policies.values(), key=lambda p: p.name)])


@router.post("/v1/archive_policy")
async def create_policy(request: Request) -> Response:
    svc = service(request)
    ap = await call(svc.create_policy, await body_of(request))
    return reply(ap.render(), 201, {"Location": f"{request.url}/{ap.name}"})


@router.get("/v1/archive_policy/{name}")
def get_policy(name: str, request: Request) -> Response:
    return reply(service(request).policy(name).render())


@router.patch("/v1/archive_policy/{name}")
async def update_policy(name: str, request: Request) -> Response:
    svc = service(request)
    return reply((await call(svc.update_policy, name, await body_of(request))).render())


@router.delete("/v1/archive_policy/{name}")
async def delete_policy(name: str, request: Request) -> Response:
    await call(service(request).delete_policy, name)
    return Response(status_code=204)


@router.get("/v1/archive_policy_rule")
def list_rules(request: Request) -> Response:
    svc = service(request)
    return reply([r.render() for r in sorted(svc.cat.rules.values(), key=lambda r: r.name)])


@router.post("/v1/archive_policy_rule")
async def create_rule(request: Request) -> Response:
    svc = service(request)
    rule = await call(svc.create_rule, await body_of(request))
    return reply(rule.render(), 201, {"Location": f"{request.url}/{rule.name}"})


@router.get("/v1/archive_policy_rule/{name}")
def get_rule(name: str, request: Request) -> Response:
    return reply(service(request).rule(name).render())


@router.patch("/v1/archive_policy_rule/{name}")
async def rename_rule(name: str, request: Request) -> Response:
    svc = service(request)
    return reply((await call(svc.rename_rule, name, await body_of(request))).render())


@router.delete("/v1/archive_policy_rule/{name}")
async def delete_rule(name: str, request: Request) -> Response:
    await call(service(request).delete_rule, name)
    return Response(status_code=204)
