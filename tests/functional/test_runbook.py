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

"""End to end: ``openstack cpumigrate`` as an operator runs it, against the
lab's real Nova, real SSH and simulated libvirt hosts.

The tests share one lab and run in file order: each uses its own servers and
leaves the hosts it touched in a state the next one expects.
"""

import json
import pathlib

import pytest

from tests.functional.labclient import host_of
from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import run

pytestmark = pytest.mark.lab

LABCTL = pathlib.Path(__file__).parents[1] / 'lab' / 'labctl'


def cpumigrate(env, *args, ok=True):
    """Run a verb with -f json; return (exit code, rows, stderr).  The rows
    are checked against the verb's output contract."""
    proc = run(env, [OPENSTACK, 'cpumigrate', *args, '-f', 'json'], ok=ok,
               timeout=900)
    rows = json.loads(proc.stdout) if proc.stdout.strip() else []
    if args[0] in COLUMNS:
        contract(args[0], rows)
    return proc.returncode, rows, proc.stderr


def servers_on(env, host):
    return {s['ID']: s for s in osc(env, 'server', 'list', '--all-projects',
                                    '--host', host, '--long')}


def server(env, sid):
    return osc(env, 'server', 'show', sid)


def ssh(env, host, *command):
    return run(env, ['ssh', '-F', env['OS_CPUMIGRATE_SSH_CONFIG'],
                     '-o', 'BatchMode=yes', host, 'sudo', '-n',
                     *command]).stdout


def nova_conf(env, host):
    return ssh(env, host, 'cat', '/etc/nova/nova.conf')


def domain_model(env, host, sid):
    import xml.etree.ElementTree as ET
    cpu = ET.fromstring(ssh(env, host, 'virsh', 'dumpxml', sid)).find('cpu')
    return cpu.findtext('model') if cpu is not None else None


def boot(env, host, count, prefix, *extra):
    before = set(servers_on(env, host))
    run(env, [str(LABCTL), 'boot', '--host', host, '--count', str(count),
              '--name-prefix', prefix, *extra])
    return sorted(set(servers_on(env, host)) - before)


def fault(env, host, what):
    run(env, [str(LABCTL), 'fault', host, what])


def by(rows, key='ID'):
    return {r[key]: r for r in rows}


SERVER_COLUMNS = ['ID', 'Name', 'Host', 'Status', 'Result', 'Reason']
COLUMNS = {
    'pin': SERVER_COLUMNS + ['CPU Before', 'CPU After'],
    'finalize': SERVER_COLUMNS + ['CPU Before', 'CPU After'],
    'migrate': SERVER_COLUMNS + ['Source', 'Destination', 'Seconds'],
    'prepare': ['Host', 'Service Status', 'Service State', 'Disabled Reason',
                'CPU Before', 'CPU After', 'Backup', 'Result', 'Reason'],
    'status': ['ID', 'Name', 'Host', 'Status', 'Phase', 'Reason', 'CPU'],
    'check': ['Check', 'Host', 'Server', 'Verdict', 'Reason'],
}
RESULTS = {
    'pin': {'pinned', 'already-pinned', 'would-pin', 'skipped', 'refused',
            'failed', 'not-attempted', 'interrupted'},
    'finalize': {'finalized', 'already-finalized', 'would-finalize',
                 'skipped', 'refused', 'failed', 'not-attempted',
                 'interrupted'},
    'migrate': {'live-migrated', 'cold-migrated', 'would-live-migrate',
                'would-cold-migrate', 'refused', 'failed', 'not-attempted',
                'interrupted'},
    'prepare': {'prepared', 'already-prepared', 'would-prepare'},
}
CPU_KEYS = {'mode', 'model', 'flags'}


def contract(verb, rows):
    """Every row of a verb has the same keys, in order; Result (or Phase,
    Verdict) takes a documented value; a CPU is an object or null."""
    for row in rows:
        assert list(row) == COLUMNS[verb], row
        if verb in RESULTS:
            assert row['Result'] in RESULTS[verb], row
        for name, value in row.items():
            if name.startswith('CPU'):
                assert value is None or set(value) == CPU_KEYS, row
                assert value is None or isinstance(value['flags'], list)
    if verb == 'status':
        assert {r['Phase'] for r in rows} <= {
            'unpinned', 'pinned', 'migrated-pinned', 'finalized', 'skipped',
            'unknown'}
    if verb == 'check':
        assert {r['Verdict'] for r in rows} <= {'ok', 'warn', 'fail'}
    return rows


