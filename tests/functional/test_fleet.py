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

"""End to end: ``openstack cpumigrate plan`` and ``run`` on the lab, two
sources to two destinations with ``--parallel 2``: one source failing
(its nova-compute will not start with the transition CPU, so ``prepare``
rolls it back) while the other completes, then a run killed in the middle
of a live migration and re-run to the end.

Few servers (one per source) to keep the suite short.  And the one-member
affinity group Nova will not live-migrate, refused by plan (about 13 s).
"""

import json
import os
import signal
import subprocess

import pytest

from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import run

pytestmark = pytest.mark.lab

HOSTS = ['--source', 'intel-1', '--source', 'intel-2',
         '--destination', 'amd-1', '--destination', 'amd-2']
SERVER_COLUMNS = ['ID', 'Name', 'Host', 'Status', 'Result', 'Reason']
FLEET_COLUMNS = SERVER_COLUMNS + ['Source', 'Destination', 'Seconds']
PLAN_COLUMNS = SERVER_COLUMNS + ['Source', 'Destination', 'Steps',
                                 'Estimate']


def cpumigrate(env, *args, ok=True):
    proc = run(env, [OPENSTACK, 'cpumigrate', *args, '-f', 'json'], ok=ok,
               timeout=900)
    return proc.returncode, json.loads(proc.stdout or '[]'), proc.stderr


def boot(env, host, prefix):
    labctl = env['LABCTL']
    run(env, [labctl, 'boot', '--host', host, '--count', '1',
              '--name-prefix', prefix])
    [found] = [s for s in osc(env, 'server', 'list', '--all-projects',
                              '--host', host) if s['Name'].startswith(prefix)]
    return found['ID']


def where(env, sid):
    return osc(env, 'server', 'show', sid)['OS-EXT-SRV-ATTR:host']


def test_fleet_plan_run_failure_interruption_rerun(lab_env):
    env = lab_env
    run(env, [env['LABCTL'], 'reset'])
    one, two = boot(env, 'intel-1', 'fleet-a'), boot(env, 'intel-2', 'fleet-b')

    code, rows, _ = cpumigrate(env, 'plan', *HOSTS)
    assert code == 0
    assert [list(r) for r in rows] == [PLAN_COLUMNS] * 2
    assert {r['Result'] for r in rows} == {'would-live-migrate'}
    assert {r['Destination'] for r in rows} == {'amd-1', 'amd-2'}
    assert rows[0]['Steps'] == ('pin restart, live migration, finalize '
                                'restart')

    # intel-2's nova-compute will not start with the transition CPU:
    # prepare rolls back, intel-2 stops, intel-1 carries on to the end.
    run(env, [env['LABCTL'], 'fault', 'intel-2', 'next-start-fails'])
    code, rows, err = cpumigrate(env, 'run', *HOSTS, '--parallel', '2',
                                 '--auto-approve', ok=False)
    assert code == 1, err
    assert [list(r) for r in rows] == [FLEET_COLUMNS] * 2
    got = {r['ID']: r for r in rows}
    assert got[one]['Result'] == 'finalized'
    assert got[one]['Host'] == where(env, one) == got[one]['Destination']
    assert got[two]['Result'] == 'not-attempted'
    assert where(env, two) == 'intel-2'
    assert 'intel-2 stopped' in err
    assert '] ' in err and 'left' in err            # progress lines

    # interrupted: killed while intel-2's server live-migrates
    proc = subprocess.Popen(
        [OPENSTACK, 'cpumigrate', 'run', *HOSTS, '--parallel', '2',
         '--auto-approve', '-f', 'json'], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        for line in proc.stderr:
            if 'live-migrating from intel-2' in line:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    # the killed run's host lock is stale (its pid is gone): a re-run says
    # so and changes nothing; --break-lock takes it over
    code, rows, err = cpumigrate(env, 'run', *HOSTS, '--parallel', '2',
                                 '--auto-approve', ok=False)
    assert code == 1 and 'the lock is stale' in err, err
    code, rows, err = cpumigrate(env, 'run', *HOSTS, '--parallel', '2',
                                 '--auto-approve', '--break-lock')
    got = {r['ID']: r for r in rows}
    assert got[one]['Result'] == 'already-finalized'
    assert got[two]['Result'] in ('finalized', 'already-finalized'), err
    assert where(env, two).startswith('amd-')
    for host in ('amd-1', 'amd-2'):
        _code, status, _ = cpumigrate(env, 'status', host)
        assert {r['Phase'] for r in status} <= {'finalized'}


def test_affinity_group_of_one_refused_as_nova_refuses_it(lab_env):
    """Nova's ServerGroupAffinityFilter counts the moving member's own host
    among the group's hosts: a live migration of the only member of an
    affinity group to a named host is "No valid host".  plan says so
    before run would try."""
    env = lab_env
    group = osc(env, 'server', 'group', 'create', '--policy', 'affinity',
                'fleet-solo')['id']
    sid = osc(env, 'server', 'create', '--flavor', 'm1.small', '--image',
              'cirros', '--nic', 'none', '--availability-zone',
              'nova:amd-1', '--hint', 'group=%s' % group, '--wait',
              'fleet-solo-1')['id']
    nova = run(env, [OPENSTACK, 'server', 'migrate', '--live-migration',
                     '--host', 'amd-2', '--wait', sid], ok=False)
    assert nova.returncode == 1 and 'No valid host' in nova.stderr
    assert where(env, sid) == 'amd-1'
    code, rows, _err = cpumigrate(env, 'plan', '--source', 'amd-1',
                                  '--destination', 'amd-2', ok=False)
    [row] = [r for r in rows if r['ID'] == sid]
    assert code == 1 and row['Result'] == 'refused'
    # the gate's verdict, per destination
    assert ('amd-2: affinity group fleet-solo: its members are on amd-1, '
            'and Nova moves a member only to a host of the group'
            in row['Reason']), row['Reason']
