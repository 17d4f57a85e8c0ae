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

"""The rows every verb returns: one frozen dataclass per verb, and the
``Result`` values they carry.

``openstack cpumigrate ... -f json`` is read by pipelines (``jq``, Ansible),
so its keys and values are a contract.  Typing the rows keeps it one:

* a verb's rows all have the same fields, so every row of a verb has the same
  keys in ``-f json``;
* the column names come from the fields (``cpu_before`` -> ``CPU Before``)
  and osc-lib's ``utils.get_item_properties`` maps a column name back to the
  field (lower case, spaces to underscores), as OSC's compute commands do;
* ``Result`` takes one of the few values below, ``Reason`` holds the free
  text, so a pipeline selects on ``Result`` and a human reads ``Reason``;
* a CPU is a :class:`Cpu` (mode, model, flags): the commands show it short
  in a table and as an object in ``-f json``.

Servers and hosts never share a row type: a host's summary is a
:class:`HostRow` (``openstack cpumigrate host show``), never a line among
servers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from osc_cpumigrate.types import CpuSettings
from osc_cpumigrate.types import GuestCpu

# -- Result values ------------------------------------------------------------
#: The server (or host) was changed as the verb intends.
PINNED = 'pinned'
FINALIZED = 'finalized'
LIVE_MIGRATED = 'live-migrated'
COLD_MIGRATED = 'cold-migrated'
PREPARED = 'prepared'
#: It already was as the verb intends: nothing was done (a re-run).
ALREADY_PINNED = 'already-pinned'
ALREADY_FINALIZED = 'already-finalized'
ALREADY_PREPARED = 'already-prepared'
#: Left alone, and rightly so (a SHUTOFF server for pin): not a failure.
SKIPPED = 'skipped'
#: Left alone on purpose, and the verb fails for it (a guest floor above the
#: transition CPU, a busy server, a server that cannot move).
REFUSED = 'refused'
#: Tried and failed; the run stops at the first such server.
FAILED = 'failed'
#: Not tried because the run stopped at an earlier failure.
NOT_ATTEMPTED = 'not-attempted'
#: The run was interrupted (SIGINT, SIGTERM) while acting on this server;
#: ``Reason`` says what is still under way and what to run next.
INTERRUPTED = 'interrupted'
#: ``--dry-run``: what the verb would do.
WOULD_PIN = 'would-pin'
WOULD_FINALIZE = 'would-finalize'
WOULD_LIVE_MIGRATE = 'would-live-migrate'
WOULD_COLD_MIGRATE = 'would-cold-migrate'
WOULD_PREPARE = 'would-prepare'

#: Results that make a verb exit 1.
FAILURES = (FAILED, REFUSED)

# -- status phases ---------------------------------------------------------
UNPINNED = 'unpinned'
MIGRATED_PINNED = 'migrated-pinned'
UNKNOWN = 'unknown'
PHASES = (UNPINNED, PINNED, MIGRATED_PINNED, FINALIZED, SKIPPED, UNKNOWN)

#: Words written in capitals in a column name.
_ACRONYMS = {'id': 'ID', 'cpu': 'CPU'}


@dataclasses.dataclass(frozen=True)
class Cpu:
    """A CPU as a cell shows it: a guest's domain ``<cpu>`` or the CPU
    settings of a nova.conf.  ``mode`` None: Nova's default (host-model);
    ``flags`` are signed (``+pcid``, ``-hle``)."""

    mode: str | None
    model: str | None
    flags: tuple[str, ...] = ()

    @classmethod
    def of_guest(cls, guest: GuestCpu | None) -> Cpu | None:
        if guest is None or (guest.mode is None and guest.model is None):
            return None
        flags = tuple(sorted(
            ('+' if policy in ('require', 'force') else '-') + name
            for policy, name in guest.features
            if policy in ('require', 'force', 'disable', 'forbid')))
        return cls(guest.mode, guest.model, flags)

    @classmethod
    def of_settings(cls, settings: CpuSettings) -> Cpu:
        flags = tuple(f if f[:1] in '+-' else '+' + f
                      for f in settings.extra_flags)
        return cls(settings.mode, settings.model, flags)

    def _head(self) -> str:
        if self.model and self.mode in (None, 'custom'):
            return self.model
        return self.mode or 'host-model (default)'

    def short(self) -> str:
        """``SandyBridge-IBRS +29 flags``, ``host-model (default)``."""
        if not self.flags or not (self.model and self.mode in (None,
                                                               'custom')):
            return self._head()
        return '%s +%d flag%s' % (self._head(), len(self.flags),
                                  '' if len(self.flags) == 1 else 's')

    def full(self) -> str:
        """``kvm64 +pcid +ssbd``: every flag."""
        return ' '.join([self._head(), *self.flags])

    def as_dict(self) -> dict[str, Any]:
        return {'mode': self.mode, 'model': self.model,
                'flags': list(self.flags)}


def column_name(field: str) -> str:
    """``cpu_before`` -> ``CPU Before`` (get_item_properties maps it back)."""
    return ' '.join(_ACRONYMS.get(w, w.capitalize())
                    for w in field.split('_'))


def columns(row_type: type) -> tuple[str, ...]:
    return tuple(column_name(f.name) for f in dataclasses.fields(row_type))


def cpu_columns(row_type: type) -> tuple[str, ...]:
    """The columns of ``row_type`` that hold a :class:`Cpu`."""
    return tuple(column_name(f.name) for f in dataclasses.fields(row_type)
                 if 'Cpu' in str(f.type))


# -- server rows ----------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerRow:
    """What every verb that acts on servers says about each server."""

    id: str
    name: str
    host: str                     # where the server is now
    status: str                   # its Nova status when last seen
    result: str                   # one of the values above
    reason: str = ''              # free text: why, or what went wrong

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclasses.dataclass(frozen=True, kw_only=True)
class RestartRow(ServerRow):
    """pin and finalize: the domain's CPU before and after the restart."""

    cpu_before: Cpu | None = None
    cpu_after: Cpu | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class PinRow(RestartRow):
    """A row of ``pin``."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinalizeRow(RestartRow):
    """A row of ``finalize``."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MigrateRow(ServerRow):
    """A row of ``migrate``."""

    source: str
    destination: str = ''
    seconds: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class StatusRow:
    """A row of ``status``: one server and its phase (read-only)."""

    id: str
    name: str
    host: str
    status: str
    phase: str                    # one of PHASES
    reason: str = ''
    cpu: Cpu | None = None


