"""Passive checks a second, plain and over certificate TLS: our passive listener vs Debian's zabbix_agentd.

    .venv/bin/python benchmarks/zabbix_tls.py [N]

The same client (our poller's ``get_value``) asks both for ``agent.ping`` N
times, CONCURRENCY at once, one connection per check as Zabbix does (so TLS
pays a full handshake per check, as it does between Zabbix components).
zabbix_agentd (C, GnuTLS, StartAgents=4) is the peer; ratio = ours / agentd.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import trustme
from zabbix_support import Agentd

from telemetry.collect.checks.items import ItemCollector
from telemetry.collect.zabbix.client import get_value
from telemetry.collect.zabbix.passive import PassiveListener
from telemetry.collect.zabbix.tls import TlsEnd, client_tls
from telemetry.config.zabbix import ZabbixPollerTLS, ZabbixSource

CONCURRENCY = 4


async def rate(address: str, n: int, tls: TlsEnd | None) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with sem:
            value, error = await get_value(address, "agent.ping", 10.0, tls)
            assert value == "1", error

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - t0)


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ca = trustme.CA(key_type=trustme.KeyType.RSA)  # Zabbix's certificate ciphers are RSA only
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
        for name in ("ours", "agent"):
            leaf = ca.issue_cert(name, common_name=name, key_type=trustme.KeyType.RSA)
            leaf.cert_chain_pems[0].write_to_path(str(d / f"{name}.pem"))
            leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
        files = {"ca_file": str(d / "ca.pem"), "cert_file": str(d / "ours.pem"), "key_file": str(d / "ours.key")}
        tls = client_tls(ZabbixPollerTLS.model_validate({**files, "connect": "cert"}), "cert")
        lines = ["StartAgents=4", "TLSAccept=unencrypted,cert", f"TLSCAFile={d / 'ca.pem'}",
                 f"TLSCertFile={d / 'agent.pem'}", f"TLSKeyFile={d / 'agent.key'}"]
        (d / "agentd").mkdir()
        agent = Agentd(d / "agentd", extra=lines).start()
        passive = PassiveListener(ZabbixSource.model_validate(
            {"passive": "127.0.0.1:0", "tls": {**files, "accept": ["unencrypted", "cert"]}}), ItemCollector("bench"))
        await passive.start()
        try:
            for label, end in (("plain", None), ("TLS (cert)", tls)):
                await rate(passive.address, 20, end)  # warm up
                ours = await rate(passive.address, n, end)
                theirs = await rate(agent.address, n, end)
                print(f"{label:11s} ours {ours:7.0f} checks/s   zabbix_agentd {theirs:7.0f} checks/s   "
                      f"ratio {ours / theirs:.2f}x")
        finally:
            await passive.stop()
            agent.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
