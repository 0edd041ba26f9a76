"""Zabbix sections: the trapper and passive listener, active checks, the poller, and their TLS.

TLS follows Zabbix's own model (``TLSConnect``, ``TLSAccept``, ``TLSCAFile``,
``TLSCertFile``, ``TLSKeyFile``, ``TLSCRLFile``, ``TLSServerCertIssuer``,
``TLSServerCertSubject``), so an agent's or server's settings map one to one:
with certificates both ends present one, each is verified against the CA, and
host names are not checked (Zabbix checks the issuer and subject instead).
PSK is refused at load: Python's ``ssl`` module has no TLS-PSK in 3.11, so a
PSK connection could never be made, and a setting that cannot work must not
load as if it did.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from telemetry.config.base import Duration, HostPort, Section, written_is_enabled

__all__ = ["PSK_REFUSED", "ZabbixActive", "ZabbixCertFiles", "ZabbixPollTarget", "ZabbixPoller", "ZabbixPollerTLS",
           "ZabbixSource", "ZabbixTLS"]

#: What a connection is: Zabbix's words for TLSConnect and TLSAccept.
TlsMode = Literal["unencrypted", "cert", "psk"]
PSK_REFUSED = ("psk is not supported: Python's ssl module (3.11) has no TLS-PSK, so no PSK connection could be "
               "made; use cert (certificates signed by your CA) or unencrypted")


def _no_psk(value: Any) -> Any:
    if value == "psk" or (isinstance(value, list) and "psk" in value):
        raise ValueError(PSK_REFUSED)
    return value


class ZabbixCertFiles(Section):
    """The certificate settings every Zabbix component shares (TLSCAFile, TLSCertFile, TLSKeyFile...)."""

    ca_file: str | None = Field(None, description="PEM CA certificates that sign the peers' certificates (TLSCAFile)")
    crl_file: str | None = Field(None, description="PEM certificate revocation list (TLSCRLFile)")
    cert_file: str | None = Field(
        None, description="PEM certificate (chain) this end presents; Zabbix requires one on both ends (TLSCertFile)")
    key_file: str | None = Field(None, description="PEM private key of cert_file (TLSKeyFile)")
    peer_cert_issuer: str | None = Field(
        None, description="Only peers whose certificate issuer is exactly this RFC 4514 name, e.g. "
                          "'CN=Signing CA,O=Example' (TLSServerCertIssuer)")
    peer_cert_subject: str | None = Field(
        None, description="Only peers whose certificate subject is exactly this RFC 4514 name (TLSServerCertSubject)")
    psk_identity: str | None = Field(None, description="Refused: TLS-PSK is not available (use certificates)")
    psk_file: str | None = Field(None, description="Refused: TLS-PSK is not available (use certificates)")

    @field_validator("psk_identity", "psk_file")
    @classmethod
    def _psk_refused(cls, v: str | None) -> str | None:
        if v is not None:
            raise ValueError(PSK_REFUSED)
        return v

    def check(self, uses_cert: bool) -> None:
        """With cert in use, the CA, certificate and key must be there and load: checked at load, not at the first
        connection. Without it, an issuer or subject to match would be silently ignored, so it is refused."""
        if not uses_cert:
            if self.peer_cert_issuer or self.peer_cert_subject:
                raise ValueError("peer_cert_issuer and peer_cert_subject are checked on certificate connections only, "
                                 "and none is configured (set connect or accept to cert)")
            return
        missing = [n for n in ("ca_file", "cert_file", "key_file") if not getattr(self, n)]
        if missing:
            raise ValueError(f"cert connections need ca_file, cert_file and key_file; missing: {', '.join(missing)}")
        for name in ("ca_file", "crl_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{name} {path!r} cannot be read")
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            probe.load_verify_locations(self.ca_file)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"ca_file {self.ca_file!r} holds no usable PEM certificate: {exc}") from None
        try:
            probe.load_cert_chain(self.cert_file or "", self.key_file)
        except ssl.SSLError as exc:
            raise ValueError(f"cert_file {self.cert_file!r} and key_file {self.key_file!r} do not load as a "
                             f"certificate and its key: {exc}") from None
        if self.crl_file:
            try:
                probe.load_verify_locations(self.crl_file)
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"crl_file {self.crl_file!r} is not a PEM CRL: {exc}") from None


class ZabbixTLS(ZabbixCertFiles):
    """TLS of the trapper and passive listener (TLSAccept) and of the active-checks client (TLSConnect)."""

    connect: TlsMode = Field(
        "unencrypted", description="How the active-checks client connects to the server: unencrypted or cert "
                                   "(TLSConnect; psk is refused)")
    accept: list[TlsMode] = Field(
        default_factory=lambda: list[TlsMode](["unencrypted"]), min_length=1,
        description="Connections the trapper and passive listener take: unencrypted, cert or both (TLSAccept); "
                    "any other kind is closed and counted (telemetry_zabbix_frames_rejected)")

    _psk = field_validator("connect", "accept", mode="before")(_no_psk)

    @model_validator(mode="after")
    def _checked(self) -> ZabbixTLS:
        self.check(self.connect == "cert" or "cert" in self.accept)
        return self


class ZabbixActive(Section):
    """Active checks, as a Zabbix agent in active mode: fetch the item list from a server, push values."""

    enabled: bool = Field(False, description="Fetch active checks from `server` (on when this section is written)")
    server: HostPort = Field("127.0.0.1:10051", description="host:port of the server's trapper (ServerActive)")
    host_metadata: str | None = Field(
        None, description="Sent with the request (HostMetadata); default: this node's check templates, comma-separated"
    )
    refresh: Duration = Field(120.0, gt=0, description="Seconds between item-list refreshes (RefreshActiveChecks)")
    send_interval: Duration = Field(5.0, gt=0, description="Seconds between pushes of collected values (BufferSend)")
    buffer_size: int = Field(1000, ge=1, description="Values held for sending; the oldest go first when full")
    timeout: Duration = Field(10.0, gt=0, description="Seconds a request to the server may take")

    _written = model_validator(mode="before")(written_is_enabled)


class ZabbixSource(Section):
    """Zabbix's protocols: the trapper (server side) and the passive-check listener (agent side)."""

    enabled: bool = Field(True, description="Run the trapper and the passive-check listener")
    trapper: HostPort | None = Field(
        "127.0.0.1:10051", description="host:port of the trapper (zabbix_sender data, active checks); null: none"
    )
    passive: HostPort | None = Field(
        "127.0.0.1:10050", description="host:port of the agent's passive-check listener; null: none"
    )
    allowed_peers: list[str] = Field(
        default_factory=list, description="Addresses or networks allowed to connect (Zabbix's Server=); empty: any"
    )
    max_connections: int = Field(100, ge=1, description="Open connections per listener; more are closed at once")
    idle_timeout: Duration = Field(10.0, gt=0, description="Seconds a peer may take to send its request")
    max_frame_bytes: int = Field(
        16 << 20, ge=1024, description="Bigger ZBXD frames (or inflated payloads) are refused before reading"
    )
    check_timeout: Duration = Field(3.0, gt=0, description="Seconds a passive check may take (Zabbix's Timeout)")
    active_templates: list[str] = Field(
        default_factory=list,
        description="Role templates whose items the trapper hands to agents whose host_metadata names none",
    )
    active: ZabbixActive = Field(default_factory=lambda: ZabbixActive(enabled=False))
    tls: ZabbixTLS = Field(default_factory=lambda: ZabbixTLS(),
                           description="Certificate TLS of the listeners (accept) and active checks (connect)")

    @field_validator("allowed_peers")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for p in v:
            ipaddress.ip_network(p, strict=False)  # ValueError names the bad entry
        return v


