"""The local stack keeps its secrets to their owner: the files that hold them have mode 0600 (in a
`.local/` of mode 0700), and no process carries one on its command line, which every user of the
machine can read in /proc."""

import stat
from pathlib import Path

import pytest

from hostile import ROOT, jwt_secret, repo_env

PRIVATE_FILES = [".env", ".local/demo-password", ".local/gerador-password", ".local/stack.env",
                 ".local/sam-parameters.yaml"]


@pytest.mark.parametrize("name", PRIVATE_FILES)
def test_a_file_holding_a_secret_is_readable_by_its_owner_only(name):
    path = ROOT / name
    assert path.is_file(), f"{name} is missing: scripts/up writes it"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, f"{name} has mode {mode:04o}, not 0600"


def test_the_local_folder_is_its_owners_alone():
    mode = stat.S_IMODE((ROOT / ".local").stat().st_mode)
    assert mode == 0o700, f".local has mode {mode:04o}, not 0700"


def test_no_running_process_has_a_secret_on_its_command_line(stack):
    secrets = {"the JWT secret": jwt_secret(), "the demo password": stack["DEMO_PASSWORD"]}
    env = repo_env()
    for name in ("DATABASE_URL", "AMQP_URL"):
        # A URL is a secret when it holds a password (user:password@host).
        url = env.get(name, "")
        if ":" in url.partition("://")[2].partition("@")[0]:
            secrets[f"the {name} with its password"] = url
    assert all(len(value) >= 8 for value in secrets.values()), "a secret too short to look for"

    leaks = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended meanwhile
        for what, value in secrets.items():
            if value in text:
                # Name the process, never the secret.
                leaks.append(f"pid {cmdline.parent.name} ({text.split(' ')[0]}) has {what} in its arguments")
    assert not leaks, "\n".join(leaks)
