"""The verbs against a simulated cloud: logic, idempotence and error paths."""

import pytest

from osc_cpumigrate.errors import PartialFailure
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.workflow import finalize
from osc_cpumigrate.workflow import migrate
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import prepare
from osc_cpumigrate.workflow import status
from tests.unit import fakes


def as_dicts(result):
    columns, rows = result
    return [dict(zip(columns, row)) for row in rows]


def partial_rows(exc_info):
    exc = exc_info.value
    return [dict(zip(exc.columns, row)) for row in exc.rows]


# -- prepare -----------------------------------------------------------------

def test_prepare_disables_writes_restarts():
    world = fakes.World()
    host = world.hosts['intel-1']
    [row] = as_dicts(prepare.prepare(world.context(), 'intel-1', 'kvm64', (),
                                     None, False))
    assert row['Result'] == 'prepared'
    assert row['CPU After'] == 'custom kvm64'
    assert row['Backup'] == '/etc/nova/nova.conf.cpumigrate-1'
    service = world.services['intel-1']
    assert service.status == 'disabled'
    assert 'osc-cpumigrate' in service.disabled_reason
    assert host.calls.count('apply_transition') == 1
    assert host.calls.count('restart_nova_compute') == 1
    assert host.loaded.model == 'kvm64'
    assert host.closed


def test_prepare_rerun_changes_nothing():
    world = fakes.World()
    ctx = world.context()
    prepare.prepare(ctx, 'intel-1', 'kvm64', (), None, False)
    host = world.hosts['intel-1']
    host.calls.clear()
    [row] = as_dicts(prepare.prepare(ctx, 'intel-1', 'kvm64', (), None,
                                     False))
    assert row['Result'] == 'already prepared'
    assert 'apply_transition' not in host.calls
    assert 'restart_nova_compute' not in host.calls


def test_prepare_rerun_after_interrupted_restart_restarts():
    world = fakes.World()
    host = world.hosts['intel-1']
    host.apply_transition('kvm64')          # written, never restarted
    [row] = as_dicts(prepare.prepare(world.context(), 'intel-1', 'kvm64', (),
                                     None, False))
    assert row['Result'] == 'prepared'
    assert host.calls.count('apply_transition') == 1
    assert host.loaded.model == 'kvm64'


def test_prepare_dry_run_changes_nothing():
    world = fakes.World()
    host = world.hosts['intel-1']
    shown = []
    ctx = world.context(progress=shown.append)
    [row] = as_dicts(prepare.prepare(ctx, 'intel-1', 'kvm64', ('pcid',),
                                     None, True))
    assert row['Result'] == ('would disable service, write nova.conf, '
                             'restart nova-compute')
    assert row['CPU After'] == 'custom kvm64 pcid'
    assert world.services['intel-1'].status == 'enabled'
    assert not host.transitioned
    assert 'restart_nova_compute' not in host.calls
    assert any('+++' in s for s in shown)        # the diff went to progress


def test_prepare_restores_when_compute_does_not_come_back():
    world = fakes.World()
    host = world.hosts['intel-1']
    host.fail_start = True
    real_restart = host.restart_nova_compute

    def restart():
        # the old process reports once more while systemd stops it: a
        # heartbeat newer than the moment the restart was asked for
        world.heartbeat('intel-1')
        real_restart()
        host.fail_start = False     # the original config starts again
    host.restart_nova_compute = restart
    with pytest.raises(WorkflowError) as exc:
        prepare.prepare(world.context(), 'intel-1', 'Haswell', (), None,
                        False)
    msg = str(exc.value)
    assert 'did not report up' in msg
    assert 'original nova.conf was restored' in msg
    assert 'enabled again' in msg
    assert not host.transitioned
    assert host.calls.count('restore_original') == 1
    assert world.services['intel-1'].status == 'enabled'


def test_prepare_unknown_host_changes_nothing():
    world = fakes.World()
    with pytest.raises(WorkflowError, match="unknown host 'nope'"):
        prepare.prepare(world.context(), 'nope', 'kvm64', (), None, False)
    assert all(s.status == 'enabled' for s in world.services.values())


