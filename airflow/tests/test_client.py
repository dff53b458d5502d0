"""The DAG's client of the API, with the HTTP faked by `responses`."""

import json

import pytest
import requests
import responses
from conftest import jwt
from eventstream_client import EXPIRY_MARGIN_SECONDS, ApiError, EventStreamClient, connection_base_url, jwt_expiry

BASE = "http://api.test/live"
NOW = 1_800_000_000.0
EVENTS = [{"title": "Disk full", "status": "error"}]


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


class DictStore:
    def __init__(self, tokens=None):
        self.tokens = tokens

    def load(self):
        return self.tokens

    def save(self, tokens):
        self.tokens = tokens


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(clock, sleeps):
    return EventStreamClient(BASE, "demo", "secret", clock=clock, sleep=sleeps.append)


def login_reply(http, access_exp=NOW + 300, refresh_exp=NOW + 86400, **kwargs):
    return http.post(f"{BASE}/api/token", json={"access": jwt(access_exp), "refresh": jwt(refresh_exp)}, **kwargs)


def batch_reply(http, status=201, **kwargs):
    return http.post(f"{BASE}/api/events/batch", status=status, json={"events": [{"id": "e1", **EVENTS[0]}]}, **kwargs)


def error(code):
    return {"error": {"code": code, "message": code.replace("_", " ")}}


def paths(http):
    return [call.request.path_url.removeprefix("/live") for call in http.calls]


def test_logs_in_once_and_reuses_the_token_until_it_expires(http, client):
    login = login_reply(http)
    batch = batch_reply(http)

    assert client.post_batch(EVENTS, "k1") == (201, [{"id": "e1", **EVENTS[0]}])
    client.post_batch(EVENTS, "k2")

    assert login.call_count == 1 and batch.call_count == 2
    assert json.loads(login.calls[0].request.body) == {"username": "demo", "password": "secret"}
    assert all(call.request.headers["Authorization"].startswith("Bearer ") for call in batch.calls)


def test_renews_an_expiring_access_token_with_the_refresh_token(http, client, clock):
    login_reply(http)
    fresh = jwt(NOW + 900)
    refresh = http.post(f"{BASE}/api/token/refresh", json={"access": fresh, "refresh": jwt(NOW + 86401)})
    batch = batch_reply(http)

    client.post_batch(EVENTS, "k1")
    clock.now = NOW + 300 - EXPIRY_MARGIN_SECONDS + 1
    client.post_batch(EVENTS, "k2")

    assert paths(http) == ["/api/token", "/api/events/batch", "/api/token/refresh", "/api/events/batch"]
    assert refresh.call_count == 1
    assert batch.calls[1].request.headers["Authorization"] == f"Bearer {fresh}"


def test_keeps_the_rotated_refresh_token_and_never_sends_a_refresh_token_twice(http, clock):
    store = DictStore()
    client = EventStreamClient(BASE, "demo", "secret", clock=clock, token_store=store)
    first_refresh, second_refresh, third_refresh = jwt(NOW + 86400), jwt(NOW + 86401), jwt(NOW + 86402)
    http.post(f"{BASE}/api/token", json={"access": jwt(NOW + 300), "refresh": first_refresh})
    # Each refresh answers a new pair, as the API rotates refresh tokens.
    http.post(f"{BASE}/api/token/refresh", json={"access": jwt(NOW + 600), "refresh": second_refresh})
    http.post(f"{BASE}/api/token/refresh", json={"access": jwt(NOW + 900), "refresh": third_refresh})
    batch_reply(http)

    client.post_batch(EVENTS, "k1")
    clock.now = NOW + 300
    client.post_batch(EVENTS, "k2")
    assert store.tokens["refresh"] == second_refresh
    clock.now = NOW + 600
    client.post_batch(EVENTS, "k3")

    sent = [json.loads(call.request.body)["refresh"] for call in http.calls
            if call.request.path_url.endswith("/refresh")]
    assert sent == [first_refresh, second_refresh]
    assert store.tokens["refresh"] == third_refresh and client._tokens["refresh"] == third_refresh
    assert paths(http).count("/api/token") == 1


@pytest.mark.parametrize("failure", [{"status": 503, "json": {"error": {"code": "unavailable"}}},
                                     {"body": requests.ConnectionError("refused")}])
def test_a_failed_refresh_is_not_retried_and_logs_in_instead(http, client, clock, sleeps, failure):
    login = login_reply(http)
    refresh = http.post(f"{BASE}/api/token/refresh", **failure)
    batch_reply(http)

    client.post_batch(EVENTS, "k1")
    clock.now = NOW + 300
    client.post_batch(EVENTS, "k2")

    # The refresh token may have been used up by the failed request: sending it again could
    # revoke the login.
    assert refresh.call_count == 1 and login.call_count == 2 and sleeps == []
    assert paths(http) == ["/api/token", "/api/events/batch", "/api/token/refresh", "/api/token", "/api/events/batch"]


