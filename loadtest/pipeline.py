"""After the load: did the pipeline take every accepted event where it belongs?

Every event of a run carries the run's source. The check waits until none of them is left to route or
to handle (or the timeout passes), then reads them all through GraphQL and checks each event the API
accepted: stored; success and info dispatched with no handler; warning and error processed by their
handler; each error with exactly one notification, sent, and the others with none; and, where a mail
sink answers (the local stack's maildev), one email per error event and none for the rest.
"""

import json
import re
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass

from api import Api

# One query each: the API rations totalCount (a full count) to one per request.
PROGRESS = {
    "stored": "query($source: String) { stored: events(filter: {source: $source}, first: 1) { totalCount } }",
    "received": "query($source: String) { received: events(filter: {source: $source, pipelineStates: [RECEIVED]},"
                " first: 1) { totalCount } }",
    "handling": "query($source: String) { handling: events(filter: {source: $source, statuses: [WARNING, ERROR],"
                " pipelineStates: [DISPATCHED]}, first: 1) { totalCount } }",
}
PAGE = """query Page($source: String, $after: String) {
  events(filter: {source: $source}, first: 500, after: $after) {
    nodes { id status pipelineState routing { handler } notifications { state } }
    pageInfo { hasNextPage endCursor }
  }
}"""

# Where each status must end: (pipeline state, the handler it was routed to).
EXPECTED = {
    "success": ("DISPATCHED", None),
    "info": ("DISPATCHED", None),
    "warning": ("PROCESSED", "WARNING"),
    "error": ("PROCESSED", "ERROR"),
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
POLL_SECONDS = 1
PROGRESS_EVERY_SECONDS = 5


def mail_texts(mail_api: str) -> list[str]:
    """Every email the local SMTP sink (maildev, natively and in the compose stack) holds, as text."""
    with urllib.request.urlopen(f"{mail_api.rstrip('/')}/api/email", timeout=30) as response:
        return [json.dumps(mail) for mail in json.loads(response.read())]


def emails_per_event(mail_api: str) -> Counter:
    """How many emails name each event id."""
    return Counter(event_id for text in mail_texts(mail_api) for event_id in set(UUID.findall(text)))


@dataclass
class Outcome:
    accepted: dict[str, str]
    stored: dict[str, dict]
    emails: Counter | None

    def problems(self) -> list[str]:
        problems = []
        for event_id, status in self.accepted.items():
            node = self.stored.get(event_id)
            if node is None:
                problems.append(f"{event_id} ({status}) was accepted but is not stored")
                continue
            state, handler = EXPECTED[status]
            routing = node["routing"]
            if node["pipelineState"] != state or routing is None or routing["handler"] != handler:
                target = "not routed" if routing is None else f"routed to {routing['handler'] or 'no handler'}"
                problems.append(f"{event_id} ({status}) is {node['pipelineState']}, {target}")
            notifications = [n["state"] for n in node["notifications"]]
            wanted = ["SENT"] if status == "error" else []
            if notifications != wanted:
                problems.append(f"{event_id} ({status}) has notifications {notifications}, not {wanted}")
            if self.emails is not None and self.emails[event_id] != len(wanted):
                problems.append(f"{event_id} ({status}) is named by {self.emails[event_id]} emails, not {len(wanted)}")
        return problems

    def counts(self) -> list[str]:
        statuses = Counter(self.accepted.values())
        mine = [self.stored[event_id] for event_id in self.accepted if event_id in self.stored]
        routed = Counter(node["routing"]["handler"] for node in mine if node["routing"])
        errors = [node for node in mine if node["status"] == "ERROR"]
        lines = [
            f"accepted (201)          {len(self.accepted):>8,}   "
            + ", ".join(f"{status} {statuses[status]:,}" for status in EXPECTED),
            f"stored                  {len(mine):>8,}   ({len(self.stored):,} with the run's source)",
            f"routed: dispatch only   {routed[None]:>8,}   (success and info)",
            f"routed: warning handler {routed['WARNING']:>8,}",
            f"routed: error handler   {routed['ERROR']:>8,}",
            f"processed by a handler  {sum(node['pipelineState'] == 'PROCESSED' for node in mine):>8,}",
            f"error events            {len(errors):>8,}",
            f"notifications sent      {sum(n['state'] == 'SENT' for node in errors for n in node['notifications']):>8,}",
        ]
        if self.emails is None:
            lines.append("emails in the mail sink      (not checked: no MAIL_API)")
        else:
            error_ids = [event_id for event_id, status in self.accepted.items() if status == "error"]
            lines.append(f"emails in the mail sink {sum(self.emails[event_id] for event_id in error_ids):>8,}   "
                         "(naming this run's error events)")
        return lines


def read(api: Api, source: str, accepted: dict[str, str], mail_api: str | None) -> Outcome:
    stored: dict[str, dict] = {}
    after = None
    while True:
        page = api.graphql(PAGE, source=source, after=after)["events"]
        stored.update((node["id"], node) for node in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return Outcome(accepted, stored, emails_per_event(mail_api) if mail_api else None)


def check(api: Api, source: str, accepted: dict[str, str], timeout: float, mail_api: str | None) -> bool:
    """Waits for the pipeline to finish with the run's events, prints the counts, and tells whether
    every accepted event arrived where it belongs."""
    started = time.monotonic()
    printed = started
    while True:
        progress = {key: api.graphql(query, source=source)[key] for key, query in PROGRESS.items()}
        stored, received, handling = (progress[key]["totalCount"] for key in ("stored", "received", "handling"))
        elapsed = time.monotonic() - started
        settled = stored >= len(accepted) and received == 0 and handling == 0
        if settled or elapsed > timeout:
            outcome = read(api, source, accepted, mail_api)
            problems = outcome.problems()
            if not problems or elapsed > timeout:
                break
        if time.monotonic() - printed >= PROGRESS_EVERY_SECONDS:
            printed = time.monotonic()
            print(f"  waiting: {stored:,} stored, {received:,} to route, {handling:,} at a handler ({elapsed:.0f} s)",
                  flush=True)
        time.sleep(POLL_SECONDS)

    for line in outcome.counts():
        print(f"  {line}")
    if problems:
        print(f"  FAILED after {elapsed:.1f} s: {len(problems):,} problems, the first of them:")
        for problem in problems[:10]:
            print(f"    {problem}")
        return False
    print(f"  OK: every accepted event stored and routed, every error emailed once "
          f"(settled {elapsed:.1f} s after the load ended)")
    return True
