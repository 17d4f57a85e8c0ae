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

"""End to end, issue 11 (parts 1, 4-7): clean restarts by default,
interruptions, restart pending, a deleted backup, an owner's stop key.

Against the lab's real Nova: what the tool did to a server is read back from
Nova's own record (``os-instance-actions``, ``openstack server event
list``), never from the tool's rows alone.  The module starts from a reset
lab, whatever ran before it.
"""

import json
import os
import select
import signal
import subprocess
import time

import pytest

from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import run
from tests.functional.test_runbook import boot
from tests.functional.test_runbook import by
from tests.functional.test_runbook import cpumigrate
from tests.functional.test_runbook import LABCTL
from tests.functional.test_runbook import nova_conf
from tests.functional.test_runbook import server
from tests.functional.test_runbook import ssh

pytestmark = pytest.mark.lab

KEY = 'cpumigrate:stopped'
STATE = os.path.join(os.path.dirname(LABCTL), '.state')


@pytest.fixture(scope='module')
def lab(lab_env):
    run(lab_env, [str(LABCTL), 'reset'])
    return lab_env


def actions(env, sid):
    """What Nova records as done to the server, oldest first."""
    # Nova lists them newest first (its times have whole seconds only)
    events = osc(env, 'server', 'event', 'list', sid)
    return [e['Action'] for e in reversed(events)]


def prepare(env, host):
    """prepare, naming a host of the other vendor: pin checks the
    migrations to it before it restarts a server."""
    dest = 'amd-1' if host.startswith('intel') else 'intel-1'
    cpumigrate(env, 'prepare', host, '--cpu-model', 'kvm64',
               '--destination', dest)


