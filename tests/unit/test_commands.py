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

"""The commands: parsing, rows through cliff, errors as CommandError."""

import io
import json
import subprocess
import sys
from unittest import mock

import fixtures
from openstack import exceptions as sdk_exc
from osc_lib import exceptions as osc_exc

try:
    from osc_lib.test import base
except ImportError:     # osc-lib < 4.3 (tools/lower-bounds)
    from osc_lib.tests import utils as base

from osc_cpumigrate.commands import base as base_cmd
from osc_cpumigrate.commands import finalize
from osc_cpumigrate.commands import host
from osc_cpumigrate.commands import migrate
from osc_cpumigrate.commands import pin
from osc_cpumigrate.commands import prepare
from osc_cpumigrate.commands import status
from tests.unit import fakes


class CommandTest(base.TestCommand):

    def setUp(self):
        super().setUp()
        self.world = fakes.World()
        self.app.client_manager.cpumigrate = mock.Mock(
            sdk_connection=self.world.conn)
        self.app.stdin = io.StringIO()
        self.app.stderr = io.StringIO()
        opener = mock.patch('osc_cpumigrate.host.api.open_host',
                            side_effect=lambda n, o: self.world.hosts[n])
        self.open_host = opener.start()
        self.addCleanup(opener.stop)
        self.audit_log = self.useFixture(fixtures.TempDir()).join('audit')
        self.useFixture(fixtures.EnvironmentVariable(
            'OS_CPUMIGRATE_AUDIT_LOG', self.audit_log))
        # The simulated cloud answers at once; make waits instant.
        sleeper = mock.patch('time.sleep')
        sleeper.start()
        self.addCleanup(sleeper.stop)

    def run_cmd(self, cls, args, verify=()):
        cmd = cls(self.app, None)
        parsed = self.check_parser(cmd, args, list(verify))
        return cmd, parsed


class TestPrepare(CommandTest):

    def test_parser_and_rows(self):
        cmd, parsed = self.run_cmd(
            prepare.PrepareHost,
            ['intel-1', '--cpu-model', 'kvm64', '--cpu-flag', 'pcid',
             '--ssh-user', 'ops', '--no-sudo', '--profile', 'kolla'],
            [('host', 'intel-1'), ('cpu_model', 'kvm64'),
             ('cpu_flags', ['pcid']), ('dry_run', False)])
        columns, data = cmd.take_action(parsed)
        self.assertEqual('Host', columns[0])
        row = dict(zip(columns, list(data)[0], strict=True))
        self.assertEqual('kvm64 +1 flag', row['CPU After'].human_readable())
        self.assertEqual({'mode': 'custom', 'model': 'kvm64',
                          'flags': ['+pcid']},
                         row['CPU After'].machine_readable())
        self.assertEqual('prepared', row['Result'])
        opts = self.open_host.call_args[0][1]
        self.assertEqual('ops', opts.ssh_user)
        self.assertFalse(opts.sudo)
        self.assertEqual('kolla', opts.profile)
        self.assertNotEqual('', self.app.stderr.getvalue())

    def test_env_defaults(self):
        with mock.patch.dict('os.environ', {
                'OS_CPUMIGRATE_SSH_USER': 'envuser',
                'OS_CPUMIGRATE_INSECURE_SSH': '1',
                'OS_CPUMIGRATE_SSH_HOST_FORMAT': '{host}.mgmt'}):
            cmd, parsed = self.run_cmd(prepare.PrepareHost,
                                       ['intel-1', '--cpu-model', 'kvm64'])
            opts = base_cmd.host_options(parsed)
        self.assertEqual('envuser', opts.ssh_user)
        self.assertTrue(opts.insecure_ssh)
        self.assertEqual('{host}.mgmt', opts.ssh_host_format)

    def test_auto_without_destination_is_a_usage_error(self):
        cmd = prepare.PrepareHost(self.app, None)
        parser = cmd.get_parser('openstack cpumigrate prepare')
        for args in (['intel-1'], ['intel-1', '--cpu-model', 'auto']):
            with mock.patch('sys.stderr', io.StringIO()) as err:
                self.assertRaises(SystemExit, parser.parse_args, args)
            self.assertIn('--cpu-model auto (the default) needs the '
                          'destinations', err.getvalue())
        # an explicit model needs no destination
        parsed = parser.parse_args(['intel-1', '--cpu-model', 'kvm64'])
        self.assertEqual([], parsed.destinations)
        self.assertEqual('enabled', self.world.services['intel-1'].status)

    def test_unknown_host(self):
        cmd, parsed = self.run_cmd(prepare.PrepareHost,
                                   ['nope', '--cpu-model', 'kvm64'])
        exc = self.assertRaises(osc_exc.CommandError, cmd.take_action,
                                parsed)
        self.assertIn("unknown host 'nope'", str(exc))

    def test_forbidden_is_one_line_error(self):
        self.world.compute.services.side_effect = sdk_exc.ForbiddenException(
            message='Policy doesn\'t allow os_compute_api:os-services:list',
            http_status=403)
        cmd, parsed = self.run_cmd(prepare.PrepareHost,
                                   ['intel-1', '--cpu-model', 'kvm64'])
        exc = self.assertRaises(osc_exc.CommandError, cmd.take_action,
                                parsed)
        self.assertIn('HTTP 403', str(exc))
        self.assertIn('admin', str(exc))
        self.assertNotIn('\n', str(exc))

    def test_host_error_is_command_error(self):
        self.world.hosts['intel-1'].unreadable = True
        cmd, parsed = self.run_cmd(prepare.PrepareHost,
                                   ['intel-1', '--cpu-model', 'kvm64'])
        exc = self.assertRaises(osc_exc.CommandError, cmd.take_action,
                                parsed)
        self.assertIn('cannot read /etc/nova/nova.conf', str(exc))
        self.assertEqual('enabled', self.world.services['intel-1'].status)


