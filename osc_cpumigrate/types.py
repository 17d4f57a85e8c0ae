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

"""Value types every layer shares: frozen dataclasses, no I/O.

The host layer produces them (nova.conf, virsh), the CPU logic reasons about
them, the cloud layer reports capacity with one, and the workflow and
commands pass them around.  Keeping them here, apart from the code that
talks SSH or HTTP, lets ``osc_cpumigrate.cpu`` depend on them without
depending on the host layer, and lets the host package import them without
importing its own interface module (no ``api -> remote -> api`` cycle).

Command modules import this at every ``openstack`` start (cliff loads every
plugin command), so it imports only the standard library and stays cheap:
no fabric, paramiko, invoke or configupdater, and nothing from
``osc_cpumigrate``'s host, cloud or workflow layers.
"""

from __future__ import annotations

import dataclasses
import datetime


@dataclasses.dataclass(frozen=True)
class HostOptions:
    """How to reach hosts and where things live on them (no CLI parsing)."""

    ssh_config: str | None = None      # OpenSSH config; None: ~/.ssh/config
    ssh_user: str | None = None
    ssh_host_format: str = '{host}'    # e.g. '{host}.mgmt.example.net'
    connect_timeout: float = 10.0
    insecure_ssh: bool = False         # accept unknown host keys (warns)
    sudo: bool = True                  # False: the login user is root
    profile: str = 'default'           # default | rhel | kolla
    nova_conf: str | None = None       # overrides the profile's path
    restart_command: str | None = None  # overrides the profile's command
    known_hosts: tuple[str, ...] = ()  # extra known_hosts files


@dataclasses.dataclass(frozen=True)
class CpuSettings:
    """The ``[libvirt]`` CPU options of a nova.conf (None / () when unset)."""

    mode: str | None = None
    models: tuple[str, ...] = ()
    extra_flags: tuple[str, ...] = ()

    @property
    def model(self) -> str | None:
        return self.models[0] if self.models else None

    def describe(self) -> str:
        """Short text for a table cell, e.g. ``custom kvm64 +pcid``."""
        parts = [self.mode or 'default']
        parts += list(self.models)
        parts += list(self.extra_flags)
        return ' '.join(parts)


@dataclasses.dataclass(frozen=True)
class ConfState:
    """What a host's nova.conf says right now.

    ``settings`` are the CPU options in force in the file; ``transitioned``
    says whether the file carries cpumigrate's transition settings;
    ``original`` are the settings without cpumigrate's change (from the
    backup when transitioned, else equal to ``settings``); ``backup`` is the
    backup a restore would write back; ``changed_at`` is when cpumigrate
    wrote the transition (UTC).
    """

    path: str
    sha256: str
    settings: CpuSettings
    transitioned: bool
    original: CpuSettings
    backup: str | None
    changed_at: datetime.datetime | None
    #: What keeps the original from being restored as it was saved (the
    #: backup is missing or was changed: the marker's lines stand in), or
    #: None.
    problem: str | None = None
    #: ``[DEFAULT] max_concurrent_live_migrations``: how many live
    #: migrations nova-compute runs out of this host at once (Nova's
    #: default 1; 0: Nova's own "unlimited").
    max_live_migrations: int = 1
    #: ``[libvirt] virt_type`` (None: unset, Nova's default kvm).
    virt_type: str | None = None
    #: ``[workarounds] skip_cpu_compare_at_startup``.
    skip_cpu_compare_at_startup: bool = False
    #: The destinations prepare was given, as its marker records them
    #: (pin checks the migrations to them when it is given none).
    destinations: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Change:
    """A nova.conf change made (or, on dry run, that would be made)."""

    path: str
    before: CpuSettings
    after: CpuSettings
    backup: str | None  # backup written (None on dry run / no-op)
    diff: str           # unified diff with secret values masked
    changed: bool       # False: the file already was as asked


@dataclasses.dataclass(frozen=True)
class HostIdentity:
    """Who a hypervisor says it is, to prove SSH reached the host Nova
    means: the name its nova-compute runs under (``[DEFAULT] host`` of
    nova.conf, else the machine's host name) and its libvirt domains."""

    hostname: str                       # uname -n
    conf_host: str | None               # [DEFAULT] host, None when unset
    domains: frozenset[str] | None      # virsh list --all --uuid; None: ?

    @property
    def compute_name(self) -> str:
        """The name nova-compute reports to Nova from this machine."""
        return self.conf_host or self.hostname


@dataclasses.dataclass(frozen=True)
class GuestCpu:
    """A domain's ``<cpu>``: mode, model and explicit features."""

    # custom | host-model | host-passthrough | maximum
    mode: str | None
    model: str | None
    vendor: str | None = None
    # (policy, name), e.g. ('require', 'pcid')
    features: tuple[tuple[str, str], ...] = ()
    xml: str = ''  # the <cpu> element as text
    #: The domain's machine type (``<os><type machine=...>``), e.g.
    #: ``pc-q35-7.2``; the destination's QEMU must offer it.
    machine: str | None = None

    def required_features(self) -> frozenset[str]:
        return frozenset(n for p, n in self.features
                         if p in ('require', 'force'))


@dataclasses.dataclass(frozen=True)
class HostCpu:
    """The host's CPU (``virsh capabilities``) and what its hypervisor offers
    guests (``virsh domcapabilities``).

    ``features`` are those capabilities lists beyond the model;
    ``host_model`` is domcapabilities' host-model model name, with its
    ``policy='require'`` features beyond the model in ``host_model_features``
    and its ``policy='disable'`` ones in ``host_model_disabled``;
    ``usable_models`` are the custom models with ``usable='yes'``.
    """

    arch: str
    vendor: str
    model: str
    features: frozenset[str]
    host_model: str | None = None
    host_model_features: frozenset[str] = frozenset()
    host_model_disabled: frozenset[str] = frozenset()
    usable_models: frozenset[str] = frozenset()
    libvirt_version: str | None = None
    qemu_version: str | None = None
    #: Machine types the host's QEMU offers (``virsh capabilities``:
    #: names and the aliases' canonical names).
    machines: frozenset[str] = frozenset()
    #: NUMA cells of the host (``<topology><cells num=...>``), None: not
    #: reported.
    numa_cells: int | None = None


@dataclasses.dataclass(frozen=True)
class CompareResult:
    """``virsh hypervisor-cpu-compare``: is a CPU definition runnable here?"""

    compatible: bool
    result: str        # identical | superset | incompatible
    message: str = ''


@dataclasses.dataclass(frozen=True)
class Capacity:
    """Free resources of a compute node as Placement sees them."""

    vcpus: float
    ram_mb: float
    disk_gb: float

    def fits(self, vcpus: float, ram_mb: float, disk_gb: float) -> bool:
        return (self.vcpus >= vcpus and self.ram_mb >= ram_mb
                and self.disk_gb >= disk_gb)

    def minus(self, vcpus: float, ram_mb: float, disk_gb: float) -> Capacity:
        return Capacity(self.vcpus - vcpus, self.ram_mb - ram_mb,
                        self.disk_gb - disk_gb)
