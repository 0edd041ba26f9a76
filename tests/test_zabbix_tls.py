"""Zabbix's certificate TLS between our listeners, poller and active client and Zabbix's own programs.

Peers: Debian's ``zabbix_agentd`` and ``zabbix_sender`` (6.0, built with
GnuTLS), configured with TLSConnect=cert / TLSAccept=cert and certificates
this test issues (trustme); zabbix_utils' Sender through an ssl socket wrapper.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydantic
import pytest
import trustme
import yaml
from zabbix_utils import Getter, ItemValue, Sender

from telemetry.bus.memory import MemoryBus
from telemetry.collect.checks.items import ItemCollector
from telemetry.collect.zabbix import metrics as zm
from telemetry.collect.zabbix.active import ActiveChecksClient
from telemetry.collect.zabbix.passive import PassiveListener
from telemetry.collect.zabbix.poller import PollerSource
from telemetry.collect.zabbix.tls import client_tls, distinguished_name
from telemetry.collect.zabbix.trapper import TrapperListener
from telemetry.config.zabbix import ZabbixActive, ZabbixPoller, ZabbixSource

from support import wait_until
from zabbix_support import Agentd, drain_samples

SENDER = "/usr/bin/zabbix_sender"


@dataclass
class Pki:
    ca: Path
    server_cert: Path  # ours (trapper, passive listener, poller, active client)
    server_key: Path
    agent_cert: Path  # Zabbix's programs (agentd, sender)
    agent_key: Path
    stranger_cert: Path  # signed by another CA
    stranger_key: Path

    server_subject = "CN=telemetry-server,OU=Monitoring,O=Example Cloud"
    agent_subject = "CN=zbx-agent,OU=Compute,O=Example Cloud"

    def ours(self, **extra: object) -> dict[str, object]:
        return {"ca_file": str(self.ca), "cert_file": str(self.server_cert), "key_file": str(self.server_key), **extra}

    def agentd_lines(self, server_subject: str | None = None) -> list[str]:
        lines = ["TLSConnect=cert", "TLSAccept=cert", f"TLSCAFile={self.ca}", f"TLSCertFile={self.agent_cert}",
                 f"TLSKeyFile={self.agent_key}"]
        return lines + ([f"TLSServerCertSubject={server_subject}"] if server_subject else [])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    # RSA: Zabbix's cipher lists for certificates (GnuTLS and OpenSSL builds alike) have no ECDSA suites.
    ca, other = trustme.CA(key_type=trustme.KeyType.RSA), trustme.CA(key_type=trustme.KeyType.RSA)
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    files: list[Path] = []
    for name, issuer, cn, ou in (("server", ca, "telemetry-server", "Monitoring"), ("agent", ca, "zbx-agent", "Compute"),
                                 ("stranger", other, "zbx-agent", "Compute")):
        leaf = issuer.issue_cert(cn, common_name=cn, organization_name="Example Cloud", organization_unit_name=ou,
                                 key_type=trustme.KeyType.RSA)
        leaf.cert_chain_pems[0].write_to_path(str(d / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
        files += [d / f"{name}.pem", d / f"{name}.key"]
    return Pki(d / "ca.pem", *files)


@pytest.fixture
def tls_agentd(tmp_path: Path, pki: Pki) -> Iterator[Agentd]:
    """zabbix_agentd that takes TLS connections only, and only from our server certificate."""
    a = Agentd(tmp_path, extra=pki.agentd_lines(server_subject=Pki.server_subject)).start()
    yield a
    a.stop()


def _rejected(listener: str, reason: str) -> float:
    return zm.FRAMES_REJECTED.labels(listener=listener, reason=reason)._value.get()


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _listeners(pki: Pki, accept: list[str], **tls: object) -> ZabbixSource:
    return ZabbixSource.model_validate({"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0",
                                       "tls": pki.ours(accept=accept, **tls)})


def _sender(port: int, pki: Pki, *tls: str) -> subprocess.CompletedProcess[str]:
    if not os.path.exists(SENDER):
        pytest.fail("zabbix_sender is missing (Debian package zabbix-sender)")
    return subprocess.run([SENDER, "-z", "127.0.0.1", "-p", str(port), "-s", "db-1", "-k", "mysql.qps", "-o", "42.5",
                           *tls], capture_output=True, text=True, timeout=30)


def _sender_tls(pki: Pki, cert: Path, key: Path) -> list[str]:
    return ["--tls-connect", "cert", "--tls-ca-file", str(pki.ca), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-server-cert-subject", Pki.server_subject]


# -- poller -> zabbix_agentd ----------------------------------------------------------------
async def test_poller_reads_zabbix_agentd_over_tls(tls_agentd: Agentd, pki: Pki) -> None:
    cfg = ZabbixPoller.model_validate({"timeout": "5s", "tls": pki.ours(connect="cert"), "targets": [
        {"host": "legacy-1", "address": tls_agentd.address, "keys": ["agent.ping", "system.cpu.num"],
         "tls_peer_cert_subject": Pki.agent_subject},
        {"host": "legacy-plain", "address": tls_agentd.address, "keys": ["agent.ping"], "tls_connect": "unencrypted"},
        {"host": "legacy-other", "address": tls_agentd.address, "keys": ["agent.ping"],
         "tls_peer_cert_subject": "CN=someone-else,O=Example Cloud"},
    ]})
    poller = PollerSource(cfg, MemoryBus())
    got = {s.counter_name: s for s in await poller.poll(cfg.targets[0])}
    assert got["agent.ping"].counter_volume == 1.0, (poller.status, tls_agentd.log()[-1500:])
    assert got["system.cpu.num"].counter_volume == float(os.cpu_count() or 0)
    assert got["agent.ping"].resource_id == "legacy-1"

    # The agent takes TLS only: a plain poll is closed unanswered.
    assert await poller.poll(cfg.targets[1]) == []
    assert poller.status["legacy-plain:agent.ping"].startswith("error:"), poller.status
    assert "the agent takes TLS connections only: tls_connect" in poller.status["legacy-plain:agent.ping"]
    # The agent's certificate is good but not the subject this target requires.
    assert await poller.poll(cfg.targets[2]) == []
    assert "certificate subject 'CN=zbx-agent,OU=Compute,O=Example Cloud' is not" in \
        poller.status["legacy-other:agent.ping"]


async def test_poller_with_a_certificate_the_agent_does_not_trust(tmp_path: Path, pki: Pki) -> None:
    agent = Agentd(tmp_path, extra=pki.agentd_lines(server_subject="CN=someone-else")).start()
    try:
        cfg = ZabbixPoller.model_validate({"tls": pki.ours(connect="cert"), "targets": [
            {"host": "h", "address": agent.address, "keys": ["agent.ping"]}]})
        poller = PollerSource(cfg, MemoryBus())
        assert await poller.poll(cfg.targets[0]) == []
        assert poller.status["h:agent.ping"].startswith("error:")
    finally:
        agent.stop()
    # zabbix_agentd refused our certificate for its subject (tls_agentd takes it: the subject as we print it).
    assert "certificate subject does not match" in agent.log(), agent.log()[-1500:]


# -- zabbix_sender -> trapper ------------------------------------------------------------------
async def test_zabbix_sender_sends_to_our_trapper_over_tls(pki: Pki) -> None:
    bus = MemoryBus()
    trapper = TrapperListener(_listeners(pki, ["cert"], peer_cert_subject=Pki.agent_subject), bus)
    await trapper.start()
    name, port = trapper.name, _port(trapper.address)
    try:
        out = await asyncio.to_thread(_sender, port, pki, *_sender_tls(pki, pki.agent_cert, pki.agent_key))
        assert "processed: 1; failed: 0; total: 1" in out.stdout, out.stdout + out.stderr
        [s] = await drain_samples(bus, "t", 1)
        assert (s.counter_name, s.counter_volume, s.resource_id) == ("mysql.qps", 42.5, "db-1")

        # Unencrypted, to a listener that takes cert only: refused and counted, nothing stored.
        before = _rejected(name, "unencrypted")
        out = await asyncio.to_thread(_sender, port, pki)
        assert "processed: 1" not in out.stdout and out.returncode != 0, out.stdout
        assert _rejected(name, "unencrypted") == before + 1
        # zabbix_utils' Sender, plain: refused as well.
        before = _rejected(name, "unencrypted")
        with pytest.raises(Exception):  # noqa: B017 - zabbix_utils raises its own ProcessingError or socket errors
            await asyncio.to_thread(Sender(server="127.0.0.1", port=port, timeout=5).send_value, "h", "k", 1)
        assert _rejected(name, "unencrypted") == before + 1

        # A certificate from another CA fails the handshake; one from our CA with the wrong subject is refused.
        before = _rejected(name, "tls_handshake")
        out = await asyncio.to_thread(_sender, port, pki, *_sender_tls(pki, pki.stranger_cert, pki.stranger_key))
        assert "processed: 1" not in out.stdout
        assert _rejected(name, "tls_handshake") == before + 1
        before = _rejected(name, "tls_peer")
        out = await asyncio.to_thread(_sender, port, pki, *_sender_tls(pki, pki.server_cert, pki.server_key))
        assert "processed: 1" not in out.stdout
        assert _rejected(name, "tls_peer") == before + 1
        assert await drain_samples(bus, "t", 1, timeout=0.5) == []
    finally:
        await trapper.stop()


async def test_zabbix_utils_sender_with_an_ssl_context(pki: Pki) -> None:
    bus = MemoryBus()
    trapper = TrapperListener(_listeners(pki, ["unencrypted", "cert"]), bus)
    await trapper.start()
    try:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.check_hostname = False
        ctx.load_cert_chain(str(pki.agent_cert), str(pki.agent_key))
        wrapped: list[bool] = []

        def wrap(conn: object, _tls: object) -> ssl.SSLSocket:
            wrapped.append(True)
            return ctx.wrap_socket(conn)  # type: ignore[arg-type]

        tls_sender = Sender(server="127.0.0.1", port=_port(trapper.address), socket_wrapper=wrap, timeout=10)
        resp = await asyncio.to_thread(tls_sender.send, [ItemValue("web-1", "nginx.requests", 7, int(time.time()))])
        assert wrapped and (resp.processed, resp.failed) == (1, 0), resp
        # The same port still takes plain senders: accept lists both, as TLSAccept=unencrypted,cert.
        resp = await asyncio.to_thread(Sender(server="127.0.0.1", port=_port(trapper.address)).send_value,
                                       "web-1", "nginx.requests", 8)
        assert (resp.processed, resp.failed) == (1, 0)
        assert sorted(s.counter_volume for s in await drain_samples(bus, "t", 2)) == [7.0, 8.0]
    finally:
        await trapper.stop()


async def test_zabbix_utils_getter_polls_our_tls_passive_listener(pki: Pki) -> None:
    passive = PassiveListener(_listeners(pki, ["cert"], peer_cert_subject=Pki.agent_subject), ItemCollector("h"))
    await passive.start()
    try:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.check_hostname = False
        ctx.load_cert_chain(str(pki.agent_cert), str(pki.agent_key))
        port = _port(passive.address)
        getter = Getter(port=port, timeout=10, socket_wrapper=lambda conn: ctx.wrap_socket(conn))
        assert (await asyncio.to_thread(getter.get, "agent.ping")).value == "1"
        before = _rejected(passive.name, "unencrypted")
        with pytest.raises(OSError):  # closed unanswered (reset: its request is left unread)
            await asyncio.to_thread(Getter(port=port, timeout=5).get, "agent.ping")
        assert _rejected(passive.name, "unencrypted") == before + 1
    finally:
        await passive.stop()


async def test_tls_to_a_listener_that_takes_plain_only_is_refused(pki: Pki) -> None:
    trapper = TrapperListener(ZabbixSource.model_validate({"trapper": "127.0.0.1:0"}), MemoryBus())
    await trapper.start()
    try:
        before = _rejected(trapper.name, "tls_not_accepted")
        out = await asyncio.to_thread(_sender, _port(trapper.address), pki,
                                      *_sender_tls(pki, pki.agent_cert, pki.agent_key))
        assert "processed: 1" not in out.stdout
        assert _rejected(trapper.name, "tls_not_accepted") == before + 1
    finally:
        await trapper.stop()


# -- zabbix_agentd (active) -> trapper; our active client and poller against our listeners --------------------
async def test_zabbix_agentd_in_active_mode_over_tls(tmp_path: Path, pki: Pki) -> None:
    bus = MemoryBus()
    trapper = TrapperListener(_listeners(pki, ["cert"], peer_cert_subject=Pki.agent_subject), bus)
    await trapper.start()
    agent = Agentd(tmp_path, hostname="ctl-1", server_active=trapper.address, host_metadata="controller",
                   extra=pki.agentd_lines(server_subject=Pki.server_subject))
    try:
        await asyncio.to_thread(agent.start)
        by_key = {s.counter_name: s for s in await drain_samples(bus, "t", 5, timeout=25)}
        assert by_key.get("agent.ping") and by_key["agent.ping"].resource_id == "ctl-1", agent.log()[-2000:]
        assert by_key["agent.ping"].source == "zabbix-agent"
    finally:
        await asyncio.to_thread(agent.stop)
        await trapper.stop()


async def test_our_active_client_and_poller_against_our_tls_listeners(pki: Pki) -> None:
    cfg = _listeners(pki, ["cert"])
    bus = MemoryBus()
    trapper = TrapperListener(cfg, bus)
    passive = PassiveListener(cfg, ItemCollector("cmp-1"))
    await trapper.start()
    await passive.start()
    try:
        client = ActiveChecksClient(ZabbixActive.model_validate({"server": trapper.address}), ItemCollector("cmp-1"),
                                    "cmp-1", "compute", client_tls(pki_tls := ZabbixSource.model_validate(
                                        {"tls": pki.ours(connect="cert")}).tls, pki_tls.connect))
        await client.refresh()
        assert client.checks["agent.ping"] == 30.0
        await client.collect_due()
        sent = await client.send()
        assert sent and {s.counter_name for s in await drain_samples(bus, "t", sent)} >= {"agent.ping"}

        poll = ZabbixPoller.model_validate({"tls": pki.ours(connect="cert", peer_cert_subject=Pki.server_subject),
                                            "targets": [{"host": "cmp-1", "address": passive.address,
                                                         "keys": ["agent.ping"]}]})
        [s] = await PollerSource(poll, MemoryBus()).poll(poll.targets[0])
        assert s.counter_volume == 1.0
        before = _rejected(passive.name, "unencrypted")
        plain = ZabbixPoller.model_validate({"targets": [{"host": "cmp-1", "address": passive.address,
                                                          "keys": ["agent.ping"]}]})
        assert await PollerSource(plain, MemoryBus()).poll(plain.targets[0]) == []
        assert _rejected(passive.name, "unencrypted") == before + 1
    finally:
        await passive.stop()
        await trapper.stop()


# -- settings ---------------------------------------------------------------------------------
def test_psk_is_refused_at_load_naming_the_setting(pki: Pki) -> None:
    cases: list[tuple[type[pydantic.BaseModel], dict[str, object], str]] = [
        (ZabbixSource, {"tls": {"accept": ["unencrypted", "psk"]}}, "tls.accept"),
        (ZabbixSource, {"tls": {"connect": "psk"}}, "tls.connect"),
        (ZabbixSource, {"tls": {"psk_identity": "agent-1"}}, "tls.psk_identity"),
        (ZabbixSource, {"tls": {"psk_file": "/etc/zabbix/agent.psk"}}, "tls.psk_file"),
        (ZabbixPoller, {"tls": {"connect": "psk"}}, "tls.connect"),
        (ZabbixPoller, {"targets": [{"host": "h", "keys": ["k"], "tls_connect": "psk"}]}, "targets.0.tls_connect"),
    ]
    for model, doc, where in cases:
        with pytest.raises(pydantic.ValidationError) as err:
            model.model_validate(doc)
        text = str(err.value)
        assert where in text and "no TLS-PSK" in text and "use cert" in text, text


def test_cert_settings_that_cannot_work_are_refused(pki: Pki, tmp_path: Path) -> None:
    def refused(model: type[pydantic.BaseModel], doc: dict[str, object], words: str) -> None:
        with pytest.raises(pydantic.ValidationError, match=words):
            model.model_validate(doc)

    refused(ZabbixSource, {"tls": {"accept": ["cert"], "ca_file": str(pki.ca)}}, "missing: cert_file, key_file")
    refused(ZabbixSource, {"tls": pki.ours(accept=["cert"], key_file=str(tmp_path / "nope.key"))}, "cannot be read")
    refused(ZabbixSource, {"tls": pki.ours(accept=["cert"], key_file=str(pki.agent_key))}, "do not load")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    refused(ZabbixSource, {"tls": pki.ours(accept=["cert"], ca_file=str(tmp_path / "junk.pem"))}, "no usable PEM")
    refused(ZabbixSource, {"tls": {"peer_cert_subject": "CN=x"}}, "certificate connections only")
    # A target asking for cert needs the poller's certificates even though the default is unencrypted.
    refused(ZabbixPoller, {"targets": [{"host": "h", "keys": ["k"], "tls_connect": "cert"}]}, "missing: ca_file")
    refused(ZabbixPoller, {"targets": [{"host": "h", "keys": ["k"], "tls_peer_cert_subject": "CN=h"}]},
            "need cert connections")
    assert ZabbixSource.model_validate({"tls": pki.ours(accept=["cert"])}).tls.accept == ["cert"]


def test_distinguished_names_print_as_rfc4514_most_specific_first() -> None:
    rdns = ((("countryName", "LV"),), (("organizationName", "Zabbix, SIA"),),
            (("organizationalUnitName", "Ops"), ("userId", "7")), (("commonName", " agent#1 "),))
    assert distinguished_name(rdns) == "CN=\\ agent#1\\ ,OU=Ops+UID=7,O=Zabbix\\, SIA,C=LV"
    assert distinguished_name(((("domainComponent", "com"),), (("domainComponent", "example"),))) == "DC=example,DC=com"


# -- through the daemon ------------------------------------------------------------------------
def test_daemon_takes_zabbix_sender_over_tls_only(daemon_factory, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory(config={"sources": {"zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0",
                                                      "tls": pki.ours(accept=["cert"])}}})
    health = d.start().wait_healthy()
    assert health["components"]["source.zabbix_trapper"]["accept"] == ["cert"]
    port = _port(d.listen("source.zabbix_trapper"))
    out = _sender(port, pki, *_sender_tls(pki, pki.agent_cert, pki.agent_key))
    assert "processed: 1; failed: 0; total: 1" in out.stdout, out.stdout + out.stderr + d.output()[-2000:]
    assert _sender(port, pki).returncode != 0  # plain: refused

    def stored() -> list[dict[str, object]]:
        r = httpx.get(f"{d.url}/v2/meters/mysql.qps")
        return r.json() if r.status_code == 200 else []

    assert [s["counter_volume"] for s in wait_until(stored, 30, "the TLS sender's value stored")] == [42.5]
    metrics = httpx.get(f"{d.url}/metrics").text
    assert 'telemetry_zabbix_frames_rejected_total{listener="source.zabbix_trapper",reason="unencrypted"} 1.0' \
        in metrics


def test_check_config_refuses_psk_naming_the_setting(tmp_path: Path) -> None:
    conf = tmp_path / "psk.yaml"
    conf.write_text(yaml.safe_dump({"sources": {"zabbix": {"tls": {"accept": ["psk"], "psk_identity": "agent-1",
                                                                   "psk_file": "/etc/zabbix/agent.psk"}}}}))
    r = subprocess.run([sys.executable, "-m", "telemetry", "check-config", str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for where in ("sources.zabbix.tls.accept", "sources.zabbix.tls.psk_identity", "sources.zabbix.tls.psk_file"):
        assert where in r.stderr, r.stderr
    assert "no TLS-PSK" in r.stderr
