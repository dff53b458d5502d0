"""EventStream's REST API as the gerador_eventos DAG uses it, and the DAG's event generator.

Nothing here imports Airflow, so the unit tests exercise it with faked HTTP alone. The client
keeps one JWT pair (in a `TokenStore`, so that tasks in separate processes share it), renews
it with the refresh token before the access token expires or when the API answers 401, and
logs in again when the refresh token is refused. The API rotates refresh tokens: each refresh
answers a new pair, which replaces the old one, and a refresh token sent twice revokes the whole
login, so the client forgets a refresh token as it sends it and never retries a refresh (it logs
in instead). Requests time out, and transient failures (connection errors, timeouts, 429 with
its Retry-After, 5xx) are retried with exponential backoff: safe for the batch because it
carries an Idempotency-Key, and for the login because it changes nothing (a throttled login,
429 `too_many_attempts`, waits as long as Retry-After says, up to `max_backoff_seconds`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import requests

log = logging.getLogger(__name__)

STATUSES = ("success", "info", "warning", "error")
MAX_BATCH = 500

# Renew a token this long before its `exp`, so that it does not expire in flight.
EXPIRY_MARGIN_SECONDS = 30
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """A non-success answer from the API, with its HTTP status and error code."""

    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(f"{status} {code or 'error'}: {message}")
        self.status = status
        self.code = code

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        try:
            error = response.json().get("error", {})
        except (ValueError, AttributeError):
            error = {}
        return cls(response.status_code, error.get("code"), error.get("message") or response.reason or "")


class TokenStore(Protocol):
    """Where the client keeps its token pair between processes."""

    def load(self) -> dict | None: ...

    def save(self, tokens: dict) -> None: ...


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying the signature (only the API can)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def connection_base_url(conn: Any) -> str:
    """The API's base URL from an Airflow Connection.

    Either `host` is the whole base URL (the JSON form, e.g. a LocalStack stage URL), or the URI
    form's parts: `http[s]://login:password@host:port/path`, where Airflow puts the path in
    `schema`.
    """
    host = (conn.host or "").rstrip("/")
    if not host:
        raise ValueError(f"connection {conn.conn_id!r} has no host")
    if "://" in host:
        return host
    scheme = "https" if conn.conn_type == "https" else "http"
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.strip('/')}" if conn.schema else ""
    return f"{scheme}://{host}{port}{path}"


class EventStreamClient:
    """A client of the API's token and batch endpoints."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        token_store: TokenStore | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 8.0,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._store = token_store
        self._session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep or time.sleep
        self._clock = clock or time.time
        self._tokens: dict | None = None

    def post_batch(self, events: list[dict], idempotency_key: str) -> tuple[int, list[dict]]:
        """Posts the events in one batch; returns the status (201 stored, 200 replayed) and them."""
        headers = {"Idempotency-Key": idempotency_key}
        response = self._request("POST", "/api/events/batch", {"events": events}, self._bearer(headers))
        if response.status_code == 401:
            # The access token was revoked or expired early (clock skew): renew it once.
            self._forget_access_token()
            response = self._request("POST", "/api/events/batch", {"events": events}, self._bearer(headers))
        if response.status_code not in (200, 201):
            raise ApiError.from_response(response)
        return response.status_code, response.json()["events"]

    def _bearer(self, headers: dict) -> dict:
        return {**headers, "Authorization": f"Bearer {self._access_token()}"}

    def _access_token(self) -> str:
        if self._tokens is None and self._store is not None:
            stored = self._store.load()
            if stored and stored.get("base_url") == self.base_url and stored.get("username") == self.username:
                self._tokens = stored
        tokens = self._tokens or {}
        if tokens.get("access") and self._fresh(tokens["access"]):
            return tokens["access"]
        if tokens.get("refresh") and self._fresh(tokens["refresh"]):
            # The refresh token is used up by this request whatever its outcome (the API rotates
            # it, and a reused one revokes the whole login): forget it before sending it, here and
            # in the store, so that it is never sent twice, and send it once, without retries.
            self._keep(access=None, refresh=None)
            try:
                response = self._request("POST", "/api/token/refresh", {"refresh": tokens["refresh"]},
                                         max_attempts=1)
            except (requests.ConnectionError, requests.Timeout) as error:
                log.warning("POST /api/token/refresh failed (%s); logging in again", error)
            else:
                if response.status_code == 200:
                    body = response.json()
                    self._keep(access=body["access"], refresh=body["refresh"])
                    log.info("renewed the token pair with the refresh token")
                    return self._tokens["access"]
                if response.status_code != 401 and response.status_code not in TRANSIENT_STATUSES:
                    raise ApiError.from_response(response)
                log.info("the refresh token was refused (%s); logging in again", response.status_code)
        response = self._request("POST", "/api/token", {"username": self.username, "password": self._password})
        if response.status_code != 200:
            raise ApiError.from_response(response)
        body = response.json()
        self._keep(access=body["access"], refresh=body["refresh"])
        log.info("logged in to %s as %s", self.base_url, self.username)
        return self._tokens["access"]

    def _fresh(self, token: str) -> bool:
        # A token without a readable `exp` is used until the API refuses it.
        expiry = jwt_expiry(token)
        return expiry is None or expiry - EXPIRY_MARGIN_SECONDS > self._clock()

    def _keep(self, *, access: str | None, refresh: str | None) -> None:
        self._tokens = {"base_url": self.base_url, "username": self.username, "access": access, "refresh": refresh}
        if self._store is not None:
            self._store.save(self._tokens)

    def _forget_access_token(self) -> None:
        if self._tokens:
            self._tokens = {**self._tokens, "access": None}

    def _request(
        self, method: str, path: str, body: dict, headers: dict | None = None, *, max_attempts: int | None = None
    ) -> requests.Response:
        """Sends one request, retrying transient failures; returns the last response."""
        max_attempts = max_attempts or self.max_attempts
        attempt = 1
        while True:
            delay = min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)
            try:
                response = self._session.request(
                    method, self.base_url + path, json=body, headers=headers, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                if attempt >= max_attempts:
                    raise
                reason = str(error)
            else:
                if response.status_code not in TRANSIENT_STATUSES or attempt >= max_attempts:
                    return response
                reason = f"answered {response.status_code}"
                delay = max(delay, _retry_after(response, self.max_backoff_seconds))
            log.warning("%s %s %s; retry %d of %d in %.1fs", method, path, reason, attempt,
                        max_attempts - 1, delay)
            self._sleep(delay)
            attempt += 1


def _retry_after(response: requests.Response, cap: float) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), cap)
    except ValueError:
        return 0.0