class TestPin(CommandTest):

    def setUp(self):
        super().setUp()
        p = fakes.prepared_world(active=2, stopped=0)
        self.world = p.world
        self.app.client_manager.cpumigrate.sdk_connection = self.world.conn

    def test_refuses_without_terminal(self):
        cmd, parsed = self.run_cmd(pin.PinServers, ['intel-1'])
        exc = self.assertRaises(osc_exc.CommandError, cmd.take_action,
                                parsed)
        self.assertIn('--auto-approve', str(exc))
        self.world.compute.stop_server.assert_not_called()

    def test_asks_on_terminal(self):
        tty = mock.Mock()
        tty.isatty.return_value = True
        tty.readline.return_value = 'n\n'
        self.app.stdin = tty
        cmd, parsed = self.run_cmd(pin.PinServers, ['intel-1'])
        self.assertRaises(osc_exc.CommandError, cmd.take_action, parsed)
        self.assertIn('Proceed? [y/N]', self.app.stderr.getvalue())
        self.world.compute.stop_server.assert_not_called()
        tty.readline.return_value = 'yes\n'
        columns, data = cmd.take_action(parsed)
        self.assertEqual(2, self.world.compute.stop_server.call_count)
        self.world.compute.reboot_server.assert_not_called()

    def test_auto_approve_and_method(self):
        cmd, parsed = self.run_cmd(
            pin.PinServers,
            ['intel-1', '--auto-approve', '--method', 'hard-reboot',
             '--server', 'vm-1'],
            [('auto_approve', True), ('method', 'hard-reboot'),
             ('servers', ['vm-1'])])
        columns, data = cmd.take_action(parsed)
        result = columns.index('Result')
        self.assertEqual(['pinned'], [r[result] for r in data])

    def test_failure_prints_rows_then_fails(self):
        self.world.compute.stop_server.side_effect = (
            sdk_exc.HttpException(message='boom', http_status=409))
        cmd, parsed = self.run_cmd(pin.PinServers,
                                   ['intel-1', '--auto-approve'])
        cmd.produce_output = mock.Mock()
        exc = self.assertRaises(osc_exc.CommandError, cmd.take_action,
                                parsed)
        self.assertIn('boom', str(exc))
        # the rows are printed before the command fails
        columns, rows = cmd.produce_output.call_args[0][1:]
        row = dict(zip(columns, rows[0], strict=True))
        self.assertEqual('failed', row['Result'])
        self.assertIn('boom', row['Reason'])
        self.assertIn('1 of 2 servers failed', str(exc))

    def test_json_output_then_command_error(self):
        self.world.compute.stop_server.side_effect = (
            sdk_exc.HttpException(message='boom', http_status=409))
        self.app.stdout = io.StringIO()
        cmd, parsed = self.run_cmd(pin.PinServers,
                                   ['intel-1', '--auto-approve', '-f',
                                    'json'])
        self.assertRaises(osc_exc.CommandError, cmd.run, parsed)
        out = json.loads(self.app.stdout.getvalue())
        self.assertEqual(['failed', 'not-attempted'],
                         [r['Result'] for r in out])
        self.assertEqual({'ID', 'Name', 'Host', 'Status', 'Result', 'Reason',
                          'CPU Before', 'CPU After'}, set(out[1]))
        self.assertEqual('Skylake-Server-IBRS', out[0]['CPU Before']['model'])
        self.assertIsNone(out[0]['CPU After'])


