"""What the READMEs and the Makefile say about running locally matches what the tools and events do."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _urls(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _urls(item)
    elif isinstance(value, str):
        if value[:1] in "{[":  # an API Gateway event's JSON body
            try:
                yield from _urls(json.loads(value))
                return
            except ValueError:
                pass
        yield from re.findall(r"https?://[^\s\"']+", value)


def _loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def test_the_readme_names_every_event_that_points_at_a_non_loopback_url():
    remote = sorted(path.name for path in (REPO / "events").glob("*.json")
                    if any(not _loopback(url) for url in _urls(json.loads(path.read_text()))))
    assert "url.json" in remote and "rest-url.json" in remote and "bad-url-metadata.json" in remote
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("`local_lambda` reads the Dockerfile"):readme.index("## Deploy walk-through")]
    missing = [name for name in remote if f"events/{name}" not in section]
    assert not missing, f"README's local_lambda section does not warn about {missing}"
    assert "169.254.169.254" in section


def test_the_readme_does_not_say_local_lambda_reads_samconfig():
    readme = (REPO / "README.md").read_text()
    sentence = readme[readme.index('put `parameter_overrides = "Architecture=arm64"`'):]
    sentence = sentence[:sentence.index(".)") + 2]
    assert "local_lambda` does not" in sentence and "--parameter-overrides Architecture=arm64" in sentence


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("target", ["events", "lint"])
def test_make_runs_sam_without_telemetry(target):
    out = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    sam_lines = [line for line in out.stdout.splitlines() if "sam " in line or "generate.py" in line]
    assert sam_lines and all("SAM_CLI_TELEMETRY=0" in line for line in sam_lines), out.stdout
