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

"""Which CPU a running guest has: its host's own, or a transition CPU.

The facts are a domain's live ``<cpu>`` (``virsh dumpxml``) and the CPU
options of its host's nova.conf.  Names are compared as Nova compares them:
``cpu_models`` case-insensitively (``_get_cpu_model_mapping`` lowercases
both sides) and ``cpu_model_extra_flags`` lowercased; a flag's QEMU
spellings (``sse4_2``, ``sse4-2``) are the same feature as libvirt's
(``sse4.2``).

*Finalized* (:func:`runs_own_cpu`) is decided by what the host's
configuration gives, not by the host-model's current name: libvirt expands
a host-model guest at start into a custom CPU **with the host's vendor**
(``<vendor>Intel</vendor>``), and keeps it while the guest runs, even when
a microcode or libvirt update later renames the host-model
(``Skylake-Server-IBRS`` -> ``Skylake-Server-noTSX-IBRS``).  Nova never
gives a custom CPU a vendor (nor does cpumigrate's transition CPU), so the
vendor tells a host-model guest from a transition one; the host-model's
name only confirms it when libvirt did not list a vendor.

*Pinned* is libvirt's verdict on the destinations
(``hypervisor-cpu-compare`` of the live ``<cpu>``), which the workflow
asks; :func:`runs_settings` only says whether a restart took the
transition settings.
"""

from __future__ import annotations

import re

from osc_cpumigrate.types import CpuSettings
from osc_cpumigrate.types import GuestCpu
from osc_cpumigrate.types import HostCpu

#: Modes in which libvirt gives the guest the host's own CPU (and keeps the
#: mode in the live XML: host-passthrough, maximum).
NATIVE_MODES = ('host-model', 'host-passthrough', 'maximum')
#: Nova's ``[libvirt] cpu_mode`` for KVM on x86 when unset.
DEFAULT_CPU_MODE = 'host-model'


def same_name(a: str | None, b: str | None) -> bool:
    """CPU model or vendor names equal as Nova matches them."""
    return bool(a) and bool(b) and a.strip().lower() == b.strip().lower()


def feature_key(name: str) -> str:
    """A feature name for comparing: lowercase, QEMU's ``_``/``-`` and
    libvirt's ``.`` spellings alike (``SSE4_2``, ``sse4.2`` -> ``sse42``)."""
    return re.sub(r'[-_.]', '', name.strip().lower())


def _flags(settings: CpuSettings) -> tuple[set[str], set[str]]:
    enabled, disabled = set(), set()
    for flag in settings.extra_flags:
        if flag.startswith('-'):
            disabled.add(feature_key(flag[1:]))
        else:
            enabled.add(feature_key(flag.lstrip('+')))
    return enabled, disabled


def runs_settings(guest: GuestCpu, settings: CpuSettings) -> bool:
    """Does the guest run the custom CPU ``settings`` give: one of their
    models (Nova may pick any of ``cpu_models`` by the flavor's traits),
    every enabled extra flag required and no disabled one?"""
    if guest.mode not in (None, 'custom'):
        return False
    if not any(same_name(guest.model, m) for m in settings.models):
        return False
    required = {feature_key(f) for f in guest.required_features()}
    enabled, disabled = _flags(settings)
    return enabled <= required and not disabled & required


def runs_own_cpu(guest: GuestCpu, config: CpuSettings,
                 host: HostCpu | None) -> bool:
    """Is the guest finalized: does it run the CPU its host's current
    configuration ``config`` gives (see the module docstring)?"""
    if guest.mode in NATIVE_MODES:
        return True
    mode = (config.mode or DEFAULT_CPU_MODE).strip().lower()
    if mode == 'custom':
        return runs_settings(guest, config)
    if mode != 'host-model' or host is None:
        return False
    if guest.vendor:
        return same_name(guest.vendor, host.vendor)
    return same_name(guest.model, host.host_model)
