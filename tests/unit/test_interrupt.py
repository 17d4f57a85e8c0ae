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

"""SIGINT and SIGTERM during a verb: the rows so far in the requested
format, what is under way and what to run, exit 130 (143 for SIGTERM);
whatever the interruption left stopped, the next run starts."""

import io
import json
import os
import signal
import threading
from unittest import mock

import pytest

from osc_cpumigrate import errors
from osc_cpumigrate.commands import migrate as migrate_cmd
from osc_cpumigrate.commands import pin as pin_cmd
from osc_cpumigrate.commands import run as run_cmd
from osc_cpumigrate.types import Capacity
from osc_cpumigrate.workflow import fleet  # noqa: F401 - before time.sleep
from osc_cpumigrate.workflow import migrate
from osc_cpumigrate.workflow import pin
from osc_cpumigrate.workflow import stopkey
from tests.unit import fakes
from tests.unit.test_commands import CommandTest


def interrupt_after_stop(world, exc=KeyboardInterrupt):
    """The stop goes through, then the signal arrives (before the start)."""
    def stop(server):
        world._stop(server)
        raise exc()
    world.compute.stop_server.side_effect = stop


def test_pin_interrupted_rows_and_next_run_starts_it():
    p = fakes.prepared_world(active=3, stopped=0)
    world = p.world
    interrupt_after_stop(world)
    with pytest.raises(KeyboardInterrupt) as caught:
        pin.pin(world.context(), 'intel-1')
    found = caught.value.results
    assert [r.result for r in found] == ['interrupted', 'not-attempted',
                                         'not-attempted']
    assert 'the next "openstack cpumigrate pin intel-1" starts it' in (
        found[0].reason)
    assert caught.value.in_flight.startswith('vm-1 (')
    first = world.servers[p.servers[0].id]
    assert first.status == 'SHUTOFF' and stopkey.claimed(first)
    assert world.hosts['intel-1'].transitioned          # not restored
    world.compute.stop_server.side_effect = world._stop
    found = pin.pin(world.context(), 'intel-1')
    assert [r.result for r in found] == ['pinned'] * 3
    assert first.status == 'ACTIVE' and not stopkey.claimed(first)


def test_migrate_interrupted_names_the_live_migration():
    p = fakes.pinned_world(active=2, stopped=0)
    world = p.world
    world.hang_migration = True

    def live_migrate(server, host=None, **kwargs):
        world._live_migrate(server, host=host)
        raise KeyboardInterrupt
    world.compute.live_migrate_server.side_effect = live_migrate
    with pytest.raises(KeyboardInterrupt) as caught:
        migrate.migrate(world.context(), 'intel-1', destinations=['amd-1'])
    found = caught.value.results
    assert [r.result for r in found] == ['interrupted', 'not-attempted']
    assert 'keeps running in Nova' in found[0].reason
    assert 'openstack server migration abort %s' % p.servers[0].id in (
        found[0].reason)


class TestInterruptedCommand(CommandTest):

    def setUp(self):
        super().setUp()
        p = fakes.prepared_world(active=2, stopped=0)
        self.world = p.world
        self.app.client_manager.cpumigrate.sdk_connection = self.world.conn
        self.app.stdout = io.StringIO()

    def test_sigint_prints_json_rows_and_raises_for_130(self):
        interrupt_after_stop(self.world)
        cmd, parsed = self.run_cmd(pin_cmd.PinServers,
                                   ['intel-1', '--auto-approve', '-f',
                                    'json'])
        self.assertRaises(KeyboardInterrupt, cmd.run, parsed)
        out = json.loads(self.app.stdout.getvalue())
        self.assertEqual(['interrupted', 'not-attempted'],
                         [r['Result'] for r in out])
        self.assertIn('cpumigrate interrupted (SIGINT): vm-1',
                      self.app.stderr.getvalue())
        self.assertEqual(130, errors.SIGINT_EXIT)

    def test_sigterm_exits_143(self):
        def stop(server):
            self.world._stop(server)
            os.kill(os.getpid(), signal.SIGTERM)   # the handler raises
        self.world.compute.stop_server.side_effect = stop
        before = signal.getsignal(signal.SIGTERM)
        cmd, parsed = self.run_cmd(pin_cmd.PinServers,
                                   ['intel-1', '--auto-approve', '-f',
                                    'json'])
        exc = self.assertRaises(SystemExit, cmd.run, parsed)
        self.assertEqual(143, exc.code)
        out = json.loads(self.app.stdout.getvalue())
        self.assertEqual('interrupted', out[0]['Result'])
        self.assertIn('terminated (SIGTERM)', self.app.stderr.getvalue())
        self.assertIs(before, signal.getsignal(signal.SIGTERM))

    def test_interrupt_before_any_row_prints_an_empty_list(self):
        self.world.compute.services.side_effect = KeyboardInterrupt
        cmd, parsed = self.run_cmd(migrate_cmd.MigrateServers,
                                   ['intel-1', '--destination', 'amd-1',
                                    '-f', 'json'])
        self.assertRaises(KeyboardInterrupt, cmd.run, parsed)
        self.assertEqual([], json.loads(self.app.stdout.getvalue()))


