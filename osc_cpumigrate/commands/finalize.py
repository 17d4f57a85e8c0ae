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

"""openstack cpumigrate finalize: runbook steps 9-10."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class FinalizeServers(command.Lister):
    _description = ('Restart migrated servers so they get their new '
                    'host\'s own CPU (runbook steps 9-10)')
    _epilog = """\
Only servers that still run the transition CPU are restarted, one at a
time.  Asks before restarting servers; without a terminal, give
``--auto-approve``.

Example::

    openstack cpumigrate finalize amd-1 --auto-approve

Next: ``openstack cpumigrate status intel-1`` to see that the source is
empty, then ``openstack cpumigrate finalize`` for the other destinations."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        parser.add_argument(
            'host', metavar='<host>',
            help='Compute host the servers moved to, as Nova names it')
        base.add_restart_options(parser, restarts_compute=False)
        base.add_long(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import finalize

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, finalize.finalize(
            ctx, parsed_args.host, **base.restart_options(parsed_args)))

    def present(self, parsed_args: argparse.Namespace, results: list):
        return base.present(parsed_args, 'FinalizeRow', results)
