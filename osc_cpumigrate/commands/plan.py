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

"""openstack cpumigrate plan: the fleet's plan, read-only."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """What plan and run share: sources, destinations, the CPU, floors."""
    parser.add_argument(
        '--source', metavar='<host>', action='append', dest='sources',
        required=True,
        help='Compute host to empty (repeat for more)')
    parser.add_argument(
        '--destination', metavar='<host>', action='append',
        dest='destinations', required=True,
        help='Destination compute host (repeat for more); servers are '
             'packed by free RAM from Placement, server groups honoured')
    parser.add_argument(
        '--cpu-model', metavar='<model>', default='auto',
        help='Transition CPU for prepare: auto (default) or a model')
    parser.add_argument(
        '--cpu-flag', metavar='<flag>', action='append', default=[],
        dest='cpu_flags',
        help='Extra CPU flag with an explicit --cpu-model (repeat)')
    parser.add_argument(
        '--finalize', metavar='<when>', choices=('now', 'later'),
        default='now',
        help='now (default): restart each live-migrated server on its '
             'destination as soon as it arrives; later: leave that to '
             '"openstack cpumigrate finalize"')
    parser.add_argument(
        '--ignore-guest-floor', action='store_true',
        help='Pin servers even when their guest needs more CPU than the '
             'transition CPU gives')


def fleet_options(parsed_args: argparse.Namespace) -> dict:
    return {'sources': parsed_args.sources,
            'destinations': parsed_args.destinations,
            'model': parsed_args.cpu_model, 'flags': parsed_args.cpu_flags,
            'finalize': parsed_args.finalize,
            'ignore_guest_floor': parsed_args.ignore_guest_floor}


class PlanFleet(command.Lister):
    _description = ('Plan the move of every server of the source hosts: '
                    'destination, steps, refusals and migration time '
                    '(read-only)')
    _epilog = """\
Before a fleet run: review where every server goes and what happens to it.

Example::

    openstack cpumigrate plan --source intel-1 --source intel-2 \\
        --destination amd-1 --destination amd-2 -f json

A server that cannot move is ``refused`` with its reason, and the command
exits 1, so a pipeline can gate on it.

Next: ``openstack cpumigrate run`` with the same hosts."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        add_fleet_arguments(parser)
        base.add_dry_run(parser, read_only=True)
        base.add_host_options(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import plan

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, plan.plan(
            ctx, **fleet_options(parsed_args)))

    def present(self, parsed_args: argparse.Namespace, results: list):
        return base.present(parsed_args, 'PlanRow', results)
