"""Private PostgreSQL and Redis servers that a test may stop, restart or kill.

The shared throwaway servers of `make test` must not be disturbed, so fault tests start their own
on free loopback ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from connectors.sandbox.server import free_port


def _pg_bin() -> Path:
    env = os.environ.get("TACIT_TEST_PG_BIN")
    if env:
        return Path(env)
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin")):
        if (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    if not found:
        raise RuntimeError("pg_ctl not found")
    return Path(found).parent


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tacit-pg-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.bin = _pg_bin()
        self.data = self.dir / "data"

    def _run(self, *args: str) -> None:
        cmd = " ".join(f"'{a}'" for a in args)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres", str(self.dir)], check=True)
            argv = ["su", "postgres", "-s", "/bin/bash", "-c", cmd]
        else:
            argv = ["bash", "-c", cmd]
        # No pipes: the server inherits them and would keep them open forever.
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://tacit@127.0.0.1:{self.port}/postgres"

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "tacit", "--auth=trust", "-E", "UTF8")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off", "start")
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-m", "fast", "-w",
                  "restart", "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off")

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tacit-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis did not start")

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