def wait_for(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError('timed out waiting for %s' % what)


def started(env, *args):
    """A verb running in the background (-f json), its stderr readable
    line by line."""
    return subprocess.Popen(
        [OPENSTACK, 'cpumigrate', *args, '-f', 'json'], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def wait_line(proc, text, timeout=120):
    """Read the verb's stderr until a line holds ``text``."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        if ready:
            line = proc.stderr.readline()
            seen.append(line)
            if text in line:
                return seen
            if not line and proc.poll() is not None:
                break
    raise AssertionError('no "%s" on stderr: %s' % (text, ''.join(seen)))


def compute_pid(host):
    with open(os.path.join(STATE, 'hosts', host, 'nova-compute.pid')) as f:
        return int(f.read().strip())


def test_default_pin_stops_and_starts_cleanly(lab):
    """Part 1: no power cut (no hard reboot) on the default path; the help
    says what hard-reboot does."""
    sids = boot(lab, 'intel-2', 2, 'clean')
    prepare(lab, 'intel-2')
    code, rows, err = cpumigrate(lab, 'pin', 'intel-2', '--auto-approve')
    assert code == 0
    assert {r['Result'] for r in rows} == {'pinned'}
    for sid in sids:
        done = actions(lab, sid)
        assert done[-2:] == ['stop', 'start'], done
        assert 'reboot' not in done, done
        assert KEY not in server(lab, sid)['properties']
    helptext = run(lab, [OPENSTACK, 'cpumigrate', 'pin', '--help']).stdout
    assert 'cuts the guest\'s power' in ' '.join(helptext.split())


def test_sigint_during_pin_prints_rows_and_next_run_starts(lab):
    """Part 7: the stop hangs (nova-compute frozen), SIGINT: rows so far in
    -f json, exit 130; the server Nova then stops is started by the next
    pin, because its instance actions prove cpumigrate stopped it."""
    sids = boot(lab, 'intel-1', 2, 'sigint')
    prepare(lab, 'intel-1')
    pid = compute_pid('intel-1')
    os.kill(pid, signal.SIGSTOP)      # the stop will wait for nova-compute
    try:
        proc = started(lab, 'pin', 'intel-1', '--auto-approve')
        wait_line(proc, 'restarting ')
        first = wait_for('a server powering off', lambda: [
            s for s in sids
            if server(lab, s)['OS-EXT-STS:task_state'] == 'powering-off'])[0]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert proc.returncode == 130, err
    rows = by(json.loads(out))
    assert rows[first]['Result'] == 'interrupted'
    assert 'openstack cpumigrate pin intel-1' in rows[first]['Reason']
    assert [r['Result'] for r in rows.values()].count('not-attempted') == 1
    assert 'cpumigrate interrupted (SIGINT): ' in err
    wait_for('the stop to finish', lambda: server(
        lab, first)['status'] == 'SHUTOFF')
    assert KEY in server(lab, first)['properties']

    code, rows, err = cpumigrate(lab, 'pin', 'intel-1', '--auto-approve')
    assert code == 0, err
    assert {r['Result'] for r in rows} == {'pinned'}
    shown = server(lab, first)
    assert shown['status'] == 'ACTIVE'
    assert KEY not in shown['properties']
    assert 'reboot' not in actions(lab, first)


def test_killed_pin_leaves_restart_pending_until_the_next_pin(lab):
    """Part 4, and SIGTERM (143): nova.conf restored, nova-compute not
    restarted; status and host show say so; the next pin restarts it."""
    host = 'intel-1'                 # pinned above, nova.conf restored
    prepare(lab, host)
    # the restart command outlasts the signal sent 1 s after it started;
    # the verb still waits for it to end (invoke does), so no longer
    proc = started(lab, 'pin', host, '--auto-approve',
                   '--restart-command', 'sleep 10')
    wait_line(proc, '%s: restarting nova-compute' % host)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert 'cpumigrate terminated (SIGTERM): %s: interrupted while ' \
        'restoring nova.conf' % host in err
    assert {r['Result'] for r in json.loads(out)} == {'already-pinned'}

    shown = osc(lab, 'cpumigrate', 'host', 'show', host)
    assert shown['Nova Conf'] == 'restart pending'
    err = run(lab, [OPENSTACK, 'cpumigrate', 'status', host, '-f',
                    'json']).stderr
    assert 'restart pending' in err

    code, rows, err = cpumigrate(lab, 'pin', host, '--auto-approve')
    assert code == 0, err
    assert 'restart pending' in err and 'nova-compute is up again' in err
    assert osc(lab, 'cpumigrate', 'host', 'show', host)[
        'Nova Conf'] == 'normal'


def test_deleted_backup_restores_from_the_marker(lab):
    """Part 5: the marker keeps the original CPU lines."""
    host = 'amd-2'
    [sid] = boot(lab, host, 1, 'nobackup')
    original = nova_conf(lab, host)
    prepare(lab, host)
    backup = osc(lab, 'cpumigrate', 'host', 'show', host)['Backup']
    ssh(lab, host, 'rm', '-f', backup)
    shown = osc(lab, 'cpumigrate', 'host', 'show', host)
    assert shown['Nova Conf'] == 'transition'
    assert 'cannot read %s' % backup in shown['Problem']
    code, rows, err = cpumigrate(lab, 'pin', host, '--auto-approve')
    assert code == 0, err
    assert by(rows)[sid]['Result'] == 'pinned'
    assert nova_conf(lab, host) == original
    assert osc(lab, 'cpumigrate', 'host', 'show', host)['Problem'] == ''


def test_owner_stop_key_is_not_started(lab):
    """Part 6: a member stops their own server and sets the key; pin
    leaves it stopped, and says why."""
    member = dict(lab, OS_CLOUD='cpumigrate-lab-member',
                  OS_COMPUTE_API_VERSION='2.37')    # for --nic none
    created = osc(member, 'server', 'create', '--image', 'cirros',
                  '--flavor', 'm1.small', '--nic', 'none', '--wait',
                  'owned-1')
    sid = created['id']
    run(member, [OPENSTACK, 'server', 'stop', sid])
    wait_for('SHUTOFF', lambda: osc(member, 'server', 'show', sid)[
        'status'] == 'SHUTOFF')
    run(member, [OPENSTACK, 'server', 'set', '--property',
                 '%s=%s' % (KEY, time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                               time.gmtime())), sid])
    host = server(lab, sid)['OS-EXT-SRV-ATTR:host']
    code, rows, err = cpumigrate(lab, 'pin', host, '--auto-approve',
                                 '--server', sid)
    assert code == 0, err
    [row] = rows
    assert row['Result'] == 'skipped'
    # Keystone user IDs: the member's, not cpumigrate's (the admin's)
    assert 'stopped by user ' in row['Reason']
    assert "not by cpumigrate's user" in row['Reason']
    shown = server(lab, sid)
    assert shown['status'] == 'SHUTOFF'
    assert KEY in shown['properties']
    assert actions(lab, sid)[-1] == 'stop'
