"""An HTTP model store: anyone in the cluster reads, the pipeline uploads, nothing is ever overwritten.

    python store.py --root /srv/models --bind 0.0.0.0 --port 8080 --token-file /etc/store/token

GET/HEAD /<path> serve a file. PUT /<path> stores the request body when the request carries
`Authorization: Bearer <token>` and `X-Checksum-Sha256: <hex>` (the Artifactory header) equal to the
body's sha256: 201 stored; 200 the same bytes were already there (a re-run of the pipeline); 409 other
bytes are there (a published version is immutable: publish a new version instead); 400 the checksum
does not match or the path is not `name/version/file`-like; 401 no or a wrong token; 411/413 no or too
large a Content-Length. A file appears whole or not at all (written aside, then renamed).

The serving pods fetch `http://model-store/<path>` and verify spec.model.digest themselves; the
checksum here only stops a truncated or corrupted upload from being published. Standard library only,
so it runs in the model server's image.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import sys
import tempfile
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHUNK = 1 << 20


def store_path(root: Path, url_path: str) -> Path | None:
    """Where an upload of `url_path` goes, or None when the path is not a plain relative one.

    >>> store_path(Path("/srv"), "/fraud/3/model.skops")
    PosixPath('/srv/fraud/3/model.skops')
    >>> store_path(Path("/srv"), "/fraud/../etc/passwd") is None, store_path(Path("/srv"), "/") is None
    (True, True)
    """
    parts = url_path.split("?", 1)[0].strip("/").split("/")
    if not parts or len(parts) > 8 or not all(SEGMENT.match(p) for p in parts):
        return None
    return root.joinpath(*parts)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class StoreHandler(SimpleHTTPRequestHandler):
    root: Path
    token: str
    max_bytes: int

    def do_PUT(self) -> None:
        status, message = self._put()
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _put(self) -> tuple[int, str]:
        if not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {self.token}"):
            return HTTPStatus.UNAUTHORIZED, "a PUT needs Authorization: Bearer <the store's token>"
        target = store_path(self.root, self.path)
        wanted = (self.headers.get("X-Checksum-Sha256") or "").lower()
        if target is None:
            return HTTPStatus.BAD_REQUEST, f"{self.path}: not a plain path (segments of A-Za-z0-9._-)"
        if not re.fullmatch(r"[0-9a-f]{64}", wanted):
            return HTTPStatus.BAD_REQUEST, "X-Checksum-Sha256 must be the body's sha256 (64 hex digits)"
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return HTTPStatus.LENGTH_REQUIRED, "Content-Length is required"
        if int(length) > self.max_bytes:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"larger than {self.max_bytes} bytes"
        return self._store(target, int(length), wanted)

    def _store(self, target: Path, length: int, wanted: str) -> tuple[int, str]:
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".upload-", delete=False) as tmp:
            left = length
            while left:
                block = self.rfile.read(min(CHUNK, left))
                if not block:
                    break
                digest.update(block)
                tmp.write(block)
                left -= len(block)
        try:
            if left or digest.hexdigest() != wanted:
                return HTTPStatus.BAD_REQUEST, f"body sha256 {digest.hexdigest()} is not {wanted} (or it was cut short)"
            if target.exists():
                same = file_sha256(target) == wanted
                return (HTTPStatus.OK, "already stored, same bytes") if same else (
                    HTTPStatus.CONFLICT, f"{self.path} exists with other bytes; publish a new version instead")
            os.chmod(tmp.name, 0o644)
            os.link(tmp.name, target)  # fails if another upload won the race: never overwrites
            return HTTPStatus.CREATED, f"stored {self.path} sha256:{wanted}"
        except FileExistsError:
            return HTTPStatus.CONFLICT, f"{self.path} was stored by a concurrent upload"
        finally:
            os.unlink(tmp.name)

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(HTTPStatus.NOT_FOUND, "no listings")  # a file is fetched by its name only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token-file", type=Path, required=True, help="the bearer token uploads must carry")
    parser.add_argument("--max-bytes", type=int, default=512 << 20)
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip()
    if len(token) < 16:
        sys.exit(f"{args.token_file}: the upload token must have at least 16 characters")
    args.root.mkdir(parents=True, exist_ok=True)
    handler = type("Handler", (StoreHandler,), {"root": args.root.resolve(), "token": token,
                                                "max_bytes": args.max_bytes})
    server = ThreadingHTTPServer((args.bind, args.port), lambda *a: handler(*a, directory=str(args.root)))
    print(f"model store: {args.root} on {args.bind}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
