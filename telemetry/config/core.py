"""Bus, API and logging sections."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from telemetry.config.base import Duration, Section, check_scheme
from telemetry.config.rules import KeystoneConfig

BUS_SCHEMES = ("memory", "amqp", "amqps", "kafka")


class BusTLS(Section):
    """TLS towards the broker: amqps:// always, Kafka when ``enabled``."""

    enabled: bool = Field(
        True, description="Kafka: use SSL (or SASL_SSL), on when the section is written; amqps:// URLs always use TLS"
    )
    ca_file: str | None = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: str | None = Field(None, description="Client certificate (mutual TLS)")
    key_file: str | None = Field(None, description="Client private key (mutual TLS)")
    verify: bool = Field(True, description="Check the broker's certificate and host name")


class BusSASL(Section):
    """Kafka SASL authentication, passed through to aiokafka."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field("PLAIN", description="SASL mechanism")
    username: str = Field(description="SASL user")
    password: SecretStr = Field(description="SASL password")


class KafkaOptions(Section):
    """Kafka-only knobs; the defaults favour durability over latency."""

    compression: Literal["gzip", "lz4", "snappy", "zstd", "none"] = Field(
        "zstd", description="Producer batch compression. zstd (Kafka 2.1 and later): smaller than gzip and "
        "several times cheaper to write; gzip for older brokers"
    )
    linger_ms: int = Field(5, ge=0, description="How long the producer waits to fill a batch")
    batch_bytes: int = Field(
        512 * 1024, ge=16 * 1024, le=1024 * 1024, description="Largest producer batch before compression "
        "(batch.size): a packed message of the log topics is tens of KiB, and the client's 16 KiB held one, "
        "so a consumer fetched one at a time; at most a broker's message.max.bytes (1 MiB by default)",
    )
    session_timeout: Duration = Field(
        10.0, gt=0, description="A consumer silent this long is dropped and its partitions move to the others"
    )
    heartbeat_interval: Duration = Field(3.0, gt=0, description="Consumer heartbeat period (well under session_timeout)")
    fetch_max_wait: Duration = Field(
        0.5, gt=0, le=30, description="How long the broker may hold a fetch that finds no new records "
        "(fetch.max.wait.ms); a real broker answers as soon as records arrive, librdkafka's mock cluster "
        "holds it the whole time"
    )


#: Largest ``bus.pack_bytes``: a pack with msgpack's headers and the record's envelope stays under 1 MiB.
MAX_PACK_BYTES = 960 << 10


class BusConfig(Section):
    """The central bus between agents and servers."""

    url: str = Field("memory://", description="memory:// (all-in-one), amqp://user:pass@host:5672/vhost or kafka://host:9092")
    topic_prefix: str = Field("telemetry.", description="Prefix of every topic, queue or exchange name on the bus")
    format: Literal["json", "msgpack"] = Field("json", description="Wire encoding of records")
    prefetch: int = Field(
        500, ge=1, description="AMQP: unacked messages a consumer may hold (flow control); Kafka: records per poll"
    )
    records_per_message: int = Field(
        500, ge=1, le=10_000, description="AMQP and Kafka: records of the log topics (raw_logs, events) packed "
        "into one broker message (of one key, so per-source order holds, and at most pack_bytes); a broker's "
        "cost is per message. The default packs an agent's whole batch (sources.agent.batch_records). "
        "1: a message each",
    )
    pack_bytes: int = Field(
        512 << 10, ge=1 << 10, description="AMQP and Kafka: bytes of records a packed message holds at most "
        f"(a larger record travels alone); at most {MAX_PACK_BYTES}, below Kafka's 1 MiB message.max.bytes "
        "and max.request.size",
    )
    publish_timeout: Duration = Field(
        30.0, gt=0, description="How long publish keeps retrying (reconnecting) before it reports the bus down"
    )
    reconnect_max_backoff: Duration = Field(10.0, gt=0, description="Longest wait between reconnection attempts")
    tls: BusTLS = Field(default_factory=lambda: BusTLS(enabled=False), description="TLS for amqps:// and Kafka SSL/SASL_SSL")
    sasl: BusSASL | None = Field(None, description="Kafka SASL credentials (PLAIN or SCRAM)")
    kafka: KafkaOptions = Field(default_factory=lambda: KafkaOptions(), description="Kafka producer/consumer tuning")

    @field_validator("pack_bytes")
    @classmethod
    def _pack_fits(cls, v: int) -> int:
        if v > MAX_PACK_BYTES:
            raise ValueError(f"at most {MAX_PACK_BYTES} ({MAX_PACK_BYTES >> 10} KiB): a packed message must stay "
                             "under Kafka's 1 MiB message.max.bytes and max.request.size (the producer refuses "
                             "a larger one, and with it the batch)")
        return v

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        return check_scheme(v, BUS_SCHEMES, "bus")


#: What a token may do; each scope includes the ones before it.
SCOPES = ("read", "write", "admin")
Scope = Literal["read", "write", "admin"]
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ApiToken(Section):
    """One API credential: the SHA-256 of the token (preferred: the file then holds nothing to steal) or the token.

    Written as a plain string, ``sha256:<hex>`` is a hash and anything else is
    the token itself; both get the ``admin`` scope, as tokens had before scopes.
    """

    sha256: str | None = Field(None, description="Hex SHA-256 of the token (`printf %s TOKEN | sha256sum`)")
    token: SecretStr | None = Field(None, description="The token in plain text (accepted, with a warning at start)")
    scope: Scope = Field("admin", description="read: GET only; write: also create and change data; admin: also "
                                              "the allow-list, dead letters and silences")
    name: str = Field("", description="Who holds it, for the log (never the token)")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return {"sha256": value[7:]} if value.lower().startswith("sha256:") else {"token": value}
        return value

    @model_validator(mode="after")
    def _one_form(self) -> ApiToken:
        if (self.sha256 is None) == (self.token is None):
            raise ValueError("give exactly one of sha256 (preferred) or token")
        if self.sha256 is not None:
            self.sha256 = self.sha256.strip().lower()
            if not _HEX64.fullmatch(self.sha256):
                raise ValueError("sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)")
        elif not self.token or len(self.token.get_secret_value()) < 1:
            raise ValueError("token is empty")
        return self

    def digest(self) -> bytes:
        """The SHA-256 a presented token is compared with (constant time)."""
        if self.sha256 is not None:
            return bytes.fromhex(self.sha256)
        assert self.token is not None
        return hashlib.sha256(self.token.get_secret_value().encode()).digest()


class KeystoneAuthConfig(KeystoneConfig):
    """Keystone validation of callers' ``X-Auth-Token`` (keystonemiddleware's contract), with this service's user."""

    admin_roles: list[str] = Field(default_factory=lambda: ["admin"],
                                   description="Roles that see and change every project's data (scope admin)")
    reader_roles: list[str] = Field(default_factory=lambda: ["reader"],
                                    description="A token with only these roles may read its project's data only")
    cache_ttl: Duration = Field(300.0, gt=0, description="How long a validated token is trusted without asking "
                                                        "Keystone again (never past its expiry)")
    timeout: Duration = Field(5.0, gt=0, description="Timeout of one call to Keystone")


