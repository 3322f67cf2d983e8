"""The load balancer config docs/scale-out.md ships is one HAProxy accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HAPROXY_CFG = Path(__file__).resolve().parent.parent / "docs" / "scale-out" / "haproxy.cfg"


def test_the_sample_haproxy_config_is_valid() -> None:
    haproxy = shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (scripts/ensure-interop installs Debian's)")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout
    # Both front ends, each backend health-checked on /readyz.
    text = HAPROXY_CFG.read_text()
    assert text.count("option httpchk GET /readyz") == 2
    assert "mode tcp" in text and "bind :2775" in text and "bind :8080" in text
