"""What the hostile suite (test_hostile.py) uses: a raw HTTP client that sends exactly the bytes a
case asks for over one kept-alive connection, tokens forged with the stack's own secret, the checks
every answer gets, and the lookup that proves a refused write stored nothing."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[2]
JSON = "application/json"
DROP = object()  # a claim given this value is left out of the token
ALL_ROLES = ["producer", "analyst", "admin"]


def repo_env() -> dict:
    """The repository's `.env` (written by scripts/up), as a dict."""
    path = ROOT / ".env"
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/up first (the suite signs tokens with the stack's secret)")
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, _, value in pairs}


def jwt_secret() -> str:
    """The secret the stack signs its tokens with: $JWT_SECRET, else the repository's `.env`."""
    return os.environ.get("JWT_SECRET") or repo_env()["JWT_SECRET"]


@dataclass
class Reply:
    status: int
    headers: dict  # lower-cased names
    body: object  # parsed JSON, or the text
    raw: bytes
    seconds: float

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").split(";")[0].strip() == JSON and not isinstance(self.body, str)

    @property
    def error(self) -> dict:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, dict) else {}

    @property
    def codes(self) -> list:
        """The `extensions.code` of each GraphQL error."""
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        if not isinstance(errors, list):
            return []
        return [(e.get("extensions") or {}).get("code") if isinstance(e, dict) else None for e in errors]

    def __str__(self) -> str:
        text = self.raw[:400].decode(errors="replace")
        return f"HTTP {self.status} in {self.seconds:.2f}s: {text}{'…' if len(self.raw) > 400 else ''}"


def _bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class RawClient:
    """Sends requests byte for byte as given (header order, duplicates, control characters, bodies
    that are not JSON) over one kept-alive connection, and parses the answer."""

    def __init__(self, base_url: str, timeout: float = 15):
        parts = urlsplit(base_url)
        self.host, self.port, self.prefix = parts.hostname, parts.port or 80, parts.path.rstrip("/")
        self.timeout = timeout
        self.sock = None

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    def send(self, method: str, path, *, json_body=DROP, body: bytes = None, token: str = None,
             content_type: str = JSON, headers=(), timeout: float = None) -> Reply:
        """`path` is appended to the API's base URL as given (str or bytes, already encoded);
        `headers` are (name, value) pairs, str or bytes, sent in order after Host and Content-Type."""
        if json_body is not DROP:
            body = json.dumps(json_body).encode()
        lines = [_bytes(method) + b" " + self.prefix.encode() + _bytes(path) + b" HTTP/1.1",
                 f"Host: {self.host}:{self.port}".encode()]
        if body is not None and content_type is not None:
            lines.append(b"Content-Type: " + _bytes(content_type))
        if token is not None:
            lines.append(b"Authorization: Bearer " + _bytes(token))
        lines += [_bytes(name) + b": " + _bytes(value) for name, value in headers]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(body or b""))
        request = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
        return self._exchange(method, request, timeout or self.timeout)

    def _exchange(self, method: str, request: bytes, timeout: float) -> Reply:
        for _ in range(2):
            reused = self.sock is not None
            if not reused:
                self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
            self.sock.settimeout(timeout)
            started = time.monotonic()
            try:
                self.sock.sendall(request)
                response = http.client.HTTPResponse(self.sock, method=method)
                response.begin()
                payload = response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if reused:
                    continue  # the server had closed the idle connection: once more on a new one
                raise
            except BaseException:
                self.close()
                raise
            seconds = time.monotonic() - started
            if response.will_close:
                self.close()
            headers = {name.lower(): value for name, value in response.getheaders()}
            try:
                body = json.loads(payload) if payload else None
            except ValueError:
                body = payload.decode(errors="replace")
            return Reply(response.status, headers, body, payload, seconds)
        raise AssertionError("unreachable")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    """A token's claims, read without checking anything."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sign(payload: bytes, secret: str, algorithm: str = "HS256", header: dict = None) -> str:
    """A JWS of `payload` (any bytes) signed with `secret`, as PyJWT signs it."""
    key = None if algorithm == "none" else secret
    return jwt.api_jws.encode(payload, key, algorithm=algorithm, headers=header)


def hs256(header: dict, payload: bytes, secret: bytes) -> str:
    """HS256 over a header PyJWT would not write (an empty key, a foreign `kid`)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@dataclass