class ApiTLS(Section):
    """HTTPS for the API: the certificate and key it serves, and optionally the CA whose client certificates it
    requires."""

    cert_file: str = Field(description="PEM certificate (chain) the API serves")
    key_file: str = Field(description="PEM private key of the certificate")
    client_ca_file: str | None = Field(
        None, description="Require client certificates signed by this CA (mutual TLS); tokens still apply")

    @model_validator(mode="after")
    def _readable(self) -> ApiTLS:
        import os

        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{name} {path!r} cannot be read")
        return self


class ApiConfig(Section):
    """The HTTP API: Ceilometer v2, Aodh v2, events, /metrics, /healthz."""

    enabled: bool = Field(True, description="Serve the HTTP API")
    host: str = Field("127.0.0.1", description="Address to listen on")
    port: int = Field(8777, ge=0, le=65535, description="TCP port (0 picks a free one)")
    tokens: list[ApiToken] = Field(
        default_factory=list,
        description="Tokens (Bearer, X-Auth-Token or the Basic password) with their scope; when any is set every "
                    "request but open_paths needs one; empty means an open API (loopback all-in-one)",
    )
    open_paths: list[str] = Field(
        default_factory=lambda: ["/healthz", "/metrics"],
        description="Paths served without a token even when tokens are set (health checks, Prometheus); an entry "
                    "ending in / opens everything under it (add /docs, /docs/ and /openapi.json for the browsable docs)",
    )
    max_connections: int = Field(
        1000, ge=1, description="Connections open at once; more are closed at once (keep it under LimitNOFILE)"
    )
    header_timeout: Duration = Field(
        10.0, gt=0, description="A connection whose request line and headers have not arrived by then is closed"
    )
    max_body_bytes: int = Field(
        10 << 20, ge=1024, description="Bigger request bodies are answered 413 before they are read"
    )
    tls: ApiTLS | None = Field(None, description="Serve HTTPS with this certificate and key (off: plain HTTP)")
    keystone: KeystoneAuthConfig | None = Field(
        None, description="Validate X-Auth-Token against Keystone (as Aodh and Ceilometer do): tokens see their "
                          "project's alarms, meters, resources and events; admin_roles see all"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins browsers may call the API from (CORS); empty: none (off)"
    )


class LoggingConfig(Section):
    """The daemon's own log output (stderr, so systemd's journal keeps it)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Minimum level logged")
    format: Literal["text", "json"] = Field("text", description="Plain text for people, JSON lines for log shippers")
