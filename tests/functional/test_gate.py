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

"""The gate before any restart (issue 10, parts 2, 4 and 5), end to end.

One lab state for the whole module: on intel-1 a server whose flavor
requires AVX2 (kvm64, the transition model, lacks it: Nova would leave it
in ERROR at its next start), a member of an anti-affinity group whose
other members already sit on amd-1 and amd-2 (no destination can take
it), and a plain server.  check names both and the vendor change; pin
refuses both before any restart and pins the plain one.
"""

import json
import time

import pytest

from tests.functional.labclient import sdk
from tests.functional.test_runbook import by
from tests.functional.test_runbook import cpumigrate
from tests.functional.test_runbook import LABCTL
from tests.functional.test_runbook import run

pytestmark = pytest.mark.lab

CIRROS = 'c1a7e1e5-0000-4000-8000-000000000001'
DESTS = ('--destination', 'amd-1', '--destination', 'amd-2')


def active(conn, sid, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = conn.compute.get_server(sid)
        if server.status in ('ACTIVE', 'ERROR') and not server.task_state:
            assert server.status == 'ACTIVE', server.fault
            return server
        time.sleep(0.5)
    raise AssertionError('server %s not ACTIVE' % sid)


@pytest.fixture(scope='module')
def world(lab_env):
    """{name: server id}; the flavor and group are deleted at the end
    (the module's lab reset deletes the servers)."""
    conn = sdk(lab_env)
    small = conn.compute.find_flavor('m1.small', ignore_missing=False)
    avx2 = conn.compute.create_flavor(name='gate-avx2', ram=512, vcpus=1,
                                      disk=1)
    conn.compute.create_flavor_extra_specs(
        avx2, {'trait:HW_CPU_X86_AVX2': 'required'})
    group = conn.compute.create_server_group(name='gate-anti',
                                             policy='anti-affinity')
    plan = {'gate-avx2': ('intel-1', avx2.id, None),
            'gate-anti': ('intel-1', small.id, group.id),
            'gate-anti-a1': ('amd-1', small.id, group.id),
            'gate-anti-a2': ('amd-2', small.id, group.id),
            'gate-plain': ('intel-1', small.id, None)}
    ids = {}
    for name, (host, flavor, hint) in plan.items():
        ids[name] = conn.compute.create_server(
            name=name, flavor_id=flavor, image_id=CIRROS, networks='none',
            availability_zone='nova:%s' % host,
            **({'scheduler_hints': {'group': hint}} if hint else {})).id
    for sid in ids.values():
        active(conn, sid)
    yield ids
    for sid in ids.values():
        conn.compute.delete_server(sid, ignore_missing=True)
    for sid in ids.values():
        server = conn.compute.find_server(sid)
        if server:
            conn.compute.wait_for_delete(server, wait=120)
    conn.compute.delete_server_group(group, ignore_missing=True)
    conn.compute.delete_flavor(avx2, ignore_missing=True)


def guests(env):
    out = run(env, [str(LABCTL), 'guests', '--host', 'intel-1']).stdout
    return {g['uuid']: g for g in map(json.loads, out.splitlines())}


def test_check_names_untransitionable_and_unmovable_servers(lab_env, world):
    code, rows, _err = cpumigrate(lab_env, 'check', 'intel-1', *DESTS,
                                  '--cpu-model', 'kvm64', ok=False)
    assert code == 1
    found = {(r['Check'], r['Server']): r for r in rows}
    traits = found[('cpu traits', world['gate-avx2'])]
    assert traits['Verdict'] == 'fail'
    assert 'HW_CPU_X86_AVX2 (avx2)' in traits['Reason']
    moving = found[('migration', world['gate-anti'])]
    assert moving['Verdict'] == 'fail'
    assert 'anti-affinity group gate-anti' in moving['Reason']
    assert ('migration', world['gate-plain']) not in found
    vendor = [r for r in rows if r['Check'] == 'vendor']
    assert vendor and 'SYSENTER' in vendor[0]['Reason']
    assert 'finalize' in vendor[0]['Reason']


def test_pin_refuses_them_before_any_restart(lab_env, world):
    cpumigrate(lab_env, 'prepare', 'intel-1', '--cpu-model', 'kvm64')
    # prepare was given no destination, nor is pin: it restarts nobody
    conn = sdk(lab_env)

    def actions():
        return {sid: len(list(conn.compute.server_actions(sid)))
                for sid in world.values()}
    before = actions()
    code, rows, err = cpumigrate(lab_env, 'pin', 'intel-1', '--server',
                                 'gate-avx2', '--auto-approve', ok=False)
    assert code == 1 and rows == [], err
    assert 'give --destination (prepare intel-1 recorded none)' in err
    assert actions() == before
    code, rows, err = cpumigrate(lab_env, 'pin', 'intel-1', *DESTS,
                                 '--auto-approve', ok=False)
    assert code == 1, err
    rows = by(rows)
    anti = rows[world['gate-anti']]
    assert rows[world['gate-avx2']]['Result'] == 'refused'
    assert 'No CPU model match traits' in rows[world['gate-avx2']]['Reason']
    assert anti['Result'] == 'refused'
    assert 'anti-affinity group gate-anti' in anti['Reason']
    assert rows[world['gate-plain']]['Result'] == 'pinned'
    seen = guests(lab_env)
    for name in ('gate-avx2', 'gate-anti'):
        server = conn.compute.get_server(world[name])
        assert (server.status, server.compute_host) == ('ACTIVE', 'intel-1')
        # never restarted: no stop, no power cut
        assert seen[world[name]]['clean_shutdowns'] == 0
        assert seen[world[name]]['power_cuts'] == 0
    assert seen[world['gate-plain']]['clean_shutdowns'] == 1