class TestOtherVerbs(CommandTest):

    def test_migrate_requires_destination(self):
        cmd = migrate.MigrateServers(self.app, None)
        self.assertRaises(base.ParserException, self.check_parser, cmd,
                          ['intel-1'], [])

    def test_migrate_destination_is_source(self):
        cmd, parsed = self.run_cmd(migrate.MigrateServers,
                                   ['intel-1', '--destination', 'intel-1'])
        exc = self.assertRaises(osc_exc.CommandError, cmd.take_action,
                                parsed)
        self.assertIn('source itself', str(exc))

    def test_finalize_and_status_parse(self):
        self.run_cmd(finalize.FinalizeServers,
                     ['amd-1', '--dry-run', '--server', 'x'],
                     [('host', 'amd-1'), ('dry_run', True),
                      ('servers', ['x'])])
        cmd, parsed = self.run_cmd(status.ShowStatus, ['amd-1', '--long'],
                                   [('long', True)])
        columns, data = cmd.take_action(parsed)
        self.assertEqual('ID', columns[0])

    def test_host_show(self):
        self.app.stdout = io.StringIO()
        cmd, parsed = self.run_cmd(host.ShowHost, ['intel-1', '-f', 'json'])
        cmd.run(parsed)
        out = json.loads(self.app.stdout.getvalue())
        self.assertEqual('intel-1', out['Host'])
        self.assertEqual('normal', out['Nova Conf'])
        self.assertEqual({'mode': None, 'model': None, 'flags': []},
                         out['CPU'])


def test_plugin_and_commands_import_no_ssh_stack():
    """``openstack`` imports every command module on every run: none of
    them may pull in fabric, paramiko, invoke or configupdater."""
    code = (
        'import sys, json\n'
        'import osc_cpumigrate.plugin\n'
        'import importlib, importlib.metadata as md\n'
        'for ep in md.entry_points(group="openstack.cpumigrate.v1"):\n'
        '    ep.load()\n'
        'heavy = ("fabric", "paramiko", "invoke", "configupdater")\n'
        'print(json.dumps(sorted(m for m in sys.modules\n'
        '                        if m.split(".")[0] in heavy\n'
        '                        or m.startswith("osc_cpumigrate.workflow")\n'
        '                        or m.startswith("osc_cpumigrate.host")\n'
        '                        or m.startswith("osc_cpumigrate.cpu"))))\n')
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) == []
