"""tools/bench-transition-cpu prints the issue's numbers."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import DATA

TOOL = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tools',
                    'bench-transition-cpu')


def test_bench_skylake_rome():
    out = subprocess.run(
        [sys.executable, TOOL, '--cpu-map', DATA], check=True,
        capture_output=True, text=True).stdout
    assert 'common features: 57' in out
    assert 'kvm64: keeps 26 of 57 (46%), x86-64-v1' in out
    assert 'auto: Westmere + 25 flags: keeps 57 of 57 (100%), x86-64-v3' \
        in out
