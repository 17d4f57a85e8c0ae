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

"""Operational safety (issue 11): the right host, one operator per host, the
audit trail, and the bugs found by reading the code."""

import json
import os
import re
import subprocess
import sys

from openstack import exceptions as sdk_exc
import pytest

from osc_cpumigrate import audit
from osc_cpumigrate.errors import HostError
from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import novaconf
from osc_cpumigrate.host import remote
from osc_cpumigrate.host import ssh
from osc_cpumigrate.workflow import finalize
from osc_cpumigrate.workflow import hostlock
from osc_cpumigrate.workflow import migrate
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import prepare
from osc_cpumigrate.workflow import rows
from osc_cpumigrate.workflow import status
from tests.unit import fakes


def untouched(world, name='intel-1'):
    host = world.hosts[name]
    return (world.services[name].status == 'enabled'
            and not host.transitioned
            and 'restart_nova_compute' not in host.calls)


# -- 2. the right host -------------------------------------------------------

def test_wrong_host_by_conf_host_is_one_line_and_changes_nothing():
    world = fakes.World()
    world.hosts['intel-1'].conf_host = 'intel-2'   # SSH reached intel-2
    with pytest.raises(WorkflowError) as exc:
        prepare.prepare(world.context(), 'intel-1', model='kvm64')
    msg = str(exc.value)
    assert "runs as 'intel-2'" in msg and 'nothing was changed' in msg
    assert '\n' not in msg
    assert untouched(world)


def test_wrong_host_by_hostname_when_conf_has_no_host():
    world = fakes.World()
    host = world.hosts['intel-1']
    host.conf_host, host.hostname = None, 'intel-2.example.net'
    with pytest.raises(WorkflowError, match='host name intel-2.example.net'):
        status.status(world.context(), 'intel-1')     # read-only too


def test_right_host_without_servers_by_hostname():
    world = fakes.World()
    world.hosts['intel-1'].conf_host = None      # hostname intel-1
    [row] = prepare.prepare(world.context(), 'intel-1', model='kvm64')
    assert row.result == 'prepared'


def test_domain_of_a_server_nova_places_elsewhere_is_a_mismatch():
    world = fakes.World()
    [other] = world.boot('intel-2', 1)
    # same name, but the machine runs intel-2's guest (a clone, say)
    world.hosts['intel-1'].domains[other.id] = world.guest(other)
    with pytest.raises(WorkflowError, match='do not match Nova: domain'):
        pin.pin(world.context(), 'intel-1')
    assert 'restart_nova_compute' not in world.hosts['intel-1'].calls


def test_prepare_asks_nova_before_ssh_to_destinations():
    world = fakes.World()
    opened = []
    ctx = world.context()
    ctx.open_host = lambda name, opts: opened.append(name) or (
        world.hosts[name])
    with pytest.raises(WorkflowError, match="unknown host 'amd-9'"):
        prepare.prepare(ctx, 'intel-1', destinations=['amd-9'])
    assert 'amd-9' not in opened
    assert untouched(world)


# -- 3. one operator per host ---------------------------------------------

def foreign_lock(world, *, client='ops-2', pid=4242, age=10, **extra):
    record = {'user': 'bob', 'client': client, 'pid': pid,
              'verb': 'cpumigrate pin', 'since': '2026-11-27T10:00:00Z',
              'boot_id': 'b-1', 'token': 'tok-1', **extra}
    world.hosts['intel-1'].lock = json.dumps(record)
    world.hosts['intel-1'].lock_age = age
    return record


def test_second_run_fails_at_once_naming_the_holder():
    world = fakes.World()
    foreign_lock(world)
    with pytest.raises(WorkflowError) as exc:
        prepare.prepare(world.context(), 'intel-1', model='kvm64')
    msg = str(exc.value)
    assert 'locked by bob@ops-2 (pid 4242, cpumigrate pin, since ' \
           '2026-11-27T10:00:00Z, last refreshed 10 s ago)' in msg
    assert 'nothing was changed' in msg
    assert untouched(world)


def test_lock_is_held_while_running_and_released():
    world = fakes.World()
    host = world.hosts['intel-1']
    seen = []
    real = host.restart_nova_compute

    def restart():
        seen.append(json.loads(host.lock))
        real()
    host.restart_nova_compute = restart
    prepare.prepare(world.context(), 'intel-1', model='kvm64')
    assert seen[0]['pid'] == os.getpid() and seen[0]['verb'] == 'prepare'
    assert set(seen[0]) >= {'user', 'client', 'since', 'boot_id', 'token'}
    assert host.lock is None


