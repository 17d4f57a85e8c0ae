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

"""RemoteHost: the fabric-backed :class:`osc_cpumigrate.host.api.Host`.

Thin on purpose: the decisions (what to write, how to parse) live in
:mod:`novaconf`, :mod:`virsh` and :mod:`profiles`; this module only moves bytes
over SSH, and does it safely:

* every remote command is one argv joined with :func:`shlex.join` (so every
  argument is quoted), run with ``hide=True``, ``warn=True``, no stdin, under
  ``env LC_ALL=C TZ=UTC`` and, unless ``--no-sudo``, ``sudo -n``;
* files are read as base64, so bytes are exact whatever their encoding;
* nova.conf is written by :data:`WRITE_SCRIPT`: staged next to the original,
  checked, renamed over it, read back.  A lost connection leaves the old or
  the new file, never a partial one.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
import dataclasses
import datetime
import logging
import re
import secrets
import shlex

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.host import novaconf
from osc_cpumigrate.host import profiles
from osc_cpumigrate.host import ssh
from osc_cpumigrate.host import virsh
from osc_cpumigrate.types import Change
from osc_cpumigrate.types import CompareResult
from osc_cpumigrate.types import ConfState
from osc_cpumigrate.types import CpuSettings
from osc_cpumigrate.types import GuestCpu
from osc_cpumigrate.types import HostCpu
from osc_cpumigrate.types import HostIdentity
from osc_cpumigrate.types import HostOptions

LOG = logging.getLogger(__name__)

COMMAND_TIMEOUT = 120.0     # seconds for one ordinary remote command
RESTART_TIMEOUT = 600.0  # systemctl restart may wait for nova-compute to stop
UPLOAD_CHUNK = 32768

_SUDO_PASSWORD = (
    'a password is required',
    'a terminal is required',
    'no tty present',
    'askpass',
)
_SUDO_DENIED = ('is not in the sudoers file', 'is not allowed to execute',
                'may not run sudo')

# Runs as root with: $1 nova.conf path, $2 backup path ('' = no backup),
# $3 sha256 of the file as read, $4 sha256 of the new content; the new content
# comes on stdin.  Exit codes are mapped to messages by _WRITE_ERRORS.
WRITE_SCRIPT = r'''
set -u
orig=$1 backup=$2 old=$3 new=$4
stage= bstage=
cleanup() {
  if [ -n "$stage" ]; then rm -f -- "$stage"; fi
  if [ -n "$bstage" ]; then rm -f -- "$bstage"; fi
  return 0
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
fail() { code=$1; shift; printf 'cpumigrate: %s\n' "$*" >&2; exit "$code"; }
digest() { sha256sum < "$1" | cut -d ' ' -f 1; }
target=$(readlink -f -- "$orig") || fail 10 "cannot resolve $orig"
[ -f "$target" ] || fail 10 "$orig is not a regular file"
dir=$(dirname -- "$target")
base=$(basename -- "$target")
stage=$(mktemp -- "$dir/.$base.cpumigrate-stage-XXXXXX") ||
    fail 10 "cannot create a stage file in $dir"
cat > "$stage" || fail 11 "the upload was interrupted"
[ "$(digest "$stage")" = "$new" ] ||
    fail 11 "the upload is incomplete (connection lost?)"
chown --reference="$target" -- "$stage" ||
    fail 12 "cannot give the stage file the owner of $orig"
chmod --reference="$target" -- "$stage" ||
    fail 12 "cannot give the stage file the mode of $orig"
if command -v chcon >/dev/null 2>&1; then
  chcon --reference="$target" -- "$stage" 2>/dev/null || :
fi
sync -- "$stage" 2>/dev/null || sync
[ "$(digest "$target")" = "$old" ] ||
    fail 13 "$orig was changed by someone else since it was read"
if [ -n "$backup" ]; then
  [ -e "$backup" ] && fail 14 "the backup $backup exists already"
  bdir=$(dirname -- "$backup")
  bstage=$(mktemp -- "$bdir/.$base.cpumigrate-backup-XXXXXX") ||
      fail 15 "cannot create $backup"
  cp -p -- "$target" "$bstage" || fail 15 "cannot copy $orig to $backup"
  [ "$(digest "$bstage")" = "$old" ] ||
      fail 15 "the copy of $orig for $backup differs"
  sync -- "$bstage" 2>/dev/null || sync
  # link(2), not mv: never replaces a backup another run made meanwhile
  ln -- "$bstage" "$backup" 2>/dev/null ||
      fail 14 "the backup $backup exists already"
  rm -f -- "$bstage"
  bstage=
  if [ "$(digest "$target")" != "$old" ]; then
    rm -f -- "$backup"
    fail 13 "$orig was changed by someone else since it was read"
  fi
fi
mv -f -- "$stage" "$target" || fail 16 "cannot move the new file into place"
stage=
sync -- "$dir" 2>/dev/null || sync
[ "$(digest "$target")" = "$new" ] ||
    fail 17 "reading $orig back gives other bytes than written"
echo written
'''

_WRITE_ERRORS = {
    10: 'cannot stage the new file',
    11: 'the upload did not arrive complete; the file was not changed',
    12: 'cannot copy owner and mode; the file was not changed',
    13: ('the file was changed by someone else meanwhile; nothing written, '
         'read it again'),
    14: 'the backup file exists already; nothing written',
    15: 'cannot write the backup; the file was not changed',
    16: 'cannot move the new file into place; the file was not changed',
    17: 'the file reads back differently from what was written',
}

# Lists "<sha256> <path>" for every file named "<$1>.cpumigrate-*".
LIST_BACKUPS_SCRIPT = r'''
for f in "$1".cpumigrate-*; do
  [ -f "$f" ] || continue
  s=$(sha256sum < "$f") || continue
  printf '%s %s\n' "${s%% *}" "$f"
done
'''

# The per-host lock of the mutating verbs (see workflow/hostlock.py).  Runs
# as root with $1 op (take | refresh | release), $2 the lock path, $3 the
# token the lock must carry ('' to take a free lock), $4 the new content.
# A free lock is taken with link(2), atomic and failing if the file exists
# (O_EXCL semantics, also on NFS); exit 3 prints the holder: "age <seconds
# since its last refresh, by this host's clock>" then its content.
LOCK_SCRIPT = r'''
set -u
op=$1 lock=$2 expect=$3 content=$4
holder() {
  if [ -f "$lock" ]; then
    printf 'age %s\n' $(( $(date +%s) - $(stat -c %Y -- "$lock") ))
    cat -- "$lock"
  fi
  exit 3
}
mine() {
  [ -n "$expect" ] && [ -f "$lock" ] &&
      grep -qF -- "\"token\": \"$expect\"" "$lock"
}
stage() {
  tmp=$(mktemp -- "$(dirname -- "$lock")/.cpumigrate-lock-XXXXXX") ||
      { printf 'cpumigrate: cannot create a file next to %s\n' "$lock" >&2;
        exit 10; }
  # a full file system leaves an empty file: never an unreadable lock
  printf '%s\n' "$content" > "$tmp" ||
      { rm -f -- "$tmp";
        printf 'cpumigrate: cannot write a file next to %s\n' "$lock" >&2;
        exit 10; }
}
case $op in
take)
  stage
  if [ -z "$expect" ]; then
    if ln -- "$tmp" "$lock" 2>/dev/null; then rm -f -- "$tmp"; exit 0; fi
  elif mine; then
    mv -f -- "$tmp" "$lock" && exit 0
  fi
  rm -f -- "$tmp"
  holder;;
refresh)
  mine || holder
  stage
  mv -f -- "$tmp" "$lock";;
release)
  if mine; then rm -f -- "$lock"; fi;;
esac
'''

_BACKUP_NAME_RE = re.compile(r'\.cpumigrate-\d{8}T\d{6}Z(-[0-9a-f]{6})?$')


@dataclasses.dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def error_line(self) -> str:
        """The meaningful line of stderr (masked), for a HostError: our
        script's own ``cpumigrate:`` line, else an ``error:`` line, else the
        last line (login noise such as "Could not chdir to home directory"
        or "sudo: unable to resolve host" comes first)."""
        for text in (self.stderr, self.stdout):
            lines = [ln.strip() for ln in (text or '').splitlines()
                     if ln.strip()]
            if not lines:
                continue
            for prefix in ('cpumigrate:', 'error:'):
                for line in lines:
                    if line.lower().startswith(prefix):
                        return novaconf.mask_text(line)
            return novaconf.mask_text(lines[-1])
        return 'exit status %s' % self.exit_code


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """nova.conf as read, plus its backup when it carries our marker."""

    path: str
    data: bytes
    text: str
    settings: CpuSettings
    marker: novaconf.Marker | None
    backup_data: bytes | None
    #: Why the marker's backup cannot serve as the original (missing,
    #: unreadable, or not what was saved), or None.
    backup_problem: str | None = None

    @property
    def sha256(self) -> str:
        return novaconf.sha256(self.data)


class RemoteHost:
    """One hypervisor reached over one fabric Connection."""

    def __init__(self, name: str, options: HostOptions, connection,
                 profile: profiles.Profile):
        self.name = name
        self.options = options
        self.connection = connection
        self.profile = profile
        self._engine: str | None = None
        self._cpu_map: dict[str, str] | None = None
        #: Makes this run's backup names its own (two runs, one second).
        self.run_id = secrets.token_hex(3)

    # ----------------------------------------------------------- connecting

    @classmethod
    def connect(cls, name: str, options: HostOptions) -> RemoteHost:
        """Connect, then prove root works (``sudo -n true``) so a missing
        sudo right fails here, before any verb starts changing things."""
        profile = profiles.get_profile(options.profile)
        connection = ssh.connect(name, options)
        host = cls(name, options, connection, profile)
        try:
            if options.sudo:
                host._checked(host._run(['true']), 'checking sudo')
            else:
                uid = host._checked(
                    host._run(['id', '-u']), 'checking the login user'
                )
                if uid.stdout.strip() != '0':
                    raise HostError(
                        '--no-sudo needs a root login, but the SSH user on %s '
                        'has uid %s' % (name, uid.stdout.strip() or '?')
                    )
        except BaseException:
            host.close()
            raise
        return host

    def close(self) -> None:
        hop = self.connection
        while hop is not None and not isinstance(hop, (str, bool)):
            try:
                hop.close()
            except Exception:  # noqa: BLE001 - closing must not fail a verb
                LOG.debug('closing %s', hop, exc_info=True)
            hop = getattr(hop, 'gateway', None)

    # ----------------------------------------------------------- properties

    @property
    def conf_path(self) -> str:
        return self.options.nova_conf or self.profile.nova_conf

    @property
    def login(self) -> str:
        return '%s@%s' % (self.connection.user, self.name)

    # ----------------------------------------------------------- commands

    def command_line(self, argv: Sequence[str], *, root: bool = True) -> str:
        """One shell-safe command line: every argument ``shlex.quote``'d."""
        parts = ['env', 'LC_ALL=C', 'TZ=UTC'] + [str(a) for a in argv]
        if root and self.options.sudo:
            parts = ['sudo', '-n', '--'] + parts
        return shlex.join(parts)

    def _run(self, argv: Sequence[str], *, root: bool = True,
             timeout: float = COMMAND_TIMEOUT) -> Result:
        """Run argv remotely (no stdin, output captured, never raises on
        a non-zero exit; raises HostError on sudo/connection trouble)."""
        import invoke
        import paramiko

        command = self.command_line(argv, root=root)
        LOG.debug('%s: running %s', self.name, command)
        try:
            # </dev/null: invoke leaves the remote stdin open, and a command
            # that reads it would hang until the timeout.
            res = self.connection.run(
                command + ' </dev/null',
                hide=True,
                warn=True,
                in_stream=False,
                pty=False,
                timeout=timeout,
            )
        except invoke.CommandTimedOut:
            raise HostError(
                '%s on %s did not finish within %d s'
                % (argv[0], self.name, timeout)
            ) from None
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(
                'lost the SSH connection to %s while running %s: %s'
                % (self.name, argv[0], exc or type(exc).__name__)
            ) from None
        result = Result(
            res.exited if res.exited is not None else -1,
            res.stdout,
            res.stderr,
        )
        self._check_sudo(result, root=root)
        return result

    def _run_input(
        self,
        argv: Sequence[str],
        data: bytes,
        *,
        root: bool = True,
        timeout: float = COMMAND_TIMEOUT,
        what: str = 'a command',
    ) -> Result:
        """Run argv with ``data`` on its stdin, over a raw channel.

        invoke's stdin pump sends one byte per packet; the one transfer we
        need (new file content) goes through paramiko directly instead.
        """
        import paramiko

        command = self.command_line(argv, root=root)
        LOG.debug(
            '%s: running %s with %d bytes on stdin',
            self.name,
            command,
            len(data),
        )
        try:
            if not self.connection.is_connected:
                self.connection.open()
            channel = self.connection.transport.open_session(timeout=timeout)
            try:
                channel.settimeout(timeout)
                channel.exec_command(command)
                self._send(channel, data)
                channel.shutdown_write()
                stdout = channel.makefile('rb').read()
                stderr = channel.makefile_stderr('rb').read()
                code = channel.recv_exit_status()
            finally:
                channel.close()
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(
                'lost the SSH connection to %s while %s: %s'
                % (self.name, what, exc or type(exc).__name__)
            ) from None
        if code == -1:  # paramiko: the channel closed without an exit status
            raise HostError(
                'lost the SSH connection to %s while %s' % (self.name, what)
            )
        result = Result(
            code,
            stdout.decode('utf-8', 'replace'),
            stderr.decode('utf-8', 'replace'),
        )
        self._check_sudo(result, root=root)
        return result

    def _send(self, channel, data: bytes) -> None:
        """Send stdin in chunks (a seam for the dropped-connection tests)."""
        view = memoryview(data)
        for start in range(0, len(view), UPLOAD_CHUNK):
            channel.sendall(view[start:start + UPLOAD_CHUNK])

    def _check_sudo(self, result: Result, *, root: bool) -> None:
        if not (root and self.options.sudo) or result.ok:
            return
        err = (result.stderr or '').lower()
        if 'sudo' not in err:
            return
        if any(text in err for text in _SUDO_PASSWORD):
            raise HostError(
                'sudo on %s asks for a password: cpumigrate needs '
                'passwordless sudo (sudo -n) '
                'for %s; or log in as root and use --no-sudo'
                % (self.name, self.connection.user)
            )
        if any(text in err for text in _SUDO_DENIED):
            raise HostError(
                '%s may not use sudo on %s: cpumigrate needs passwordless '
                'sudo '
                '(sudo -n); or log in as root and use --no-sudo'
                % (self.connection.user, self.name)
            )

    def _checked(self, result: Result, what: str) -> Result:
        if not result.ok:
            raise HostError(
                '%s on %s failed: %s' % (what, self.name, result.error_line())
            )
        return result

    def read_file(self, path: str) -> bytes:
        """A remote file's exact bytes, read as root."""
        result = self._run(['base64', '-w', '0', '--', path])
        if not result.ok:
            raise HostError(
                'cannot read %s on %s: %s'
                % (path, self.name, result.error_line())
            )
        try:
            return base64.b64decode(result.stdout.strip(), validate=True)
        except ValueError:
            raise HostError(
                'cannot read %s on %s: garbled transfer' % (path, self.name)
            ) from None

    def write_file(self, path: str, data: bytes, expected_sha256: str,
                   backup: str | None = None) -> None:
        """Atomically replace ``path`` with ``data`` (see WRITE_SCRIPT).

        ``expected_sha256`` is the hash of the file as it was read: if it
        changed meanwhile nothing is written.  With ``backup``, the current
        file is first copied there (owner, group, mode kept).
        """
        new_sha = novaconf.sha256(data)
        argv = [
            'sh',
            '-c',
            WRITE_SCRIPT,
            'cpumigrate-write',
            path,
            backup or '',
            expected_sha256,
            new_sha,
        ]
        what = 'writing %s' % path
        try:
            result = self._run_input(argv, data, what=what)
        except HostError as exc:
            raise HostError(
                '%s (%s is either unchanged or completely written, never '
                'partial: '
                'check it before going on)' % (exc, path)
            ) from None
        if not result.ok:
            reason = _WRITE_ERRORS.get(
                result.exit_code, 'exit status %s' % result.exit_code
            )
            raise HostError('writing %s on %s failed: %s (%s)'
                            % (path, self.name, reason, result.error_line()))
        if novaconf.sha256(self.read_file(path)) != new_sha:
            raise HostError(
                '%s on %s reads back differently from what was written'
                % (path, self.name)
            )

    # ----------------------------------------------------------- nova.conf

    def _load(self) -> _Snapshot:
        path = self.conf_path
        data = self.read_file(path)
        text = novaconf.decode(data)
        try:
            settings = novaconf.read_settings(text)
            marker = novaconf.find_marker(text)
        except novaconf.NovaConfError as exc:
            raise HostError('%s on %s: %s' % (path, self.name, exc)) from None
        backup_data, problem = None, None
        if marker:
            backup_data, problem = self._read_backup(marker)
            if problem and novaconf.marker_original(text) is None:
                # nothing else to restore from
                raise HostError('%s on %s says the original was saved as '
                                '%s, but: %s' % (path, self.name,
                                                 marker.backup, problem))
        return _Snapshot(path, data, text, settings, marker, backup_data,
                         problem)

    def _read_backup(self, marker: novaconf.Marker
                     ) -> tuple[bytes | None, str | None]:
        """The backup's bytes, or None and why it cannot serve (missing,
        unreadable, or changed since it was saved: sha256 differs)."""
        try:
            data = self.read_file(marker.backup)
        except HostError as exc:
            return None, str(exc)
        if marker.backup_sha256 and (
                novaconf.sha256(data) != marker.backup_sha256):
            return None, ('backup %s on %s was changed after it was saved '
                          '(sha256 differs from the marker\'s)'
                          % (marker.backup, self.name))
        return data, None

    def _original_text(self, snap: _Snapshot) -> str | None:
        """The original nova.conf: the backup's text, or, when the backup
        cannot serve, the file with the marker's original lines put back;
        None when neither is there."""
        if snap.backup_data is not None:
            return novaconf.decode(snap.backup_data)
        try:
            return novaconf.restore_from_marker(snap.text)
        except novaconf.NovaConfError:
            return None

    def _is_ours(self, snap: _Snapshot) -> bool:
        """Is the file exactly what apply_transition made of the original
        (the backup; without it, the original the marker's lines give, up
        to the marker line, which holds the real original's sha256)?"""
        settings = snap.settings
        original = self._original_text(snap) if snap.marker else None
        if original is None:
            return False
        if snap.backup_data is None:
            return self._is_ours_by_marker(snap, original)
        if settings.mode != 'custom' or len(settings.models) != 1:
            return False
        try:
            expected = novaconf.apply_transition(
                original,
                settings.models[0],
                settings.extra_flags,
                snap.marker.changed_at,
                snap.marker.backup,
                snap.marker.destinations,
            )
        except novaconf.NovaConfError:
            return False
        return novaconf.sha256(expected) == snap.sha256

    def _is_ours_by_marker(self, snap: _Snapshot, original: str) -> bool:
        settings = snap.settings
        if settings.mode != 'custom' or len(settings.models) != 1:
            return False
        try:
            expected = novaconf.apply_transition(
                original, settings.models[0], settings.extra_flags,
                snap.marker.changed_at, snap.marker.backup)
        except novaconf.NovaConfError:
            return False

        def bare(text: str) -> list[str]:
            return [line for line in novaconf.split_lines(text)
                    if not line.startswith(novaconf.MARKER_PREFIX)]
        return bare(expected) == bare(snap.text)

    def _refuse_foreign_edit(self, snap: _Snapshot, doing: str) -> None:
        if not self._is_ours(snap):
            raise HostError(
                '%s on %s was edited after cpumigrate changed it (%s); '
                'refusing to %s: compare '
                'it with %s and fix it by hand'
                % (
                    snap.path,
                    self.name,
                    snap.marker.changed_at.strftime('%Y-%m-%dT%H:%M:%SZ')
                    if snap.marker
                    else '?',
                    doing,
                    snap.marker.backup if snap.marker else 'the backup',
                )
            )

    def nova_conf(self) -> ConfState:
        snap = self._load()
        original = snap.settings
        text = self._original_text(snap) if snap.marker else None
        if text is not None:
            try:
                original = novaconf.read_settings(text)
            except novaconf.NovaConfError as exc:
                raise HostError(
                    'backup %s on %s: %s'
                    % (snap.marker.backup, self.name, exc)
                ) from None
        problem = None
        if snap.backup_problem:
            problem = '%s; the original CPU lines kept in the marker ' \
                'comment stand in for it' % snap.backup_problem
        return ConfState(
            path=snap.path, sha256=snap.sha256, settings=snap.settings,
            transitioned=snap.marker is not None, original=original,
            backup=snap.marker.backup if snap.marker else None,
            changed_at=snap.marker.changed_at if snap.marker else None,
            destinations=snap.marker.destinations if snap.marker else (),
            problem=problem,
            max_live_migrations=novaconf.max_live_migrations(snap.text),
            **novaconf.cpu_check_options(snap.text))

    def _find_identical_backup(self, path: str, sha: str) -> str | None:
        result = self._run(
            ['sh', '-c', LIST_BACKUPS_SCRIPT, 'cpumigrate-list', path]
        )
        if not result.ok:
            return None
        for line in result.stdout.splitlines():
            digest, _, name = line.partition(' ')
            if digest == sha and _BACKUP_NAME_RE.search(name):
                return name
        return None

    def apply_transition(self, model: str, flags: Sequence[str] = (), *,
                         destinations: Sequence[str] = (),
                         dry_run: bool = False) -> Change:
        flags, destinations = tuple(flags), tuple(destinations)
        try:
            novaconf.check_model_and_flags(model, flags)
            novaconf.check_destinations(destinations)
        except novaconf.NovaConfError as exc:
            raise HostError(str(exc)) from None
        snap = self._load()
        target = novaconf.transition_settings(model, flags)
        new_backup: str | None = None
        when = self._host_now()
        if snap.marker:
            self._refuse_foreign_edit(snap, 'change it again')
            kept = snap.marker.destinations
            if snap.settings == target and destinations in ((), kept):
                return Change(
                    snap.path, snap.settings, target, None, '', False
                )
            if snap.settings == target:
                # Only the destinations change: the CPU was set when the
                # marker says, and nova-compute need not restart for this.
                when = snap.marker.changed_at
            destinations = destinations or kept
            base = self._original_text(snap)
            backup = snap.marker.backup
        else:
            if snap.settings == target:
                return Change(
                    snap.path, snap.settings, target, None, '', False
                )
            base = snap.text
            backup = self._find_identical_backup(snap.path, snap.sha256)
            if backup is None:
                backup = new_backup = novaconf.backup_path(
                    snap.path, when, self.run_id)
        try:
            new_text = novaconf.apply_transition(
                base, model, flags, when, backup, destinations
            )
        except novaconf.NovaConfError as exc:
            raise HostError(
                '%s on %s: %s' % (snap.path, self.name, exc)
            ) from None
        diff = novaconf.unified_diff(snap.path, snap.text, new_text)
        if dry_run:
            return Change(snap.path, snap.settings, target, None, diff, True)
        self.write_file(
            snap.path, novaconf.encode(new_text), snap.sha256, new_backup
        )
        LOG.info('%s: %s now has %s (original saved as %s)',
                 self.name, snap.path, target.describe(), backup)
        return Change(snap.path, snap.settings, target, backup, diff, True)

    def restore_original(self, *, dry_run: bool = False) -> Change:
        snap = self._load()
        if snap.marker is None:
            return Change(
                snap.path, snap.settings, snap.settings, None, '', False
            )
        self._refuse_foreign_edit(snap, 'restore it')
        original_text = self._original_text(snap)
        after = novaconf.read_settings(original_text)
        diff = novaconf.unified_diff(snap.path, snap.text, original_text)
        if dry_run:
            return Change(snap.path, snap.settings, after, None, diff, True)
        when = self._host_now()
        self.write_file(snap.path, novaconf.encode(original_text),
                        snap.sha256)
        source = snap.marker.backup
        if snap.backup_data is None:
            source = 'the original lines in the marker comment'
            LOG.warning('%s: %s: %s', self.name, snap.path,
                        snap.backup_problem)
        LOG.info('%s: %s restored from %s', self.name, snap.path, source)
        self._record_restore(when)
        return Change(
            snap.path, snap.settings, after, snap.marker.backup, diff, True
        )

    # ----------------------------------------------------------- restore

    @property
    def restored_record(self) -> str:
        """Where a restore records when it happened (hypervisor's clock):
        nova-compute started before that runs the transition settings
        still (restart pending)."""
        head, _, base = self.conf_path.rpartition('/')
        return '%s/.%s.cpumigrate-restored' % (head, base)

    def _record_restore(self, when: datetime.datetime) -> None:
        result = self._run(['sh', '-c', 'printf "%s\\n" "$1" > "$2"',
                            'cpumigrate-record',
                            when.strftime('%Y-%m-%dT%H:%M:%SZ'),
                            self.restored_record])
        if not result.ok:
            LOG.warning('%s: cannot record the restore in %s: %s',
                        self.name, self.restored_record,
                        result.error_line())

    def restored_at(self) -> datetime.datetime | None:
        result = self._run(['cat', '--', self.restored_record])
        if not result.ok:
            return None
        try:
            return datetime.datetime.strptime(
                result.stdout.strip(), '%Y-%m-%dT%H:%M:%SZ').replace(
                    tzinfo=datetime.timezone.utc)
        except ValueError:
            return None

    def restorable_problem(self) -> str | None:
        """Why the original could not be restored now (the file edited
        since the transition was written, the backup changed with no lines
        kept to stand in, the directory not writable), or None."""
        snap = self._load()
        if snap.marker is None:
            return None
        if not self._is_ours(snap):
            return ('%s on %s was edited after cpumigrate changed it: '
                    'compare it with %s and fix it by hand'
                    % (snap.path, self.name, snap.marker.backup))
        head = snap.path.rpartition('/')[0] or '/'
        if not self._run(['test', '-w', head]).ok:
            return '%s on %s is not writable' % (head, self.name)
        return None

    # ----------------------------------------------------------- services

    def _container_engine(self) -> str:
        if self._engine is None:
            result = self._run(
                ['sh', '-c', 'command -v docker || command -v podman']
            )
            found = result.stdout.strip().splitlines()
            if not result.ok or not found:
                raise HostError(
                    'neither docker nor podman found on %s (kolla profile)'
                    % self.name
                )
            self._engine = found[0].rsplit('/', 1)[-1]
        return self._engine

    def _profile_argv(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        if any(profiles.ENGINE == part for part in argv):
            return profiles.with_engine(argv, self._container_engine())
        return argv

    def restart_nova_compute(self) -> None:
        if self.options.restart_command:
            argv: tuple[str, ...] = ('sh', '-c', self.options.restart_command)
        else:
            argv = self._profile_argv(self.profile.restart)
        LOG.info('%s: restarting nova-compute (%s)', self.name, ' '.join(argv))
        result = self._run(argv, timeout=RESTART_TIMEOUT)
        if not result.ok:
            raise HostError(
                'restarting nova-compute on %s failed (%s): %s'
                % (self.name, shlex.join(argv), result.error_line())
            )

    def _host_now(self) -> datetime.datetime:
        """The hypervisor's own clock (UTC, whole seconds), for the marker:
        it is compared with nova-compute's start time on the same host, so
        the operator's clock must not matter.  Falls back to ours."""
        result = self._run(('date', '-u', '+%Y-%m-%dT%H:%M:%S'), root=False)
        if result.ok:
            try:
                return datetime.datetime.strptime(
                    result.stdout.strip(), '%Y-%m-%dT%H:%M:%S').replace(
                        tzinfo=datetime.timezone.utc)
            except ValueError:
                pass
        return novaconf.utc_now()

    def compute_started_at(self) -> datetime.datetime | None:
        try:
            argv = self._profile_argv(self.profile.started_at)
        except HostError:
            return None
        result = self._run(argv)
        if not result.ok:
            LOG.debug(
                '%s: %s failed: %s', self.name, argv[0], result.error_line()
            )
            return None
        return profiles.parse_started_at(result.stdout)

    # ----------------------------------------------------------- lock

    @property
    def lock_path(self) -> str:
        """Next to nova.conf: per machine (also in containers: kolla's
        config directory is the host's), where operators look."""
        import posixpath

        return posixpath.join(posixpath.dirname(self.conf_path) or '/',
                              'cpumigrate.lock')

    def lock_file(self, op: str, *, token: str = '',
                  content: str = '') -> tuple[bool, str]:
        """Take, refresh or release the host lock: (done, holder), holder
        being "age <s>" then the lock's content when another holds it."""
        result = self._run(['sh', '-c', LOCK_SCRIPT, 'cpumigrate-lock', op,
                            self.lock_path, token, content])
        if result.exit_code == 3:
            return False, result.stdout
        self._checked(result, '%s the lock %s' % (op, self.lock_path))
        return True, ''

    # ----------------------------------------------------------- identity

    def identity(self) -> HostIdentity:
        """uname -n, nova.conf's ``[DEFAULT] host`` and the domain UUIDs."""
        name = self._checked(self._run(['uname', '-n'], root=False),
                             'uname -n').stdout.strip()
        try:
            conf_host = novaconf.read_option(
                novaconf.decode(self.read_file(self.conf_path)), 'DEFAULT',
                'host')
        except novaconf.NovaConfError as exc:
            raise HostError('%s on %s: %s' % (self.conf_path, self.name,
                                              exc)) from None
        listed = self._run(self._virsh('list', '--all', '--uuid'))
        domains = None
        if listed.ok:
            domains = frozenset(line.strip() for line in
                                listed.stdout.splitlines() if line.strip())
        return HostIdentity(name, conf_host or None, domains)

    # ----------------------------------------------------------- libvirt

    def _virsh(self, *args: str) -> tuple[str, ...]:
        return (
            self._profile_argv(self.profile.libvirt_exec) + ('virsh',) + args
        )

    def guest_cpu(self, instance_uuid: str) -> GuestCpu:
        result = self._run(self._virsh('dumpxml', instance_uuid))
        if not result.ok:
            err = result.error_line()
            if (
                'domain not found' in err.lower()
                or 'failed to get domain' in err.lower()
            ):
                raise HostError(
                    'no libvirt domain %s on %s' % (instance_uuid, self.name)
                )
            raise HostError(
                'virsh dumpxml %s on %s failed: %s'
                % (instance_uuid, self.name, err)
            )
        return virsh.parse_guest_cpu(result.stdout)

    def host_cpu(self) -> HostCpu:
        caps = virsh.parse_capabilities(
            self._checked(
                self._run(self._virsh('capabilities')), 'virsh capabilities'
            ).stdout
        )
        dom = virsh.parse_domcapabilities(
            self._checked(self._run(self._virsh('domcapabilities')),
                          'virsh domcapabilities').stdout)
        libvirt_version = qemu_version = None
        version = self._run(self._virsh('version'))
        if version.ok:
            libvirt_version, qemu_version = virsh.parse_version(version.stdout)
        return HostCpu(
            arch=caps['arch'],
            vendor=caps['vendor'],
            model=caps['model'],
            features=caps['features'],
            machines=caps['machines'],
            numa_cells=caps['numa_cells'],
            libvirt_version=libvirt_version,
            qemu_version=qemu_version,
            **dom,
        )

    def compare_cpu(self, cpu_xml: str) -> CompareResult:
        """The XML goes on stdin (``/dev/stdin``): no temp file to clean up,
        and it also works through ``docker exec -i`` on kolla.  With
        ``--error`` libvirt names what the host lacks (the message of an
        incompatible result), which auto uses to drop those flags."""
        result = self._run_input(
            self._virsh('hypervisor-cpu-compare', '--error', '/dev/stdin'),
            cpu_xml.encode('utf-8'),
            what='comparing CPUs',
        )
        try:
            return virsh.parse_compare(
                result.exit_code, result.stdout, result.stderr
            )
        except HostError as exc:
            raise HostError('%s: %s' % (self.name, exc)) from None

    def cpu_map(self) -> dict[str, str]:
        """Read once per session: libvirt's CPU map (a hundred files) does
        not change while a verb runs, and pin's guest floors and its gate
        both need it."""
        if self._cpu_map is None:
            argv = self._profile_argv(self.profile.libvirt_exec) + (
                'sh',
                '-c',
                virsh.cpu_map_script(),
                'cpumigrate-cpu-map',
                virsh.CPU_MAP_DIR,
                virsh.CPU_MAP_SEPARATOR,
            )
            result = self._checked(
                self._run(argv), 'reading %s' % virsh.CPU_MAP_DIR
            )
            self._cpu_map = virsh.parse_cpu_map(result.stdout)
        return dict(self._cpu_map)