def idempotency_key(dag_id: str, run: str) -> str:
    """The batch's Idempotency-Key: the same for every try of one DAG run, unique across runs."""
    key = f"{dag_id}:{run}"
    if len(key) <= 255 and all(33 <= ord(c) <= 126 for c in key):
        return key
    # The header takes 1 to 255 visible ASCII characters.
    return f"{dag_id[:150]}:sha256:{hashlib.sha256(run.encode()).hexdigest()}"


def validate_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """Status weights as given in the DAG's params, checked: known statuses, not all zero."""
    unknown = sorted(set(weights) - set(STATUSES))
    if unknown:
        raise ValueError(f"unknown statuses in status_weights: {unknown}; expected some of {list(STATUSES)}")
    checked = {}
    for status, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"status_weights[{status!r}] must be a number >= 0, not {weight!r}")
        checked[status] = float(weight)
    if sum(checked.values()) <= 0:
        raise ValueError("status_weights must give at least one status a weight above 0")
    return checked


# What a generated event says, by status: (title, description) templates.
MESSAGES = {
    "success": [
        ("Backup completed on {host}", "The nightly backup finished and was verified."),
        ("Deploy finished on {host}", "The new release is serving traffic."),
        ("Report generated on {host}", "The daily report was written and published."),
    ],
    "info": [
        ("Configuration reloaded on {host}", "The service picked up a new configuration."),
    ],
    "warning": [
        ("Disk usage above 80% on {host}", "The data volume is filling up."),
        ("Slow responses from {host}", "The 95th percentile latency is above its target."),
        ("Certificate expiring soon on {host}", "The TLS certificate expires within 14 days."),
    ],
    "error": [
        ("Payment gateway timeout on {host}", "Calls to the payment gateway timed out."),
        ("Disk full on {host}", "Writes to the data volume are failing."),
        ("Job crashed on {host}", "The worker exited with a non-zero status."),
    ],
}
HOSTS = ("web-1", "web-2", "worker-1", "db-1")
# Events happened during the two minutes before the run (the default schedule's period).
SPREAD_SECONDS = 120


def generate_events(
    seed: str,
    count: int,
    weights: Mapping[str, Any],
    source: str,
    reference_time: datetime,
) -> list[dict]:
    """`count` events whose statuses are drawn by `weights`, all derived from `seed` alone.

    The same seed and arguments give the same batch, in any process: a retried task must post
    the same body under the same Idempotency-Key, or the API answers 409.
    """
    if not 1 <= count <= MAX_BATCH:
        raise ValueError(f"events_per_run must be between 1 and {MAX_BATCH}, not {count}")
    checked = validate_weights(weights)
    # Sorted, so that the order of the keys in the params does not change the draw.
    statuses = sorted(checked)
    rng = random.Random(seed)
    drawn = rng.choices(statuses, weights=[checked[s] for s in statuses], k=count)
    reference = reference_time.astimezone(timezone.utc)
    events = []
    for sequence, status in enumerate(drawn, start=1):
        host = rng.choice(HOSTS)
        title, description = rng.choice(MESSAGES[status])
        occurred_at = reference - timedelta(milliseconds=rng.randrange(SPREAD_SECONDS * 1000))
        events.append(
            {
                "title": title.format(host=host),
                "status": status,
                "description": description,
                "source": source,
                "occurred_at": occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "attributes": {"host": host, "run": seed, "sequence": sequence},
            }
        )
    return events