def test_prepare_unreadable_conf_changes_nothing():
    world = fakes.World()
    world.hosts['intel-1'].unreadable = True
    from osc_cpumigrate.host.api import HostError
    with pytest.raises(HostError, match='cannot read'):
        prepare.prepare(world.context(), 'intel-1', 'kvm64', (), None, False)
    assert world.services['intel-1'].status == 'enabled'
    world.compute.disable_service.assert_not_called()


# -- pin ---------------------------------------------------------------------

def test_pin_restarts_active_servers_and_restores_conf():
    p = fakes.prepared_world(active=2, stopped=1)
    host = p.world.hosts['intel-1']
    rows = as_dicts(pin.pin(p.world.context(), 'intel-1', [], 'hard-reboot',
                            False))
    assert [r['Result'] for r in rows] == ['skipped: SHUTOFF', 'pinned',
                                           'pinned']
    assert all(p.world.guest(s).model == 'kvm64' for s in p.servers[:2])
    assert not host.transitioned
    assert host.loaded.mode is None        # restarted with the original
    assert p.world.compute.reboot_server.call_count == 2


def test_pin_stop_start_method():
    p = fakes.prepared_world(active=1, stopped=0)
    pin.pin(p.world.context(), 'intel-1', [], 'stop-start', False)
    p.world.compute.stop_server.assert_called_once()
    p.world.compute.start_server.assert_called_once()
    assert p.world.guest(p.servers[0]).model == 'kvm64'


def test_pin_rerun_changes_nothing():
    p = fakes.prepared_world(active=2, stopped=0)
    ctx = p.world.context()
    pin.pin(ctx, 'intel-1', [], 'hard-reboot', False)
    p.world.compute.reboot_server.reset_mock()
    rows = as_dicts(pin.pin(ctx, 'intel-1', [], 'hard-reboot', False))
    assert {r['Result'] for r in rows} == {'already pinned'}
    p.world.compute.reboot_server.assert_not_called()


def test_pin_needs_prepare():
    world = fakes.World()
    world.boot('intel-1', 2)
    with pytest.raises(WorkflowError, match='not prepared'):
        pin.pin(world.context(), 'intel-1', [], 'hard-reboot', False)
    world.compute.reboot_server.assert_not_called()


def test_pin_needs_restart_after_transition():
    world = fakes.World()
    world.boot('intel-1', 1)
    world.hosts['intel-1'].apply_transition('kvm64')   # not restarted
    with pytest.raises(WorkflowError, match='has not been restarted'):
        pin.pin(world.context(), 'intel-1', [], 'hard-reboot', False)
    world.compute.reboot_server.assert_not_called()


def test_pin_server_not_on_host():
    p = fakes.prepared_world(active=1, stopped=0)
    other = p.world.boot('intel-2', 1)[0]
    with pytest.raises(WorkflowError, match='is on intel-2'):
        pin.pin(p.world.context(), 'intel-1', [other.name], 'hard-reboot',
                False)
    p.world.compute.reboot_server.assert_not_called()


def test_pin_dry_run_and_refusal_without_approval():
    p = fakes.prepared_world(active=2, stopped=0)
    rows = as_dicts(pin.pin(p.world.context(), 'intel-1', [], 'hard-reboot',
                            True))
    assert {r['Result'] for r in rows} == {'would restart (hard-reboot)'}
    ctx = p.world.context(confirm=lambda q: False)
    with pytest.raises(WorkflowError, match='not confirmed'):
        pin.pin(ctx, 'intel-1', [], 'hard-reboot', False)
    p.world.compute.reboot_server.assert_not_called()
    assert p.world.hosts['intel-1'].transitioned