class ZabbixPollTarget(Section):
    """A host running a Zabbix agent, polled with passive checks."""

    host: str = Field(min_length=1, description="The host's name on the samples (resource_id, metadata host)")
    address: HostPort | None = Field(None, description="The agent's host:port; default: <host>:10050")
    keys: list[str] = Field(min_length=1, description="Item keys to ask for")
    interval: Duration | None = Field(None, gt=0, description="Seconds between polls; default: the poller's")
    role: str | None = Field(None, description="Role stamped on the samples, so the server binds its template")
    tls_connect: TlsMode | None = Field(
        None, description="unencrypted or cert for this agent (the host's 'Connections to host'); default: tls.connect")
    tls_peer_cert_issuer: str | None = Field(None, description="This agent's certificate issuer; default: tls's")
    tls_peer_cert_subject: str | None = Field(None, description="This agent's certificate subject; default: tls's")

    _psk = field_validator("tls_connect", mode="before")(_no_psk)


class ZabbixPollerTLS(ZabbixCertFiles):
    """The poller's certificates (the server's TLSCAFile, TLSCertFile, TLSKeyFile) and default connection kind."""

    connect: TlsMode = Field("unencrypted", description="How agents are polled unless a target says: unencrypted "
                                                        "or cert (psk is refused)")
    _psk = field_validator("connect", mode="before")(_no_psk)


class ZabbixPoller(Section):
    """Polls real Zabbix agents, so a site can keep its agents and use this server."""

    enabled: bool = Field(False, description="Poll the targets (on when this section is written)")
    interval: Duration = Field(60.0, gt=0, description="Default seconds between polls of a target's keys")
    timeout: Duration = Field(5.0, gt=0, description="Seconds one passive check may take")
    concurrency: int = Field(16, ge=1, description="Checks in flight at once")
    targets: list[ZabbixPollTarget] = Field(default_factory=list, description="Agents and their keys")
    tls: ZabbixPollerTLS = Field(default_factory=lambda: ZabbixPollerTLS(),
                                 description="Certificates for agents polled over TLS")

    _written = model_validator(mode="before")(written_is_enabled)

    @model_validator(mode="after")
    def _checked(self) -> ZabbixPoller:
        """A target asking for cert needs the poller's certificates even when the default is unencrypted."""
        for t in self.targets:
            if (t.tls_peer_cert_issuer or t.tls_peer_cert_subject) and (t.tls_connect or self.tls.connect) != "cert":
                raise ValueError(f"target {t.host}: tls_peer_cert_issuer and tls_peer_cert_subject need cert "
                                 "connections (tls_connect: cert)")
        self.tls.check(any((t.tls_connect or self.tls.connect) == "cert" for t in self.targets))
        return self
