"""A real S3 protocol server on loopback for tests and the S3 benchmark: ``moto_server``.

A subprocess (not moto's in-process server, never patched boto3) so a test
can kill it to simulate an outage and start it again on the same port.
moto keeps objects in memory: a restarted server is empty.

    server = S3Server.start()
    settings = server.settings(bucket=server.create_bucket())
    ...
    server.kill()          # outage
    server.restart()       # back, empty
    server.stop()
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from config.storage import S3Settings
from sim.processes import free_port

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
START_TIMEOUT_S = 30.0
_buckets = itertools.count(1)


@dataclass
class S3Server:
    port: int
    process: subprocess.Popen | None = None
    buckets: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int | None = None) -> S3Server:
        server = cls(port or free_port())
        server._spawn()
        return server

    def _spawn(self) -> None:
        binary = Path(sys.executable).with_name("moto_server")
        argv = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.process = subprocess.Popen(
            [*argv, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)  # a subprocess's readiness cannot be awaited
        self.kill()
        raise TimeoutError(f"moto_server did not answer on {self.endpoint}")

    def client(self):
        """A boto3 client for test setup; short timeouts, so a wedged server fails fast."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(connect_timeout=2, read_timeout=15, retries={"max_attempts": 2}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"test-bucket-{next(_buckets)}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def settings(self, bucket: str, **overrides) -> S3Settings:
        values = {
            "endpoint_url": self.endpoint,
            "bucket": bucket,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "prefix": "data",
            "upload_mode": "direct",
            "connect_timeout_s": 1.0,
            "read_timeout_s": 5.0,
            "call_timeout_s": 10.0,
            "max_attempts": 1,
        }
        return S3Settings(**(values | overrides))

    def kill(self) -> None:
        """SIGKILL: the endpoint stops answering at once (an outage)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Start again on the same port, empty; the buckets seen before are created again."""
        self.kill()
        self._spawn()
        client = self.client()
        for name in self.buckets:
            client.create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
