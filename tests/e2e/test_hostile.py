"""A hostile client of the deployed stack: forged and mangled tokens, every claim wrong in turn
(signed with the stack's own secret), roles, malformed, trailing and oversized bodies, wrong content
types, NUL and control characters, header abuse, injection strings, cursor, limit and
Idempotency-Key abuse, batch edges, and GraphQL bombs.

Every case: no 5xx; a refusal is a JSON error with a code (REST `{"error": {"code"}}`, GraphQL
`errors[*].extensions.code`); a refused write stores nothing, which the unique marker each write
carries proves (`GET /api/events?q=<marker>`). Failed logins are throttled per username and per
client, and the whole run comes from one client: the suite makes at most four, each for a made-up
username, never for the demo user.
"""

import base64
import json
import os
import time
import uuid
from urllib.parse import quote

import pytest

from conftest import wait_until
from hostile import (
    ALL_ROLES, DROP, Forge, Ledger, RawClient, b64, claims_of, event, expect_graphql_data, expect_graphql_error,
    expect_rest_error, hs256, jwt_secret, sign,
)

# What a refusal looks like: HTTP statuses, REST codes, GraphQL codes.
UNAUTHORIZED = ({401}, {"invalid_token"}, {"UNAUTHENTICATED"})
NO_TOKEN = ({401}, {"missing_token", "invalid_token"}, {"UNAUTHENTICATED"})
FORBIDDEN = ({403}, {"forbidden"}, {"FORBIDDEN"})
UNAUTHORIZED_OR_FORBIDDEN = ({401, 403}, {"invalid_token", "forbidden"}, {"UNAUTHENTICATED", "FORBIDDEN"})
# GraphQL limits are checked before anything runs: a refusal comes at once.
QUICK = 5.0


@pytest.fixture(scope="module")
def client(stack):
    client = RawClient(stack["API_URL"])
    yield client
    client.close()


@pytest.fixture(scope="module")
def login(client, stack) -> dict:
    """A login of this module's own, so its access token is fresh whatever ran before."""
    reply = client.send("POST", "/api/token",
                        json_body={"username": stack["DEMO_USERNAME"], "password": stack["DEMO_PASSWORD"]})
    assert reply.status == 200, reply
    return reply.body


@pytest.fixture(scope="module")
def access(login) -> str:
    return login["access"]


@pytest.fixture(scope="module")
def forge(access) -> Forge:
    return Forge(jwt_secret(), claims_of(access))


@pytest.fixture(scope="module")
def ledger(client, access) -> Ledger:
    return Ledger(client, lambda: access)


@pytest.fixture(scope="module", autouse=True)
def seed(client, access, ledger) -> dict:
    """An error event of this run: an id to read, and (once the pipeline emailed it) a notification
    for the admin-only fields."""
    reply = client.send("POST", "/api/events", json_body=event(ledger.marker(), status="error"), token=access)
    assert reply.status == 201, reply
    return reply.body


def graphql(query: str, variables: dict = None) -> dict:
    return {"query": query, "variables": variables or {}}


def create_event_mutation(marker: str, alias: str = "") -> str:
    return f'{alias}createEvent(input: {{title: "{marker} hostile", status: INFO, source: "e2e-hostile"}}) {{ id }}'


# --- Who the caller is: mangled tokens, claims, roles --------------------------------------------

TARGETS = ["rest-write", "rest-read", "graphql"]


def attempt(target: str, client: RawClient, ledger: Ledger, authorization):
    """The request of `target` with this Authorization header value (None: without one); the marker
    of the event it would store, if it writes."""
    headers = [] if authorization is None else [("Authorization", authorization)]
    if target == "rest-write":
        marker = ledger.marker()
        return client.send("POST", "/api/events", json_body=event(marker), headers=headers), marker
    if target == "rest-batch":
        marker = ledger.marker()
        return client.send("POST", "/api/events/batch", json_body={"events": [event(marker)]}, headers=headers), marker
    if target == "rest-read":
        return client.send("GET", "/api/events?limit=1", headers=headers), None
    if target == "graphql-write":
        marker = ledger.marker()
        body = graphql(f"mutation {{ {create_event_mutation(marker)} }}")
        return client.send("POST", "/graphql", json_body=body, headers=headers), marker
    return client.send("POST", "/graphql", json_body=graphql("{ statusCounts { count } }"), headers=headers), None


def expect_refused(target: str, reply, outcome):
    statuses, rest_codes, graphql_codes = outcome
    if target.startswith("graphql"):
        expect_graphql_error(reply, graphql_codes, statuses)
    else:
        expect_rest_error(reply, statuses, rest_codes)


def _segments(token: str) -> list:
    return token.split(".")


def _flip_signature(token: str) -> str:
    header, payload, signature = _segments(token)
    i = len(signature) // 2
    return f"{header}.{payload}.{signature[:i]}{'A' if signature[i] != 'A' else 'B'}{signature[i + 1:]}"


def _unsigned(alg: str, forge: Forge, signature: str = "") -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(forge.claims()).encode())}.{signature}"


def _payload(forge: Forge) -> bytes:
    return json.dumps(forge.claims()).encode()


# Each: the Authorization header a forger sends, from a valid access token and the forge.
MANGLED = [
    pytest.param(lambda t, f: f"Bearer {_flip_signature(t)}", UNAUTHORIZED, id="bad-signature"),
    pytest.param(lambda t, f: f"Bearer {f.token(secret='another-secret-of-more-than-32-bytes-' + 'x' * 30)}",
                 UNAUTHORIZED, id="signed-with-another-secret"),
    pytest.param(lambda t, f: "Bearer " + ".".join(_segments(t)[:2]) + ".", UNAUTHORIZED, id="signature-stripped"),
    pytest.param(lambda t, f: f"Bearer {_unsigned('none', f)}", UNAUTHORIZED, id="alg-none"),
    pytest.param(lambda t, f: f"Bearer {_unsigned('none', f, _segments(t)[2])}", UNAUTHORIZED,
                 id="alg-none-keeping-a-signature"),
    pytest.param(lambda t, f: f"Bearer {_unsigned('None', f)}", UNAUTHORIZED, id="alg-None-capitalised"),
    pytest.param(lambda t, f: f"Bearer {sign(_payload(f), f.secret, 'none')}", UNAUTHORIZED, id="alg-none-by-pyjwt"),
    pytest.param(lambda t, f: f"Bearer {f.token(algorithm='HS512')}", UNAUTHORIZED, id="hs512-same-secret"),
    pytest.param(lambda t, f: f"Bearer {f.token(algorithm='HS384')}", UNAUTHORIZED, id="hs384-same-secret"),
    pytest.param(lambda t, f: f"Bearer {hs256({'alg': 'HS256', 'kid': '../../../../dev/null'}, _payload(f), b'')}",
                 UNAUTHORIZED, id="kid-path-traversal-with-an-empty-key"),
    pytest.param(lambda t, f: "Bearer " + hs256({"alg": "HS256", "jwk": {"kty": "oct", "k": b64(b"mallory")}},
                                                _payload(f), b"mallory"), UNAUTHORIZED, id="embedded-jwk"),
    pytest.param(lambda t, f: f"Bearer {t[:-8]}", UNAUTHORIZED, id="truncated"),
    pytest.param(lambda t, f: f"Bearer {_segments(t)[0]}", UNAUTHORIZED, id="header-only"),
    pytest.param(lambda t, f: "Bearer " + ".".join(_segments(t)[:2]), UNAUTHORIZED, id="two-segments"),
    pytest.param(lambda t, f: f"Bearer {t}.{_segments(t)[2]}", UNAUTHORIZED, id="extra-segment"),
    pytest.param(lambda t, f: f"Bearer {t}.", UNAUTHORIZED, id="extra-empty-segment"),
    pytest.param(lambda t, f: "Bearer {0}.{1}.{1}.{2}".format(*_segments(t)), UNAUTHORIZED, id="payload-twice"),
    pytest.param(lambda t, f: "Bearer @@@@.{1}.{2}".format(*_segments(t)), UNAUTHORIZED, id="garbage-base64-header"),
    pytest.param(lambda t, f: "Bearer {0}.$$$$.{2}".format(*_segments(t)), UNAUTHORIZED, id="garbage-base64-payload"),
    pytest.param(lambda t, f: "Bearer {0}.{1}==.{2}".format(*_segments(t)), UNAUTHORIZED, id="padded-base64"),
    pytest.param(lambda t, f: f"Bearer {sign(b'not json', f.secret)}", UNAUTHORIZED, id="payload-not-json-signed"),
    pytest.param(lambda t, f: f"Bearer {sign(b'[1, 2, 3]', f.secret)}", UNAUTHORIZED, id="payload-an-array-signed"),
    pytest.param(lambda t, f: "Bearer " + ".".join(b64(os.urandom(n)) for n in (60, 4400, 32)), UNAUTHORIZED,
                 id="huge-6-kib"),
    pytest.param(lambda t, f: "Bearer " + t.replace(".", " "), UNAUTHORIZED, id="spaces-for-dots"),
    pytest.param(lambda t, f: "Bearer t\u00f6k\u00e9n".encode(), NO_TOKEN, id="non-ascii"),
    pytest.param(lambda t, f: "Bearer ", NO_TOKEN, id="empty-bearer"),
    pytest.param(lambda t, f: t, NO_TOKEN, id="no-scheme"),
    pytest.param(lambda t, f: "Basic " + base64.b64encode(b"demo:guess").decode(), NO_TOKEN, id="basic-scheme"),
]