def test_lock_released_after_a_failure():
    world = fakes.World()
    world.hosts['intel-1'].unreadable = True
    with pytest.raises(HostError):
        prepare.prepare(world.context(), 'intel-1', model='kvm64')
    assert world.hosts['intel-1'].lock is None


def test_read_only_and_dry_run_take_no_lock():
    world = fakes.World()
    foreign_lock(world)
    status.status(world.context(), 'intel-1')
    prepare.prepare(world.context(), 'intel-1', model='kvm64', dry_run=True)
    assert json.loads(world.hosts['intel-1'].lock)['token'] == 'tok-1'


def test_killed_run_on_this_machine_is_stale_and_needs_break_lock():
    world = fakes.World()
    me = hostlock.new_record(audit.NULL, 'x')
    dead = subprocess.run([sys.executable, '-c', 'import os; '
                           'print(os.getpid())'], capture_output=True,
                          text=True).stdout.strip()
    foreign_lock(world, client=me['client'], pid=int(dead),
                 boot_id=me['boot_id'])
    with pytest.raises(WorkflowError) as exc:
        finalize.finalize(world.context(), 'intel-1')
    assert 'the lock is stale (its process %s' % dead in str(exc.value)
    assert '--break-lock' in str(exc.value)
    recorder = audit.Recorder(None)
    finalize.finalize(world.context(break_lock=True, audit=recorder),
                      'intel-1')
    assert [line['action'] for line in recorder.lines] == ['lock-broken']
    assert world.hosts['intel-1'].lock is None


def test_remote_lock_stale_by_age_only():
    world = fakes.World()
    foreign_lock(world, age=hostlock.STALE_AFTER - 1)
    with pytest.raises(WorkflowError, match='another cpumigrate run'):
        prepare.prepare(world.context(break_lock=True), 'intel-1',
                        model='kvm64')
    world.hosts['intel-1'].lock_age = hostlock.STALE_AFTER + 1
    with pytest.raises(WorkflowError, match='stale .not refreshed for'):
        prepare.prepare(world.context(), 'intel-1', model='kvm64')
    [row] = prepare.prepare(world.context(break_lock=True), 'intel-1',
                            model='kvm64')
    assert row.result == 'prepared'


def test_live_lock_on_this_machine_is_never_broken():
    world = fakes.World()
    me = hostlock.new_record(audit.NULL, 'x')
    foreign_lock(world, client=me['client'], pid=os.getppid(),
                 boot_id=me['boot_id'], age=10 ** 6)
    with pytest.raises(WorkflowError, match='takes over only a stale'):
        migrate.migrate(world.context(break_lock=True), 'intel-1',
                        destinations=['amd-1'])


def test_backup_names_are_unique_per_run():
    when = novaconf.utc_now()
    a = novaconf.backup_path('/etc/nova/nova.conf', when, 'a1b2c3')
    b = novaconf.backup_path('/etc/nova/nova.conf', when, 'd4e5f6')
    assert a != b
    assert remote._BACKUP_NAME_RE.search(a)
    assert remote._BACKUP_NAME_RE.search(a[:-7])    # older runs' names


# -- 8. the audit trail ---------------------------------------------------

def test_audit_default_path_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv('XDG_STATE_HOME', str(tmp_path))
    assert audit.default_path() == str(
        tmp_path / 'osc-cpumigrate' / 'audit.log')
    monkeypatch.setenv('XDG_STATE_HOME', 'relative')
    monkeypatch.setenv('HOME', str(tmp_path))
    assert audit.default_path() == str(
        tmp_path / '.local' / 'state' / 'osc-cpumigrate' / 'audit.log')


def test_audit_one_line_per_change_of_a_runbook(tmp_path):
    path = tmp_path / 'a' / 'audit.log'
    world = fakes.World()
    [server] = world.boot('intel-1', 1)
    recorder = audit.Recorder(str(path), cloud='lab', verb='test')

    def ctx():
        return world.context(audit=recorder)
    prepare.prepare(ctx(), 'intel-1', model='kvm64', destinations=['amd-1'])
    pin.pin(ctx(), 'intel-1', method='stop-start')
    migrate.migrate(ctx(), 'intel-1', destinations=['amd-1'])
    finalize.finalize(ctx(), 'amd-1')
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x['action'], x['result']) for x in lines] == [
        ('service-disabled', 'ok'), ('nova-conf-written', 'ok'),
        ('nova-compute-restarted', 'ok'),
        ('server-metadata-set', 'ok'), ('server-stopped', 'ok'),
        ('server-started', 'ok'), ('server-metadata-deleted', 'ok'),
        ('nova-conf-restored', 'ok'), ('nova-compute-restarted', 'ok'),
        ('migration-started', 'ok'),
        # finalize: stop-start by default too
        ('server-metadata-set', 'ok'), ('server-stopped', 'ok'),
        ('server-started', 'ok'), ('server-metadata-deleted', 'ok')]
    first = lines[0]
    assert set(first) >= {'time', 'user', 'client', 'cloud', 'verb', 'host',
                          'server', 'action', 'result'}
    assert first['host'] == 'intel-1' and first['cloud'] == 'lab'
    written = lines[1]
    assert written['sha256_before'] and written['sha256_after']
    assert lines[4]['server'] == server.id
    assert oct(path.stat().st_mode & 0o777) == '0o600'


