"""A small client of EventStream's API for the load test's own calls (the sign-in before the run and
the pipeline check after it), and the token expiry that it and the locustfile renew by."""

import base64
import json
import time
import urllib.error
import urllib.request


def expires_at(access_token: str) -> float:
    """The `exp` claim of a JWT, read without verifying the signature: a client only needs to know
    when to renew, and the API verifies."""
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


class ApiError(Exception):
    def __init__(self, what: str, status: int, body):
        super().__init__(f"{what}: HTTP {status}: {json.dumps(body)[:300]}")
        self.status = status


class Api:
    """Signs in with a username and password, and again shortly before the access token expires."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self._access = ""
        self._expires = 0.0

    def call(self, method: str, path: str, body=None, authorized: bool = True) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if authorized:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload.decode(errors="replace")

    def token(self) -> str:
        if time.time() > self._expires - 30:
            status, body = self.call("POST", "/api/token", {"username": self.username, "password": self.password},
                                     authorized=False)
            if status != 200:
                raise ApiError(f"signing in as {self.username}", status, body)
            self._access, self._expires = body["access"], expires_at(body["access"])
        return self._access

    def graphql(self, query: str, **variables) -> dict:
        status, body = self.call("POST", "/graphql", {"query": query, "variables": variables})
        if status != 200 or not isinstance(body, dict) or body.get("errors"):
            raise ApiError("GraphQL query", status, body)
        return body["data"]
