"""A private S3 (moto's server) for tests and benches.

The app talks to S3 over HTTP and hands out presigned URLs that other processes (the
worker, emulators, a browser) fetch, so an in-process mock is not enough: this runs
`moto_server` from this virtualenv as a real child process on a free loopback port.
All state lives in that process's memory and is gone after `stop()`.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import boto3
import httpx
from botocore.config import Config

from devstack.processes import ManagedProcess, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
# moto accepts any credentials; fixed dummies keep boto3 from looking for real ones.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"


def moto_server_path() -> Path:
    """The `moto_server` script installed by moto[server] next to this interpreter."""
    path = Path(sys.executable).parent / "moto_server"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install moto[server] (the dev extra has it)")
    return path


class S3Server:
    """`moto_server` on 127.0.0.1:<free port> as a context manager.

    >>> with S3Server() as s3:
    ...     s3.create_bucket("media")
    ...     s3.client().put_object(Bucket="media", Key="a", Body=b"x")
    """

    def __init__(self, *, log_dir: Path | None = None, startup_timeout: float = 30.0) -> None:
        """`log_dir` keeps the server log after `stop()` (default: a temp dir removed then)."""
        self._log_dir = log_dir
        self._startup_timeout = startup_timeout
        self._temp_dir: Path | None = None
        self._process: ManagedProcess | None = None
        self._port: int | None = None

    def start(self) -> S3Server:
        if self._process is not None:
            return self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Stop moto (its whole process group) and remove the temp dir."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            process.stop()
        temp_dir, self._temp_dir = self._temp_dir, None
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        self._port = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def temp_dir(self) -> Path | None:
        """Where the log goes unless `log_dir` was given; removed by `stop()`."""
        return self._temp_dir

    @property
    def endpoint_url(self) -> str:
        """`http://127.0.0.1:<port>`: pass as `endpoint_url` to boto3 / the app's S3 settings."""
        if self._port is None:
            raise RuntimeError("S3Server is not running")
        return f"http://127.0.0.1:{self._port}"

    def client(self) -> S3Client:
        """A boto3 S3 client for this server (path-style: loopback has no bucket subdomains)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> None:
        # us-east-1 is the one region where CreateBucket takes no LocationConstraint.
        self.client().create_bucket(Bucket=name)

    def reset(self) -> None:
        """Forget all buckets and objects (moto's reset API), cheaper than a restart."""
        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=10.0).raise_for_status()

    def _start(self) -> None:
        self._temp_dir = Path(tempfile.mkdtemp(prefix="autosync-s3-"))
        log_dir = self._log_dir or self._temp_dir
        binary = str(moto_server_path())
        # A free port can be taken between free_port() and moto's bind: retry then.
        for attempt in range(3):
            port = free_port()
            process = ManagedProcess(
                f"moto-{port}", [binary, "-H", "127.0.0.1", "-p", str(port)], log_dir=log_dir
            ).start()
            self._process, self._port = process, port
            try:
                process.wait_http(f"{self.endpoint_url}/moto-api/", timeout=self._startup_timeout)
                return
            except RuntimeError:
                if attempt < 2 and "already in use" in process.log_tail():
                    process.stop()
                    self._process = self._port = None
                    continue
                raise