class Forge:
    """Tokens for the demo user signed with the stack's own secret, its claims as the API issued
    them, fresh times, and the changes a case makes."""

    secret: str
    base: dict  # the claims of an access token the API issued

    def claims(self, changes: dict = None) -> dict:
        now = int(time.time())
        claims = {**self.base, "iat": now, "nbf": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        for key, value in (changes or {}).items():
            if value is DROP:
                claims.pop(key, None)
            else:
                claims[key] = value
        return claims

    def token(self, changes: dict = None, algorithm: str = "HS256", secret: str = None) -> str:
        payload = json.dumps(self.claims(changes)).encode()
        return sign(payload, secret or self.secret, algorithm)

    def with_roles(self, *roles) -> str:
        return self.token({"roles": list(roles)})

    @property
    def version(self) -> int:
        return self.base.get("ver", 1) if isinstance(self.base.get("ver"), int) else 1


@dataclass
class Ledger:
    """Unique markers for the writes a case makes, and the lookup that finds what was stored with
    one: `GET /api/events?q=<marker>` with a valid token, since the suite started."""

    client: RawClient
    token: callable  # a valid access token with the analyst role
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    since: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120)))
    count: int = 0

    def marker(self) -> str:
        self.count += 1
        return f"hostile-{self.run}-{self.count}"

    def stored(self, marker: str) -> list:
        reply = self.client.send("GET", f"/api/events?q={quote(marker)}&since={quote(self.since)}&limit=20",
                                 token=self.token())
        assert reply.status == 200, f"looking up {marker}: {reply}"
        return [e for e in reply.body["events"] if marker in e["title"] or marker in e["description"]]

    def assert_nothing_stored(self, *markers):
        for marker in markers:
            found = self.stored(marker)
            assert not found, f"a refused write stored {len(found)} event(s) marked {marker}: {found[:2]}"


def event(marker: str, **fields) -> dict:
    """A valid event carrying `marker` in its title (in its description when the case sets the title)."""
    base = {"title": f"{marker} hostile", "status": "info", "source": "e2e-hostile"}
    if "title" in fields:
        base["description"] = marker
    base.update(fields)
    return {key: value for key, value in base.items() if value is not DROP}


def expect_rest_error(reply: Reply, statuses, codes=None, field_name=None):
    """A refusal of the REST API: a status of `statuses`, JSON `{"error": {"code": ...}}`."""
    statuses = {statuses} if isinstance(statuses, int) else set(statuses)
    assert reply.status < 500, f"a server error: {reply}"
    assert reply.status in statuses, f"expected HTTP {sorted(statuses)}: {reply}"
    assert reply.is_json, f"not a JSON body: {reply}"
    code = reply.error.get("code")
    assert isinstance(code, str) and code, f"no error code: {reply}"
    if codes is not None:
        codes = {codes} if isinstance(codes, str) else set(codes)
        assert code in codes, f"expected code {sorted(codes)}: {reply}"
    if field_name is not None:
        assert reply.error.get("field") == field_name, f"expected field {field_name!r}: {reply}"


def expect_graphql_error(reply: Reply, codes=None, statuses=None, within: float = None):
    """A refusal of the GraphQL API: errors, each with an `extensions.code` (never INTERNAL), one of
    them in `codes`; the HTTP status among `statuses`; answered within `within` seconds."""
    assert reply.status < 500, f"a server error: {reply}"
    if statuses is not None:
        statuses = {statuses} if isinstance(statuses, int) else set(statuses)
        assert reply.status in statuses, f"expected HTTP {sorted(statuses)}: {reply}"
    assert reply.is_json, f"not a JSON body: {reply}"
    found = reply.codes
    assert found, f"no GraphQL errors: {reply}"
    assert all(isinstance(code, str) and code for code in found), f"an error without a code: {reply}"
    assert "INTERNAL" not in found, f"an internal error: {reply}"
    if codes is not None:
        codes = {codes} if isinstance(codes, str) else set(codes)
        assert codes & set(found), f"expected a code of {sorted(codes)}: {reply}"
    if within is not None:
        assert reply.seconds < within, f"answered in {reply.seconds:.1f}s, more than {within}s: {reply}"


def expect_graphql_data(reply: Reply):
    assert reply.status == 200 and reply.is_json and not reply.body.get("errors"), f"expected data: {reply}"
    return reply.body["data"]
