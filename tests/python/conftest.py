"""Starts a real `pier serve` on loopback for the Python client tests.

The binary is `$PIER_BIN` or `target/debug/pier` (built by .ci/run before pytest runs).
Pier prints one line `pier: serving http=ADDR admin=ADDR ...` on stdout when it is ready.
"""

import os
import pathlib
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "onnx"


def pier_binary():
    return os.environ.get("PIER_BIN", str(ROOT / "target" / "debug" / "pier"))


def start_pier(data_dir, *extra, env=None):
    """Starts pier and returns (process, {"http": "host:port", "admin": ..., ...}); `env` adds
    variables to its environment (e.g. the AWS ones that point its S3 client at a test store)."""
    cmd = [pier_binary(), "serve", "--data-dir", str(data_dir), "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", *extra]
    if "--grpc" not in extra:
        # gRPC's default is a fixed port (8081); tests never depend on what else holds it.
        cmd += ["--grpc", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pier exited early with {proc.wait()}")
        if line.startswith("pier: serving "):
            addrs = dict(part.split("=", 1) for part in line.split()[2:])
            return proc, addrs
    proc.kill()
    raise RuntimeError("pier did not start within 60 s")


def stop_pier(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 0, "pier did not shut down cleanly"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def pier_server(tmp_path):
    proc, addrs = start_pier(tmp_path / "data")
    yield addrs
    stop_pier(proc)
