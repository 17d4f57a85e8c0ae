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

"""One operator per host: the lock the mutating verbs hold.

Two runs on one host undo each other (one restores nova.conf under the
other's restarts; two prepares started together picked one backup name and
the loser removed the winner's backup).  So prepare, pin, finalize and
migrate hold a lock per host for as long as they run, in a file on the
hypervisor (``cpumigrate.lock`` next to nova.conf), so that operators on
different machines see it.  Read-only verbs and dry runs take none.

The file holds JSON: user, client machine, pid, verb, since, the client's
boot id and a random token.  It is created atomically (``link(2)``: fails if
it exists) and refreshed every :data:`REFRESH_EVERY` seconds by a thread on
its own SSH session.  A second run fails at once and names the holder.  The
lock of a run that died is **stale** when

* the holder is this client machine, same boot, and its pid is gone, or
  this machine rebooted since; or
* it was not refreshed for :data:`STALE_AFTER` seconds (by the hypervisor's
  clock: the operators' clocks do not matter);

and a stale lock is taken over only with ``--break-lock`` (recorded in the
audit log), never silently.  A live lock is never broken.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
import datetime
import functools
import json
import logging
import os
import threading
from typing import Any
from typing import TypeVar
import uuid

from osc_cpumigrate.errors import WorkflowError

LOG = logging.getLogger(__name__)

F = TypeVar('F', bound=Callable[..., Any])

REFRESH_EVERY = 30.0
STALE_AFTER = 300


def boot_id() -> str:
    try:
        with open('/proc/sys/kernel/random/boot_id', encoding='ascii') as f:
            return f.read().strip()
    except OSError:
        return ''


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True        # someone else's process, or unknown: assume live
    return True


def new_record(audit: Any, verb: str) -> dict[str, Any]:
    return {
        'user': audit.user, 'client': audit.client, 'pid': os.getpid(),
        'verb': audit.verb or verb, 'cloud': audit.cloud,
        'since': datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%dT%H:%M:%SZ'),
        'boot_id': boot_id(), 'token': uuid.uuid4().hex}


def parse_holder(text: str) -> tuple[int | None, dict[str, Any]]:
    """("age <s>\\n{json}") -> (age, record); ({}) when unreadable."""
    head, _, body = text.partition('\n')
    age = None
    if head.startswith('age '):
        try:
            age = int(head.split()[1])
        except (IndexError, ValueError):
            pass
    try:
        record = json.loads(body)
    except ValueError:
        record = {}
    return age, record if isinstance(record, dict) else {}


def describe(record: dict[str, Any], age: int | None) -> str:
    if not record:
        return 'an unreadable lock'
    text = '%s@%s (pid %s, %s, since %s' % (
        record.get('user', '?'), record.get('client', '?'),
        record.get('pid', '?'), record.get('verb') or '?',
        record.get('since', '?'))
    if age is not None:
        text += ', last refreshed %d s ago' % age
    return text + ')'


def stale_reason(record: dict[str, Any], age: int | None,
                 me: dict[str, Any]) -> str | None:
    """Why the holder's run is known dead, or None: assume it is alive."""
    same_client = record.get('client') == me['client']
    if same_client and record.get('boot_id') and me['boot_id']:
        if record['boot_id'] != me['boot_id']:
            return '%s rebooted since it was taken' % me['client']
        if not pid_alive(record.get('pid')):
            return 'its process %s on %s is gone' % (record.get('pid'),
                                                      me['client'])
        return None
    if age is not None and age > STALE_AFTER:
        return 'not refreshed for %d s (a live run refreshes it every ' \
               '%d s)' % (age, REFRESH_EVERY)
    return None