def test_audit_records_a_failed_change():
    world = fakes.World()
    [server] = world.boot('intel-1', 1)
    world.compute.stop_server.side_effect = sdk_exc.HttpException(
        message='Conflict', http_status=409)
    recorder = audit.Recorder(None)
    ctx = world.context(audit=recorder)
    with pytest.raises(sdk_exc.HttpException):
        ctx.cloud.stop(server)
    [line] = recorder.lines
    assert line['action'] == 'server-stopped'
    assert line['result'].startswith('failed: ')


def test_unwritable_audit_log_fails_before_any_change(tmp_path):
    world = fakes.World()
    blocker = tmp_path / 'file'
    blocker.write_text('')
    recorder = audit.Recorder(str(blocker / 'audit.log'))
    with pytest.raises(WorkflowError, match='cannot write the audit log'):
        prepare.prepare(world.context(audit=recorder), 'intel-1',
                        model='kvm64')
    assert untouched(world)


# -- 10. bugs found by reading the code ----------------------------------

def test_known_hosts_ca_revoked_and_malformed_lines_never_crash(tmp_path):
    """They made paramiko raise InvalidHostKey for every verb; cpumigrate
    reads known_hosts itself now (host/knownhosts.py: CA lines are used,
    @revoked keys refused, malformed lines skipped with a warning)."""
    import paramiko

    known = tmp_path / 'known_hosts'
    known.write_text('good ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm1\n'
                     '@cert-authority *.example.com ssh-ed25519 '
                     'AAAAC3NzaC1lZDI1NTE5AAAAIHk\n'
                     '@revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk\n'
                     'not a known_hosts line\n')

    class Hop:
        ssh_config = {'userknownhostsfile': str(known),
                      'globalknownhostsfile': 'none'}
        client = paramiko.SSHClient()
        gateway = None
        original_host = 'intel-1'
        host = 'intel-1'
        port = 22
    judges = ssh._arm(Hop(), ssh.HostOptions())
    assert len(judges) == 1


def test_server_names_are_matched_exactly():
    world = fakes.World()
    [a, b] = world.boot('intel-1', 2)
    world.servers[a.id].name = 'db(1)'
    world.servers[b.id].name = 'db1'
    cloud = world.context().cloud
    assert cloud.find_server('db(1)').id == a.id
    assert cloud.find_server('db1').id == b.id
    with pytest.raises(WorkflowError, match="no server named or with ID"):
        cloud.find_server('db')


def test_migrate_follows_under_way_with_the_records_destination():
    p = fakes.pinned_world(active=1, stopped=0)
    world = p.world
    [server] = p.servers
    s = world.servers[server.id]
    world._record(s, 'live-migration', 'amd-2', 'running')
    s.status = 'MIGRATING'

    def done(*args, **kwargs):      # the migration ends while followed
        for rec in world.records:
            rec.status = 'completed'
        world.hosts['amd-2'].domains[s.id] = world.hosts[
            'intel-1'].domains.pop(s.id, None) or world.guest(s)
        s.status, s.compute_host = 'ACTIVE', 'amd-2'
        return iter(())
    world.compute.server_migrations.side_effect = done
    booked = []
    ctx = world.context()
    real = ctx.cloud.capacity
    ctx.cloud.capacity = lambda h: booked.append(h) or real(h)
    [row] = migrate.migrate(ctx, 'intel-1', destinations=['amd-1'])
    assert (row.result, row.destination) == ('live-migrated', 'amd-2')
    assert world.capacity['amd-1'].ram_mb == 65536


