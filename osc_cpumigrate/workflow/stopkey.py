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

"""Stopped by us, provably: the ``cpumigrate:stopped`` bookkeeping.

With ``--method stop-start`` the restart loop sets the server metadata key
:data:`STOPPED_KEY` (the UTC time) before it stops a server, so that if the
run dies between the stop and the start, the next run knows to start it.

But any project member can set that key on their own server, and an owner
who stopped their server on purpose must not find it started by an
operator's tool.  So the key is only a claim; the proof is Nova's record of
what was done to the server (``os-instance-actions``): a server is started
again only if

* its newest ``stop`` action was made by this tool's user (the user id of
  the token), within :data:`TOLERANCE` of the time the key records, and
* nobody did anything to it since (no start, reboot, rebuild, migration...)
  other than this tool's own ``start`` attempts (a start that failed leaves
  the server stopped and the key set: the next run tries again).

A key that is ours but stale (the stop failed, or someone restarted the
server since) is deleted; a key that is not ours is left alone, as is the
server.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from osc_cpumigrate.cloud import parse_time
from osc_cpumigrate.cloud import utcnow
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import common

LOG = logging.getLogger(__name__)

#: Server metadata key set while cpumigrate has a server stopped
#: (``--method stop-start``): a later run starts such a server again.
STOPPED_KEY = 'cpumigrate:stopped'
#: How far the stop action's start_time may be from the recorded time (the
#: operator's clock against Nova's API servers' clocks).
TOLERANCE = datetime.timedelta(minutes=5)
TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'


def claimed(server: Any) -> bool:
    """Does the server carry the key (whoever set it)?"""
    return STOPPED_KEY in (server.metadata or {})


def candidate(server: Any) -> bool:
    """SHUTOFF and carrying the key: maybe ours to start again."""
    return server.status == 'SHUTOFF' and claimed(server)


def mark(ctx: common.Context, server: Any) -> None:
    """Record, before the stop, that cpumigrate is stopping the server."""
    ctx.cloud.set_metadata(server, **{
        STOPPED_KEY: utcnow().strftime(TIME_FORMAT)})


def clear(ctx: common.Context, server: Any, why: str) -> None:
    """Delete the key (ours, and stale or done with)."""
    LOG.info('%s: deleting %s (%s)', server.id, STOPPED_KEY, why)
    ctx.cloud.delete_metadata(server, [STOPPED_KEY])


def recorded_at(server: Any) -> datetime.datetime | None:
    value = (server.metadata or {}).get(STOPPED_KEY)
    try:
        when = datetime.datetime.strptime(value or '', TIME_FORMAT)
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.timezone.utc)


def _when(action: Any) -> datetime.datetime:
    return parse_time(action.start_time) or datetime.datetime.min.replace(
        tzinfo=datetime.timezone.utc)


def our_stop(server: Any, actions: list[Any],
             user_id: str) -> tuple[str | None, bool]:
    """(None, False) if the newest ``stop`` is this user's at the recorded
    time and nothing but our own starts followed it; else (why not, whether
    the key is ours but stale)."""
    recorded = recorded_at(server)
    if recorded is None:
        return '%s holds no time cpumigrate wrote' % STOPPED_KEY, False
    stops = [a for a in actions if a.action == 'stop']
    if not stops:
        return 'Nova records no stop of it', False
    stop = max(stops, key=_when)
    if stop.user_id != user_id:
        return ('it was stopped by user %s, not by cpumigrate\'s user %s'
                % (stop.user_id, user_id)), False
    if abs(_when(stop) - recorded) > TOLERANCE:
        return ('its last stop (%s) is not the one cpumigrate recorded (%s)'
                % (stop.start_time, recorded.strftime(TIME_FORMAT))), False
    for later in sorted(actions, key=_when):
        if later is stop or _when(later) < _when(stop):
            continue
        if later.action == 'start' and later.user_id == user_id:
            continue           # our own start attempt that did not work
        return ('%s by user %s at %s after cpumigrate stopped it'
                % (later.action, later.user_id, later.start_time)), True
    return None, False


def proof(ctx: common.Context, server: Any) -> str | None:
    """None if cpumigrate provably left this SHUTOFF server stopped (start
    it); else why it is left alone.  A key that is ours but stale is
    deleted on the way."""
    cloud = ctx.cloud
    try:
        user_id = cloud.user_id()
    except WorkflowError as exc:
        return str(exc)
    why, stale = our_stop(server, cloud.server_actions(server), user_id)
    if stale:
        clear(ctx, server, why or '')
    return why


def tidy(ctx: common.Context, server: Any) -> None:
    """A server carrying the key but not SHUTOFF: it was started (or the
    stop failed) since; if the key is ours, it is stale: delete it."""
    if not claimed(server) or server.status == 'SHUTOFF':
        return
    try:
        user_id = ctx.cloud.user_id()
    except WorkflowError:
        return
    stops = [a for a in ctx.cloud.server_actions(server)
             if a.action == 'stop']
    if stops and max(stops, key=_when).user_id == user_id:
        clear(ctx, server, 'the server is %s' % server.status)
