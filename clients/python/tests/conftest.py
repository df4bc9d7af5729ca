"""Starts the compiled binary (FS_BINARY, default ../../dist/feature-store) on a free loopback
port with a temporary DATA_DIR, and creates an admin key with its CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Tuple

import httpx
import pytest

BINARY = Path(os.environ.get("FS_BINARY", Path(__file__).resolve().parents[3] / "dist" / "feature-store"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server() -> Iterator[Tuple[str, str]]:
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} is missing: run `bun run build` first (npm test does)")
    with tempfile.TemporaryDirectory(prefix="fs-pytest-") as data:
        env = {"PATH": os.environ.get("PATH", ""), "DATA_DIR": data, "LOG_LEVEL": "warn"}
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([str(BINARY), "serve", "--port", str(port), "--host", "127.0.0.1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            out = subprocess.run([str(BINARY), "keys", "create", "--tenant", "default", "--scopes", "admin"], env=env, check=True, capture_output=True, text=True)
            key = out.stdout.strip().splitlines()[-1]
            # another process's key is visible to the server within a second
            for _ in range(60):
                if httpx.get(f"{url}/api/v1/features", headers={"x-api-key": key}).status_code == 200:
                    break
                time.sleep(0.1)
            yield url, key
        finally:
            proc.kill()
            proc.wait()
