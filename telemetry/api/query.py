"""Ceilometer's and Aodh's simple queries: parallel ``q.field`` / ``q.op`` / ``q.value`` / ``q.type`` lists.

python-ceilometerclient and aodhclient send them this way (WSME's Query
type); both APIs read them here, then decide which fields and operators
they accept.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query


@dataclass(frozen=True)
class SimpleTerm:
    field: str
    op: str
    value: str
    type: str | None = None


def _param(name: str, what: str) -> Any:
    return Query(alias=f"q.{name}", description=what)


def simple_query(
    fields: Annotated[list[str] | None, _param("field", "Field of each term (repeat per term)")] = None,
    ops: Annotated[list[str] | None, _param("op", "Operator of each term: eq, ne, lt, le, gt, ge (default eq)")] = None,
    values: Annotated[list[str] | None, _param("value", "Value of each term, paired with q.field")] = None,
    types: Annotated[list[str] | None, _param("type", "Type of each value: string, integer, float, boolean, "
                                                     "datetime")] = None,
) -> list[SimpleTerm]:
    """The request's terms (``op`` defaults to ``eq``); a 400 when fields and values do not pair up.

    A FastAPI dependency, so the OpenAPI document lists ``q.field``... and
    clients and fuzzers can find them.
    """
    fields, ops, values, types = fields or [], ops or [], values or [], types or []
    if len(values) != len(fields):
        raise HTTPException(400, f"q.field and q.value must pair up ({len(fields)} fields, {len(values)} values)")
    return [SimpleTerm(field=f, op=(ops[i] if i < len(ops) and ops[i] else "eq").lower(), value=values[i],
                       type=types[i] if i < len(types) and types[i] else None)
            for i, f in enumerate(fields)]


#: What a route takes to get the simple query's terms.
Terms = Annotated[list[SimpleTerm], Depends(simple_query)]