def test_pin_failed_restart_stops_and_keeps_transition():
    p = fakes.prepared_world(active=3, stopped=0)
    world = p.world

    def broken(server, kind):
        world.servers[server.id].status = 'ERROR'
        world.servers[server.id].fault = {'message': 'boom'}
    world.compute.reboot_server.side_effect = broken
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1', [], 'hard-reboot', False)
    results = [r['Result'] for r in partial_rows(exc)]
    assert results[0].startswith('failed: ')
    assert results[1:] == ['not restarted: the run stopped'] * 2
    assert world.hosts['intel-1'].transitioned     # a re-run carries on


def test_pin_guest_floor_refuses_but_restores():
    p = fakes.prepared_world(active=2, stopped=0)
    first = p.servers[0]

    def floor(server, settings, host):
        return 'needs x86-64-v2' if server.id == first.id else None
    with pytest.raises(PartialFailure) as exc:
        pin.pin(p.world.context(), 'intel-1', [], 'hard-reboot', False,
                floor_check=floor)
    rows = partial_rows(exc)
    assert rows[0]['Result'] == 'refused: needs x86-64-v2'
    assert rows[1]['Result'] == 'pinned'
    assert p.world.guest(first).model == 'Skylake-Server-IBRS'
    assert not p.world.hosts['intel-1'].transitioned


# -- migrate -----------------------------------------------------------------

def pinned_world(active=2, stopped=1):
    p = fakes.prepared_world(active=active, stopped=stopped)
    pin.pin(p.world.context(), 'intel-1', [], 'hard-reboot', False)
    return p


def test_migrate_live_and_cold():
    p = pinned_world()
    rows = as_dicts(migrate.migrate(p.world.context(), 'intel-1',
                                    ['amd-1', 'amd-2'], [], 60, 'abort',
                                    False))
    assert sorted(r['Result'] for r in rows) == [
        'cold-migrated', 'live-migrated', 'live-migrated']
    # spread by free capacity: the two live ones go to different hosts
    assert {r['Destination'] for r in rows} == {'amd-1', 'amd-2'}
    for s in p.servers:
        assert p.world.servers[s.id].compute_host.startswith('amd')
    off = p.world.servers[p.servers[-1].id]
    assert off.status == 'SHUTOFF'
    p.world.compute.live_migrate_server.assert_called_with(
        p.servers[1], host=rows[2]['Destination'], block_migration='auto')


def test_migrate_refuses_unpinned_and_bad_destinations():
    world = fakes.World()
    world.boot('intel-1', 1)
    ctx = world.context()
    with pytest.raises(PartialFailure) as exc:
        migrate.migrate(ctx, 'intel-1', ['amd-1'], [], 60, 'abort', False)
    assert partial_rows(exc)[0]['Result'].startswith('refused: not pinned')
    world.compute.live_migrate_server.assert_not_called()
    with pytest.raises(WorkflowError, match='source itself'):
        migrate.migrate(ctx, 'intel-1', ['intel-1'], [], 60, 'abort', False)
    world.services['amd-1'].status = 'disabled'
    with pytest.raises(WorkflowError, match='amd-1 is disabled'):
        migrate.migrate(ctx, 'intel-1', ['amd-1'], [], 60, 'abort', False)
    world.hosts['amd-2'].running = False
    world.services['amd-2'].state = 'down'
    with pytest.raises(WorkflowError, match='amd-2 is down'):
        migrate.migrate(ctx, 'intel-1', ['amd-2'], [], 60, 'abort', False)
    with pytest.raises(WorkflowError, match='unknown host'):
        migrate.migrate(ctx, 'intel-1', ['amd-9'], [], 60, 'abort', False)


def test_migrate_failure_stops_with_reason_from_events():
    p = pinned_world(active=2, stopped=0)
    p.world.fail_migration = ("Unacceptable CPU info: CPU doesn't have "
                              "compatibility.")
    with pytest.raises(PartialFailure) as exc:
        migrate.migrate(p.world.context(), 'intel-1', ['amd-1'], [], 60,
                        'abort', False)
    rows = partial_rows(exc)
    assert 'Unacceptable CPU info' in rows[0]['Result']
    assert rows[1]['Result'] == 'not migrated: the run stopped'
    assert 'Unacceptable CPU info' in str(exc.value)
    assert all(p.world.servers[s.id].compute_host == 'intel-1'
               for s in p.servers)


