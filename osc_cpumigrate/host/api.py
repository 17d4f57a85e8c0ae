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

"""The interface between the workflow and a hypervisor.

The workflow never talks SSH: it asks a :class:`Host` for facts and changes.
:func:`open_host` builds the real, fabric-backed one; unit tests pass fakes
that implement the same :class:`Host` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
import datetime
from typing import Protocol

# Re-exported for code that still imports them from here; their home is
# osc_cpumigrate.types (value types) and osc_cpumigrate.errors (HostError).
# New code imports them from there.
from osc_cpumigrate.errors import HostError  # noqa: F401
from osc_cpumigrate.types import Change
from osc_cpumigrate.types import CompareResult
from osc_cpumigrate.types import ConfState
from osc_cpumigrate.types import CpuSettings  # noqa: F401
from osc_cpumigrate.types import GuestCpu
from osc_cpumigrate.types import HostCpu
from osc_cpumigrate.types import HostIdentity
from osc_cpumigrate.types import HostOptions


class Host(Protocol):
    """One hypervisor, as the workflow sees it."""

    name: str            # Nova's name for the host

    def nova_conf(self) -> ConfState:
        """Read and parse nova.conf; HostError if unreadable or unparsable."""

    def apply_transition(self, model: str, flags: Sequence[str] = (), *,
                         destinations: Sequence[str] = (),
                         dry_run: bool = False) -> Change:
        """Set cpu_mode=custom, cpu_models=model, cpu_model_extra_flags=flags.

        Backup, atomic write, read-back verification.  If the file already
        holds exactly these transition settings, returns ``changed=False``.
        If it holds different transition settings, the original is the base
        (the earlier transition is replaced, the backup kept).  The marker
        records ``destinations`` (none given: those recorded are kept); when
        only they change, ``before == after`` and the marker keeps its time.
        """

    def restore_original(self, *, dry_run: bool = False) -> Change:
        """Write back the backup's exact bytes (atomically, verified).

        Refuses (HostError) if the file was edited by someone else since the
        transition was written.  ``changed=False`` when not transitioned.
        """

    def restart_nova_compute(self) -> None:
        """Restart nova-compute with the profile's (or the given) command."""

    def compute_started_at(self) -> datetime.datetime | None:
        """When nova-compute last started (UTC), or None when unknown."""

    def identity(self) -> HostIdentity:
        """Who the machine says it is (to prove it is the one Nova means)."""

    def lock_file(self, op: str, *, token: str = '',
                  content: str = '') -> tuple[bool, str]:
        """The host lock file (op take | refresh | release; ``token``: the
        one it must carry): (done, "age <seconds>\\n<holder's content>")."""

    def restored_at(self) -> datetime.datetime | None:
        """When cpumigrate last restored the original nova.conf (the
        hypervisor's clock, UTC), or None: with nova-compute started
        before it, the host is restart pending."""

    def restorable_problem(self) -> str | None:
        """Why the original nova.conf could not be restored now (edited
        since the transition was written, no usable backup nor kept lines,
        directory not writable), or None."""

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
