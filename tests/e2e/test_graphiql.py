"""The GraphiQL page on GET /graphql, used in headless Chromium as an analyst uses it.

The page loads GraphiQL and React from a CDN. Here the CDN's URLs are answered from the same
pinned npm packages (tests/e2e/package-lock.json, installed by scripts/setup), so the browser also
checks the page's integrity hashes against the real files. A request to any other host fails the
test, and so does any error the page logs or throws.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
CDN = "https://cdn.jsdelivr.net/npm/"
CONTENT_TYPES = {".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".map": "application/json"}
# Where the page keeps its tokens (sessionStorage), for the tests that spoil them.
TOKENS_KEY = "eventstream.tokens"
QUERY = "{ statusCounts { status count } }"
STATUSES = {"SUCCESS", "INFO", "WARNING", "ERROR"}
TIMEOUT_MS = 30_000  # a cold start of the function, in the local stack, takes seconds

# CodeMirror 5 keeps each editor on its wrapper element; its value is the whole text, where the
# rendered lines are only those in view.
RESPONSE_TEXT = "() => document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror.getValue() ?? ''"
QUERY_TEXT = "() => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or not (NODE_MODULES / "graphiql").is_dir():
        pytest.fail(f"{CHROMIUM} or tests/e2e/node_modules is missing: run scripts/setup")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Visit:
    """The page in a fresh browser context, with what it asked of the network and what it logged."""

    page: Page
    url: str
    api_calls: list = field(default_factory=list)  # (method, path, Authorization header)
    problems: list = field(default_factory=list)  # errors logged or thrown, requests to other hosts

    def open(self):
        self.page.goto(self.url)
        self.page.wait_for_load_state("networkidle")
        # A blocked script (integrity, policy) shows here; failing now beats a later timeout.
        self.fail_on_problems()
        return self.page

    def fail_on_problems(self):
        problems, self.problems = self.problems, []
        if problems:
            pytest.fail("the page misbehaved:\n" + "\n".join(problems))

    def graphql_calls(self) -> list:
        return [call for call in self.api_calls if call[0] == "POST" and call[1] == urlsplit(self.url).path]

    def sign_in(self, username: str, password: str):
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        self.page.click("#sign-in")

    def sign_in_and_wait_for_the_schema(self, username: str, password: str):
        graphql_path = urlsplit(self.url).path
        with self.page.expect_response(
            lambda r: r.request.method == "POST" and urlsplit(r.url).path == graphql_path
        ) as introspection:
            self.sign_in(username, password)
        assert introspection.value.status == 200, introspection.value.text()
        expect(self.page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible()

    def run_query(self):
        self.page.click(".graphiql-query-editor .CodeMirror")
        self.page.keyboard.press("Control+Enter")

    def run_query_and_wait_for_status_counts(self) -> dict:
        self.run_query()
        response = self.page.locator(".graphiql-response")
        for text in ['"statusCounts"', *(f'"{status}"' for status in sorted(STATUSES))]:
            expect(response).to_contain_text(text)
        return json.loads(self.page.evaluate(RESPONSE_TEXT))

    def tokens(self):
        return self.page.evaluate(f"() => JSON.parse(sessionStorage.getItem('{TOKENS_KEY}'))")

    def spoil_tokens(self, *names: str):
        tokens = self.tokens()
        tokens.update({name: f"spoiled-{name}" for name in names})
        self.page.evaluate("([key, value]) => sessionStorage.setItem(key, value)", [TOKENS_KEY, json.dumps(tokens)])


def npm_file(url: str):
    """The file that a CDN URL, https://cdn.jsdelivr.net/npm/<package>@<version>/<path>, names in
    node_modules, when that version is the one installed there; otherwise None."""
    match = re.fullmatch(r"/npm/((?:@[^/@]+/)?[^/@]+)@([^/]+)/(.+)", urlsplit(url).path)
    if not match:
        return None
    package = NODE_MODULES / match[1]
    manifest = package / "package.json"
    if not manifest.is_file() or json.loads(manifest.read_text())["version"] != match[2]:
        return None
    file = (package / match[3]).resolve()
    return file if file.is_file() and package.resolve() in file.parents else None


@pytest.fixture
def visit(browser, stack):
    url = stack["API_URL"].rstrip("/") + "/graphql"
    api_origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    visit = Visit(context.new_page(), url)

    def route(route):
        request = route.request
        if request.url.startswith(CDN):
            file = npm_file(request.url)
            if file is None:
                visit.problems.append(f"request for a file not in tests/e2e/package-lock.json: {request.url}")
                return route.abort()
            # As the CDN does: the page loads its files with crossorigin, to check their integrity.
            return route.fulfill(body=file.read_bytes(), content_type=CONTENT_TYPES.get(file.suffix, "text/plain"),
                                 headers={"Access-Control-Allow-Origin": "*"})
        if request.url.startswith(api_origin + "/"):
            visit.api_calls.append((request.method, urlsplit(request.url).path, request.headers.get("authorization")))
            return route.continue_()
        visit.problems.append(f"request to another host: {request.url}")
        route.abort()

    def console(message):
        # 401 answers are part of the API's contract (the tests below provoke them); Chromium
        # reports each one as a console error.
        if message.type == "error" and "status of 401" not in message.text:
            visit.problems.append(f"console error: {message.text}")

    context.route("**/*", route)
    visit.page.on("console", console)
    visit.page.on("pageerror", lambda error: visit.problems.append(f"uncaught: {error}"))
    yield visit
    context.close()
    visit.fail_on_problems()


def test_graphiql_shows_nothing_before_sign_in_then_runs_a_typed_query(visit, stack):
    page = visit.open()
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator(".graphiql-container")).to_have_count(0)
    assert visit.graphql_calls() == [], "the page asked the API for data before signing in"

    visit.sign_in_and_wait_for_the_schema(stack["DEMO_USERNAME"], stack["DEMO_PASSWORD"])
    expect(page.locator("#sign-in-form")).to_be_hidden()
    page.click(".graphiql-query-editor .CodeMirror")
    page.keyboard.press("Control+A")
    page.keyboard.type(QUERY)
    assert page.evaluate(QUERY_TEXT) == QUERY

    result = visit.run_query_and_wait_for_status_counts()
    counts = result["data"]["statusCounts"]
    assert {row["status"] for row in counts} == STATUSES and len(counts) == 4, result
    assert all(isinstance(row["count"], int) and row["count"] >= 0 for row in counts), result
    assert all(auth and auth.startswith("Bearer ") for _, _, auth in visit.graphql_calls())

    page.click("#sign-out")
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator(".graphiql-container")).to_have_count(0)
    assert visit.tokens() is None


def test_a_wrong_password_shows_the_api_message_and_no_graphiql(visit, api, stack):
    refusal = api.call("POST", "/api/token", {"username": stack["DEMO_USERNAME"], "password": "not the password"})
    assert refusal.status == 401, refusal
    page = visit.open()

    visit.sign_in(stack["DEMO_USERNAME"], "not the password")

    expect(page.locator("#sign-in-error")).to_have_text(refusal.body["error"]["message"])
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator(".graphiql-container")).to_have_count(0)
    assert visit.graphql_calls() == []
    assert visit.tokens() is None


def test_a_refused_access_token_is_renewed_with_the_refresh_token_and_the_query_retried(visit, stack):
    page = visit.open()
    visit.sign_in_and_wait_for_the_schema(stack["DEMO_USERNAME"], stack["DEMO_PASSWORD"])
    signed_in = visit.tokens()
    visit.spoil_tokens("access")
    calls_before = len(visit.api_calls)

    visit.run_query_and_wait_for_status_counts()

    methods_and_ends = [(m, p.split("/")[-1]) for m, p, _ in visit.api_calls[calls_before:]]
    assert methods_and_ends == [("POST", "graphql"), ("POST", "refresh"), ("POST", "graphql")]
    renewed = visit.tokens()
    assert renewed["access"] != "spoiled-access"
    # Refresh tokens rotate: the page keeps the answer's new one (the old one is used up)...
    assert renewed["refresh"] and renewed["refresh"] != signed_in["refresh"]
    expect(page.locator("#sign-in-form")).to_be_hidden()

    # ...and renews with it the next time: had it sent the old one again, the API would have
    # revoked the whole sign-in and the page would be back at its form.
    visit.spoil_tokens("access")
    calls_before = len(visit.api_calls)
    graphql_path = urlsplit(visit.url).path
    with page.expect_response(
        lambda r: r.request.method == "POST" and urlsplit(r.url).path == graphql_path and r.status == 200
    ):
        visit.run_query()

    methods_and_ends = [(m, p.split("/")[-1]) for m, p, _ in visit.api_calls[calls_before:]]
    assert methods_and_ends == [("POST", "graphql"), ("POST", "refresh"), ("POST", "graphql")]
    assert visit.tokens()["refresh"] not in (None, signed_in["refresh"], renewed["refresh"])
    expect(page.locator("#sign-in-form")).to_be_hidden()


def test_a_refused_refresh_token_ends_the_session(visit, stack):
    page = visit.open()
    visit.sign_in_and_wait_for_the_schema(stack["DEMO_USERNAME"], stack["DEMO_PASSWORD"])
    visit.spoil_tokens("access", "refresh")

    visit.run_query()

    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#sign-in-error")).to_contain_text("sign in again")
    expect(page.locator(".graphiql-container")).to_have_count(0)
    assert visit.tokens() is None