@pytest.mark.parametrize("target", ["rest-write", "graphql"])
@pytest.mark.parametrize("mangle, outcome", MANGLED)
def test_a_mangled_or_forged_token_is_refused(client, ledger, access, forge, mangle, outcome, target):
    reply, marker = attempt(target, client, ledger, mangle(access, forge))
    expect_refused(target, reply, outcome)
    if marker:
        ledger.assert_nothing_stored(marker)


# Each: the claims changed (from the issued ones, with fresh times), then what the API answers.
CLAIMS = [
    pytest.param(lambda f, now: {"iss": "someone-else"}, UNAUTHORIZED, id="iss-wrong"),
    pytest.param(lambda f, now: {"iss": ""}, UNAUTHORIZED, id="iss-empty"),
    pytest.param(lambda f, now: {"aud": "another-api"}, UNAUTHORIZED, id="aud-wrong"),
    pytest.param(lambda f, now: {"aud": ["another-api"]}, UNAUTHORIZED, id="aud-a-list-without-ours"),
    pytest.param(lambda f, now: {"typ": "refresh"}, UNAUTHORIZED, id="typ-refresh-as-access"),
    pytest.param(lambda f, now: {"typ": "admin"}, UNAUTHORIZED, id="typ-unknown"),
    pytest.param(lambda f, now: {"iat": now - 600, "nbf": now - 600, "exp": now - 5}, UNAUTHORIZED, id="exp-past"),
    pytest.param(lambda f, now: {"exp": str(now + 300)}, UNAUTHORIZED, id="exp-a-string"),
    pytest.param(lambda f, now: {"nbf": now + 3600}, UNAUTHORIZED, id="nbf-in-the-future"),
    pytest.param(lambda f, now: {"iat": now + 3600}, UNAUTHORIZED, id="iat-in-the-future"),
    pytest.param(lambda f, now: {"sub": str(uuid.uuid4())}, UNAUTHORIZED, id="sub-an-unknown-uuid"),
    pytest.param(lambda f, now: {"sub": "00000000-0000-0000-0000-000000000000"}, UNAUTHORIZED, id="sub-the-nil-uuid"),
    pytest.param(lambda f, now: {"sub": "demo"}, UNAUTHORIZED, id="sub-not-a-uuid"),
    pytest.param(lambda f, now: {"sub": "' OR 1=1 --"}, UNAUTHORIZED, id="sub-sql"),
    *[pytest.param(lambda f, now, claim=claim: {claim: DROP}, UNAUTHORIZED, id=f"{claim}-missing")
      for claim in ("sub", "iss", "aud", "exp", "iat", "nbf", "typ", "roles", "ver")],
    pytest.param(lambda f, now: {"roles": []}, FORBIDDEN, id="roles-empty"),
    pytest.param(lambda f, now: {"roles": ["root"]}, UNAUTHORIZED_OR_FORBIDDEN, id="roles-unknown"),
    pytest.param(lambda f, now: {"roles": "producer analyst admin"}, UNAUTHORIZED_OR_FORBIDDEN,
                 id="roles-not-a-list"),
    pytest.param(lambda f, now: {"roles": [r.upper() for r in ALL_ROLES]}, UNAUTHORIZED_OR_FORBIDDEN,
                 id="roles-in-capitals"),
    pytest.param(lambda f, now: {"ver": f.version + 1}, UNAUTHORIZED, id="ver-bumped"),
    pytest.param(lambda f, now: {"ver": f.version - 1}, UNAUTHORIZED, id="ver-older"),
    pytest.param(lambda f, now: {"ver": str(f.version)}, UNAUTHORIZED, id="ver-a-string"),
    pytest.param(lambda f, now: {"ver": 2**63}, UNAUTHORIZED, id="ver-huge"),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("changes, outcome", CLAIMS)
def test_a_token_with_one_claim_wrong_signed_with_the_stacks_secret_is_refused(
        client, ledger, forge, changes, outcome, target):
    token = forge.token(changes(forge, int(time.time())))
    reply, marker = attempt(target, client, ledger, f"Bearer {token}")
    expect_refused(target, reply, outcome)
    if marker:
        ledger.assert_nothing_stored(marker)


@pytest.mark.parametrize("target", ["rest-read", "graphql"])
def test_a_token_signed_with_the_stacks_secret_and_the_issued_claims_is_accepted(client, ledger, forge, target):
    # The control for the cases above: the forge signs as the API does, so each refusal is the claim's.
    reply, _ = attempt(target, client, ledger, f"Bearer {forge.token()}")
    assert reply.status == 200, reply
    if target == "graphql":
        expect_graphql_data(reply)


# Each: the roles the token carries, the request, and whether it is allowed.
ROLE_CASES = [
    pytest.param(["producer"], "rest-read", FORBIDDEN, id="producer-lists-events"),
    pytest.param(["producer"], "rest-get-one", FORBIDDEN, id="producer-reads-an-event"),
    pytest.param(["producer"], "graphql", FORBIDDEN, id="producer-queries-counts"),
    pytest.param(["producer"], "graphql-event", FORBIDDEN, id="producer-queries-an-event"),
    pytest.param(["admin"], "graphql", FORBIDDEN, id="admin-without-analyst-queries-counts"),
    pytest.param(["analyst"], "rest-write", FORBIDDEN, id="analyst-posts-an-event"),
    pytest.param(["analyst"], "rest-batch", FORBIDDEN, id="analyst-posts-a-batch"),
    pytest.param(["analyst"], "graphql-write", FORBIDDEN, id="analyst-creates-an-event"),
    pytest.param(["admin"], "rest-write", FORBIDDEN, id="admin-without-producer-posts-an-event"),
    pytest.param(["analyst", "producer"], "graphql-posted-by", FORBIDDEN, id="analyst-reads-posted-by"),
    pytest.param(["analyst", "producer"], "graphql-page-posted-by", FORBIDDEN, id="analyst-reads-posted-by-on-a-page"),
    pytest.param(["analyst", "producer"], "graphql-recipients", FORBIDDEN, id="analyst-reads-recipients"),
    pytest.param(["analyst", "producer"], "graphql-last-error", FORBIDDEN, id="analyst-reads-last-error"),
    pytest.param(["analyst", "producer"], "graphql-dead-letters", FORBIDDEN, id="analyst-reads-dead-letters"),
    pytest.param(["producer"], "rest-write", None, id="producer-posts-an-event"),
    pytest.param(["analyst"], "rest-read", None, id="analyst-lists-events"),
    pytest.param(["analyst"], "graphql", None, id="analyst-queries-counts"),
    pytest.param(ALL_ROLES, "graphql-admin-fields", None, id="admin-reads-every-diagnostic-field"),
]

ADMIN_QUERIES = {
    "graphql-posted-by": "query($id: UUID!) { event(id: $id) { id postedBy } }",
    "graphql-page-posted-by": "{ events(first: 1) { nodes { id postedBy } } }",
    "graphql-recipients": "query($id: UUID!) { event(id: $id) { notifications { recipients } } }",
    "graphql-last-error": "query($id: UUID!) { event(id: $id) { notifications { lastError } } }",
    "graphql-dead-letters": "{ pipeline { deadLetters } }",
    "graphql-admin-fields": "query($id: UUID!) { event(id: $id) { postedBy notifications { recipients lastError } }"
                            " pipeline { deadLetters } }",
    "graphql-event": "query($id: UUID!) { event(id: $id) { id title } }",
}


def notified(client, access, event_id):
    """Waits until the pipeline emailed the seed event, so its notification's fields resolve."""
    def has_notification():
        reply = client.send("POST", "/graphql", token=access, json_body=graphql(
            "query($id: UUID!) { event(id: $id) { notifications { state } } }", {"id": event_id}))
        return reply.status == 200 and reply.body["data"]["event"]["notifications"]
    wait_until(has_notification, 60, "the seed error event's notification")


@pytest.mark.parametrize("roles, target, outcome", ROLE_CASES)
def test_a_valid_token_acts_only_within_its_roles(client, ledger, forge, access, seed, roles, target, outcome):
    authorization = f"Bearer {forge.with_roles(*roles)}"
    if target in ADMIN_QUERIES:
        if "recipients" in ADMIN_QUERIES[target] or "lastError" in ADMIN_QUERIES[target]:
            notified(client, access, seed["id"])
        variables = {"id": seed["id"]} if "$id" in ADMIN_QUERIES[target] else {}
        reply = client.send("POST", "/graphql", json_body=graphql(ADMIN_QUERIES[target], variables),
                            headers=[("Authorization", authorization)])
        marker = None
    elif target == "rest-get-one":
        reply, marker = client.send("GET", f"/api/events/{seed['id']}", headers=[("Authorization", authorization)]), None
    else:
        reply, marker = attempt(target, client, ledger, authorization)
    if outcome is None:
        assert reply.status in (200, 201), reply
        if target.startswith("graphql"):
            expect_graphql_data(reply)
        return
    expect_refused(target, reply, outcome)
    if marker:
        ledger.assert_nothing_stored(marker)


# --- Login and refresh ------------------------------------------------------------------------------

def test_a_refresh_token_works_once_and_its_reuse_revokes_the_whole_login(client, stack):
    pair = client.send("POST", "/api/token",
                       json_body={"username": stack["DEMO_USERNAME"], "password": stack["DEMO_PASSWORD"]}).body
    rotated = client.send("POST", "/api/token/refresh", json_body={"refresh": pair["refresh"]})
    assert rotated.status == 200, rotated
    assert set(rotated.body) == {"access", "refresh"}, f"a refresh returns a new pair: {rotated}"
    assert rotated.body["refresh"] != pair["refresh"]

    # The contract fixes the status, not the code, of a reuse.
    reused = client.send("POST", "/api/token/refresh", json_body={"refresh": pair["refresh"]})
    expect_rest_error(reused, 401, ("invalid_token", "refresh_token_reused"))
    after_reuse = client.send("POST", "/api/token/refresh", json_body={"refresh": rotated.body["refresh"]})
    expect_rest_error(after_reuse, 401, ("invalid_token", "refresh_token_reused"))


def _refresh_claims(f: Forge, now: int, **changes) -> dict:
    return {"typ": "refresh", "exp": now + 86_400, **changes}


REFRESH_TOKENS = [
    pytest.param(lambda a, f, now: a, id="an-access-token"),
    pytest.param(lambda a, f, now: "not-a-token", id="garbage"),
    pytest.param(lambda a, f, now: f.token(_refresh_claims(f, now)), id="signed-but-never-issued"),
    pytest.param(lambda a, f, now: f.token(_refresh_claims(f, now, iss="someone-else")), id="iss-wrong"),
    pytest.param(lambda a, f, now: f.token(_refresh_claims(f, now, exp=now - 5, iat=now - 600, nbf=now - 600)),
                 id="expired"),
    pytest.param(lambda a, f, now: f.token(_refresh_claims(f, now, nbf=now + 3600)), id="nbf-in-the-future"),
    pytest.param(lambda a, f, now: f.token(_refresh_claims(f, now, sub=str(uuid.uuid4()))), id="sub-unknown"),
    pytest.param(lambda a, f, now: f.token(_refresh_claims(f, now, ver=f.version + 1)), id="ver-bumped"),
    pytest.param(lambda a, f, now: f.token(_refresh_claims(f, now), algorithm="HS512"), id="hs512-same-secret"),
    pytest.param(lambda a, f, now: _unsigned("none", Forge(f.secret, f.claims(_refresh_claims(f, now)))),
                 id="alg-none"),
]


@pytest.mark.parametrize("make", REFRESH_TOKENS)
def test_a_forged_or_wrong_refresh_token_is_refused(client, access, forge, make):
    reply = client.send("POST", "/api/token/refresh", json_body={"refresh": make(access, forge, int(time.time()))})
    expect_rest_error(reply, 401, "invalid_token")


@pytest.mark.parametrize("body, statuses, codes", [
    pytest.param({"refresh": 42}, 400, "malformed_json", id="a-number"),
    pytest.param({"refresh": ["a", "b"]}, 400, "malformed_json", id="a-list"),
    pytest.param({}, 400, "invalid_field", id="missing"),
    pytest.param({"refresh": ""}, (400, 401), ("invalid_field", "invalid_token"), id="empty"),
    pytest.param({"refresh": "x", "admin": True}, 400, "malformed_json", id="an-unknown-field"),
])
def test_a_malformed_refresh_request_is_a_json_400(client, body, statuses, codes):
    expect_rest_error(client.send("POST", "/api/token/refresh", json_body=body), statuses, codes)


def made_up_username(ledger: Ledger) -> str:
    return f"{ledger.marker()}-nobody"


# The suite's only failed logins, four at most: the throttle counts them per client, and every test of
# the run (scripts/test, the other suites) logs in from this one.
@pytest.mark.parametrize("credentials, statuses, codes", [
    pytest.param(lambda m: {"username": f"{m}\u0000", "password": "guess"}, 400, "invalid_field", id="nul-in-username"),
    pytest.param(lambda m: {"username": m, "password": "gu\u0000ess"}, 400, "invalid_field", id="nul-in-password"),
    pytest.param(lambda m: {"username": f"{m}' OR '1'='1' --", "password": "' OR '1'='1"},
                 (401, 429), ("invalid_credentials", "too_many_attempts"), id="sql-injection"),
    pytest.param(lambda m: {"username": m + "x" * 300, "password": "guess"},
                 (400, 401, 429), ("invalid_field", "invalid_credentials", "too_many_attempts"), id="username-300-chars"),
])
def test_a_hostile_login_is_refused_with_a_json_error(client, ledger, credentials, statuses, codes):
    reply = client.send("POST", "/api/token", json_body=credentials(made_up_username(ledger)))
    expect_rest_error(reply, statuses, codes)
    if reply.status == 429:
        assert reply.headers.get("retry-after", "").isdigit(), f"a 429 without Retry-After: {reply}"


@pytest.mark.parametrize("body, codes", [
    pytest.param({"username": 1, "password": "x"}, "malformed_json", id="username-a-number"),
    pytest.param({"username": "x", "password": ["x"]}, "malformed_json", id="password-a-list"),
    pytest.param({"username": "x"}, "invalid_field", id="no-password"),
    pytest.param({"password": "x"}, "invalid_field", id="no-username"),
    pytest.param({"username": "x", "password": "x", "admin": True}, "malformed_json", id="an-unknown-field"),
])
def test_a_malformed_login_is_a_json_400_without_a_password_check(client, body, codes):
    expect_rest_error(client.send("POST", "/api/token", json_body=body), 400, codes)


# --- Bodies: malformed and trailing JSON, oversize, content types --------------------------------

BODY_ENDPOINTS = ["events", "batch", "token", "refresh", "graphql"]


def body_request(endpoint: str, marker: str):
    """The path, a body that would pass (or, for the login, be refused before any password check), and
    whether the endpoint needs a token."""
    if endpoint == "events":
        return "/api/events", event(marker), True
    if endpoint == "batch":
        return "/api/events/batch", {"events": [event(marker)]}, True
    if endpoint == "token":
        return "/api/token", {"username": f"{marker}-nobody"}, False  # no password: never a failed login
    if endpoint == "refresh":
        return "/api/token/refresh", {"refresh": f"{marker}-not-a-token"}, False
    return "/graphql", graphql(f"mutation {{ {create_event_mutation(marker)} }}"), True


def _duplicate_first_key(body: dict) -> bytes:
    first = json.dumps(dict([next(iter(body.items()))]))[1:-1]
    return ("{" + first + ", " + json.dumps(body)[1:]).encode()


def _add_member(text: bytes, member: bytes) -> bytes:
    return text[:-1] + b", " + member + b"}"


# Each: the body made from a valid one, and the REST codes it may get.
MALFORMED = [
    pytest.param(lambda b, d: b[:-5], "malformed_json", id="truncated"),
    pytest.param(lambda b, d: b + b" xyz", "malformed_json", id="trailing-garbage"),
    pytest.param(lambda b, d: b + b, "malformed_json", id="trailing-object"),
    pytest.param(lambda b, d: b + b" []", "malformed_json", id="trailing-array"),
    pytest.param(lambda b, d: b[:-1] + b", }", "malformed_json", id="trailing-comma"),
    pytest.param(lambda b, d: b.replace(b'"', b"'"), "malformed_json", id="single-quotes"),
    pytest.param(lambda b, d: b"/* note */ " + b, "malformed_json", id="comment"),
    pytest.param(lambda b, d: b"", "malformed_json", id="empty"),
    pytest.param(lambda b, d: b"null", "malformed_json", id="null"),
    pytest.param(lambda b, d: b"[" + b + b"]", "malformed_json", id="wrapped-in-an-array"),
    pytest.param(lambda b, d: b"[" * 5000 + b"]" * 5000, "malformed_json", id="nested-5000-deep"),
    pytest.param(lambda b, d: _add_member(b, b'"x": NaN'), "malformed_json", id="nan"),
    pytest.param(lambda b, d: _add_member(b, b'"x": "\xff\xfe"'), "malformed_json", id="invalid-utf-8"),
    pytest.param(lambda b, d: _duplicate_first_key(d), "malformed_json", id="duplicate-key"),
    pytest.param(lambda b, d: _add_member(b, b'"x": "a\x00b"'), ("malformed_json", "invalid_field"),
                 id="raw-nul-byte"),
]


# LocalStack's gateway hands the function a body with invalid UTF-8 already replaced by U+FFFD, and a
# GraphQL request ignores members it does not know: that case cannot reach the graphql function.
@pytest.mark.parametrize("endpoint, malform, codes", [
    pytest.param(endpoint, *case.values, id=f"{case.id}-{endpoint}")
    for case in MALFORMED for endpoint in BODY_ENDPOINTS
    if not (case.id == "invalid-utf-8" and endpoint == "graphql")
])
def test_a_malformed_or_trailing_json_body_is_a_400(client, ledger, access, endpoint, malform, codes):
    marker = ledger.marker()
    path, body, needs_token = body_request(endpoint, marker)
    reply = client.send("POST", path, body=malform(json.dumps(body).encode(), body),
                        token=access if needs_token else None)
    if endpoint == "graphql":
        expect_graphql_error(reply, statuses=400)
    else:
        expect_rest_error(reply, 400, codes)
    if needs_token:
        ledger.assert_nothing_stored(marker)


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_a_body_over_256_kib_is_a_413(client, ledger, access, endpoint):
    marker = ledger.marker()
    path, body, needs_token = body_request(endpoint, marker)
    text = json.dumps(body).encode()
    padded = _add_member(text, b'"padding": "' + b"x" * (257 * 1024) + b'"')
    reply = client.send("POST", path, body=padded, token=access if needs_token else None)
    if endpoint == "graphql":
        expect_graphql_error(reply, statuses=413)
    else:
        expect_rest_error(reply, 413, "payload_too_large")
    if needs_token:
        ledger.assert_nothing_stored(marker)


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
@pytest.mark.parametrize("content_type", [
    pytest.param("text/plain", id="text-plain"),
    pytest.param("application/x-www-form-urlencoded", id="form"),
    pytest.param("multipart/form-data; boundary=xyz", id="multipart"),
    pytest.param("text/json", id="text-json"),
    pytest.param(None, id="none"),
])
def test_a_body_that_is_not_declared_json_is_a_415(client, ledger, access, endpoint, content_type):
    marker = ledger.marker()
    path, body, needs_token = body_request(endpoint, marker)
    reply = client.send("POST", path, json_body=body, content_type=content_type, token=access if needs_token else None)
    if endpoint == "graphql":
        expect_graphql_error(reply, statuses=415)
    else:
        expect_rest_error(reply, 415, "unsupported_media_type")
    if needs_token:
        ledger.assert_nothing_stored(marker)


# --- NUL and control characters -----------------------------------------------------------------

# Each: the event's fields with a NUL in one, and the field the error names (None: not checked).
NUL_FIELDS = [
    pytest.param({"title": "a\u0000b"}, "title", id="title"),
    pytest.param({"description": "a\u0000b"}, "description", id="description"),
    pytest.param({"source": "a\u0000b"}, "source", id="source"),
    pytest.param({"status": "info\u0000"}, "status", id="status"),
    pytest.param({"attributes": {"k\u0000": "v"}}, None, id="attribute-key"),
    pytest.param({"attributes": {"k": "v\u0000"}}, None, id="attribute-value"),
    pytest.param({"attributes": {"k": ["a", {"deep": "\u0000"}]}}, None, id="nested-attribute"),
    pytest.param({"occurred_at": "2026-11-29T10:00:00Z\u0000"}, None, id="occurred-at"),
]


def _nul_codes(fields: dict) -> tuple:
    # A timestamp with a NUL is no timestamp: it fails as JSON of the wrong type, naming the field.
    return ("malformed_json",) if "occurred_at" in fields else ("invalid_field",)


@pytest.mark.parametrize("fields, field_name", NUL_FIELDS)
def test_a_nul_in_a_field_of_an_event_is_invalid_field(client, ledger, access, fields, field_name):
    marker = ledger.marker()
    reply = client.send("POST", "/api/events", json_body=event(marker, **fields), token=access)
    expect_rest_error(reply, 400, _nul_codes(fields), field_name)
    ledger.assert_nothing_stored(marker)


@pytest.mark.parametrize("fields, field_name", NUL_FIELDS)
def test_a_nul_in_one_event_of_a_batch_is_invalid_field_and_stores_none(client, ledger, access, fields, field_name):
    markers = [ledger.marker() for _ in range(3)]
    events = [event(markers[0]), event(markers[1], **fields), event(markers[2])]
    reply = client.send("POST", "/api/events/batch", json_body={"events": events}, token=access)
    expect_rest_error(reply, 400, _nul_codes(fields), field_name and f"events[1].{field_name}")
    ledger.assert_nothing_stored(*markers)


@pytest.mark.parametrize("fields", [
    pytest.param({"title": "a\u0000b"}, id="title"),
    pytest.param({"description": "a\u0000b"}, id="description"),
    pytest.param({"source": "a\u0000b"}, id="source"),
    pytest.param({"attributes": {"k\u0000": 1}}, id="attribute-key"),
    pytest.param({"attributes": {"k": "\u0000"}}, id="attribute-value"),
])
def test_a_nul_in_a_graphql_create_event_is_bad_user_input(client, ledger, access, fields):
    marker = ledger.marker()
    payload = {"title": f"{marker} hostile", "description": marker, "status": "INFO", **fields}
    if "title" in fields:
        payload["title"] = f"{marker} {fields['title']}"
    reply = client.send("POST", "/graphql", token=access, json_body=graphql(
        "mutation($input: CreateEventInput!) { createEvent(input: $input) { id } }", {"input": payload}))
    expect_graphql_error(reply, "BAD_USER_INPUT")
    ledger.assert_nothing_stored(marker)


@pytest.mark.parametrize("parameter", ["q", "source", "status", "since", "until", "cursor", "limit"])
def test_a_nul_in_a_query_parameter_is_invalid_field(client, access, parameter):
    reply = client.send("GET", f"/api/events?{parameter}=a%00b", token=access)
    expect_rest_error(reply, 400, "invalid_field", parameter)


def test_a_nul_in_an_event_id_is_a_json_400(client, access):
    expect_rest_error(client.send("GET", "/api/events/%00", token=access), 400, "invalid_field")


@pytest.mark.parametrize("query, variables", [
    pytest.param("query($s: String) { events(filter: {search: $s}) { nodes { id } } }", {"s": "a\u0000b"},
                 id="search-filter"),
    pytest.param("query($s: String) { events(filter: {source: $s}) { nodes { id } } }", {"s": "a\u0000b"},
                 id="source-filter"),
    pytest.param("query($s: String) { stats(source: $s) { total } }", {"s": "a\u0000b"}, id="stats-source"),
    pytest.param("query($s: String) { events(after: $s) { nodes { id } } }", {"s": "a\u0000b"}, id="after-cursor"),
    pytest.param('{ events(filter: {search: "a\\u0000b"}) { nodes { id } } }', {}, id="escaped-in-the-document"),
    pytest.param("{ statusCounts { count } }\u0000", {}, id="after-the-document"),
])
def test_a_nul_in_a_graphql_argument_is_a_coded_error(client, access, query, variables):
    reply = client.send("POST", "/graphql", token=access, json_body=graphql(query, variables))
    expect_graphql_error(reply, within=QUICK)


def test_a_nul_in_a_refresh_token_is_an_invalid_token(client):
    expect_rest_error(client.send("POST", "/api/token/refresh", json_body={"refresh": "a\u0000b"}), 401, "invalid_token")


@pytest.mark.parametrize("field_name", ["title", "description"])
@pytest.mark.parametrize("text", [
    pytest.param("a\u0001b", id="soh"),
    pytest.param("bell\u0007", id="bel"),
    pytest.param("\u001b[31mred\u001b[0m", id="ansi-escape"),
    pytest.param("a\u007fb", id="del"),
    pytest.param("a\u0085b", id="nel"),
    pytest.param("a\u2028b\u2029c", id="line-separators"),
    pytest.param("\ufeffbom", id="bom"),
    pytest.param("rtl\u202eevil", id="bidi-override"),
])
def test_control_characters_in_text_are_stored_verbatim_or_refused(client, ledger, access, field_name, text):
    marker = ledger.marker()
    value = f"{marker} {text}" if field_name == "title" else text
    body = event(marker, **{field_name: value}) if field_name != "title" else {**event(marker), "title": value}
    reply = client.send("POST", "/api/events", json_body=body, token=access)
    if reply.status == 201:
        read = client.send("GET", f"/api/events/{reply.body['id']}", token=access)
        assert read.status == 200 and read.body[field_name] == value, f"not stored verbatim: {read}"
    else:
        expect_rest_error(reply, 400, "invalid_field", field_name)
        ledger.assert_nothing_stored(marker)


# --- Injection strings ----------------------------------------------------------------------------

INJECTIONS = [
    pytest.param("' OR '1'='1", id="sql-or"),
    pytest.param("'; DROP TABLE events; --", id="sql-drop"),
    pytest.param("x'); SELECT pg_sleep(3); --", id="sql-sleep"),
    pytest.param('", "status": "error', id="json-break-out"),
    pytest.param("{{7*7}} ${7*7} #{7*7} <%= 7*7 %> ${jndi:ldap://127.0.0.1/a} %s%s%n", id="template-and-format"),
    pytest.param("<script>alert(1)</script> ../../etc/passwd $(id) `id`", id="markup-and-shell"),
    pytest.param("100% _match_ \\ back\\slash", id="like-wildcards"),
]


def _inject(marker: str, field_name: str, text: str) -> dict:
    if field_name == "title":
        return {**event(marker), "title": f"{marker} {text}"}
    if field_name == "attribute-key":
        return event(marker, attributes={text: 1})
    if field_name == "attribute-value":
        return event(marker, attributes={"k": text})
    return event(marker, **{field_name: text})


@pytest.mark.parametrize("field_name", ["title", "description", "source", "attribute-key", "attribute-value"])
@pytest.mark.parametrize("text", INJECTIONS)
def test_an_injection_string_in_an_event_is_stored_verbatim(client, ledger, access, field_name, text):
    marker = ledger.marker()
    body = _inject(marker, field_name, text)
    reply = client.send("POST", "/api/events", json_body=body, token=access)
    assert reply.seconds < 3, f"the database ran something: {reply}"
    if reply.status != 201:
        expect_rest_error(reply, 400, "invalid_field")
        ledger.assert_nothing_stored(marker)
        return
    read = client.send("GET", f"/api/events/{reply.body['id']}", token=access)
    assert read.status == 200, read
    sent = {key: body[key] for key in ("title", "description", "source", "attributes", "status") if key in body}
    assert {key: read.body[key] for key in sent} == sent, f"not stored as sent: {read}"


@pytest.mark.parametrize("text", INJECTIONS[:4])
def test_an_injection_string_as_a_status_is_invalid_field(client, ledger, access, text):
    marker = ledger.marker()
    reply = client.send("POST", "/api/events", json_body=event(marker, status=text), token=access)
    expect_rest_error(reply, 400, "invalid_field", "status")
    ledger.assert_nothing_stored(marker)


@pytest.mark.parametrize("parameter", ["q", "source"])
@pytest.mark.parametrize("text", INJECTIONS)
def test_an_injection_string_in_a_filter_matches_only_literally(client, ledger, access, parameter, text):
    reply = client.send("GET", f"/api/events?{parameter}={quote(text)}&since={quote(ledger.since)}&limit=100",
                        token=access)
    assert reply.status == 200, reply
    assert reply.seconds < 3, f"the database ran something: {reply}"
    for found in reply.body["events"]:
        if parameter == "q":
            assert text.lower() in (found["title"] + "\n" + found["description"]).lower(), f"matched {found}"
        else:
            assert found["source"] == text, f"matched {found}"


@pytest.mark.parametrize("argument", ["search", "source"])
@pytest.mark.parametrize("text", INJECTIONS)
def test_an_injection_string_in_a_graphql_filter_matches_only_literally(client, ledger, access, argument, text):
    reply = client.send("POST", "/graphql", token=access, json_body=graphql(
        f"query($s: String, $since: DateTime) {{ events(filter: {{{argument}: $s, since: $since}}, first: 100) "
        "{ nodes { title description source } } }", {"s": text, "since": ledger.since}))
    data = expect_graphql_data(reply)
    for found in data["events"]["nodes"]:
        if argument == "search":
            assert text.lower() in (found["title"] + "\n" + found["description"]).lower(), f"matched {found}"
        else:
            assert found["source"] == text, f"matched {found}"


# --- Query parameters: limit, cursor, filters, ids ----------------------------------------------

def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


# Each: the query string, then whether a 200 is also right (a forged but well-formed position).
LIST_QUERIES = [
    *[pytest.param(f"limit={value}", "limit", False, id=f"limit-{name}") for name, value in [
        ("negative", "-1"), ("zero", "0"), ("501", "501"), ("huge", "99999999999999999999"), ("text", "abc"),
        ("fraction", "1.5"), ("exponent", "1e3"), ("empty", ""), ("hex", "0x10"), ("space", "%201"),
        ("arabic-digit", quote("\u0663")), ("sql", quote("1; DROP TABLE events"))]],
    *[pytest.param(f"cursor={value}", "cursor", False, id=f"cursor-{name}") for name, value in [
        ("garbage", "not-a-cursor!"), ("empty", ""), ("base64-of-text", _cursor("hello")),
        ("no-id", _cursor("1700000000000000|")), ("not-a-uuid", _cursor("1700000000000000|not-a-uuid")),
        ("time-overflow", _cursor(f"99999999999999999999|{uuid.uuid4()}")),
        ("time-not-a-number", _cursor(f"soon|{uuid.uuid4()}")), ("invalid-utf-8", b64(b"\xff\xfe|\xfd")),
        ("10-kib", "A" * 10_240), ("sql", quote(_cursor(f"1' OR '1'='1|{uuid.uuid4()}"))),
        ("standard-base64", quote(base64.b64encode(b"\xfb\xff|" + uuid.uuid4().bytes).decode()))]],
    pytest.param(f"cursor={_cursor(f'0|{uuid.uuid4()}')}", "cursor", True, id="cursor-forged-at-1970"),
    pytest.param(f"cursor={_cursor(f'9223372036854775807|{uuid.uuid4()}')}", "cursor", True,
                 id="cursor-forged-at-the-end-of-time"),
    pytest.param(f"cursor={_cursor(f'-9223372036854775808|{uuid.uuid4()}')}", "cursor", True,
                 id="cursor-forged-at-the-start-of-time"),
    *[pytest.param(f"{name}={value}", name, False, id=f"{name}-{label}") for name in ("since", "until")
      for label, value in [("text", "yesterday"), ("month-13", "2026-13-01T00:00:00Z"), ("date-only", "2026-01-01"),
                           ("year-99999", "99999-01-01T00:00:00Z"), ("epoch-number", "1700000000"),
                           ("sql", quote("2026-01-01' OR '1'='1"))]],
    pytest.param("since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z&limit=1", None, True, id="widest-range"),
    *[pytest.param(f"status={value}", "status", False, id=f"status-{label}") for label, value in [
        ("capitals", "ERROR"), ("unknown", "fatal"), ("a-list", "warning,error"), ("empty", ""),
        ("sql", quote("error' OR '1'='1"))]],
    pytest.param("nope=1", None, False, id="unknown-parameter"),
    pytest.param("status[]=error", None, False, id="php-array-parameter"),
    pytest.param("limit=1&limit=2", None, True, id="duplicate-parameter"),
    pytest.param("q=" + "x" * 8000 + "&limit=1", "q", True, id="q-8000-chars"),
    pytest.param("q=%ZZ", None, True, id="bad-percent-encoding"),
]


@pytest.mark.parametrize("query, field_name, may_succeed", LIST_QUERIES)
def test_an_abusive_list_query_is_answered_or_refused_with_a_json_400(client, access, query, field_name, may_succeed):
    reply = client.send("GET", f"/api/events?{query}", token=access)
    if may_succeed and reply.status == 200:
        assert isinstance(reply.body, dict) and isinstance(reply.body.get("events"), list), reply
        return
    expect_rest_error(reply, 400, ("invalid_field", "invalid_query"), field_name)


@pytest.mark.parametrize("path, statuses", [
    pytest.param("/api/events/not-a-uuid", 400, id="not-a-uuid"),
    pytest.param("/api/events/00000000-0000-0000-0000-000000000000", 404, id="the-nil-uuid"),
    pytest.param(f"/api/events/{uuid.uuid4()}", 404, id="an-unknown-uuid"),
    pytest.param(f"/api/events/%7B{uuid.uuid4()}%7D", (400, 404), id="uuid-in-braces"),
    pytest.param("/api/events/1%20OR%201=1", 400, id="sql"),
    pytest.param("/api/events/" + "a" * 4000, (400, 404, 414), id="4000-chars"),
    pytest.param("/api/events/%2e%2e%2fhealth", (400, 404), id="encoded-traversal"),
    pytest.param("/api/nothing", 404, id="unknown-route"),
])
def test_a_bad_event_id_or_route_is_a_json_error(client, access, path, statuses):
    expect_rest_error(client.send("GET", path, token=access), statuses)


@pytest.mark.parametrize("method, path", [
    ("PUT", "/api/events"), ("PATCH", "/api/events"), ("DELETE", "/api/events"), ("DELETE", "/api/events/batch"),
    ("POST", f"/api/events/{uuid.uuid4()}"),
])
def test_a_method_a_route_does_not_have_is_a_json_405(client, access, method, path):
    reply = client.send(method, path, token=access, json_body={})
    expect_rest_error(reply, 405, "method_not_allowed")


# --- Headers ----------------------------------------------------------------------------------------

# Bytes LocalStack's gateway (hypercorn's h11, before API Gateway's emulation) refuses in a header
# value: NUL, and the whitespace HTTP/1.1 allows only as SP and HTAB. Measured: an empty 400 with
# `Connection: close` and no API Gateway request id; no function sees the request. (h11 passes every
# other byte: SOH, ESC and DEL reach the function, which must answer them with a JSON 400.)
GATEWAY_REFUSED = {b"\x00", b"\x0b", b"\x0c", b"\r"}


def gateway_refused(reply, byte: bytes) -> bool:
    """The documented exception: the gateway's own empty 400, for a byte it refuses."""
    return (byte in GATEWAY_REFUSED and reply.status == 400 and not reply.raw
            and "x-amzn-requestid" not in reply.headers)


CONTROL_BYTES = [
    pytest.param(b"\x00", id="nul"), pytest.param(b"\x01", id="soh"), pytest.param(b"\x1b", id="esc"),
    pytest.param(b"\x7f", id="del"), pytest.param(b"\x0b", id="vertical-tab"), pytest.param(b"\x0c", id="form-feed"),
    pytest.param(b"\r", id="bare-cr"),
]


@pytest.mark.parametrize("byte", CONTROL_BYTES)
@pytest.mark.parametrize("header", ["X-Hostile", "User-Agent", "Authorization"])
def test_a_control_character_in_a_header_is_a_json_400(client, access, header, byte):
    value = b"Bearer " + access.encode() + byte if header == "Authorization" else b"a" + byte + b"b"
    reply = client.send("GET", "/api/events?limit=1", headers=[(header, value)]
                        + ([] if header == "Authorization" else [("Authorization", f"Bearer {access}")]))
    if gateway_refused(reply, byte):
        return
    codes = ("malformed_request", "invalid_token") if header == "Authorization" else "malformed_request"
    expect_rest_error(reply, (400, 401) if header == "Authorization" else 400, codes)


@pytest.mark.parametrize("byte", CONTROL_BYTES)
@pytest.mark.parametrize("header", ["Idempotency-Key", "Content-Type"])
def test_a_control_character_in_a_header_of_a_write_stores_nothing(client, ledger, access, header, byte):
    marker = ledger.marker()
    headers = [("Idempotency-Key", b"key" + byte)] if header == "Idempotency-Key" else []
    content_type = b"application/json" + byte if header == "Content-Type" else "application/json"
    reply = client.send("POST", "/api/events", json_body=event(marker), token=access, headers=headers,
                        content_type=content_type)
    if not gateway_refused(reply, byte):
        expect_rest_error(reply, (400, 415), ("malformed_request", "invalid_field", "unsupported_media_type"))
    ledger.assert_nothing_stored(marker)


def test_a_control_character_in_a_graphql_header_is_a_coded_error(client, access):
    reply = client.send("POST", "/graphql", token=access, json_body=graphql("{ statusCounts { count } }"),
                        headers=[("X-Hostile", b"a\x01b")])
    expect_graphql_error(reply, statuses=400)


@pytest.mark.parametrize("value", [
    pytest.param("tab\tinside", id="tab"),
    pytest.param("caf\u00e9".encode(), id="utf-8"),
    pytest.param(b"\xff\xfe", id="obs-text"),
    pytest.param("x" * 8000, id="8000-chars"),
])
def test_an_odd_but_legal_header_value_is_served_or_refused_with_json(client, access, value):
    reply = client.send("GET", "/api/events?limit=1", token=access, headers=[("X-Hostile", value)])
    assert reply.status < 500, reply
    if reply.status != 200:
        expect_rest_error(reply, (400, 431))


def test_many_headers_are_served_or_refused_with_json(client, access):
    reply = client.send("GET", "/api/events?limit=1", token=access,
                        headers=[(f"X-Hostile-{i}", "x" * 50) for i in range(100)])
    assert reply.status < 500, reply
    if reply.status != 200:
        expect_rest_error(reply, (400, 431))


# LocalStack's gateway forwards only the first of two Authorization headers, so through it a second
# one cannot be seen; the function refuses two when it gets them (auth::tests in the library).
@pytest.mark.parametrize("first, second", [
    pytest.param("garbage", "valid", id="garbage-then-valid"),
    pytest.param("empty", "valid", id="empty-then-valid"),
    pytest.param("forged-subject", "valid", id="forged-subject-then-valid"),
])
def test_two_different_authorization_headers_are_refused(client, ledger, access, forge, first, second):
    values = {"valid": f"Bearer {access}", "garbage": "Bearer garbage", "empty": "Bearer ",
              "forged-subject": f"Bearer {forge.token({'sub': str(uuid.uuid4())})}"}
    marker = ledger.marker()
    reply = client.send("POST", "/api/events", json_body=event(marker),
                        headers=[("Authorization", values[first]), ("Authorization", values[second])])
    expect_rest_error(reply, (400, 401), ("malformed_request", "invalid_token", "missing_token"))
    ledger.assert_nothing_stored(marker)


# --- Idempotency-Key ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/events", "/api/events/batch"])
@pytest.mark.parametrize("key", [
    pytest.param("", id="empty"),
    pytest.param("k" * 256, id="256-chars"),
    pytest.param("k" * 8000, id="8000-chars"),
    pytest.param("k\tk", id="tab"),
    pytest.param("cl\u00e9".encode(), id="utf-8"),
])
def test_an_abusive_idempotency_key_is_invalid_field(client, ledger, access, path, key):
    marker = ledger.marker()
    body = event(marker) if path == "/api/events" else {"events": [event(marker)]}
    reply = client.send("POST", path, json_body=body, token=access, headers=[("Idempotency-Key", key)])
    expect_rest_error(reply, 400, "invalid_field")
    ledger.assert_nothing_stored(marker)


def test_an_idempotency_key_reused_with_another_body_is_a_409_and_stores_nothing(client, ledger, access):
    key = f"hostile-{uuid.uuid4()}"
    first, second = ledger.marker(), ledger.marker()
    created = client.send("POST", "/api/events", json_body=event(first), token=access, headers=[("Idempotency-Key", key)])
    assert created.status == 201, created
    replayed = client.send("POST", "/api/events", json_body=event(first), token=access, headers=[("Idempotency-Key", key)])
    assert (replayed.status, replayed.body["id"]) == (200, created.body["id"]), replayed
    conflict = client.send("POST", "/api/events", json_body=event(second), token=access,
                           headers=[("Idempotency-Key", key)])
    expect_rest_error(conflict, 409, "idempotency_conflict")
    ledger.assert_nothing_stored(second)
    assert len(ledger.stored(first)) == 1


def test_an_idempotency_key_reused_on_another_endpoint_is_a_409(client, ledger, access):
    key = f"hostile-{uuid.uuid4()}"
    marker = ledger.marker()
    created = client.send("POST", "/api/events", json_body=event(marker), token=access, headers=[("Idempotency-Key", key)])
    assert created.status == 201, created
    batch = client.send("POST", "/api/events/batch", json_body={"events": [event(marker)]}, token=access,
                        headers=[("Idempotency-Key", key)])
    expect_rest_error(batch, 409, "idempotency_conflict")
    assert len(ledger.stored(marker)) == 1


@pytest.mark.parametrize("key", [
    pytest.param("", id="empty"), pytest.param("k" * 256, id="256-chars"), pytest.param("k\u0001", id="control"),
    pytest.param("k\u0000", id="nul"), pytest.param("cl\u00e9", id="non-ascii"),
])
def test_an_abusive_graphql_idempotency_key_is_bad_user_input(client, ledger, access, key):
    marker = ledger.marker()
    reply = client.send("POST", "/graphql", token=access, json_body=graphql(
        "mutation($key: String) { " + create_event_mutation(marker).replace(") {", ", idempotencyKey: $key) {") + " }",
        {"key": key}))
    expect_graphql_error(reply, "BAD_USER_INPUT")
    ledger.assert_nothing_stored(marker)


def test_a_graphql_idempotency_key_reused_with_another_input_is_a_conflict(client, ledger, access):
    key = f"hostile-{uuid.uuid4()}"
    query = "mutation($input: CreateEventInput!, $key: String) { createEvent(input: $input, idempotencyKey: $key) { id } }"
    first, second = ledger.marker(), ledger.marker()
    created = client.send("POST", "/graphql", token=access, json_body=graphql(
        query, {"input": {"title": f"{first} hostile", "status": "INFO"}, "key": key}))
    expect_graphql_data(created)
    conflict = client.send("POST", "/graphql", token=access, json_body=graphql(
        query, {"input": {"title": f"{second} hostile", "status": "INFO"}, "key": key}))
    expect_graphql_error(conflict, "IDEMPOTENCY_CONFLICT")
    ledger.assert_nothing_stored(second)


# --- Batches --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, bad_index, bad, field_name", [
    pytest.param(3, 0, {"status": "fatal"}, "events[0].status", id="unknown-status-first"),
    pytest.param(3, 1, {"title": DROP}, "events[1].title", id="missing-title-in-the-middle"),
    pytest.param(3, 2, {"title": "x" * 201}, "events[2].title", id="title-too-long-last"),
    pytest.param(3, 1, {"attributes": ["not", "an", "object"]}, "events[1].attributes", id="attributes-a-list"),
    pytest.param(3, 1, {"source": ""}, "events[1].source", id="empty-source"),
    pytest.param(500, 499, {"status": "fatal"}, "events[499].status", id="bad-500th-of-500"),
    pytest.param(501, None, None, "events", id="501-events"),
])
def test_one_bad_event_refuses_the_whole_batch(client, ledger, access, size, bad_index, bad, field_name):
    # One marker in every event's description: one lookup covers the batch.
    marker = ledger.marker()
    events = [{**event(marker), "description": marker} for _ in range(size)]
    if bad_index is not None:
        events[bad_index] = {k: v for k, v in {**events[bad_index], **bad}.items() if v is not DROP}
    reply = client.send("POST", "/api/events/batch", json_body={"events": events}, token=access)
    expect_rest_error(reply, 400, "invalid_field", field_name)
    ledger.assert_nothing_stored(marker)


