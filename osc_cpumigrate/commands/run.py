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

"""openstack cpumigrate run: the whole runbook for many sources."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.commands import plan as plan_command
from osc_cpumigrate.errors import translate_errors


class RunFleet(command.Lister):
    _description = ('Empty the source hosts: prepare, pin, live-migrate one '
                    'server at a time per source and finalize each on '
                    'arrival, up to --parallel sources at once')
    _epilog = """\
The whole runbook for many sources: prepare, pin, migrate, and finalize
each server as soon as it has arrived.  It can be run again after an
interruption: it carries on from what the cloud and the hosts show.

Example::

    openstack cpumigrate run --source intel-1 --source intel-2 \\
        --destination amd-1 --destination amd-2 --parallel 2

Next: ``openstack cpumigrate status`` on each source and destination."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        plan_command.add_fleet_arguments(parser)
        parser.add_argument(
            '--parallel', metavar='<count>', type=int, default=1,
            help='How many sources to work on at once (default: 1)')
        parser.add_argument(
            '--migrations-per-source', metavar='<count>', type=int,
            default=1, dest='per_source',
            help='How many servers each source live-migrates at once '
                 '(default: 1); never more than the source\'s nova.conf '
                 '[DEFAULT] max_concurrent_live_migrations (Nova\'s '
                 'default 1; 0 leaves it to this option)')
        base.add_migration_timeout(parser)
        base.add_method(parser)
        base.add_auto_approve(parser)
        base.add_dry_run(parser)
        base.add_lock_options(parser)
        base.add_host_options(parser, restarts_compute=True)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import fleet

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, fleet.run(
            ctx, **plan_command.fleet_options(parsed_args),
            parallel=parsed_args.parallel, per_source=parsed_args.per_source,
            method=parsed_args.method,
            timeout=parsed_args.timeout, on_timeout=parsed_args.on_timeout,
            dry_run=parsed_args.dry_run))

    def present(self, parsed_args: argparse.Namespace, results: list):
        kind = 'PlanRow' if parsed_args.dry_run else 'FleetRow'
        return base.present(parsed_args, kind, results)
