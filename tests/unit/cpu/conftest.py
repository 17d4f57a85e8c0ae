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

"""Fixtures for the CPU logic tests: libvirt 9.0's real x86 CPU map (copied
under data/cpu_map) and HostCpu facts as the host layer reports them."""

from __future__ import annotations

from collections.abc import Iterable
import dataclasses
import os

import pytest

from osc_cpumigrate.cpu.cpumap import CpuMap
from osc_cpumigrate.cpu.cpumap import host_features
from osc_cpumigrate.types import HostCpu

DATA = os.path.join(os.path.dirname(__file__), 'data', 'cpu_map')

# domcapabilities host-model extras of the kind real hosts report with
# libvirt 9 / QEMU 7.2 (beyond the named model), per vendor.
SKYLAKE_EXTRA = ('invtsc', 'vmx', 'pdcm', 'ss', 'hypervisor', 'tsc_adjust',
                 'clflushopt', 'umip', 'pku', 'md-clear', 'stibp',
                 'arch-capabilities', 'ssbd', 'xsaves', 'ibpb', 'ibrs',
                 'amd-stibp', 'amd-ssbd', 'skip-l1dfl-vmentry',
                 'pschange-mc-no')
CASCADELAKE_EXTRA = SKYLAKE_EXTRA + ('rdctl-no', 'ibrs-all', 'mds-no',
                                     'tsx-ctrl')
ROME_EXTRA = ('invtsc', 'svm', 'x2apic', 'tsc-deadline', 'hypervisor',
              'tsc_adjust', 'spec-ctrl', 'stibp', 'arch-capabilities', 'ssbd',
              'xsaves', 'cmp_legacy', 'ibrs', 'amd-ssbd', 'virt-ssbd',
              'rdctl-no', 'skip-l1dfl-vmentry', 'mds-no', 'pschange-mc-no')


def read_map_files(path: str = DATA) -> dict[str, str]:
    files = {}
    for name in os.listdir(path):
        if name.endswith('.xml'):
            with open(os.path.join(path, name), encoding='utf-8') as fh:
                files[name] = fh.read()
    return files


@pytest.fixture(scope='session')
def map_files() -> dict[str, str]:
    return read_map_files()


@pytest.fixture(scope='session')
def cpu_map(map_files) -> CpuMap:
    return CpuMap.from_files(map_files)


def make_host(cpu_map: CpuMap, model: str, vendor: str,
              extra: Iterable[str] = (), disabled: Iterable[str] = (),
              usable: Iterable[str] | None = None) -> HostCpu:
    """A HostCpu whose usable models are, unless given, every model whose
    features the host has (what domcapabilities reports)."""
    host = HostCpu(arch='x86_64', vendor=vendor, model=model,
                   features=frozenset(), host_model=model,
                   host_model_features=frozenset(extra),
                   host_model_disabled=frozenset(disabled))
    if usable is None:
        feats = host_features(cpu_map, host)
        usable = [n for n in cpu_map.model_names()
                  if cpu_map.model(n).features <= feats]
    return dataclasses.replace(host, usable_models=frozenset(usable))


@pytest.fixture(scope='session')
def skylake(cpu_map) -> HostCpu:
    return make_host(cpu_map, 'Skylake-Server-IBRS', 'Intel', SKYLAKE_EXTRA,
                     disabled=('mpx',))


@pytest.fixture(scope='session')
def cascadelake(cpu_map) -> HostCpu:
    return make_host(cpu_map, 'Cascadelake-Server', 'Intel',
                     CASCADELAKE_EXTRA, disabled=('mpx',))


@pytest.fixture(scope='session')
def rome(cpu_map) -> HostCpu:
    return make_host(cpu_map, 'EPYC-Rome', 'AMD', ROME_EXTRA)


@pytest.fixture(scope='session')
def bare_skylake(cpu_map) -> HostCpu:
    return make_host(cpu_map, 'Skylake-Server-IBRS', 'Intel')


@pytest.fixture(scope='session')
def bare_rome(cpu_map) -> HostCpu:
    return make_host(cpu_map, 'EPYC-Rome', 'AMD')
