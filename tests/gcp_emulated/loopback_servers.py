"""The small servers of the gcp stand-ins that no package provides, run from `.venv-standins`.

    python loopback_servers.py install-spatial HOME       DuckDB's spatial extension into HOME/.duckdb
    python loopback_servers.py certs DIR                  a test CA and a googleapis server certificate
    python loopback_servers.py tunnel --port P --upstream 127.0.0.1:Q
    python loopback_servers.py gcs-front --port P --upstream 127.0.0.1:Q
    python loopback_servers.py metadata --port P --project ID

`tunnel` is the https proxy TensorFlow's GCS client is pointed at (`https_proxy`): it answers
CONNECT for the two googleapis storage hosts only, terminates TLS with the certificate `certs`
made (TensorFlow trusts the CA through `CURL_CA_BUNDLE`) and relays the requests to the GCS
stand-in's plain http port (`gcs-front`). Any other host is refused, so a test can never reach the
real service.

`gcs-front` stands before fake-gcs-server (STORAGE_EMULATOR_HOST, and behind the relay): it
passes every request through and adds two calls fake-gcs-server lacks. JSON API batches
(`POST /batch/storage/v1`), which Beam's GCS filesystem sends to rename (copy + delete) the
files of a sink: each part runs as a single call, in order, answered with the multipart
response the client expects. A bucket's `storageLayout`, which TensorFlow asks for before it
renames a folder: a flat (not hierarchical) bucket.

`metadata` answers the few GCE metadata server paths google-auth asks for (`GCE_METADATA_HOST`),
so product code that builds clients with default credentials gets a token and a project
without a credentials file and without the link-local address of the real metadata server.

`install-spatial` puts the extension that the `duckdb-extension-spatial` package ships where
DuckDB looks for it when HOME is HOME: bqemulator runs `INSTALL spatial` at start, which is
then a no-op instead of a download.

Only the standard library, except `certs` (cryptography) and `install-spatial` (duckdb).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import email.parser
import email.policy
import http.client
import json
import ssl
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GCS_HOSTS = ("storage.googleapis.com", "www.googleapis.com")
FAKE_TOKEN = "standin-token"
# Not a *.gserviceaccount.com address: google-auth would then look up its "regional access
# boundary" at iamcredentials.googleapis.com (refused by the relay, retried in the background).
SERVICE_ACCOUNT = "tfpipe-standin@standin.invalid"


def install_spatial(home: Path) -> None:
    import duckdb
    import duckdb_extension_spatial

    version = duckdb.__version__
    shipped = Path(duckdb_extension_spatial.__file__).parent / "extensions" / f"v{version}" / "spatial.duckdb_extension"
    if not shipped.is_file():
        raise SystemExit(f"duckdb-extension-spatial has no extension for DuckDB {version} ({shipped})")
    con = duckdb.connect(config={"extension_directory": str(home / ".duckdb" / "extensions")})
    con.execute(f"INSTALL '{shipped}'")
    con.execute("LOAD spatial")
    con.close()


def write_certs(out: Path) -> None:
    """A CA (ca.pem) and a leaf for the googleapis storage hosts signed by it (server.pem, server-key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tfpipe stand-in test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GCS_HOSTS[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in GCS_HOSTS]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    out.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (out / "ca.pem").write_bytes(ca.public_bytes(pem))
    (out / "server.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (out / "server-key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(1 << 16):
            dst.write(chunk)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        pass


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, n: int) -> None:
    while n > 0:
        chunk = await src.read(min(n, 1 << 16))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", n)
        dst.write(chunk)
        await dst.drain()
        n -= len(chunk)


async def _forward_requests(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Relay HTTP/1.1 requests one by one, dropping `Transfer-Encoding: identity`, marked as https.

    TensorFlow's curl client sends that header on requests with an empty body (starting an
    upload, asking an upload's status); fake-gcs-server, like any Go server, answers it with
    501. Everything else passes unchanged; responses are piped back untouched.
    """
    while True:
        try:
            head = await src.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            break
        request_line, *headers = head[:-4].split(b"\r\n")
        kept, length, chunked = [], 0, False
        for header in headers:
            name, _, value = (part.strip().lower() for part in header.partition(b":"))
            if name == b"x-forwarded-proto":
                continue
            if name == b"transfer-encoding":
                if value == b"identity":
                    continue
                chunked = value.endswith(b"chunked")
            elif name == b"content-length":
                length = int(value)
            kept.append(header)
        # The client spoke https: fake-gcs-server then builds upload URLs (Location) as https, so
        # every later request of an upload comes back through this relay too.
        kept.append(b"X-Forwarded-Proto: https")
        dst.write(b"\r\n".join([request_line, *kept]) + b"\r\n\r\n")
        if chunked:
            while True:
                size_line = await src.readuntil(b"\r\n")
                dst.write(size_line)
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    while (trailer := await src.readuntil(b"\r\n")) != b"\r\n":
                        dst.write(trailer)
                    dst.write(b"\r\n")
                    break
                await _copy(src, dst, size + 2)
        else:
            await _copy(src, dst, length)
        await dst.drain()
    if dst.can_write_eof():
        dst.write_eof()


async def _tunnel_client(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream: tuple[str, int],
    tls: ssl.SSLContext,
) -> None:
    up_writer: asyncio.StreamWriter | None = None
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host not in GCS_HOSTS or port != "443":
            print(f"tunnel: refused {method} {target}", file=sys.stderr, flush=True)
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await writer.start_tls(tls)
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        await asyncio.gather(_forward_requests(reader, up_writer), _pipe(up_reader, writer))
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError, ValueError) as exc:
        print(f"tunnel: connection ended: {exc!r}", file=sys.stderr, flush=True)
    finally:
        for w in (writer, up_writer):
            if w is not None:
                w.close()


async def _serve_tunnel(port: int, upstream: tuple[str, int], certs: Path) -> None:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
    tls.set_alpn_protocols(["http/1.1"])  # the relay speaks HTTP/1.1 only
    server = await asyncio.start_server(lambda r, w: _tunnel_client(r, w, upstream, tls), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length", "upgrade"}


def _call(
    upstream: tuple[str, int], method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[int, str, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection(*upstream, timeout=120)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        return response.status, response.reason, kept, data
    finally:
        conn.close()


class _GcsFrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while (size := int(self.rfile.readline().split(b";", 1)[0], 16)) > 0:
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        path = self.path.split("?", 1)[0]
        if self.command == "POST" and path == "/batch/storage/v1":
            status, reason, headers, data = self._batch(body)
        elif self.command == "GET" and path.startswith("/storage/v1/b/") and path.endswith("/storageLayout"):
            status, reason, headers, data = self._storage_layout(path.split("/")[4])
        else:
            status, reason, headers, data = _call(
                self.upstream, self.command, self.path, list(self.headers.items()), body
            )
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def _storage_layout(self, bucket: str) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """A flat bucket's layout: TensorFlow asks for it before renaming a folder (404 fails the rename)."""
        status, reason, headers, data = _call(
            self.upstream, "GET", f"/storage/v1/b/{bucket}", [("Host", self.headers["Host"])], b""
        )
        if status != 200:
            return status, reason, headers, data
        found = json.loads(data)
        layout = {
            "kind": "storage#storageLayout",
            "bucket": bucket,
            "location": found.get("location", "US-CENTRAL1"),
            "locationType": found.get("locationType", "region"),
            "hierarchicalNamespace": {"enabled": False},
        }
        return 200, "OK", [("Content-Type", "application/json")], json.dumps(layout).encode()

    def _batch(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Each part of a multipart/mixed batch as one call; the answers as one multipart/mixed."""
        parser = email.parser.BytesParser(policy=email.policy.HTTP)
        batch = parser.parsebytes(b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
        boundary = f"batch_{uuid.uuid4().hex}"
        out = []
        for part in batch.iter_parts():
            request = part.get_payload(decode=True)
            assert isinstance(request, bytes), "a batch part is one embedded HTTP request"
            # The head ends at the first blank line (CRLF or LF); the body is kept byte for byte.
            ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := request.find(sep)) >= 0]
            end, sep_len = min(ends) if ends else (len(request), 0)
            head, sub_body = request[:end], request[end + sep_len :]
            request_line, *header_lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
            method, url, _ = request_line.split(" ", 2)
            target = "/" + url.split("://", 1)[-1].split("/", 1)[1] if "://" in url else url
            headers = [tuple(x.strip() for x in line.split(":", 1)) for line in header_lines if ":" in line]
            headers.append(("Host", self.headers.get("Host", "")))
            status, reason, sub_headers, data = _call(self.upstream, method, target, headers, sub_body)  # type: ignore[arg-type]
            content_id = (part.get("Content-ID") or "").strip("<>")
            lines = [
                f"HTTP/1.1 {status} {reason}",
                *(f"{k}: {v}" for k, v in sub_headers),
                f"Content-Length: {len(data)}",
            ]
            part_head = f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>"
            out.append(
                part_head.encode() + b"\r\n\r\n" + "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + data + b"\r\n"
            )
        payload = b"".join(out) + f"--{boundary}--\r\n".encode()
        return 200, "OK", [("Content-Type", f"multipart/mixed; boundary={boundary}")], payload

    def log_message(self, format: str, *args: object) -> None:
        pass


class _MetadataHandler(BaseHTTPRequestHandler):
    project = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        root = "/computeMetadata/v1/"
        accounts = root + "instance/service-accounts/default/"
        body: str | None
        kind = "application/text"
        if path in ("", "/"):
            body = ""  # google-auth's ping: only the Metadata-Flavor header counts
        elif path == root + "project/project-id":
            body = self.project
        elif path == root + "universe/universe-domain":
            body = "googleapis.com"
        elif path in (accounts, accounts.rstrip("/")):
            kind = "application/json"
            body = json.dumps(
                {
                    "email": SERVICE_ACCOUNT,
                    "aliases": ["default"],
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                }
            )
        elif path == accounts + "email":
            body = SERVICE_ACCOUNT
        elif path == accounts + "token":
            kind = "application/json"
            body = json.dumps({"access_token": FAKE_TOKEN, "expires_in": 3600, "token_type": "Bearer"})
        else:
            body = None
        data = (body or "").encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"metadata: {format % args}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    spatial = sub.add_parser("install-spatial")
    spatial.add_argument("home", type=Path)
    certs = sub.add_parser("certs")
    certs.add_argument("dir", type=Path)
    tunnel = sub.add_parser("tunnel")
    tunnel.add_argument("--port", type=int, required=True)
    tunnel.add_argument("--upstream", required=True, help="host:port of fake-gcs-server (plain http)")
    tunnel.add_argument("--certs", type=Path, required=True, help="the folder `certs` wrote")
    front = sub.add_parser("gcs-front")
    front.add_argument("--port", type=int, required=True)
    front.add_argument("--upstream", required=True, help="host:port of fake-gcs-server (plain http)")
    metadata = sub.add_parser("metadata")
    metadata.add_argument("--port", type=int, required=True)
    metadata.add_argument("--project", required=True)
    args = parser.parse_args(argv)

    if args.command == "install-spatial":
        install_spatial(args.home.resolve())
    elif args.command == "certs":
        write_certs(args.dir)
    elif args.command == "tunnel":
        host, _, port = args.upstream.rpartition(":")
        asyncio.run(_serve_tunnel(args.port, (host, int(port)), args.certs))
    elif args.command == "gcs-front":
        host, _, port = args.upstream.rpartition(":")
        _GcsFrontHandler.upstream = (host, int(port))
        ThreadingHTTPServer(("127.0.0.1", args.port), _GcsFrontHandler).serve_forever()
    else:
        _MetadataHandler.project = args.project
        ThreadingHTTPServer(("127.0.0.1", args.port), _MetadataHandler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
