"""The interface between the workflow and a hypervisor.

The workflow never talks SSH: it asks a :class:`Host` for facts and changes.
:func:`open_host` builds the real, fabric-backed one; unit tests pass fakes
that implement the same :class:`Host` protocol.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Protocol, Sequence


class HostError(Exception):
    """A host operation failed; the message is one line meant for the operator.

    Never carries secrets (nova.conf values of password/secret/token/key
    options are masked before they reach a message).
    """


@dataclasses.dataclass(frozen=True)
class HostOptions:
    """How to reach hosts and where things live on them (no CLI parsing here)."""

    ssh_config: str | None = None          # OpenSSH config file; None: ~/.ssh/config
    ssh_user: str | None = None
    ssh_host_format: str = '{host}'        # e.g. '{host}.mgmt.example.net'
    connect_timeout: float = 10.0
    insecure_ssh: bool = False             # accept unknown host keys (warns)
    sudo: bool = True                      # False: the login user is root
    profile: str = 'default'               # default | rhel | kolla
    nova_conf: str | None = None           # overrides the profile's path
    restart_command: str | None = None     # overrides the profile's command
    known_hosts: tuple[str, ...] = ()      # extra known_hosts files


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
    """What a host's nova.conf says right now."""

    path: str
    sha256: str
    settings: CpuSettings                 # the CPU options in force in the file
    transitioned: bool                    # the file carries cpumigrate's transition settings
    original: CpuSettings                 # settings without cpumigrate's change (from the backup
                                          # when transitioned, else == settings)
    backup: str | None                    # the backup a restore would write back
    changed_at: datetime.datetime | None  # when cpumigrate wrote the transition (UTC)


@dataclasses.dataclass(frozen=True)
class Change:
    """A nova.conf change made (or, on dry run, that would be made)."""

    path: str
    before: CpuSettings
    after: CpuSettings
    backup: str | None        # backup written (None on dry run / no-op)
    diff: str                 # unified diff with secret values masked
    changed: bool             # False: the file already was as asked


@dataclasses.dataclass(frozen=True)
class GuestCpu:
    """A domain's ``<cpu>``: mode, model and explicit features."""

    mode: str | None                       # custom | host-model | host-passthrough | maximum
    model: str | None
    vendor: str | None = None
    features: tuple[tuple[str, str], ...] = ()   # (policy, name), e.g. ('require', 'pcid')
    xml: str = ''                                 # the <cpu> element as text

    def required_features(self) -> frozenset[str]:
        return frozenset(n for p, n in self.features if p in ('require', 'force'))


@dataclasses.dataclass(frozen=True)
class HostCpu:
    """The host's CPU (``virsh capabilities``) and what its hypervisor offers
    guests (``virsh domcapabilities``)."""

    arch: str
    vendor: str
    model: str
    features: frozenset[str]                      # as listed in capabilities (beyond the model)
    host_model: str | None = None                 # domcapabilities host-model model name
    host_model_features: frozenset[str] = frozenset()   # policy require, beyond the model
    host_model_disabled: frozenset[str] = frozenset()   # policy disable
    usable_models: frozenset[str] = frozenset()   # custom models with usable='yes'
    libvirt_version: str | None = None
    qemu_version: str | None = None


@dataclasses.dataclass(frozen=True)
class CompareResult:
    """``virsh hypervisor-cpu-compare``: is a CPU definition runnable here?"""

    compatible: bool
    result: str        # identical | superset | incompatible
    message: str = ''


class Host(Protocol):
    """One hypervisor, as the workflow sees it."""

    name: str            # Nova's name for the host

    def nova_conf(self) -> ConfState:
        """Read and parse nova.conf; HostError if unreadable or unparsable."""

    def apply_transition(self, model: str, flags: Sequence[str] = (),
                         dry_run: bool = False) -> Change:
        """Set cpu_mode=custom, cpu_models=model, cpu_model_extra_flags=flags.

        Backup, atomic write, read-back verification.  If the file already
        holds exactly these transition settings, returns ``changed=False``.
        If it holds different transition settings, the original is the base
        (the earlier transition is replaced, the backup kept).
        """

    def restore_original(self, dry_run: bool = False) -> Change:
        """Write back the backup's exact bytes (atomically, verified).

        Refuses (HostError) if the file was edited by someone else since the
        transition was written.  ``changed=False`` when not transitioned.
        """

    def restart_nova_compute(self) -> None:
        """Restart nova-compute with the profile's (or the given) command."""

    def compute_started_at(self) -> datetime.datetime | None:
        """When nova-compute last started (UTC), or None when unknown."""

    def guest_cpu(self, instance_uuid: str) -> GuestCpu:
        """``virsh dumpxml <uuid>`` parsed; HostError if no such domain."""

    def host_cpu(self) -> HostCpu:
        """``virsh capabilities`` + ``virsh domcapabilities`` + versions."""

    def compare_cpu(self, cpu_xml: str) -> CompareResult:
        """``virsh hypervisor-cpu-compare`` of a ``<cpu>`` definition."""

    def cpu_map(self) -> dict[str, str]:
        """The host's libvirt CPU map: file name -> XML text of every file
        in ``/usr/share/libvirt/cpu_map`` (index.xml, x86_*.xml)."""

    def close(self) -> None:
        """Close the SSH connection."""


def open_host(name: str, options: HostOptions) -> Host:
    """Connect to Nova host ``name`` over SSH (fabric) and return the Host.

    Raises HostError (unknown host key, no route, auth failure, no sudo).
    """
    from osc_cpumigrate.host import remote  # lazy: pulls in fabric

    return remote.RemoteHost.connect(name, options)