def take(ctx: Any, host: Any, me: dict[str, Any]) -> None:
    """Take the lock of ``host``, or fail naming its holder."""
    content = json.dumps(me)
    done, held = host.lock_file('take', content=content)
    if done:
        return
    age, record = parse_holder(held)
    holder = describe(record, age)
    why = stale_reason(record, age, me)
    if why is None:
        raise WorkflowError(
            '%s is locked by %s: another cpumigrate run is working on it; '
            'nothing was changed (try again when it is done%s)' % (
                host.name, holder, '' if not ctx.break_lock else
                '; --break-lock takes over only a stale lock'))
    if not ctx.break_lock:
        raise WorkflowError(
            '%s is locked by %s, but the lock is stale (%s): if no other '
            'run is working on %s, run again with --break-lock; nothing '
            'was changed' % (host.name, holder, why, host.name))
    if not record.get('token'):
        raise WorkflowError(
            '%s: the lock file (cpumigrate.lock next to nova.conf) cannot be '
            'read; if no run is working on %s, remove it by hand; nothing '
            'was changed' % (host.name, host.name))
    done, held = host.lock_file('take', token=record['token'],
                                content=content)
    if not done:
        raise WorkflowError('%s: the stale lock changed while taking it '
                            'over (%s); nothing was changed'
                            % (host.name, describe(*parse_holder(held)[::-1])))
    ctx.audit.record('lock-broken', host=host.name, holder=record,
                     why=why)
    ctx.progress('%s: took over the stale lock of %s (%s)'
                 % (host.name, holder, why))


class Refresher(threading.Thread):
    """Refreshes the lock on its own session until stopped."""

    def __init__(self, host: Any, me: dict[str, Any]) -> None:
        super().__init__(name='cpumigrate-lock-%s' % host.name, daemon=True)
        self.host, self.me = host, me
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(REFRESH_EVERY):
            try:
                done, held = self.host.lock_file(
                    'refresh', token=self.me['token'],
                    content=json.dumps(self.me))
            except Exception as exc:  # noqa: BLE001 - retried next time
                LOG.warning('%s: cannot refresh the lock: %s',
                            self.host.name, exc)
                continue
            if not done:
                LOG.error('%s: the lock was taken over by %s', self.host.name,
                          describe(*parse_holder(held)[::-1]))
                return


class _Held:
    """This process's hold on one host's lock: ``openstack cpumigrate
    run`` works on several hosts from several threads, and two of its
    sources may finalize on the same destination; they are one run, so the
    lock is taken once and released when the last of them is done."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.count = 0
        self.stack: contextlib.ExitStack | None = None


_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def hold(ctx: Any, host_name: str, verb: str) -> Iterator[None]:
    """Hold the lock of ``host_name`` for the block; re-entrant within
    this process (see :class:`_Held`)."""
    with _HELD_GUARD:
        held = _HELD.setdefault(host_name, _Held())
    with held.guard:
        if not held.count:
            stack = contextlib.ExitStack()
            stack.enter_context(_hold_file(ctx, host_name, verb))
            held.stack = stack
        held.count += 1
    try:
        yield
    finally:
        with held.guard:
            held.count -= 1
            if not held.count and held.stack is not None:
                stack, held.stack = held.stack, None
                stack.close()


@contextlib.contextmanager
def _hold_file(ctx: Any, host_name: str, verb: str) -> Iterator[None]:
    """Hold the lock file of ``host_name`` (its own SSH session, identity
    proved) for the block."""
    try:
        ctx.audit.check()
    except OSError as exc:
        raise WorkflowError('cannot write the audit log %s: %s (give '
                            '--audit-log PATH)' % (ctx.audit.path, exc)
                            ) from None
    me = new_record(ctx.audit, verb)
    with ctx.host(host_name) as host:
        take(ctx, host, me)
        refresher = Refresher(host, me)
        refresher.start()
        try:
            yield
        finally:
            refresher.halt.set()
            refresher.join()
            try:
                host.lock_file('release', token=me['token'])
            except Exception as exc:  # noqa: BLE001 - the verb's outcome wins
                LOG.warning('%s: cannot remove the lock %s: %s', host_name,
                            'file', exc)


def holds_lock(func: F) -> F:
    """Decorator for a mutating verb ``func(ctx, host_name, ..., dry_run=)``:
    the host's lock is held while it runs (not for a dry run)."""

    @functools.wraps(func)
    def wrapper(ctx: Any, host_name: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get('dry_run'):
            return func(ctx, host_name, *args, **kwargs)
        with hold(ctx, host_name, func.__name__):
            return func(ctx, host_name, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