def test_migrate_timeout_aborts():
    p = pinned_world(active=1, stopped=0)
    p.world.hang_migration = True
    with pytest.raises(PartialFailure) as exc:
        migrate.migrate(p.world.context(), 'intel-1', ['amd-1'], [], 10,
                        'abort', False)
    assert p.world.aborted == [p.servers[0].id]
    assert 'cancelled' in partial_rows(exc)[0]['Result']


def test_migrate_dry_run_and_rerun():
    p = pinned_world()
    ctx = p.world.context()
    rows = as_dicts(migrate.migrate(ctx, 'intel-1', ['amd-1'], [], 60,
                                    'abort', True))
    assert sorted(r['Result'] for r in rows) == [
        'would cold-migrate', 'would live-migrate', 'would live-migrate']
    p.world.compute.live_migrate_server.assert_not_called()
    migrate.migrate(ctx, 'intel-1', ['amd-1'], [], 60, 'abort', False)
    assert migrate.migrate(ctx, 'intel-1', ['amd-1'], [], 60, 'abort',
                           False)[1] == []


def test_migrate_no_room():
    p = pinned_world(active=1, stopped=0)
    p.world.capacity['amd-1'] = fakes.Capacity(0, 0, 0)
    with pytest.raises(PartialFailure, match='no destination has room'):
        migrate.migrate(p.world.context(), 'intel-1', ['amd-1'], [], 60,
                        'abort', False)


# -- finalize and status -----------------------------------------------------

def migrated_world():
    p = pinned_world(active=2, stopped=1)
    migrate.migrate(p.world.context(), 'intel-1', ['amd-1'], [], 60,
                    'abort', False)
    return p


def test_finalize_restarts_pinned_guests_onto_host_cpu():
    p = migrated_world()
    ctx = p.world.context()
    rows = as_dicts(status.status(ctx, 'amd-1'))
    assert [r['Phase'] for r in rows] == [
        'normal', 'skipped: SHUTOFF', 'migrated-pinned', 'migrated-pinned']
    rows = as_dicts(finalize.finalize(ctx, 'amd-1', [], 'hard-reboot',
                                      False))
    assert [r['Result'] for r in rows] == ['skipped: SHUTOFF', 'finalized',
                                           'finalized']
    assert p.world.guest(p.servers[0]).model == 'EPYC-Rome'
    rows = as_dicts(status.status(ctx, 'amd-1'))
    assert [r['Phase'] for r in rows][2:] == ['finalized', 'finalized']
    p.world.compute.reboot_server.reset_mock()
    rows = as_dicts(finalize.finalize(ctx, 'amd-1', [], 'hard-reboot',
                                      False))
    assert rows[1]['Result'] == 'already finalized'
    p.world.compute.reboot_server.assert_not_called()


def test_finalize_dry_run_and_transitioned_host():
    p = migrated_world()
    ctx = p.world.context()
    rows = as_dicts(finalize.finalize(ctx, 'amd-1', [], 'hard-reboot', True))
    assert rows[1]['Result'] == 'would restart (hard-reboot)'
    p.world.compute.reboot_server.reset_mock()
    p.world.hosts['amd-1'].apply_transition('kvm64')
    with pytest.raises(WorkflowError, match='still holds transition'):
        finalize.finalize(ctx, 'amd-1', [], 'hard-reboot', False)
    p.world.compute.reboot_server.assert_not_called()


def test_status_on_source_phases():
    p = fakes.prepared_world(active=1, stopped=1)
    ctx = p.world.context()
    rows = as_dicts(status.status(ctx, 'intel-1'))
    assert rows[0]['Kind'] == 'host'
    assert rows[0]['Phase'] == 'transition'
    assert rows[0]['Status'].startswith('disabled')
    assert [r['Phase'] for r in rows[1:]] == ['skipped: SHUTOFF', 'unpinned']
    pin.pin(ctx, 'intel-1', [], 'hard-reboot', False)
    rows = as_dicts(status.status(ctx, 'intel-1'))
    assert rows[0]['Phase'] == 'normal'
    assert rows[2]['Phase'] == 'pinned'
    assert rows[2]['CPU'] == 'kvm64'