def test_interrupted_keeps_the_innermost_rows():
    exc = errors.interrupted(KeyboardInterrupt(), ['inner'], 'x')
    errors.interrupted(exc, ['outer'], 'y')
    assert (exc.results, exc.in_flight) == (['inner'], 'x')


def test_status_interrupted_keeps_the_rows_so_far():
    from osc_cpumigrate.workflow import status
    p = fakes.prepared_world(active=2, stopped=0)
    host = p.world.hosts['intel-1']
    real = host.guest_cpu
    calls = []

    def guest_cpu(sid):
        calls.append(sid)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(sid)
    host.guest_cpu = guest_cpu
    with pytest.raises(KeyboardInterrupt) as caught:
        status.status(p.world.context(), 'intel-1')
    assert [r.id for r in caught.value.results] == [p.servers[0].id]


def test_prepare_interrupted_names_the_step():
    from osc_cpumigrate.workflow import prepare
    world = fakes.World()
    world.boot('intel-1')
    host = world.hosts['intel-1']
    host.restart_nova_compute = lambda: (_ for _ in ()).throw(
        KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt) as caught:
        prepare.prepare(world.context(), 'intel-1', model='kvm64')
    assert caught.value.results == []
    assert caught.value.in_flight.startswith(
        'intel-1: interrupted during disable service, write nova.conf, '
        'restart nova-compute; run "openstack cpumigrate prepare intel-1" '
        'again')


class TestInterruptedRun(CommandTest):
    """Ctrl-C or SIGTERM while ``run`` has live migrations under way on
    two sources: the rows so far, each server in flight named with the
    commands that follow or abort its migration, exit 130 or 143."""

    def setUp(self):
        super().setUp()
        for source in ('intel-1', 'intel-2'):
            self.world.boot(source, 2, prefix=source)
        capacity = mock.patch('osc_cpumigrate.cloud.Cloud.capacity',
                              return_value=Capacity(64, 65536, 1000))
        capacity.start()
        self.addCleanup(capacity.stop)
        self.world.hang_migration = True          # they keep running
        self.app.stdout = io.StringIO()

    def signal_when_both_migrate(self, signum):
        real = self.world.compute.live_migrate_server.side_effect
        started = []
        counted = threading.Lock()

        def live_migrate(server, **kw):
            with counted:       # one signal: both threads may reach len 2
                started.append(server)
                second = len(started) == 2
            real(server, **kw)
            if second:
                os.kill(os.getpid(), signum)      # reaches the main thread
        self.world.compute.live_migrate_server.side_effect = live_migrate
        return started

    def command(self):
        return self.run_cmd(run_cmd.RunFleet, [
            '--source', 'intel-1', '--source', 'intel-2', '--destination',
            'amd-1', '--destination', 'amd-2', '--parallel', '2',
            '--auto-approve', '-f', 'json'])

    def check_output(self, started, what):
        out = json.loads(self.app.stdout.getvalue())
        self.assertEqual(['interrupted', 'not-attempted'] * 2,
                         [r['Result'] for r in out])
        err = self.app.stderr.getvalue()
        self.assertIn('cpumigrate %s: ' % what, err)
        for server in started:
            self.assertIn('openstack server migration abort %s'
                          % server.id, err)

    def test_sigint_prints_rows_names_migrations_and_raises_for_130(self):
        started = self.signal_when_both_migrate(signal.SIGINT)
        cmd, parsed = self.command()
        self.assertRaises(KeyboardInterrupt, cmd.run, parsed)
        self.check_output(started, 'interrupted (SIGINT)')

    def test_sigterm_exits_143(self):
        started = self.signal_when_both_migrate(signal.SIGTERM)
        cmd, parsed = self.command()
        exc = self.assertRaises(SystemExit, cmd.run, parsed)
        self.assertEqual(143, exc.code)
        self.check_output(started, 'terminated (SIGTERM)')
