"""Schemathesis fuzzes the live JSON API from iot_center/openapi.yaml.

No 5xx, and answers as described."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CenterServer
from tests.reliability.helpers import REPO, SOAK, influx_snapshot, report

pytestmark = pytest.mark.integration

SPEC = REPO / "iot_center" / "openapi.yaml"


def schemathesis(
    center: CenterServer,
    token: str | None,
    checks: str,
    tmp_path: Path,
    max_examples: int,
    phases: str = "examples,coverage,fuzzing",
) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(SPEC),
        "--url",
        center.url,
        "--checks",
        checks,
        "--phases",
        phases,
        "--max-examples",
        str(max_examples),
        "--workers",
        "1",  # 2 threads trip a CPython 3.11 ast.parse race inside hypothesis
        "--request-timeout",
        "30",
        "--no-color",
        "--seed",
        "1",
        "--suppress-health-check",
        "all",
    ]
    if token:
        args += ["--header", f"Authorization: Token {token}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_fuzz_with_admin_token_finds_no_5xx(center: CenterServer, tmp_path: Path) -> None:
    sentinel = center.register("pi-sentinel")
    res = schemathesis(
        center,
        center.admin_token,
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        tmp_path,
        200 if SOAK else 40,
    )
    out = res.stdout + res.stderr
    print(out[-6000:])
    summary = [line for line in out.splitlines() if "passed" in line or "failed" in line]
    report(
        "schemathesis (admin token)",
        exit_code=res.returncode,
        summary=(summary[-1].strip() if summary else "?"),
    )
    assert res.returncode == 0, out[-6000:]
    assert "Traceback" not in center.log()
    # The fuzzer may register and remove its own devices, but the rest of InfluxDB is intact.
    snap = influx_snapshot(center)
    assert {center.buckets.telemetry, center.buckets.devices} <= snap["buckets"]
    del sentinel


def test_fuzz_without_credential_is_only_401(center: CenterServer, tmp_path: Path) -> None:
    # (The coverage phase is left out here: with no credential, schemathesis 4.32.5 trips over
    # a hypothesis lambda-description SystemError of its own while building negative cases.)
    res = schemathesis(
        center,
        None,
        "not_a_server_error,status_code_conformance",
        tmp_path,
        20,
        phases="examples,fuzzing",
    )
    out = res.stdout + res.stderr
    report("schemathesis (anonymous)", exit_code=res.returncode)
    assert res.returncode == 0, out[-6000:]
