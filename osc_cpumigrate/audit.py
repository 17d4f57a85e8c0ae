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

"""The audit trail: one JSON line per change cpumigrate makes.

A run over a production cloud takes hours, with other operators acting at
the same time; afterwards someone will ask "who stopped this server, and
when?".  Every change (compute service disabled or enabled, nova.conf
written or restored, nova-compute restarted, a server stopped, started or
rebooted, a migration started, aborted, force-completed or confirmed) is
appended to a local file as one JSON object per line::

  {"time": "2026-11-27T15:40:02Z", "user": "alice", "client": "ops-1",
   "os_user": "admin", "cloud": "prod", "verb": "cpumigrate pin",
   "host": "intel-1", "server": "6f1c...", "action": "server-stopped",
   "result": "ok"}

The file is ``$XDG_STATE_HOME/osc-cpumigrate/audit.log`` (``~/.local/state``
when unset); ``--audit-log`` or ``OS_CPUMIGRATE_AUDIT_LOG`` change it.  A
:class:`Recorder` sits on the workflow ``Context`` and on the ``Cloud``
gateway, so each call site that changes something is one ``with`` line;
:class:`AuditedHost` records the host layer's changes without touching the
verbs.  Standard library only: command modules import this at start.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
import datetime
import getpass
import json
import logging
import os
import socket
from typing import Any

LOG = logging.getLogger(__name__)

ENV = 'OS_CPUMIGRATE_AUDIT_LOG'


def default_path() -> str:
    """``$XDG_STATE_HOME/osc-cpumigrate/audit.log`` (XDG base directory
    spec: ``~/.local/state`` when the variable is unset or not absolute)."""
    state = os.environ.get('XDG_STATE_HOME', '')
    if not os.path.isabs(state):
        state = os.path.join(os.path.expanduser('~'), '.local', 'state')
    return os.path.join(state, 'osc-cpumigrate', 'audit.log')


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Recorder:
    """Appends audit lines to ``path`` (None: records nothing, for tests
    and read-only verbs that never change anything)."""

    def __init__(self, path: str | None, *, cloud: str = '', verb: str = '',
                 os_user: Callable[[], str] | str = '') -> None:
        self.path = path
        self.cloud = cloud
        self.verb = verb
        self._os_user = os_user
        self.user = local_user()
        self.client = socket.gethostname()
        self.lines: list[dict[str, Any]] = []   # what this run recorded

    def os_user(self) -> str:
        """The cloud user, asked for once (only when a change is made)."""
        if callable(self._os_user):
            try:
                self._os_user = self._os_user() or ''
            except Exception as exc:  # noqa: BLE001 - never fail a change
                LOG.debug('cannot tell the cloud user: %s', exc)
                self._os_user = ''
        return self._os_user

    def check(self) -> None:
        """Make sure the log can be written before the first change: a
        trail that cannot be written is an error the operator sees at once
        (``OSError`` with the path, turned into one line by the caller)."""
        if self.path is None:
            return
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                         0o600))

    def record(self, action: str, *, host: str = '', server: str = '',
               result: str = 'ok', **details: Any) -> None:
        """Append one line (one ``write`` of an ``O_APPEND`` file: lines of
        concurrent runs never interleave)."""
        entry = {
            'time': datetime.datetime.now(datetime.timezone.utc).strftime(
                '%Y-%m-%dT%H:%M:%SZ'),
            'user': self.user, 'client': self.client,
            'os_user': self.os_user() if self.path else '',
            'cloud': self.cloud, 'verb': self.verb, 'host': host or '',
            'server': server or '', 'action': action, 'result': result,
        }
        entry.update({k: v for k, v in details.items() if v is not None})
        self.lines.append(entry)
        if self.path is None:
            return
        data = (json.dumps(entry, sort_keys=False) + '\n').encode('utf-8')
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                         0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            LOG.error('cannot append to the audit log %s: %s (%s)',
                      self.path, exc, data.decode().strip())

    @contextlib.contextmanager
    def action(self, action: str, *, host: str = '', server: str = '',
               **details: Any) -> Iterator[dict[str, Any]]:
        """Record ``action`` once the block ends: ``ok``, or ``failed:
        <reason>`` (and the exception goes on).  The block may add details
        (e.g. a sha256 known only afterwards) to the dict it gets."""
        extra: dict[str, Any] = dict(details)
        try:
            yield extra
        except BaseException as exc:
            self.record(action, host=host, server=server,
                        result='failed: %s' % _first_line(exc), **extra)
            raise
        self.record(action, host=host, server=server, **extra)


#: Records nothing: the default of a Context or Cloud built without one.
NULL = Recorder(None)


def server_fields(server: Any) -> dict[str, str]:
    """``host`` and ``server`` of an audit line for an SDK server (or ID)."""
    if isinstance(server, str):
        return {'host': '', 'server': server}
    return {'host': getattr(server, 'compute_host', None) or '',
            'server': getattr(server, 'id', None) or ''}


class AuditedHost:
    """A Host whose changes (nova.conf written or restored, nova-compute
    restarted) are recorded; everything else goes straight through.

    The sha256 of nova.conf before and after are read around the change
    (best effort: a file that cannot be read gives '')."""

    def __init__(self, host: Any, recorder: Recorder) -> None:
        self._host = host
        self._audit = recorder
        self.name = host.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def _sha(self) -> str:
        try:
            return self._host.nova_conf().sha256
        except Exception:  # noqa: BLE001 - the change itself decides
            return ''

    def _conf_change(self, action: str, call: Callable[[], Any]) -> Any:
        before = self._sha()
        try:
            change = call()
        except BaseException as exc:
            self._audit.record(action, host=self.name,
                               result='failed: %s' % _first_line(exc),
                               sha256_before=before,
                               sha256_after=self._sha())
            raise
        if change.changed:      # a no-op is no change
            self._audit.record(action, host=self.name, path=change.path,
                               backup=change.backup, sha256_before=before,
                               sha256_after=self._sha())
        return change

    def apply_transition(self, model: str, flags: Any = (), *,
                         destinations: Any = (), dry_run: bool = False) -> Any:
        if dry_run:
            return self._host.apply_transition(
                model, flags, destinations=destinations, dry_run=True)
        return self._conf_change('nova-conf-written', lambda: (
            self._host.apply_transition(model, flags,
                                        destinations=destinations)))

    def restore_original(self, *, dry_run: bool = False) -> Any:
        if dry_run:
            return self._host.restore_original(dry_run=True)
        return self._conf_change('nova-conf-restored',
                                 self._host.restore_original)

    def restart_nova_compute(self) -> None:
        with self._audit.action('nova-compute-restarted', host=self.name):
            self._host.restart_nova_compute()