def test_failed_prepare_rerun_enables_the_service_an_earlier_run_disabled():
    world = fakes.World()
    host = world.hosts['intel-1']
    host.apply_transition('kvm64')        # an interrupted prepare
    world.services['intel-1'].status = 'disabled'
    world.services['intel-1'].disabled_reason = prepare.DEFAULT_REASON
    host.fail_start = True
    real = host.restart_nova_compute

    def restart():
        real()
        host.fail_start = False
    host.restart_nova_compute = restart
    with pytest.raises(WorkflowError, match='enabled again'):
        prepare.prepare(world.context(), 'intel-1', model='kvm64')
    assert world.services['intel-1'].status == 'enabled'


def test_server_deleted_during_a_wait_is_named_so():
    p = fakes.prepared_world(active=1, stopped=0)
    world = p.world
    [server] = p.servers

    def deleted(s, kind):
        world.servers.pop(server.id)
    world.compute.reboot_server.side_effect = deleted
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1', method='hard-reboot')
    [row] = exc.value.results
    assert 'was deleted during the hard-reboot' in row.reason
    assert 'refused' not in row.reason


def test_active_server_without_domain_fails_its_row_only():
    p = fakes.prepared_world(active=2, stopped=0)
    world = p.world
    lost, other = p.servers
    del world.hosts['intel-1'].domains[lost.id]
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1')
    results = {r.id: r for r in exc.value.results}
    assert results[lost.id].result == rows.FAILED
    assert 'no domain' in results[lost.id].reason
    assert results[other.id].result == rows.PINNED


@pytest.mark.parametrize('line, secret', [
    ('backend_argument = password:s3cret', 's3cret'),
    ('backend_argument = url:redis://:pw@redis:6379', 'pw'),
    ('transport_url = rabbit://nova:pa/ss@ctl:5672/', 'pa/ss'),
    ('transport_url = rabbit://nova:p,w@h1:5672,nova:x/y@h2:5672/', 'x/y'),
    ('connection = mysql+pymysql://nova:a,b/c@db/nova', 'a,b/c'),
])
def test_secrets_are_masked(line, secret):
    masked = novaconf.mask_text(line + '\n')
    assert secret not in masked and '***' in masked
    assert masked.count('\n') == 1


def test_multi_host_url_keeps_its_hosts():
    masked = novaconf.mask_text('t = rabbit://a:p1@h1:5672,b:p2@h2:5672/\n')
    assert re.fullmatch(r't = rabbit://a:\*\*\*@h1:5672,b:\*\*\*@h2:5672/\n',
                        masked)


# -- the options ------------------------------------------------------------

def test_break_lock_and_audit_log_options(monkeypatch, tmp_path):
    from unittest import mock

    from osc_cpumigrate.commands import base
    from osc_cpumigrate.commands import pin as pin_cmd
    from osc_cpumigrate.commands import prepare as prepare_cmd
    from osc_cpumigrate.commands import settings
    from osc_cpumigrate.commands import status as status_cmd

    monkeypatch.setenv('OS_CPUMIGRATE_AUDIT_LOG', str(tmp_path / 'env.log'))
    app = mock.Mock()
    parsed = prepare_cmd.PrepareHost(app, None).get_parser('x').parse_args(
        ['intel-1', '--cpu-model', 'kvm64', '--break-lock'])
    # the variable is read with the other settings (settings.resolve)
    assert parsed.break_lock and parsed.audit_log is None
    assert settings.resolve(parsed)['audit_log'] == str(tmp_path / 'env.log')
    parsed = pin_cmd.PinServers(app, None).get_parser('x').parse_args(
        ['intel-1', '--audit-log', '/x/a.log'])
    assert not parsed.break_lock and parsed.audit_log == '/x/a.log'
    with pytest.raises(SystemExit):      # read-only verbs take no lock
        status_cmd.ShowStatus(app, None).get_parser('x').parse_args(
            ['intel-1', '--cpu-model', 'kvm64', '--break-lock'])
    world = fakes.World()
    app.client_manager.cpumigrate.sdk_connection = world.conn
    app.options.cloud = 'prod'
    cmd = mock.Mock(app=app, cmd_name='cpumigrate pin')
    ctx = base.context(cmd, parsed)
    assert ctx.audit.path == '/x/a.log' and ctx.cloud.audit is ctx.audit
    assert (ctx.audit.cloud, ctx.audit.verb) == ('prod', 'cpumigrate pin')


def test_unreadable_lock_is_never_taken_over():
    world = fakes.World()
    world.hosts['intel-1'].lock = 'garbage'
    world.hosts['intel-1'].lock_age = 10 ** 6
    with pytest.raises(WorkflowError, match='remove it by hand'):
        prepare.prepare(world.context(break_lock=True), 'intel-1',
                        model='kvm64')
    assert untouched(world)
