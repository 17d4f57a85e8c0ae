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

"""The lab's fault switches, each observed from outside as the tool sees it:
through the API, the openstack CLI and SSH.  Two of them, rabbit-restart
and compute-hangs, are observed in test_fault_matrix.py, which switches
them on anyway: each costs a minute or service_down_time to recover from.
"""
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import run

pytestmark = pytest.mark.lab


def labctl(env, *args, ok=True):
    return run(env, [env['LABCTL'], *args], ok=ok)


def ssh(env, host, command, ok=True):
    return run(env, ['ssh', '-F', env['OS_CPUMIGRATE_SSH_CONFIG'], '-o',
                     'BatchMode=yes', host, command], ok=ok)


def epoch(timestamp):
    return time.mktime(time.strptime(timestamp.split('.')[0],
                                     '%Y-%m-%dT%H:%M:%S')) - time.timezone


#: reconnect backoff (<= 30 s) + one lost RPC call (60 s) + margin
RABBIT_RECOVERY = 180


def wait_service(env, host, state, since=0.0, timeout=60):
    """nova-compute on `host` in `state` ('up' with a heartbeat after
    `since`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        svc, = osc(env, 'compute', 'service', 'list', '--service',
                   'nova-compute', '--host', host)
        fresh = epoch(svc['Updated At'] or '1970-01-01T00:00:00') >= since
        if svc['State'] == state and (state != 'up' or fresh):
            return svc
        time.sleep(1)
    raise AssertionError('nova-compute on %s not %s' % (host, state))


def compute_endpoint(env):
    """nova-api's root (its version document, which needs no token), from
    the public compute endpoint of the lab's Keystone catalog."""
    found = osc(env, 'endpoint', 'list', '--service', 'compute',
                '--interface', 'public')
    assert found, 'no public compute endpoint in the catalog'
    url = found[0]['URL']
    return url[:url.index('/', len('http://'))] + '/'


