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

"""End to end (issue 11): the right host, one operator per host, the audit
trail, against the lab's real Nova and real OpenSSH servers.

Each test leaves its hosts changed; the module resets the lab before and
after.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import time

import pytest

from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import run

pytestmark = pytest.mark.lab

LAB = pathlib.Path(__file__).parents[1] / 'lab'
LABCTL = LAB / 'labctl'
STATE = pathlib.Path(os.environ.get('CPUMIGRATE_LAB_STATE',
                                    str(LAB / '.state')))


@pytest.fixture(scope='module')
def env(lab_env, tmp_path_factory):
    """The lab's client environment with this module's own audit log; the
    lab is reset before and after (hosts pristine, no servers), whatever
    the other modules left."""
    run(lab_env, [str(LABCTL), 'reset'])
    tmp = tmp_path_factory.mktemp('safety')
    env = dict(lab_env, OS_CPUMIGRATE_AUDIT_LOG=str(tmp / 'audit.log'))
    yield env
    run(lab_env, [str(LABCTL), 'reset'])


def etc_nova(host):
    return STATE / 'hosts' / host / 'etc-nova'


def snapshot(host):
    """Every file of the host's /etc/nova with its content, and its
    compute service's status."""
    return {p.name: p.read_bytes() for p in etc_nova(host).iterdir()}


def service(env, host):
    [svc] = osc(env, 'compute', 'service', 'list', '--service',
                'nova-compute', '--host', host)
    return svc['Status']


def cpumigrate(env, *args):
    return subprocess.run([OPENSTACK, 'cpumigrate', *args, '-f', 'json'],
                          env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


def error_line(proc):
    """The CommandError line (OSC prints it last on stderr)."""
    return proc.stderr.strip().splitlines()[-1]


def audit_lines(env):
    path = pathlib.Path(env['OS_CPUMIGRATE_AUDIT_LOG'])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_wrong_ssh_mapping_is_one_line_and_changes_nothing(env, tmp_path):
    """intel-1's ssh_config entry points at intel-2 (whose key is known
    under that name): nova-compute there runs as intel-2."""
    config = pathlib.Path(env['OS_CPUMIGRATE_SSH_CONFIG']).read_text()
    addr = dict(re.findall(r'Host (\S+)\n  HostName (\S+)', config))
    known = (STATE / 'ssh' / 'known_hosts').read_text()
    key = re.search(r'^intel-2,\S+ (.+)$', known, re.M).group(1)
    (tmp_path / 'known_hosts').write_text(known + 'intel-1 %s\n' % key)
    wrong = re.sub(r'(Host intel-1\n  HostName )\S+',
                   lambda m: m.group(1) + addr['intel-2'], config)
    wrong = wrong.replace(str(STATE / 'ssh' / 'known_hosts'),
                          str(tmp_path / 'known_hosts'))
    (tmp_path / 'ssh_config').write_text(wrong)
    bad = dict(env, OS_CPUMIGRATE_SSH_CONFIG=str(tmp_path / 'ssh_config'))
    before = {h: snapshot(h) for h in ('intel-1', 'intel-2')}
    proc = cpumigrate(bad, 'prepare', 'intel-1', '--cpu-model', 'kvm64')
    assert proc.returncode == 1, proc.stderr
    line = error_line(proc)
    assert "nova-compute runs as 'intel-2'" in line, proc.stderr
    assert 'nothing was changed' in line
    assert {h: snapshot(h) for h in before} == before
    assert service(env, 'intel-1') == service(env, 'intel-2') == 'enabled'
    assert audit_lines(env) == []
    proc = cpumigrate(bad, 'status', 'intel-1')       # read-only: reported
    assert proc.returncode == 1 and 'runs as' in error_line(proc)


def test_two_prepares_together_one_wins_backups_intact(env):
    args = [OPENSTACK, 'cpumigrate', 'prepare', 'intel-2', '--cpu-model',
            'kvm64', '-f', 'json']
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for _ in range(2)]
    done = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in done)
    assert codes == [0, 1], done
    [(_, _, lost)] = [d for d in done if d[0] == 1]
    assert 'intel-2 is locked by' in lost and 'prepare' in lost, lost
    assert 'nothing was changed' in lost
    files = sorted(p.name for p in etc_nova('intel-2').iterdir())
    backups = [f for f in files if f.startswith('nova.conf.cpumigrate-')]
    assert len(backups) == 1 and 'cpumigrate.lock' not in files, files
    conf = (etc_nova('intel-2') / 'nova.conf').read_text()
    assert backups[0] in conf               # the marker names it
    assert service(env, 'intel-2') == 'disabled'
    proc = cpumigrate(env, 'status', 'intel-2')
    assert proc.returncode == 0, proc.stderr


