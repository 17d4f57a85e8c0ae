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

"""Finalized or not: a guest's live CPU against its host's configuration
(osc_cpumigrate.cpu.guest)."""

import pytest

from osc_cpumigrate.cpu import guest as g
from osc_cpumigrate.types import CpuSettings
from osc_cpumigrate.types import GuestCpu
from osc_cpumigrate.types import HostCpu

SKYLAKE = HostCpu('x86_64', 'Intel', 'Skylake-Server-IBRS', frozenset(),
                  host_model='Skylake-Server-IBRS')
#: The same host after a TSX-disabling microcode update.
RENAMED = HostCpu('x86_64', 'Intel', 'Skylake-Server-noTSX-IBRS',
                  frozenset(), host_model='Skylake-Server-noTSX-IBRS')
HOST_MODEL = CpuSettings()                       # Nova's default
STARTED_BEFORE = GuestCpu('custom', 'Skylake-Server-IBRS', 'Intel',
                          (('require', 'ss'),))
TRANSITION = GuestCpu('custom', 'kvm64', None,
                      (('require', 'sse4.2'), ('require', 'hypervisor')))


def test_a_renamed_host_model_leaves_host_model_guests_finalized():
    for host in (SKYLAKE, RENAMED):
        assert g.runs_own_cpu(STARTED_BEFORE, HOST_MODEL, host)
        assert not g.runs_own_cpu(TRANSITION, HOST_MODEL, host)
    # the other vendor's host-model is not this host's CPU
    amd = GuestCpu('custom', 'EPYC-Rome', 'AMD')
    assert not g.runs_own_cpu(amd, HOST_MODEL, SKYLAKE)
    # without a <vendor> only the name (any case) can tell
    bare = GuestCpu('custom', 'skylake-server-ibrs', None)
    assert g.runs_own_cpu(bare, HOST_MODEL, SKYLAKE)
    assert not g.runs_own_cpu(bare, HOST_MODEL, RENAMED)
    assert not g.runs_own_cpu(STARTED_BEFORE, HOST_MODEL, None)


@pytest.mark.parametrize('mode', ['host-passthrough', 'maximum'])
def test_passthrough_guests_are_native(mode):
    assert g.runs_own_cpu(GuestCpu(mode, None), CpuSettings(mode), SKYLAKE)
    assert not g.runs_own_cpu(TRANSITION, CpuSettings(mode), SKYLAKE)


def test_custom_hosts_compare_names_as_nova_does():
    conf = CpuSettings('Custom', ('EPYC-Rome', 'KVM64'), ('SSE4_2',))
    assert g.runs_own_cpu(TRANSITION, conf, SKYLAKE)
    assert g.runs_settings(TRANSITION, CpuSettings('custom', ('KVM64',),
                                                   ('+SSE4.2',)))
    for flags in (('avx2',), ('-sse4.2',)):
        assert not g.runs_settings(TRANSITION, CpuSettings(
            'custom', ('kvm64',), flags))
    assert not g.runs_settings(TRANSITION, CpuSettings('custom', ('qemu64',)))
    assert not g.runs_settings(GuestCpu('host-passthrough', None),
                               CpuSettings('custom', ('kvm64',)))


def test_names():
    assert g.same_name('KVM64', 'kvm64') and not g.same_name(None, None)
    assert g.feature_key('SSE4_2') == g.feature_key('sse4.2') == (
        g.feature_key('sse4-2'))
    assert g.feature_key('sse4a') != g.feature_key('sse4.2')
