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

"""openstack cpumigrate status: where the servers of a host stand."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class ShowStatus(command.Lister):
    _description = ('Show where a host and each of its servers stand '
                    '(read-only)')
    _epilog = """\
Works at any time, before, during and after a migration: it changes nothing.

Example::

    openstack cpumigrate status intel-1

Each row is a server with its phase: ``unpinned``, ``pinned``,
``migrated-pinned`` or ``finalized``.  The host itself (service, nova.conf,
backup) is ``openstack cpumigrate host show intel-1``.

Next: ``openstack cpumigrate pin intel-1`` for ``unpinned`` servers on a
prepared source, ``migrate`` for ``pinned`` ones, ``finalize`` on the
destination for ``migrated-pinned`` ones; ``finalized`` servers are done."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        parser.add_argument(
            'host', metavar='<host>',
            help='Compute host, as Nova names it')
        base.add_dry_run(parser, read_only=True)
        base.add_host_options(parser)
        base.add_long(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import status

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, status.status(ctx, parsed_args.host))

    def present(self, parsed_args: argparse.Namespace, results: list):
        return base.present(parsed_args, 'StatusRow', results)
