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

"""finalize: runbook steps 9-10 on the destination host.

Restart, one at a time, every ACTIVE server that arrived by live migration
and still runs a transition CPU, so libvirt rebuilds its domain with the
destination's own CPU, and verify it (the restart loop pin uses too).
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
from typing import Any

from osc_cpumigrate.choices import DEFAULT_RESTART_METHOD
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common
from osc_cpumigrate.workflow import gate
from osc_cpumigrate.workflow import hostlock
from osc_cpumigrate.workflow import restart
from osc_cpumigrate.workflow import rows

LOG = logging.getLogger(__name__)


@hostlock.holds_lock
def finalize(ctx: common.Context, host_name: str, *,
             servers: Sequence[str] = (), method: str = DEFAULT_RESTART_METHOD,
             dry_run: bool = False) -> list[rows.FinalizeRow]:
    """Finalize the servers on ``host_name`` (all, or those named)."""
    with restart.session(ctx, host_name, servers, method) as (
            host, conf, selected):
        if conf.transitioned:
            raise WorkflowError(
                '%s still holds transition CPU settings in its nova.conf: a '
                'restart there would pin servers, not finalize them (run '
                '"openstack cpumigrate pin %s" to finish and restore it)'
                % (host_name, host_name))
        host_cpu = host.host_cpu()
        arrived = common.arrived_live(ctx.cloud, host_name)

        def native(guest: host_api.GuestCpu) -> bool:
            return common.is_native(guest, conf.original, host_cpu)

        def verify(after: host_api.GuestCpu) -> str | None:
            return None if native(after) else (
                'its domain still runs %s' % common.cpu_text(after))

        def settled(server: Any, guest: host_api.GuestCpu) -> str | None:
            if native(guest):
                return rows.ALREADY_FINALIZED
            if server.id not in arrived:
                # Not moved here by a live migration (a source host named
                # by mistake, say): restarting it would undo pin.
                return 'did not arrive by live migration'
            return None

        goal = restart.Goal(
            row_type=rows.FinalizeRow, done=rows.FINALIZED,
            already=rows.ALREADY_FINALIZED, would=rows.WOULD_FINALIZE,
            cpu='the host\'s own CPU', verify=verify,
            expected=rows.Cpu.of_settings(conf.original), verb='finalize')
        work = restart.classify(ctx, host, selected, goal,
                                settled=settled)
        refuse_traits(host, conf, work, goal)
        restart.run(ctx, host, work, goal, method=method, dry_run=dry_run)
        return common.finish(work.rows())


def refuse_traits(host: host_api.Host, conf: host_api.ConfState,
                  work: restart.Plan, goal: restart.Goal) -> None:
    """On a host whose own configuration is a custom model, refuse the
    servers whose flavor requires CPU traits none of its models has
    itself: Nova would fail their start and leave them in ERROR."""
    if not work.todo or conf.settings.mode != 'custom':
        return
    models = gate.configured_models(conf.settings, gate.read_cpu_map(host))
    work.refuse(goal, host.name,
                lambda server, _guest: gate.trait_problem(server, models))