def test_plain_live_migration_fails_before_prepare(lab_env):
    [sid] = boot(lab_env, 'intel-2', 1, 'plain')
    proc = run(lab_env, [OPENSTACK, 'server', 'migrate', '--live-migration',
                         '--host', 'amd-2', '--wait', sid], ok=False)
    events = run(lab_env, [OPENSTACK, 'server', 'event', 'list', sid,
                           '-f', 'json']).stdout
    details = proc.stderr + proc.stdout
    for event in json.loads(events):
        details += run(lab_env, [OPENSTACK, 'server', 'event', 'show', sid,
                                 event['Request ID'], '-f', 'json']).stdout
    assert "Unacceptable CPU info: CPU doesn't have compatibility" in details
    shown = server(lab_env, sid)
    assert shown['status'] == 'ACTIVE'
    assert shown['OS-EXT-SRV-ATTR:host'] == 'intel-2'
    run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid])


def test_prepare_restart_fault_restores_nova_conf(lab_env):
    before = nova_conf(lab_env, 'intel-2')
    fault(lab_env, 'intel-2', 'next-start-fails')
    try:
        code, rows, err = cpumigrate(
            lab_env, 'prepare', 'intel-2', '--cpu-model', 'kvm64',
            '--service-timeout', '40', ok=False)
    finally:
        fault(lab_env, 'intel-2', 'clear')
    assert code == 1
    assert 'original nova.conf was restored' in err
    assert nova_conf(lab_env, 'intel-2') == before
    service = osc(lab_env, 'compute', 'service', 'list', '--host', 'intel-2',
                  '--service', 'nova-compute')[0]
    assert service['Status'] == 'enabled'


def test_guest_floor_and_failed_migration_stop_the_run(lab_env):
    plain = boot(lab_env, 'intel-2', 2, 'floor-plain')
    [rhel] = boot(lab_env, 'intel-2', 1, 'floor-rhel', '--image', 'rhel9')
    before = nova_conf(lab_env, 'intel-2')
    cpumigrate(lab_env, 'prepare', 'intel-2', '--cpu-model', 'kvm64',
               '--destination', 'amd-1')

    code, rows, err = cpumigrate(lab_env, 'pin', 'intel-2',
                                 '--auto-approve', ok=False)
    assert code == 1
    rows = by(rows)
    assert rows[rhel]['Result'] == 'refused'
    assert rows[rhel]['Reason'].startswith('its guest needs x86-64-v2')
    assert all(rows[s]['Result'] == 'pinned' for s in plain)
    assert all(rows[s]['CPU After']['model'] == 'kvm64' for s in plain)
    assert '1 of 3 servers failed' in err
    assert domain_model(lab_env, 'intel-2', rhel) == 'Skylake-Client'
    assert domain_model(lab_env, 'intel-2', plain[0]) == 'kvm64'
    assert nova_conf(lab_env, 'intel-2') == before      # restored anyway

    fault(lab_env, 'amd-2', 'migration-precheck-fails')
    try:
        code, rows, err = cpumigrate(lab_env, 'migrate', 'intel-2',
                                     '--destination', 'amd-2', ok=False)
    finally:
        fault(lab_env, 'amd-2', 'clear')
    assert code == 1
    rows = by(rows)
    assert rows[rhel]['Result'] == 'refused'
    assert rows[rhel]['Reason'].startswith('not pinned')
    results = sorted(rows[s]['Result'] for s in plain)
    assert results == ['failed', 'not-attempted']
    assert all(rows[s]['Host'] == 'intel-2' for s in plain + [rhel])
    for sid in plain + [rhel]:
        shown = server(lab_env, sid)
        assert (shown['status'], shown['OS-EXT-SRV-ATTR:host']) == (
            'ACTIVE', 'intel-2')

    # a migration that does not end is aborted after --timeout
    fault(lab_env, 'amd-2', 'migration-hangs')
    try:
        code, rows, err = cpumigrate(lab_env, 'migrate', 'intel-2',
                                     '--destination', 'amd-2', '--server',
                                     plain[0], '--timeout', '5', ok=False)
    finally:
        fault(lab_env, 'amd-2', 'clear')
    assert code == 1
    assert rows[0]['Result'] == 'failed', rows
    assert 'cancelled' in rows[0]['Reason'], rows
    assert 'abort' in err
    shown = server(lab_env, plain[0])
    assert (shown['status'], shown['OS-EXT-SRV-ATTR:host']) == (
        'ACTIVE', 'intel-2')


