"""Events into Elasticsearch through the official client's async bulk helper.

Each event is a ``create`` of ``_id`` = its event id into the index of its
UTC day, so the same event always lands in the same place and a redelivered
copy is answered 409 (already there) instead of stored twice. A daily index,
not a data stream, for that reason: a data stream would only see duplicates
within its current backing index.

The helper sends chunks and reports per document; this sink sorts the
answers: 2xx and 409 are taken, 429 and 5xx (per document or for the whole
request) are sent again by the shared sink loop with backoff, any other
per-document refusal (a mapping conflict, a document too large) is the
document's alone and is dead-lettered with Elasticsearch's error type. A
failed request as a whole (401, 403, a proxy's 502) is never blamed on the
documents: they are sent again, and the stage holds back until it works.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from telemetry.config.sinks import ElasticsearchSink
from telemetry.runtime import Runtime
from telemetry.sinks.base import ALREADY_HELD, TAKEN, SinkItem, SinkStage, Verdict
from telemetry.sinks.ecs import daily_index, ecs_document, ilm_policy, index_template

log = logging.getLogger(__name__)

#: Statuses the sink sends again: overload and unavailability, never the document's fault.
RETRYABLE = frozenset({429, 500, 502, 503, 504})


def verdict(status: int, error: Any) -> Verdict:
    """What a per-document bulk answer means for that document."""
    if 200 <= status < 300:
        return TAKEN
    if status == 409:
        return ALREADY_HELD
    kind = error.get("type", "error") if isinstance(error, dict) else "error"
    detail = error.get("reason", "") if isinstance(error, dict) else str(error or "")
    if status in RETRYABLE:
        return Verdict("retry", str(status), detail)
    return Verdict("refused", f"{status}:{kind}", detail)


class ElasticsearchStage(SinkStage):
    sink = "elasticsearch"

    def __init__(self, rt: Runtime, cfg: ElasticsearchSink) -> None:
        super().__init__(rt, cfg)
        self.es_cfg = cfg
        #: Whether the template and policy are in place (set up once the cluster answers).
        self.installed = not cfg.manage_templates
        self.client: Any = None

    def _client(self) -> Any:
        from elastic_transport import HttpxAsyncHttpNode  # httpx is ours already; aiohttp is not needed
        from elasticsearch import AsyncElasticsearch  # the optional extra, imported only when configured

        cfg = self.es_cfg
        auth: dict[str, Any] = {}
        if cfg.api_key is not None:
            auth["api_key"] = cfg.api_key.get_secret_value()
        elif cfg.username is not None and cfg.password is not None:
            auth["basic_auth"] = (cfg.username, cfg.password.get_secret_value())
        if cfg.ca_file:
            auth["ca_certs"] = cfg.ca_file
        # Retries are the sink loop's (with backoff and the hold-back), not the transport's.
        return AsyncElasticsearch(
            cfg.urls,
            node_class=HttpxAsyncHttpNode,
            request_timeout=cfg.timeout,
            max_retries=0,
            retry_on_timeout=False,
            verify_certs=cfg.verify,
            **auth,
        )

    async def start(self) -> None:
        try:
            import elasticsearch  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "sinks.elasticsearch needs the elasticsearch client: "
                "pip install 'openstack-telemetry[elasticsearch]'"
            ) from exc
        self.client = self._client()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def install(self) -> None:
        """The ILM policy and index template; PUT is idempotent, so every start may send them."""
        cfg = self.es_cfg
        policy = cfg.index_prefix if cfg.retention is not None else None
        if cfg.retention is not None:
            await self.client.ilm.put_lifecycle(name=cfg.index_prefix, policy=ilm_policy(cfg.retention))
        await self.client.indices.put_index_template(
            name=cfg.index_prefix, body=index_template(cfg.index_prefix, cfg.shards, cfg.replicas, policy)
        )
        self.installed = True
        log.info("%s: index template %s and ILM policy %s installed", self.name, cfg.index_prefix, policy)

    async def push(self, items: list[SinkItem]) -> Mapping[str, Verdict]:
        from elasticsearch.helpers import async_streaming_bulk

        if not self.installed:
            await self.install()  # before the first document, or the day's index is made without the mapping
        prefix = self.es_cfg.index_prefix
        actions = [
            {
                "_op_type": "create",
                "_index": daily_index(prefix, it.doc["@timestamp"]),
                "_id": it.key,
                "_source": ecs_document(it.doc),
            }
            for it in items
        ]
        out: dict[str, Verdict] = {}
        async for _, result in async_streaming_bulk(
            self.client,
            actions,
            chunk_size=len(actions),
            max_chunk_bytes=self.es_cfg.max_chunk_bytes,
            raise_on_error=False,
            raise_on_exception=False,
            max_retries=0,
            yield_ok=True,
        ):
            ((_, info),) = result.items()
            status = int(info.get("status", 500))
            if "exception" in info:
                # The whole request failed (auth, overload, a proxy's 5xx): not these documents' fault.
                out[info["_id"]] = Verdict("retry", f"request_{status}", str(info.get("error", ""))[:300])
            else:
                out[info["_id"]] = verdict(status, info.get("error"))
        return out