def wait_status(env, sid, status, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        srv = osc(env, 'server', 'show', sid)
        if srv['status'] == status and not srv['OS-EXT-STS:task_state']:
            return srv
        time.sleep(1)
    raise AssertionError('server %s not %s' % (sid, status))


@pytest.fixture
def faults(lab_env):
    """The lab's environment; every fault cleared afterwards."""
    yield lab_env
    labctl(lab_env, 'fault', 'cloud', 'clear')
    for host in ('intel-1', 'intel-2', 'amd-1', 'amd-2'):
        labctl(lab_env, 'fault', host, 'clear')


def get_status(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_api_stall_holds_requests_then_serves_them(faults):
    url = compute_endpoint(faults)
    t0 = time.monotonic()
    labctl(faults, 'fault', 'cloud', 'api-stall', '5')
    assert time.monotonic() < t0 + 4, 'labctl took the whole stall'
    assert get_status(url) == 200
    assert time.monotonic() >= t0 + 5


def test_api_503_for_n_seconds(faults):
    url = compute_endpoint(faults)
    labctl(faults, 'fault', 'cloud', 'api-503', '3')
    end = time.monotonic() + 3
    assert get_status(url) == 503
    time.sleep(max(0.0, end - time.monotonic()))
    assert get_status(url) == 200


def test_api_503_as_the_cli_sees_it(faults):
    labctl(faults, 'fault', 'cloud', 'api-503', '120')
    proc = run(faults, [OPENSTACK, 'server', 'list'], ok=False)
    # keystoneauth's version discovery is the first request to fail
    assert proc.returncode != 0 and 'unavailable' in proc.stderr.lower()
    labctl(faults, 'fault', 'cloud', 'clear')
    assert isinstance(osc(faults, 'server', 'list'), list)


# rabbit-restart (every host's nova-compute heartbeats again within
# RABBIT_RECOVERY): proven by test_fault_matrix.py::
# test_finalize_after_rabbitmq_restart, which restarts RabbitMQ anyway (one
# restart and its minute-long recovery in the suite, not two).


# compute-hangs (service down, the process alive, up again once cleared):
# proven by test_fault_matrix.py::
# test_finalize_refuses_while_nova_compute_hangs, which hangs a
# nova-compute anyway (one wait for service_down_time in the suite).


def test_etc_nova_readonly(faults):
    before = ssh(faults, 'amd-2', 'sudo -n cat /etc/nova/nova.conf').stdout
    labctl(faults, 'fault', 'amd-2', 'etc-nova-readonly')
    assert ssh(faults, 'amd-2',
               'sudo -n cat /etc/nova/nova.conf').stdout == before
    proc = ssh(faults, 'amd-2', 'sudo -n touch /etc/nova/nova.conf',
               ok=False)
    assert proc.returncode != 0 and 'Read-only file system' in proc.stderr
    labctl(faults, 'fault', 'amd-2', 'clear')
    ssh(faults, 'amd-2', 'sudo -n touch /etc/nova/nova.conf')


def test_etc_nova_full(faults):
    conf = '/etc/nova/nova.conf'
    before = ssh(faults, 'amd-2', 'sudo -n cat %s' % conf).stdout
    labctl(faults, 'fault', 'amd-2', 'etc-nova-full')
    try:
        assert ssh(faults, 'amd-2', 'sudo -n cat %s' % conf).stdout == before
        assert ssh(faults, 'amd-2', 'sudo -n stat -c %%U:%%G:%%a %s'
                   % conf).stdout.strip() == 'root:nova:640'
        proc = ssh(faults, 'amd-2', 'sudo -n cp %s %s.bak' % (conf, conf),
                   ok=False)
        assert proc.returncode != 0
        assert 'No space left on device' in proc.stderr
        labctl(faults, 'fault', 'amd-2', 'clear')
        # what the full disk left stays: an empty copy; the rest as before
        assert ssh(faults, 'amd-2', 'sudo -n stat -c %%s %s.bak'
                   % conf).stdout.strip() == '0'
        assert ssh(faults, 'amd-2', 'sudo -n cat %s' % conf).stdout == before
    finally:
        labctl(faults, 'fault', 'amd-2', 'clear')
        ssh(faults, 'amd-2', 'sudo -n rm -f %s.bak' % conf)


def test_ssh_lands_on_another_host(faults):
    labctl(faults, 'fault', 'intel-1', 'ssh-lands-on', 'intel-2')
    # the host key verifies (StrictHostKeyChecking yes): only the name lies
    assert ssh(faults, 'intel-1', 'hostname').stdout.strip() == 'intel-2'
    labctl(faults, 'fault', 'intel-1', 'clear')
    assert ssh(faults, 'intel-1', 'hostname').stdout.strip() == 'intel-1'


def owner_actions(env, sid):
    events = osc(env, 'server', 'event', 'list', '--long', sid)
    return {(e['Action'], e['User ID']) for e in events}


def test_owner_stops_starts_reboots_deletes(faults):
    member = dict(faults, OS_CLOUD='cpumigrate-lab-member')
    srv = osc(member, 'server', 'create', '--flavor', 'm1.small', '--image',
              'cirros', '--no-network', '--wait', 'fault-owner-1')
    sid, user = srv['id'], srv['user_id']
    t0 = time.time()
    labctl(faults, 'owner', sid, 'stop', '--after', '6')
    assert time.time() - t0 < 4, 'labctl owner --after waited'
    wait_status(faults, sid, 'SHUTOFF')
    stop, = [e for e in osc(faults, 'server', 'event', 'list', '--long', sid)
             if e['Action'] == 'stop']
    assert epoch(stop['Start Time']) >= int(t0) + 6
    labctl(faults, 'owner', sid, 'start')
    wait_status(faults, sid, 'ACTIVE')
    labctl(faults, 'owner', sid, 'reboot')
    wait_status(faults, sid, 'ACTIVE')
    assert {('stop', user), ('start', user), ('reboot', user)} <= \
        owner_actions(faults, sid)
    labctl(faults, 'owner', sid, 'delete')
    deadline = time.time() + 60
    while time.time() < deadline:
        proc = run(faults, [OPENSTACK, 'server', 'show', sid, '-f', 'json'],
                   ok=False)
        if proc.returncode:
            break
        assert json.loads(proc.stdout)['status'] in ('ACTIVE', 'DELETED')
        time.sleep(1)
    assert 'No Server found' in proc.stderr
