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

"""The one way cpumigrate waits: a deadline, an interval, a clock.

Every wait (a server reaching a status, nova-compute reporting up after a
restart, a migration running to its end) is "poll, bounded by a timeout".
Written out in each place, the deadline arithmetic drifts apart and unit
tests end up sleeping.  So, as openstacksdk does with
``openstack.utils.iterate_timeout`` and ``openstack.resource.wait_for_status``,
one generator owns time and the waiter owns the states:

:func:`iterate_timeout`
    owns time.  It yields the seconds elapsed since it started, before each
    attempt; after an attempt that did not end the loop it raises
    :class:`~osc_cpumigrate.errors.Timeout` if the deadline has passed, else
    sleeps ``interval`` and yields again.  Unlike the SDK's, an attempt
    always comes first and the deadline is checked *after* it, so the last
    look at the cloud happens at or after the deadline and a timeout message
    can name what was last seen.  ``timeout=None`` waits forever.

:func:`wait_for`
    owns the states: it calls ``fetch()`` on each attempt, returns the value
    once ``done(value)`` is true, raises
    :class:`~osc_cpumigrate.errors.WorkflowError` at once with the reason
    ``failed(value)`` returns (a non-empty string), and calls
    ``progress(value, elapsed)`` after every attempt that neither ended nor
    failed.  ``message`` may be a string or a function of the last value, so
    the timeout says where things stood.  ``transient(exc)`` (optional)
    names the errors of ``fetch`` after which the wait goes on: a cloud API
    that answers 503, or nothing, for a while does not end a wait (a
    migration being followed goes on in Nova meanwhile); the deadline still
    holds, and its message then says what the last look met.

:func:`retry`
    owns the time of one read: it calls ``call()`` again after each error
    that ``transient(exc)`` accepts, sleeping 1, 2, 4... seconds (at most
    :data:`MAX_DELAY`) between tries, until ``budget`` seconds have passed
    since the first error; then the last error goes up.  Only for reads:
    an action that got no answer may have happened (see the README, "A
    cloud API that misbehaves").

``interval`` is seconds, or (for :func:`wait_for`) a function of the last
value giving the next pause: a live migration is looked at every few
seconds while far from its expected end and every quarter second around it
(:class:`osc_cpumigrate.workflow.migrate.Follow`), so the run loses almost
nothing between one server's arrival and the next one's start.

``clock`` and ``sleep`` are injected (defaults ``time.monotonic`` and
``time.sleep``): unit tests pass a fake clock whose ``sleep`` advances it,
and never wait.  Only the controller's monotonic clock is used, never a
host's or the cloud's.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import logging
import time
from typing import TypeVar

from osc_cpumigrate.errors import one_line
from osc_cpumigrate.errors import Timeout
from osc_cpumigrate.errors import WorkflowError

LOG = logging.getLogger(__name__)

T = TypeVar('T')
#: The first pause of :func:`retry`; each next one is twice as long...
FIRST_DELAY = 1.0
#: ...up to this.
MAX_DELAY = 30.0

Clock = Callable[[], float]
Sleep = Callable[[float], None]


def iterate_timeout(timeout: float | None,
                    message: str | Callable[[], str], *,
                    interval: float | Callable[[], float],
                    clock: Clock = time.monotonic,
                    sleep: Sleep = time.sleep) -> Iterator[float]:
    """Yield the elapsed seconds before each attempt; raise ``Timeout``.

    ``message`` (or ``message()``, evaluated only on timeout) becomes the
    text of the :class:`Timeout`.  The caller leaves the loop by returning
    or raising; the generator never ends on its own except by ``Timeout``.
    """
    start = clock()
    while True:
        yield clock() - start
        if timeout is not None and clock() - start >= timeout:
            raise Timeout(message() if callable(message) else message)
        sleep(interval() if callable(interval) else interval)


def retry(call: Callable[[], T], *, transient: Callable[[Exception], bool],
          budget: float, what: str = 'the cloud API',
          describe: Callable[[Exception], str] = one_line,
          clock: Clock = time.monotonic,
          sleep: Sleep = time.sleep) -> T:
    """``call()``, tried again after transient errors with exponential
    backoff for ``budget`` seconds from the first error (the module
    docstring)."""
    delay, deadline = FIRST_DELAY, None
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            now = clock()
            deadline = now + budget if deadline is None else deadline
            if now >= deadline:
                raise
            pause = min(delay, deadline - now)
            LOG.warning('%s: %s; trying again in %.0f s', what,
                        describe(exc), pause)
            sleep(pause)
            delay = min(delay * 2, MAX_DELAY)


#: the pause of a paced wait before it has seen a value
FIRST_PAUSE = 2.0


def wait_for(fetch: Callable[[], T], *,
             done: Callable[[T], bool],
             failed: Callable[[T], str | None] | None = None,
             timeout: float | None,
             interval: float | Callable[[T], float],
             message: str | Callable[[T], str],
             clock: Clock = time.monotonic,
             sleep: Sleep = time.sleep,
             progress: Callable[[T, float], None] | None = None,
             transient: Callable[[Exception], bool] | None = None) -> T:
    """Poll ``fetch()`` until ``done(value)``; see the module docstring.

    Raises :class:`WorkflowError` with ``failed(value)``'s reason, or
    :class:`Timeout` with ``message`` once ``timeout`` seconds have passed.
    """
    last: list[T] = []
    error: list[Exception] = []

    def timeout_message() -> str:
        if not last:
            text = message if isinstance(message, str) else (
                'no answer from the cloud API')
        else:
            text = message(last[-1]) if callable(message) else message
        if error:
            text += ' (the last look at the cloud failed: %s)' % one_line(
                error[-1])
        return text

    # a paced caller is asked about the last value seen; before any (the
    # first look failed) it gets the usual pause
    pause = ((lambda: interval(last[-1]) if last else FIRST_PAUSE)
             if callable(interval) else interval)
    for elapsed in iterate_timeout(timeout, timeout_message,
                                   interval=pause, clock=clock,
                                   sleep=sleep):
        try:
            value = fetch()
        except Exception as exc:
            if transient is None or not transient(exc):
                raise
            LOG.warning('still waiting: %s', one_line(exc))
            error[:] = [exc]
            continue
        last[:], error[:] = [value], []
        if done(value):
            return value
        reason = failed(value) if failed is not None else None
        if reason:
            raise WorkflowError(reason)
        if progress is not None:
            progress(value, elapsed)
    raise AssertionError('unreachable')  # iterate_timeout never ends
