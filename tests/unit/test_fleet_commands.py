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

"""The plan and run commands: parsing, rows through cliff, -q, errors."""

import io
from unittest import mock

from osc_lib import exceptions as osc_exc

from osc_cpumigrate.commands import plan
from osc_cpumigrate.commands import run
from osc_cpumigrate.types import Capacity
from tests.unit.test_commands import CommandTest

HOSTS = ['--source', 'intel-1', '--source', 'intel-2',
         '--destination', 'amd-1', '--destination', 'amd-2']


class TestFleetCommands(CommandTest):

    def setUp(self):
        super().setUp()
        capacity = mock.patch('osc_cpumigrate.cloud.Cloud.capacity',
                              return_value=Capacity(64, 65536, 1000))
        capacity.start()
        self.addCleanup(capacity.stop)
        for source in ('intel-1', 'intel-2'):
            self.world.boot(source, 1, prefix=source)

    def test_plan_rows(self):
        cmd, parsed = self.run_cmd(
            plan.PlanFleet, HOSTS,
            [('sources', ['intel-1', 'intel-2']), ('finalize', 'now')])
        columns, data = cmd.take_action(parsed)
        self.assertEqual(('ID', 'Name', 'Host', 'Status', 'Result', 'Reason',
                          'Source', 'Destination', 'Steps', 'Estimate'),
                         columns)
        results = {dict(zip(columns, r, strict=True))['Result']
                   for r in data}
        self.assertEqual({'would-live-migrate'}, results)
        self.assertIn('migration times estimated',
                      self.app.stderr.getvalue())

    def test_run_rows_quiet_and_approval(self):
        cmd, parsed = self.run_cmd(run.RunFleet, HOSTS + ['--parallel', '2'],
                                   [('parallel', 2), ('auto_approve', False)])
        self.assertRaises(osc_exc.CommandError, cmd.take_action, parsed)
        cmd, parsed = self.run_cmd(
            run.RunFleet, HOSTS + ['--auto-approve', '--finalize', 'later'])
        self.app.options = mock.Mock(verbose_level=0, debug=False)
        self.app.stderr = io.StringIO()
        columns, data = cmd.take_action(parsed)
        self.assertEqual('Seconds', columns[-1])
        results = [dict(zip(columns, r, strict=True))['Result']
                   for r in data]
        self.assertEqual(['live-migrated'] * 2, results)
        self.assertEqual('', self.app.stderr.getvalue())
        cmd, parsed = self.run_cmd(run.RunFleet, HOSTS + ['--dry-run'])
        columns, _data = cmd.take_action(parsed)
        self.assertEqual('Estimate', columns[-1])