# -- host and check rows --------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class PrepareRow:
    """The row of ``prepare``: the source host."""

    host: str
    service_status: str
    service_state: str
    disabled_reason: str
    cpu_before: Cpu | None
    cpu_after: Cpu | None
    backup: str
    result: str                   # PREPARED | ALREADY_PREPARED | WOULD_...
    reason: str = ''              # the steps done (or that would be)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HostRow:
    """``host show``: a host's service, nova.conf and CPU settings."""

    host: str
    service_status: str
    service_state: str
    disabled_reason: str
    nova_conf: str                # transition | restart pending | normal
    path: str
    cpu: Cpu | None               # the settings in force in the file
    original_cpu: Cpu | None      # without cpumigrate's change
    backup: str
    changed_at: str               # when the transition was written (UTC)
    #: The destinations prepare was given ('amd-1, amd-2'; pin's default).
    destinations: str
    servers: int
    #: What keeps the original nova.conf from being restored as saved
    #: (backup missing or changed: the marker's lines stand in), or ''.
    problem: str = ''


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckRow:
    """A row of ``check``: one check, its verdict and why."""

    check: str
    host: str                     # '*': every host
    server: str                   # a server's ID for a per-server check
    verdict: str                  # ok | warn | fail
    reason: str


# -- fleet rows (plan, run) -----------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanRow(ServerRow):
    """A row of ``plan`` (and of ``run --dry-run``): one server of a source,
    where it goes and what will happen to it."""

    source: str
    destination: str = ''
    steps: str = ''               # 'pin restart, live migration, finalize'
    estimate: int = 0             # seconds its migration should take


@dataclasses.dataclass(frozen=True, kw_only=True)
class FleetRow(ServerRow):
    """A row of ``run``: one server of a source, where it went, and its
    last step's result."""

    source: str
    destination: str = ''
    seconds: int = 0              # its migration's wall time
