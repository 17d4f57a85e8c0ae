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

"""openstack cpumigrate migrate: runbook step 8."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class MigrateServers(command.Lister):
    _description = ('Live-migrate the pinned servers of a host to the '
                    'destinations, one at a time (runbook step 8)')
    _epilog = """\
Each server goes to the destination with the most free RAM that fits it;
stopped servers are cold-migrated.  A migration still running after
``--timeout`` is aborted (or force-completed).

Example::

    openstack cpumigrate migrate intel-1 --destination amd-1 \\
        --destination amd-2

Next: ``openstack cpumigrate finalize amd-1`` and ``openstack cpumigrate
finalize amd-2`` (runbook steps 9-10)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        parser.add_argument(
            'host', metavar='<source-host>',
            help='Compute host to empty, as Nova names it')
        base.add_destinations(
            parser, required=True,
            help_='Destination compute host (repeat for more; each server '
                  'goes to the one with the most free RAM that fits it)')
        base.add_servers(parser)
        base.add_migration_timeout(parser)
        base.add_dry_run(parser)
        base.add_lock_options(parser)
        base.add_host_options(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import migrate

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, migrate.migrate(
            ctx, parsed_args.host, destinations=parsed_args.destinations,
            servers=parsed_args.servers, timeout=parsed_args.timeout,
            on_timeout=parsed_args.on_timeout, dry_run=parsed_args.dry_run))

    def present(self, parsed_args: argparse.Namespace, results: list):
        return base.present(parsed_args, 'MigrateRow', results)