def test_polling_survives_transient_api_errors():
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as sdk_exc
    p = pinned_world(active=1, stopped=0)
    world = p.world
    real = world.compute.migrations.side_effect
    errors = [ks_exc.ConnectFailure('Connection reset by peer'),
              sdk_exc.HttpException(message='bad gateway', http_status=502)]

    def flaky(**query):
        if errors:
            raise errors.pop(0)
        return real(**query)
    world.compute.migrations.side_effect = flaky
    rows = as_dicts(migrate.migrate(world.context(), 'intel-1', ['amd-1'],
                                    [], 60, 'abort', False))
    assert rows[0]['Result'] == 'live-migrated'
    assert errors == []
    world.compute.migrations.side_effect = sdk_exc.HttpException(
        message='nope', http_status=500)
    with pytest.raises(sdk_exc.HttpException):
        world.context().cloud.migrations(p.servers[0], 'live-migration')


# -- review findings: states an interrupted or unlucky run leaves ------------

def test_stop_start_never_leaves_a_server_silently_stopped():
    from openstack import exceptions as sdk_exc
    p = fakes.prepared_world(active=1, stopped=0)
    world = p.world
    world.compute.start_server.side_effect = sdk_exc.HttpException(
        message='conflict', http_status=409)
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1', [], 'stop-start', False)
    assert world.compute.start_server.call_count == 2      # tried again
    assert 'was stopped by cpumigrate' in str(exc.value)
    assert 'openstack server start' in str(exc.value)
    assert world.hosts['intel-1'].transitioned            # re-run carries on


def test_pin_busy_server_fails_and_keeps_transition():
    p = fakes.prepared_world(active=2, stopped=0)
    world = p.world
    world.servers[p.servers[0].id].status = 'HARD_REBOOT'
    world.servers[p.servers[0].id].task_state = 'rebooting_hard'
    with pytest.raises(PartialFailure) as exc:
        pin.pin(world.context(), 'intel-1', [], 'hard-reboot', False)
    rows = partial_rows(exc)
    assert rows[0]['Result'].startswith('busy: HARD_REBOOT')
    assert rows[1]['Result'] == 'pinned'
    assert world.hosts['intel-1'].transitioned


def test_pin_one_server_keeps_transition_for_the_others():
    p = fakes.prepared_world(active=2, stopped=0)
    world = p.world
    rows = as_dicts(pin.pin(world.context(), 'intel-1', [p.servers[0].name],
                            'hard-reboot', False))
    assert rows == [dict(rows[0], Result='pinned')]
    assert world.hosts['intel-1'].transitioned
    pin.pin(world.context(), 'intel-1', [p.servers[1].name], 'hard-reboot',
            False)
    assert not world.hosts['intel-1'].transitioned


def test_finalize_leaves_servers_that_did_not_arrive_live():
    p = pinned_world(active=1, stopped=0)
    # pointed at the source by mistake: the pinned server stays pinned
    rows = as_dicts(finalize.finalize(p.world.context(), 'intel-1', [],
                                      'hard-reboot', False))
    assert rows[0]['Result'] == 'skipped: did not arrive by live migration'
    p.world.compute.reboot_server.assert_called_once()     # pin's only


def test_migrate_confirms_cold_migration_an_interrupted_run_left():
    p = pinned_world(active=0, stopped=1)
    world = p.world
    off = p.servers[0]
    world.compute.migrate_server(off, host='amd-1')        # then interrupted
    assert world.servers[off.id].status == 'VERIFY_RESIZE'
    rows = as_dicts(migrate.migrate(world.context(), 'intel-1', ['amd-2'],
                                    [], 60, 'abort', False))
    assert rows == [dict(rows[0], Destination='amd-1',
                         Result='cold-migrated')]
    assert world.servers[off.id].status == 'SHUTOFF'
    world.compute.migrate_server.assert_called_once()      # not again


