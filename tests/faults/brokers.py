"""Brokers of the fault tests' own, so a test may stop them: other jobs share the machine's RabbitMQ.

``PrivateRabbit`` is Debian's rabbitmq-server on ports of its own, with its own
data folder (owned by the ``rabbitmq`` user, as the server script drops to it);
stopping and starting it is a real broker restart, durable queues and
persistent messages surviving as they do in production. ``KafkaMock`` is
librdkafka's mock cluster in a process of its own, so SIGSTOP freezes the
broker (a hung broker: clients time out) and SIGCONT brings it back with its
data, which a mock cluster inside the test process could not do.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from conftest import free_port

_KAFKA_SCRIPT = """
import sys, time, confluent_kafka
p = confluent_kafka.Producer({"test.mock.num.brokers": 1})
md = p.list_topics(timeout=10)
print(",".join(f"{b.host}:{b.port}" for b in md.brokers.values()), flush=True)
while True:
    time.sleep(3600)
"""


def _reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class PrivateRabbit:
    def __init__(self) -> None:
        # Not under pytest's tmp folder: the broker runs as the rabbitmq user, who cannot enter root's 0700 folders.
        folder = self.folder = Path(tempfile.mkdtemp(prefix="telemetry-fault-rabbit-"))
        self.port, self.dist = free_port(), free_port()
        self.node = f"fault-{uuid.uuid4().hex[:8]}@localhost"
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "rabbitmq.conf").write_text(f"listeners.tcp.default = {self.port}\n")
        shutil.chown(folder, "rabbitmq", "rabbitmq")
        for p in folder.iterdir():
            shutil.chown(p, "rabbitmq", "rabbitmq")
        self.env = {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(self.dist), "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(folder / "log"), "RABBITMQ_PID_FILE": str(folder / "pid"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
                    "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq")}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90.0) -> PrivateRabbit:
        out = open(self.folder / "server.out", "ab")
        self.proc = subprocess.Popen(["rabbitmq-server"], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not _reachable(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"private RabbitMQ did not start:\n{(self.folder / 'server.out').read_text()[-3000:]}")
            time.sleep(0.3)
        return self

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def stop(self) -> None:
        """A clean broker stop (what a restart does first): persistent messages stay on its disk."""
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], env=self.env, capture_output=True, timeout=60)
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class KafkaMock:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _KAFKA_SCRIPT], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.bootstrap = self.proc.stdout.readline().decode().strip()
        assert self.bootstrap, "the mock Kafka cluster did not start"
        self.url = f"kafka://{self.bootstrap}"

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        self.proc.kill()
        self.proc.wait()
