"""Zabbix's certificate TLS on our ends: the contexts, the peer's issuer and subject, the first byte.

Zabbix speaks TLS from the first byte (no STARTTLS) and tells it from a plain
ZBXD frame by that byte: a TLS record carrying a handshake starts with 0x16,
a frame with ``Z``. A listener that accepts both (``TLSAccept=unencrypted,cert``)
therefore peeks at it before deciding. With certificates, both ends present
one and verify the other's against the CA; host names are not checked (a
Zabbix agent is addressed by IP as often as by name), the optional issuer and
subject are, compared as RFC 4514 strings the way Zabbix prints them
(most specific first: ``CN=agent,OU=Ops,O=Example``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from telemetry.config.zabbix import ZabbixCertFiles, ZabbixTLS

__all__ = ["TLS_HANDSHAKE", "TlsEnd", "client_tls", "distinguished_name", "server_tls"]

#: The content type of a TLS handshake record: the first byte a TLS client sends.
TLS_HANDSHAKE = 0x16

#: The short names Zabbix (and RFC 4514) print for the attributes Python's ssl names in full.
_SHORT = {
    "commonName": "CN", "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
    "organizationName": "O", "organizationalUnitName": "OU", "domainComponent": "DC", "streetAddress": "STREET",
    "userId": "UID",
}


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def distinguished_name(rdns: Any) -> str:
    """An issuer or subject from ``SSLSocket.getpeercert()`` as an RFC 4514 string, last RDN first."""
    parts = []
    for rdn in reversed(rdns or ()):
        parts.append("+".join(f"{_SHORT.get(name, name)}={_escape(value)}" for name, value in rdn))
    return ",".join(parts)


@dataclass(frozen=True)
class TlsEnd:
    """One end's TLS: the context, and the issuer and subject its peer's certificate must have."""

    context: ssl.SSLContext
    issuer: str | None = None
    subject: str | None = None

    def refusal(self, peercert: dict[str, Any] | None) -> str | None:
        """Why the peer's (already CA-verified) certificate is refused, or None when it is taken."""
        if not peercert:
            return "the peer presented no certificate"
        for what, want in (("issuer", self.issuer), ("subject", self.subject)):
            got = distinguished_name(peercert.get(what))
            if want is not None and got != want:
                return f"certificate {what} {got!r} is not {want!r} (peer_cert_{what})"
        return None


def _context(cfg: ZabbixCertFiles, *, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # Zabbix 6 and 7 speak 1.2 and 1.3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED  # Zabbix verifies both ends' certificates
    ctx.load_verify_locations(cfg.ca_file)
    ctx.load_cert_chain(cfg.cert_file or "", cfg.key_file)
    if cfg.crl_file:
        ctx.load_verify_locations(cfg.crl_file)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def server_tls(cfg: ZabbixTLS) -> TlsEnd | None:
    """The listeners' TLS when ``accept`` includes cert; None when they take unencrypted connections only."""
    if "cert" not in cfg.accept:
        return None
    return TlsEnd(_context(cfg, server=True), cfg.peer_cert_issuer, cfg.peer_cert_subject)


def client_tls(cfg: ZabbixCertFiles, connect: str, issuer: str | None = None, subject: str | None = None,
               context: ssl.SSLContext | None = None) -> TlsEnd | None:
    """A client's TLS when ``connect`` is cert (issuer and subject default to ``cfg``'s); None when unencrypted.

    ``context`` reuses one already built from the same files (the poller shares one among its targets).
    """
    if connect != "cert":
        return None
    return TlsEnd(context or _context(cfg, server=False), issuer or cfg.peer_cert_issuer,
                  subject or cfg.peer_cert_subject)