def test_migrate_fails_for_servers_it_cannot_move():
    p = pinned_world(active=1, stopped=0)
    world = p.world
    paused = world.boot('intel-1', 1, prefix='paused')[0]
    world.servers[paused.id].status = 'PAUSED'
    with pytest.raises(PartialFailure, match='stays on intel-1: PAUSED'):
        migrate.migrate(world.context(), 'intel-1', ['amd-1'], [], 60,
                        'abort', False)
    assert world.servers[p.servers[0].id].compute_host == 'amd-1'


def test_migrate_abort_refused_keeps_following():
    from openstack import exceptions as sdk_exc
    p = pinned_world(active=1, stopped=0)
    world = p.world
    world.hang_migration = True
    world.compute.abort_server_migration.side_effect = (
        sdk_exc.HttpException(message='not abortable', http_status=400))
    shown = []
    with pytest.raises(PartialFailure, match='did not finish'):
        migrate.migrate(world.context(progress=shown.append), 'intel-1',
                        ['amd-1'], [], 10, 'abort', False)
    assert any('abort refused' in line for line in shown)


def test_migrate_reports_progress_with_memory():
    from openstack.compute.v2 import server_migration
    p = pinned_world(active=1, stopped=0)
    world = p.world
    world.hang_migration = True
    polls = []

    def progress(server):
        polls.append(1)
        if len(polls) == 3:          # the migration ends after a while
            for rec in world.records:
                rec.status = 'completed'
            s = world.servers[server.id]
            world.hosts['amd-1'].domains[s.id] = world.hosts[
                'intel-1'].domains.pop(s.id)
            s.status, s.compute_host = 'ACTIVE', 'amd-1'
        return iter([server_migration.ServerMigration(
            id='1', memory_total_bytes=2 * 2**30,
            memory_processed_bytes=len(polls) * 2**29)])
    world.compute.server_migrations.side_effect = progress
    shown = []
    rows = as_dicts(migrate.migrate(world.context(progress=shown.append),
                                    'intel-1', ['amd-1'], [], 600, 'abort',
                                    False))
    assert rows[0]['Result'] == 'live-migrated'
    lines = [s for s in shown if 'migrating for' in s]
    assert lines and 'memory 512/2048 MiB' in lines[0]
    assert lines[0].startswith(p.servers[0].name)


def test_a_server_an_interrupted_stop_start_left_stopped_is_started():
    p = fakes.prepared_world(active=2, stopped=1)
    world = p.world
    first, second, off = p.servers
    real_start = world.compute.start_server.side_effect

    def crash(server):             # the run dies between stop and start
        raise KeyboardInterrupt
    world.compute.start_server.side_effect = crash
    with pytest.raises(KeyboardInterrupt):
        pin.pin(world.context(), 'intel-1', [], 'stop-start', False)
    assert world.servers[first.id].status == 'SHUTOFF'
    assert 'cpumigrate:stopped' in world.servers[first.id].metadata
    # migrate will not carry it off stopped
    with pytest.raises(PartialFailure, match='stopped by an interrupted pin'):
        migrate.migrate(world.context(), 'intel-1', ['amd-1'], [], 60,
                        'abort', True)
    world.compute.start_server.side_effect = real_start
    rows = as_dicts(pin.pin(world.context(), 'intel-1', [], 'stop-start',
                            False))
    results = {r['Server']: r['Result'] for r in rows}
    assert results[first.id] == 'pinned'
    assert results[second.id] == 'pinned'
    assert results[off.id] == 'skipped: SHUTOFF'     # the customer's own
    assert world.servers[first.id].status == 'ACTIVE'
    assert world.servers[first.id].metadata == {}
    assert world.guest(world.servers[first.id]).model == 'kvm64'