@pytest.mark.parametrize("body, codes", [
    pytest.param({"events": []}, "invalid_field", id="no-events"),
    pytest.param({"events": None}, ("invalid_field", "malformed_json"), id="events-null"),
    pytest.param({}, ("invalid_field", "malformed_json"), id="events-missing"),
    pytest.param({"events": {}}, "malformed_json", id="events-an-object"),
    pytest.param({"events": [None]}, ("invalid_field", "malformed_json"), id="a-null-event"),
    pytest.param({"events": [[]]}, "malformed_json", id="an-event-a-list"),
    pytest.param({"events": ["title"]}, "malformed_json", id="an-event-a-string"),
])
def test_a_malformed_batch_is_a_json_400(client, access, body, codes):
    expect_rest_error(client.send("POST", "/api/events/batch", json_body=body, token=access), 400, codes)


@pytest.mark.parametrize("extra", [
    pytest.param({"events": [], "also": 1}, id="unknown-top-level-field"),
    pytest.param({"id": str(uuid.uuid4())}, id="client-chosen-id"),
    pytest.param({"received_at": "2000-01-01T00:00:00Z"}, id="client-chosen-received-at"),
    pytest.param({"pipeline_state": "processed"}, id="client-chosen-pipeline-state"),
    pytest.param({"user_id": str(uuid.uuid4())}, id="client-chosen-user"),
])
def test_a_field_the_client_may_not_set_is_refused_and_stores_nothing(client, ledger, access, extra):
    marker = ledger.marker()
    if "events" in extra:
        body, path = {**extra, "events": [event(marker)]}, "/api/events/batch"
    else:
        body, path = {**event(marker), **extra}, "/api/events"
    expect_rest_error(client.send("POST", path, json_body=body, token=access), 400, ("malformed_json", "invalid_field"))
    ledger.assert_nothing_stored(marker)