def test_a_reused_refresh_token_is_refused_and_the_client_logs_in_again(http, client, clock):
    login = login_reply(http)
    http.post(f"{BASE}/api/token/refresh", status=401, json=error("refresh_token_reused"))
    batch_reply(http)

    client.post_batch(EVENTS, "k1")
    clock.now = NOW + 300
    assert client.post_batch(EVENTS, "k2")[0] == 201

    assert login.call_count == 2


def test_a_throttled_login_waits_as_long_as_retry_after_says(http, client, sleeps):
    http.post(f"{BASE}/api/token", status=429, headers={"Retry-After": "5"}, json=error("too_many_attempts"))
    login = login_reply(http)
    batch_reply(http)

    assert client.post_batch(EVENTS, "k1")[0] == 201

    assert login.call_count == 1 and paths(http).count("/api/token") == 2 and sleeps == [5.0]


def test_logs_in_again_when_the_refresh_token_is_refused(http, client, clock):
    login = login_reply(http)
    http.post(f"{BASE}/api/token/refresh", status=401, json=error("invalid_token"))
    batch_reply(http)

    client.post_batch(EVENTS, "k1")
    clock.now = NOW + 600
    client.post_batch(EVENTS, "k2")

    assert paths(http) == ["/api/token", "/api/events/batch", "/api/token/refresh", "/api/token", "/api/events/batch"]
    assert login.call_count == 2


def test_logs_in_without_trying_an_expired_refresh_token(http, client, clock):
    login_reply(http, refresh_exp=NOW + 600)
    batch_reply(http)

    client.post_batch(EVENTS, "k1")
    clock.now = NOW + 3600
    client.post_batch(EVENTS, "k2")

    assert paths(http) == ["/api/token", "/api/events/batch", "/api/token", "/api/events/batch"]


def test_a_401_from_the_batch_renews_the_token_once_and_posts_again(http, client):
    login_reply(http)
    renewed = jwt(NOW + 900)
    http.post(f"{BASE}/api/token/refresh", json={"access": renewed, "refresh": jwt(NOW + 86401)})
    # `responses` answers the replies registered for one URL in turn, the last one from then on.
    rejected = http.post(f"{BASE}/api/events/batch", status=401, json=error("invalid_token"))
    accepted = batch_reply(http, status=200)

    assert client.post_batch(EVENTS, "k1")[0] == 200

    assert paths(http) == ["/api/token", "/api/events/batch", "/api/token/refresh", "/api/events/batch"]
    assert rejected.call_count == 1 and accepted.call_count == 1
    assert http.calls[3].request.headers["Authorization"] == f"Bearer {renewed}"
    assert http.calls[3].request.headers["Idempotency-Key"] == "k1"


def test_a_second_401_from_the_batch_is_an_error(http, client):
    login_reply(http)
    http.post(f"{BASE}/api/token/refresh", json={"access": jwt(NOW + 900), "refresh": jwt(NOW + 86401)})
    http.post(f"{BASE}/api/events/batch", status=401, json=error("invalid_token"))

    with pytest.raises(ApiError) as raised:
        client.post_batch(EVENTS, "k1")

    assert (raised.value.status, raised.value.code) == (401, "invalid_token")
    assert paths(http).count("/api/events/batch") == 2


def test_wrong_credentials_are_an_error_without_retries(http, client, sleeps):
    http.post(f"{BASE}/api/token", status=401, json=error("invalid_credentials"))

    with pytest.raises(ApiError) as raised:
        client.post_batch(EVENTS, "k1")

    assert (raised.value.status, raised.value.code) == (401, "invalid_credentials")
    assert paths(http) == ["/api/token"] and sleeps == []


def test_server_errors_are_retried_with_exponential_backoff(http, client, sleeps):
    login_reply(http)
    for status in (500, 502, 503):
        http.post(f"{BASE}/api/events/batch", status=status, json=error("internal"))
    batch_reply(http)

    assert client.post_batch(EVENTS, "k1")[0] == 201

    assert sleeps == [0.5, 1.0, 2.0]
    keys = {call.request.headers["Idempotency-Key"] for call in http.calls if call.request.path_url.endswith("batch")}
    assert keys == {"k1"}


def test_gives_up_after_the_last_attempt_with_the_last_answer(http, clock, sleeps):
    client = EventStreamClient(BASE, "demo", "secret", clock=clock, sleep=sleeps.append, max_attempts=4,
                               backoff_seconds=1, max_backoff_seconds=3)
    login_reply(http)
    batch = http.post(f"{BASE}/api/events/batch", status=503, json=error("unavailable"))

    with pytest.raises(ApiError) as raised:
        client.post_batch(EVENTS, "k1")

    assert (raised.value.status, raised.value.code) == (503, "unavailable")
    assert batch.call_count == 4
    assert sleeps == [1, 2, 3]


