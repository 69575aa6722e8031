"""Real servers for the remote-storage tests: HTTP from the standard library, S3 from moto.

Both run in this process on 127.0.0.1 with a free port, one per test session, and are
stopped (their threads joined) when the session ends. Tests get a fresh folder each:

- ``http_folder``: a local folder whose files the HTTP server offers at ``url``. The
  server answers byte ranges (``Range: bytes=a-b``), as real ones do, so fsspec reads
  big files in blocks; its folder pages list links, which is what fsspec globs over.
- ``s3_folder``: a new bucket on the moto server; ``url`` is ``s3://bucket/data``.
  Files written under ``local`` reach the bucket on ``sync()``. For the test's
  duration the environment points every S3 client at the server
  (``AWS_ENDPOINT_URL_S3``, test credentials), as a user points s3fs at MinIO or
  another S3-compatible store; nothing reaches AWS.
- ``remote_folder``: each test that takes it runs once over HTTP and once over S3.

A test writes its files under ``folder.local``, calls ``folder.sync()`` and reads
``folder.url + "/name"``; reading ``folder.local`` gives what a local run reads.
"""

from __future__ import annotations

import functools
import http.server
import io
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: How long a server may take to stop before the test session reports it as stuck.
STOP_TIMEOUT = 10.0

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_counter = itertools.count()


@dataclass(frozen=True)
class RemoteFolder:
    """A local folder and the URL (no trailing slash) a server offers its files at."""

    local: Path
    url: str
    _sync: Callable[[], None] = lambda: None

    def sync(self) -> None:
        """Make the server offer what is under ``local`` now (an upload for S3)."""
        self._sync()

    def url_of(self, name: str) -> str:
        """The URL of ``local / name``."""
        return f"{self.url}/{name}"


# -- HTTP -------------------------------------------------------------------------------


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """The standard library's file server, answering single byte ranges with 206."""

    def send_head(self) -> Any:
        spec = self.headers.get("Range")
        path = self.translate_path(self.path)
        if spec is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        match = _RANGE.fullmatch(spec.strip())
        if match is None or not (match[1] or match[2]):
            self.send_error(400, f"cannot read the range {spec!r}")
            return None
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
        else:  # "bytes=-N": the last N bytes
            start, end = max(size - int(match[2]), 0), size - 1
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        with open(path, "rb") as file:
            file.seek(start)
            body = file.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test output is no place for an access log


class _Server(http.server.ThreadingHTTPServer):
    # Join the request threads on close, so none outlives the session. Each answers
    # one request and ends: the handler speaks HTTP/1.0, which closes every connection.
    daemon_threads = False
    block_on_close = True


@dataclass(frozen=True)
class HttpServer:
    root: Path
    url: str


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """An HTTP file server for a temporary folder, on 127.0.0.1 and a free port."""
    root = tmp_path_factory.mktemp("http")
    server = _Server(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="test-http-server")
    thread.start()
    try:
        yield HttpServer(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT)
    assert not thread.is_alive(), "the test HTTP server did not stop"


@pytest.fixture
def http_folder(http_server: HttpServer) -> RemoteFolder:
    """A fresh folder served over HTTP."""
    name = f"t{next(_counter)}"
    local = http_server.root / name
    local.mkdir()
    return RemoteFolder(local, f"{http_server.url}/{name}")


# -- S3 ---------------------------------------------------------------------------------

_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        """A boto3 client of the server, for putting the test's files there."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=_CREDENTIALS["AWS_DEFAULT_REGION"],
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 and a free port."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()  # shuts the server down and joins its thread
        wsgi = getattr(server, "_server", None)
        if wsgi is not None:  # stop() leaves the listening socket open
            wsgi.server_close()


@pytest.fixture
def s3_folder(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RemoteFolder]:
    """A fresh bucket; S3 clients made during the test (s3fs's too) use the server."""
    import s3fs  # type: ignore[import-untyped]

    for name, value in _CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    # Nothing from the developer's own AWS setup may steer the test's clients.
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    bucket = f"headrace-test-{next(_counter)}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    local = tmp_path / "s3"
    local.mkdir()

    def upload() -> None:
        for path in sorted(local.rglob("*")):
            if path.is_file():
                key = f"data/{path.relative_to(local).as_posix()}"
                client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    # s3fs keeps one filesystem (and its listings) per set of arguments for the life
    # of the process; a test must meet a new one, made with this test's environment.
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield RemoteFolder(local, f"s3://{bucket}/data", upload)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(params=["http", "s3"])
def remote_folder(request: pytest.FixtureRequest) -> RemoteFolder:
    """A fresh remote folder: the test runs once over HTTP and once over S3."""
    folder: RemoteFolder = request.getfixturevalue(f"{request.param}_folder")
    return folder