# --- GraphQL abuse ----------------------------------------------------------------------------------

def _fan_out(depth: int, width: int, leaf: str = "pipeline { received }") -> str:
    fragments = [f"fragment F{i} on Query {{ {' '.join([f'...F{i + 1}'] * width)} }}" for i in range(depth)]
    return "query { ...F0 } " + " ".join(fragments) + f" fragment F{depth} on Query {{ {leaf} }}"


def _nested(levels: int) -> str:
    return "{ " + "a { " * levels + "b" + " }" * levels + " }"


# Each: the request body, then the codes one of which the refusal carries (None: any code).
GRAPHQL_ABUSE = [
    pytest.param(graphql(_nested(9)), {"QUERY_TOO_DEEP", "GRAPHQL_VALIDATION_FAILED"}, id="nested-9-deep"),
    pytest.param(graphql(_nested(2000)), None, id="nested-2000-deep"),
    pytest.param(graphql(_nested(6000)), None, id="nested-6000-deep-over-16-kib"),
    pytest.param(graphql("{ " + " ".join(f"a{i}: __typename" for i in range(1000)) + " }"), None,
                 id="1000-aliases"),
    pytest.param(graphql("{ " + " ".join(f"a{i}: pipeline {{ received }}" for i in range(100)) + " }"), None,
                 id="100-aliased-pipelines"),
    pytest.param(graphql("{ " + " ".join(f"e{i}: events(first: 500) {{ nodes {{ id title description status "
                                        "source attributes routing { handler } notifications { state } } }}"
                                        for i in range(8)) + " }"), None, id="8-full-pages"),
    pytest.param(graphql("{ a: stats { total } b: stats(bucket: DAY) { total } }"), None, id="stats-twice"),
    pytest.param(graphql("{ a: statusCounts { count } b: statusCounts { count } }"), None, id="status-counts-twice"),
    pytest.param(graphql("{ a: topSources { count } b: topSources(limit: 5) { count } }"), None,
                 id="top-sources-twice"),
    pytest.param(graphql("{ a: pipeline { received } b: pipeline { processed } }"), None, id="pipeline-twice"),
    pytest.param(graphql("{ events(first: 1) { a: totalCount b: totalCount } }"), None, id="total-count-twice"),
    pytest.param(graphql("{ a: events(first: 1) { totalCount } b: events(first: 2) { totalCount } }"), None,
                 id="total-count-in-two-pages"),
    pytest.param(graphql("{ ...A ...B } fragment A on Query { x: stats { total } } "
                         "fragment B on Query { y: stats { total } }"), None, id="stats-twice-through-fragments"),
    pytest.param(graphql("query($a: Bucket!, $b: Bucket!) { x: stats(bucket: $a) { total } y: stats(bucket: $b) "
                         "{ total } }", {"a": "HOUR", "b": "DAY"}), None, id="stats-twice-through-variables"),
    pytest.param(graphql("query { " + " ".join(f"...F{i}" for i in range(300)) + " } "
                         + " ".join(f"fragment F{i} on Query {{ __typename }}" for i in range(300))), None,
                 id="300-fragments"),
    pytest.param(graphql("{ statusCounts { count } }" + " " * (17 * 1024)), None, id="document-17-kib-of-spaces"),
    pytest.param(graphql("# " + "x" * (17 * 1024) + "\n{ statusCounts { count } }"), None,
                 id="document-17-kib-of-comment"),
    pytest.param(graphql('{ events(filter: {search: "' + "x" * (200 * 1024) + '"}) { totalCount } }'), None,
                 id="document-200-kib-string"),
    pytest.param(graphql("{ pipeline " + "@include(if: true) " * 500 + "{ received } }"), None,
                 id="500-repeated-directives"),
    pytest.param(graphql("{ events(first: 501) { totalCount } }"), {"PAGE_TOO_LARGE"}, id="first-501"),
    pytest.param(graphql("{ events(first: -1) { totalCount } }"), {"PAGE_TOO_LARGE"}, id="first-negative"),
    pytest.param(graphql("{ events(first: 2147483648) { totalCount } }"), None, id="first-over-int32"),
    pytest.param(graphql("query($n: Int!) { events(first: $n) { totalCount } }", {"n": "abc"}), None,
                 id="first-a-string-variable"),
    pytest.param(graphql("{ topSources(limit: 101) { count } }"), {"PAGE_TOO_LARGE"}, id="top-sources-101"),
    pytest.param(graphql('{ events(after: "garbage") { nodes { id } } }'), {"BAD_USER_INPUT"}, id="after-garbage"),
    pytest.param(graphql(f'{{ events(after: "{_cursor("1|x")}") {{ nodes {{ id }} }} }}'), {"BAD_USER_INPUT"},
                 id="after-forged-base64"),
    pytest.param(graphql('{ stats(since: "1970-01-01T00:00:00Z", bucket: MINUTE) { total } }'), {"BAD_USER_INPUT"},
                 id="stats-56-years-of-minutes"),
    pytest.param(graphql('{ stats(since: "2026-01-02T00:00:00Z", until: "2026-01-01T00:00:00Z") { total } }'),
                 {"BAD_USER_INPUT"}, id="stats-since-after-until"),
    pytest.param(graphql("{ nothing }"), {"GRAPHQL_VALIDATION_FAILED"}, id="unknown-field"),
    pytest.param(graphql("{ statusCounts { count }"), {"GRAPHQL_PARSE_FAILED"}, id="syntax-error"),
    pytest.param(graphql(""), None, id="empty-query"),
    pytest.param({"query": 42}, None, id="query-a-number"),
    pytest.param({"query": "{ statusCounts { count } }", "variables": "x"}, None, id="variables-a-string"),
    pytest.param(graphql("query A { statusCounts { count } } query B { pipeline { received } }"), None,
                 id="two-operations-without-a-name"),
    pytest.param({**graphql("query A { statusCounts { count } }"), "operationName": "Nope"}, None,
                 id="unknown-operation-name"),
    pytest.param(graphql("subscription { statusCounts { count } }"), None, id="subscription"),
    pytest.param([graphql("{ pipeline { received } }")] * 50, None, id="batched-array-of-50"),
    pytest.param([], None, id="batched-empty-array"),
    pytest.param(b'{"query": "query($f: EventsFilter) { events(filter: $f) { totalCount } }", "variables": '
                 b'{"f": {"statuses": ' + b"[" * 3000 + b"]" * 3000 + b"}}}", None, id="variables-3000-deep"),
]


