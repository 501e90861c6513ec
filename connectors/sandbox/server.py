"""Serve an ASGI app on loopback from a background thread (uvicorn), optionally over TLS.

`wait_healthy` waits for a server started as a process (`tacit serve`, a benchmark's receiver).
Used by the fake Notion and Graph servers (Graph's token authority over HTTPS, because
azure-identity only talks to an https authority), by the demo's webhook service, and by tests
that need a real webhook receiver a sandbox can POST to.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Self

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a server started next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60) -> None:
    """Return once the process serving on 127.0.0.1:`port` answers GET /healthz with 200; raise
    RuntimeError with the end of its `log` if it exits first or does not answer within `timeout`."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s: {log.read_text()[-2000:]}")


class SandboxControls:
    """What the fake vendor servers share: `with sandbox:` starts and stops it, and the levers that
    hold answers back or cut them off half-way (each vendor injects its own error bodies with its
    own `inject`, into `_faults`). A sandbox calls `_init_controls()` in its `__init__`."""

    _faults: Any

    def _init_controls(self) -> None:
        self._lock = threading.Lock()
        self._truncate = 0  # answers still to cut off half-way
        self._delays: deque[float] = deque()  # seconds to hold each of the next answers back

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def truncate(self, count: int = 1) -> None:
        """The next `count` API answers are cut off half-way through their body (a connection or proxy
        that gave up mid-answer), with the status and headers of a complete one."""
        with self._lock:
            self._truncate += count

    def delay(self, seconds: float, count: int = 1) -> None:
        """The next `count` API requests are answered only after `seconds` (a slow or hung backend)."""
        with self._lock:
            self._delays.extend([seconds] * count)

    def clear_faults(self) -> None:
        """Forget every injected fault not served yet (the storm is over)."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._truncate = 0

    def _next_delay(self) -> float:
        """Seconds to hold the answer being made now back (0: none)."""
        with self._lock:
            return self._delays.popleft() if self._delays else 0.0

    def _cut_next(self) -> bool:
        """Whether to cut the answer being made now off half-way (used up when it says so)."""
        with self._lock:
            cut = self._truncate > 0
            if cut:
                self._truncate -= 1
            return cut


class ThreadedServer:
    """`start()` binds 127.0.0.1 on a free port and serves `app` until `stop()`."""

    def __init__(self, app: Any, *, port: int = 0, certfile: str | None = None, keyfile: str | None = None,
                 lifespan: str = "off") -> None:
        self.app = app
        self.lifespan = lifespan
        self.certfile = certfile
        self.keyfile = keyfile
        self.port = port  # 0: any free port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        # uvicorn binds the port itself: handing it a pre-bound socket (`sockets=`) costs ~40 ms a
        # request on loopback (Nagle's algorithm meets delayed ACKs on that socket).
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan=self.lifespan,
                                ssl_certfile=self.certfile, ssl_keyfile=self.keyfile, timeout_keep_alive=30,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="uvicorn-sandbox")
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            # Do not wait for idle keep-alive connections; an app with a lifespan gets to run its
            # shutdown (forcing would cancel it mid-way).
            self._server.force_exit = self.lifespan == "off"
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def self_signed_certificate(directory: str | Path | None = None) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost; returns (cert file, key file). The cert is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(directory or tempfile.mkdtemp(prefix="graph-sandbox-tls-"))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graph sandbox authority")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)