def test_full_runbook_intel_to_amd_and_back(lab_env):
    active = boot(lab_env, 'intel-1', 3, 'runbook')
    [stopped] = boot(lab_env, 'intel-1', 1, 'runbook-off', '--stopped')
    original = nova_conf(lab_env, 'intel-1')
    dests = ['--destination', 'amd-1', '--destination', 'amd-2']

    code, rows, err = cpumigrate(lab_env, 'check', 'intel-1', *dests)
    verdicts = {(r['Check'], r['Host']): r['Verdict'] for r in rows}
    assert verdicts[('transition cpu', '*')] == 'ok'
    assert verdicts[('vendor', 'amd-1')] == 'warn'

    code, [row], err = cpumigrate(lab_env, 'prepare', 'intel-1', *dests)
    assert row['Result'] == 'prepared'
    assert (row['Service Status'], row['Service State']) == ('disabled',
                                                             'up')
    assert row['CPU After']['mode'] == 'custom'
    model = row['CPU After']['model']
    assert model != 'kvm64'                      # auto found a richer CPU
    assert row['CPU After']['flags']             # as a list, +flag each
    assert cpumigrate(lab_env, 'prepare', 'intel-1', *dests)[1][0][
        'Result'] == 'already-prepared'
    shown = osc(lab_env, 'cpumigrate', 'host', 'show', 'intel-1')
    assert (shown['Nova Conf'], shown['Service Status']) == ('transition',
                                                             'disabled')
    assert shown['CPU']['model'] == model
    assert shown['Backup'].startswith('/etc/nova/nova.conf.cpumigrate-')
    assert shown['Destinations'] == 'amd-1, amd-2'

    # pin checks the migrations to the destinations prepare was given
    code, rows, err = cpumigrate(lab_env, 'pin', 'intel-1', '--auto-approve')
    assert ('checking migrations to amd-1, amd-2, the destinations prepare '
            'was given') in err
    rows = by(rows)
    assert {rows[s]['Result'] for s in active} == {'pinned'}
    assert {rows[s]['CPU After']['model'] for s in active} == {model}
    assert (rows[stopped]['Result'], rows[stopped]['Reason']) == (
        'skipped', 'status SHUTOFF')
    assert nova_conf(lab_env, 'intel-1') == original
    assert {domain_model(lab_env, 'intel-1', s) for s in active} == {model}
    assert {r['Result'] for r in cpumigrate(
        lab_env, 'pin', 'intel-1', '--auto-approve')[1]
        if r['ID'] in active} == {'already-pinned'}
    shown = osc(lab_env, 'cpumigrate', 'host', 'show', 'intel-1')
    assert (shown['Nova Conf'], shown['Backup']) == ('normal', '')

    rows = by(cpumigrate(lab_env, 'migrate', 'intel-1', *dests)[1])
    assert {rows[s]['Result'] for s in active} == {'live-migrated'}
    assert rows[stopped]['Result'] == 'cold-migrated'
    for sid, row in rows.items():
        assert row['Source'] == 'intel-1'
        assert row['Host'] == row['Destination'] == host_of(lab_env, sid)
        assert isinstance(row['Seconds'], int)
    assert cpumigrate(lab_env, 'migrate', 'intel-1', *dests)[1] == []

    for dest in ('amd-1', 'amd-2'):
        rows = cpumigrate(lab_env, 'finalize', dest, '--auto-approve')[1]
        assert {r['Result'] for r in rows} <= {'finalized', 'skipped',
                                               'already-finalized'}
        assert {r['CPU After']['model'] for r in rows
                if r['Result'] == 'finalized'} <= {'EPYC-Rome'}
    for sid in active:
        shown = server(lab_env, sid)
        host = shown['OS-EXT-SRV-ATTR:host']
        assert shown['status'] == 'ACTIVE' and host.startswith('amd-')
        assert domain_model(lab_env, host, sid) == 'EPYC-Rome'
    shown = server(lab_env, stopped)
    assert shown['status'] == 'SHUTOFF'
    assert shown['OS-EXT-SRV-ATTR:host'].startswith('amd-')
    phases = {}
    for dest in ('amd-1', 'amd-2'):
        for r in cpumigrate(lab_env, 'status', dest)[1]:
            phases[r['ID']] = r['Phase']
    assert {phases[s] for s in active} == {'finalized'}
    assert nova_conf(lab_env, 'intel-1') == original

    # ... and back: amd-1's servers to intel-1, which the operator enables.
    run(lab_env, [OPENSTACK, 'compute', 'service', 'set', '--enable',
                  'intel-1', 'nova-compute'])
    back = [s for s in active if host_of(lab_env, s) == 'amd-1']
    assert back
    amd_conf = nova_conf(lab_env, 'amd-1')
    cpumigrate(lab_env, 'prepare', 'amd-1', '--destination', 'intel-1')
    cpumigrate(lab_env, 'pin', 'amd-1', '--auto-approve', '--method',
               'stop-start')
    rows = by(cpumigrate(lab_env, 'migrate', 'amd-1', '--destination',
                         'intel-1')[1])
    assert {rows[s]['Result'] for s in back} == {'live-migrated'}
    cpumigrate(lab_env, 'finalize', 'intel-1', '--auto-approve', '--method',
               'stop-start')
    for sid in back:
        assert host_of(lab_env, sid) == 'intel-1'
        shown = server(lab_env, sid)
        assert shown['status'] == 'ACTIVE'
        assert 'cpumigrate:stopped' not in str(shown.get('properties'))
        assert domain_model(lab_env, 'intel-1', sid) == 'Skylake-Client'
    assert nova_conf(lab_env, 'amd-1') == amd_conf