@pytest.mark.parametrize("body, codes", GRAPHQL_ABUSE)
def test_an_abusive_graphql_request_is_refused_with_a_code_at_once(client, access, body, codes):
    if isinstance(body, bytes):
        reply = client.send("POST", "/graphql", body=body, token=access, timeout=15)
    else:
        reply = client.send("POST", "/graphql", json_body=body, token=access, timeout=15)
    expect_graphql_error(reply, codes, within=QUICK)


@pytest.mark.parametrize("body", [
    pytest.param(graphql("{ stats { total } statusCounts { count } topSources { count } pipeline { received } "
                         "events(first: 1) { totalCount } }"), id="each-aggregate-once"),
    pytest.param(graphql("{ __schema { queryType { name } types { name fields { name } } } }"), id="introspection"),
    pytest.param(graphql("{ __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }"),
                 id="nested-introspection"),
])
def test_a_legitimate_graphql_request_near_the_limits_is_answered_at_once(client, access, body):
    reply = client.send("POST", "/graphql", json_body=body, token=access, timeout=15)
    assert reply.seconds < QUICK, reply
    if reply.status == 200 and not reply.body.get("errors"):
        return
    expect_graphql_error(reply)


@pytest.mark.parametrize("make", [
    pytest.param(lambda a, b: graphql(f"mutation {{ {create_event_mutation(a, 'a: ')} {create_event_mutation(b, 'b: ')} }}"),
                 id="aliased"),
    pytest.param(lambda a, b: graphql(f"mutation {{ ...M }} fragment M on Mutation {{ "
                                      f"{create_event_mutation(a, 'a: ')} {create_event_mutation(b, 'b: ')} }}"),
                 id="through-a-fragment"),
    pytest.param(lambda a, b: graphql(f"mutation {{ {create_event_mutation(a)} {create_event_mutation(b)} }}"),
                 id="same-field-twice"),
    pytest.param(lambda a, b: [graphql(f"mutation {{ {create_event_mutation(a)} }}"),
                               graphql(f"mutation {{ {create_event_mutation(b)} }}")], id="batched-array"),
])
def test_create_event_more_than_once_in_a_request_is_refused_and_stores_nothing(client, ledger, access, make):
    first, second = ledger.marker(), ledger.marker()
    reply = client.send("POST", "/graphql", json_body=make(first, second), token=access)
    expect_graphql_error(reply, within=QUICK)
    ledger.assert_nothing_stored(first, second)


# Last, as a hang here slows what follows: a fan-out has to be refused from the document's shape, not
# by expanding it.
@pytest.mark.parametrize("body", [
    pytest.param(graphql(_fan_out(4, 40, "__typename")), id="40-to-the-4"),
    pytest.param(graphql(_fan_out(30, 2)), id="2-to-the-30"),
])
def test_a_fragment_fan_out_bomb_is_refused_with_a_code_at_once(client, access, body):
    reply = client.send("POST", "/graphql", json_body=body, token=access, timeout=15)
    expect_graphql_error(reply, within=QUICK)
