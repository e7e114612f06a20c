"""A local HTTP server that answers like the Hugging Face file endpoint, for download tests on loopback.

It serves ``HEAD`` and ``GET /{repo}/resolve/{revision}/{path}`` with the headers huggingface_hub reads
(``X-Repo-Commit``, ``ETag``, ``Content-Length``; ``Range`` for resumed downloads), answers 404 with
``X-Error-Code: EntryNotFound`` for files it does not hold, and counts every request. A test can make one file
fail (``status=500``) or break off halfway (``drop=True``). Processes under test reach it through ``HF_ENDPOINT``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Served:
    data: bytes
    status: int = 200
    drop: bool = False

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class HubServer:
    files: dict[str, Served] = field(default_factory=dict)  # "repo/path" -> what to answer
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, url path), in order
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, repo: str, path: str, data: bytes | Path, *, status: int = 200, drop: bool = False) -> None:
        content = data.read_bytes() if isinstance(data, Path) else data
        self.files[f"{repo}/{path}"] = Served(content, status, drop)

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(method is None or m == method for m, _ in self.requests)

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            hub._record(self.command, self.path)
            parts = unquote(self.path.split("?")[0]).lstrip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return self._status(404, "RepoNotFound")
            key = "/".join(parts[:2] + parts[4:])
            served = hub.files.get(key)
            if served is None:
                return self._status(404, "EntryNotFound")
            if served.status != 200:
                return self._status(served.status, None)
            data, start = served.data, 0
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes=") and body:
                start = int(rng[6:].split("-")[0] or 0)
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{served.etag}"')
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if served.drop:
                self.wfile.write(data[start:start + (len(data) - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data[start:])

        def _status(self, code: int, error_code: str | None) -> None:
            self.send_response(code)
            if error_code:
                self.send_header("X-Error-Code", error_code)
            if error_code == "EntryNotFound":  # the repository exists, the file does not
                self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class Running:
    """A started server: ``url`` for ``HF_ENDPOINT``, ``hub`` for its files and request log."""

    def __init__(self) -> None:
        self.hub = HubServer()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.hub))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
