"""Ceilometer's and Aodh's simple queries: parallel ``q.field`` / ``q.op`` / ``q.value`` / ``q.type`` lists.

python-ceilometerclient and aodhclient send them this way (WSME's Query
type); both APIs read them here, then decide which fields and operators
they accept.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request


@dataclass(frozen=True)
class SimpleTerm:
    field: str
    op: str
    value: str
    type: str | None = None


def simple_query(request: Request) -> list[SimpleTerm]:
    """The request's terms (``op`` defaults to ``eq``); a 400 when fields and values do not pair up."""
    params = request.query_params
    fields, ops, values, types = (params.getlist(f"q.{k}") for k in ("field", "op", "value", "type"))
    if len(values) != len(fields):
        raise HTTPException(400, f"q.field and q.value must pair up ({len(fields)} fields, {len(values)} values)")
    return [SimpleTerm(field=f, op=(ops[i] if i < len(ops) and ops[i] else "eq").lower(), value=values[i],
                       type=types[i] if i < len(types) and types[i] else None)
            for i, f in enumerate(fields)]