def service_status(env, host):
    return osc(env, 'compute', 'service', 'list', '--host', host,
               '--service', 'nova-compute')[0]['Status']


def test_bad_input_changes_nothing(lab_env, tmp_path):
    before = nova_conf(lab_env, 'intel-2')
    status_before = service_status(lab_env, 'intel-2')
    for args, text in (
            (['prepare', 'nope-1', '--cpu-model', 'kvm64'], 'unknown host'),
            (['migrate', 'intel-2', '--destination', 'intel-2'],
             'source itself'),
            (['pin', 'intel-2', '--server', 'no-such-server',
              '--auto-approve'], 'no server named'),
            (['prepare', 'intel-2', '--cpu-model', 'kvm64', '--nova-conf',
              '/etc/nova/missing.conf'], '/etc/nova/missing.conf')):
        code, rows, err = cpumigrate(lab_env, *args, ok=False)
        assert code == 1 and text in err, err
    # a non-admin token
    member = dict(lab_env, OS_CLOUD='cpumigrate-lab-member')
    code, rows, err = cpumigrate(member, 'prepare', 'intel-2', '--cpu-model',
                                 'kvm64', ok=False)
    assert code == 1 and 'HTTP 403' in err, err
    # an SSH host key nobody has accepted
    config = pathlib.Path(lab_env['OS_CPUMIGRATE_SSH_CONFIG']).read_text()
    empty = tmp_path / 'known_hosts'
    empty.write_text('')
    strange = tmp_path / 'ssh_config'
    strange.write_text('\n'.join(
        '    UserKnownHostsFile %s' % empty
        if line.strip().startswith('UserKnownHostsFile') else line
        for line in config.splitlines()) + '\n')
    env = dict(lab_env, OS_CPUMIGRATE_SSH_CONFIG=str(strange))
    code, rows, err = cpumigrate(env, 'prepare', 'intel-2', '--cpu-model',
                                 'kvm64', ok=False)
    assert code == 1 and 'is not known' in err, err
    # nothing of the above touched the host or its service
    assert nova_conf(lab_env, 'intel-2') == before
    assert service_status(lab_env, 'intel-2') == status_before


def test_prepare_dry_run_shows_masked_diff_and_changes_nothing(lab_env):
    host = 'amd-2'                      # enabled, pristine nova.conf
    before = nova_conf(lab_env, host)
    assert 'transport_url' in before
    assert service_status(lab_env, host) == 'enabled'
    code, [row], err = cpumigrate(lab_env, 'prepare', host, '--cpu-model',
                                  'kvm64', '--cpu-flag', 'ssse3', '--dry-run')
    assert row['Result'] == 'would-prepare'
    assert row['Reason'] == ('would disable service, write nova.conf, '
                             'restart nova-compute')
    assert row['CPU After'] == {'mode': 'custom', 'model': 'kvm64',
                                'flags': ['+ssse3']}
    assert [ln for ln in err.splitlines()
            if ln.startswith('+cpu_models') and 'kvm64' in ln]
    secret = [line.split('=', 1)[1].strip() for line in before.splitlines()
              if line.startswith('transport_url')][0]
    password = secret.split('://', 1)[1].split('@')[0].split(':', 1)[1]
    assert password not in err
    assert nova_conf(lab_env, host) == before
    assert service_status(lab_env, host) == 'enabled'