def test_killed_run_lock_is_stale_and_taken_over_only_with_break_lock(env):
    lock = etc_nova('amd-2') / 'cpumigrate.lock'
    run_ = subprocess.Popen(
        [OPENSTACK, 'cpumigrate', 'prepare', 'amd-2', '--cpu-model', 'kvm64'],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    run_.send_signal(signal.SIGKILL)
    run_.wait()
    assert lock.exists()
    holder = json.loads(lock.read_text())
    assert holder['pid'] == run_.pid and holder['verb'] == 'cpumigrate prepare'
    proc = cpumigrate(env, 'prepare', 'amd-2', '--cpu-model', 'kvm64')
    assert proc.returncode == 1
    line = error_line(proc)
    assert 'the lock is stale (its process %d' % run_.pid in line, line
    assert '--break-lock' in line
    assert json.loads(lock.read_text())['token'] == holder['token']
    proc = cpumigrate(env, 'prepare', 'amd-2', '--cpu-model', 'kvm64',
                      '--break-lock')
    assert proc.returncode == 0, proc.stderr
    assert 'took over the stale lock' in proc.stderr
    assert not lock.exists()
    assert [x for x in audit_lines(env) if x['action'] == 'lock-broken']


def test_audit_log_has_one_line_per_change_of_a_runbook(env, tmp_path):
    audit = dict(env, OS_CPUMIGRATE_AUDIT_LOG=str(tmp_path / 'audit.log'))
    run(env, [str(LABCTL), 'boot', '--host', 'intel-1', '--count', '1',
              '--name-prefix', 'audit'])
    [sid] = [s['ID'] for s in osc(env, 'server', 'list', '--all-projects',
                                  '--host', 'intel-1')]
    for verb in (['prepare', 'intel-1', '--cpu-model', 'kvm64',
                  '--destination', 'amd-1'],
                 ['pin', 'intel-1', '--method', 'stop-start',
                  '--auto-approve'],
                 ['migrate', 'intel-1', '--destination', 'amd-1'],
                 ['finalize', 'amd-1', '--method', 'stop-start',
                  '--auto-approve']):
        proc = cpumigrate(audit, *verb)
        assert proc.returncode == 0, proc.stderr
    lines = audit_lines(audit)
    for line in lines:
        assert set(line) >= {'time', 'user', 'client', 'cloud', 'verb',
                             'host', 'server', 'action', 'result'}
        assert line['result'] == 'ok' and line['cloud'] == env['OS_CLOUD']
    got = [(x['verb'].split()[-1], x['action'], x['host'],
            'server' if x['server'] == sid else x['server']) for x in lines]
    stop_start = [('server-metadata-set', 'server'),
                  ('server-stopped', 'server'), ('server-started', 'server'),
                  ('server-metadata-deleted', 'server')]
    assert got == [
        ('prepare', 'service-disabled', 'intel-1', ''),
        ('prepare', 'nova-conf-written', 'intel-1', ''),
        ('prepare', 'nova-compute-restarted', 'intel-1', ''),
        *[('pin', a, 'intel-1', s) for a, s in stop_start],
        ('pin', 'nova-conf-restored', 'intel-1', ''),
        ('pin', 'nova-compute-restarted', 'intel-1', ''),
        ('migrate', 'migration-started', 'intel-1', 'server'),
        *[('finalize', a, 'amd-1', s) for a, s in stop_start]]
    written = lines[1]
    assert re.fullmatch('[0-9a-f]{64}', written['sha256_before'])
    assert written['sha256_after'] != written['sha256_before']
    restored = lines[7]
    assert restored['sha256_after'] == written['sha256_before']