def test_connection_errors_and_timeouts_are_retried_then_raised(http, client, sleeps):
    login_reply(http)
    http.post(f"{BASE}/api/events/batch", body=requests.ConnectionError("refused"))
    http.post(f"{BASE}/api/events/batch", body=requests.ReadTimeout("slow"))
    batch_reply(http)
    assert client.post_batch(EVENTS, "k1")[0] == 201
    assert sleeps == [0.5, 1.0]

    http.replace(responses.POST, f"{BASE}/api/events/batch", body=requests.ConnectionError("refused"))
    with pytest.raises(requests.ConnectionError):
        client.post_batch(EVENTS, "k2")
    assert len(sleeps) == 2 + 4


def test_a_429_waits_as_long_as_retry_after_says(http, client, sleeps):
    login_reply(http)
    http.post(f"{BASE}/api/events/batch", status=429, headers={"Retry-After": "3"}, json=error("throttled"))
    batch_reply(http)

    client.post_batch(EVENTS, "k1")

    assert sleeps == [3.0]


@pytest.mark.parametrize("status,code", [(400, "invalid_field"), (409, "idempotency_conflict"), (413, "too_large")])
def test_client_errors_are_not_retried(http, client, sleeps, status, code):
    login_reply(http)
    batch = http.post(f"{BASE}/api/events/batch", status=status, json=error(code))

    with pytest.raises(ApiError) as raised:
        client.post_batch(EVENTS, "k1")

    assert (raised.value.status, raised.value.code) == (status, code)
    assert batch.call_count == 1 and sleeps == []


def test_every_request_has_a_timeout(http, clock):
    client = EventStreamClient(BASE, "demo", "secret", clock=clock, timeout=(2.0, 7.0))
    login_reply(http)
    batch_reply(http)

    client.post_batch(EVENTS, "k1")

    assert [call.request.req_kwargs["timeout"] for call in http.calls] == [(2.0, 7.0), (2.0, 7.0)]


def test_posts_the_events_with_the_idempotency_key_as_json(http, client):
    login_reply(http)
    batch = batch_reply(http)

    client.post_batch(EVENTS, "gerador_eventos:scheduled__2026-11-29T12:00:00+00:00")

    request = batch.calls[0].request
    assert request.headers["Idempotency-Key"] == "gerador_eventos:scheduled__2026-11-29T12:00:00+00:00"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"events": EVENTS}


def test_tokens_are_shared_through_the_store(http, clock):
    store = DictStore()
    login = login_reply(http)
    batch_reply(http)

    EventStreamClient(BASE, "demo", "secret", clock=clock, token_store=store).post_batch(EVENTS, "k1")
    assert store.tokens["access"] and store.tokens["refresh"]
    EventStreamClient(BASE, "demo", "secret", clock=clock, token_store=store).post_batch(EVENTS, "k2")

    assert login.call_count == 1


def test_stored_tokens_of_another_api_or_user_are_ignored(http, clock):
    login = login_reply(http)
    batch_reply(http)
    foreign = {"access": jwt(NOW + 300), "refresh": jwt(NOW + 86400)}

    for stored in ({**foreign, "base_url": "http://other", "username": "demo"},
                   {**foreign, "base_url": BASE, "username": "alice"}):
        EventStreamClient(BASE, "demo", "secret", clock=clock, token_store=DictStore(stored)).post_batch(EVENTS, "k")

    assert login.call_count == 2


def test_jwt_expiry_reads_exp_and_tolerates_anything_else():
    assert jwt_expiry(jwt(1234)) == 1234.0
    for token in ("", "opaque", "a.!!!.c", "a.e30.c"):
        assert jwt_expiry(token) is None


class Conn:
    def __init__(self, host, conn_type="http", port=None, schema=None):
        self.conn_id, self.host, self.conn_type, self.port, self.schema = "eventstream_api", host, conn_type, port, schema


@pytest.mark.parametrize(
    "conn,url",
    [
        (Conn("http://127.0.0.1:4566/restapis/abc/live/_user_request_/"),
         "http://127.0.0.1:4566/restapis/abc/live/_user_request_"),
        (Conn("127.0.0.1", port=4566, schema="restapis/abc/live/_user_request_"),
         "http://127.0.0.1:4566/restapis/abc/live/_user_request_"),
        (Conn("api.example.com", conn_type="https"), "https://api.example.com"),
    ],
)
def test_the_base_url_comes_from_either_form_of_the_connection(conn, url):
    assert connection_base_url(conn) == url


def test_a_connection_without_host_is_an_error():
    with pytest.raises(ValueError, match="no host"):
        connection_base_url(Conn(None))
