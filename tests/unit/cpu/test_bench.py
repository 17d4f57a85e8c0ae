#   Licensed under the Apache License, Version 2.0 (the "License"); you may
#   not use this file except in compliance with the License. You may obtain
#   a copy of the License at
#
#        http://www.apache.org/licenses/LICENSE-2.0
#
#   Unless required by applicable law or agreed to in writing, software
#   distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#   WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#   License for the specific language governing permissions and limitations
#   under the License.

"""tools/bench-transition-cpu prints the issue's numbers."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import DATA

TOOL = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'tools',
                    'bench-transition-cpu')


def _bench(*args):
    return subprocess.run(
        [sys.executable, TOOL, '--cpu-map', DATA, *args], check=True,
        capture_output=True, text=True).stdout


def test_bench_skylake_rome():
    out = _bench('--source', 'Skylake-Server-IBRS', '--destination',
                 'EPYC-Rome')
    assert 'common features: 57' in out
    assert 'kvm64: keeps 26 of 57 (46%), x86-64-v1' in out
    assert 'auto: Westmere + 25 flags: keeps 57 of 57 (100%), x86-64-v3' \
        in out


def test_bench_lab_pair_xeon_gold_6148_epyc_7502():
    """The default: the lab's real CPUs, host-models as libvirt recorded."""
    out = _bench()
    assert 'hosts: Skylake-Client (Intel) -> EPYC-Rome (AMD)' in out
    assert 'common features: 61' in out
    assert 'kvm64: keeps 28 of 61 (46%), x86-64-v1' in out
    assert 'auto: SandyBridge + 22 flags: keeps 61 of 61 (100%), ' \
        'x86-64-v3' in out
    # proven as prepare proves it, against the lab's libvirt model
    assert 'auto, proven: SandyBridge + 22 flags: keeps 61 of 61 (100%), ' \
        'x86-64-v3' in out
    assert 'accepted by every host: yes' in out
