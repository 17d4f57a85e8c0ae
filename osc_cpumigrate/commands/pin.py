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

"""openstack cpumigrate pin: runbook steps 4-7."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class PinServers(command.Lister):
    _description = ('Restart a prepared host\'s servers onto the '
                    'transition CPU (runbook steps 4-7)')
    _epilog = """\
Restarts each ACTIVE server once (hard reboot by default), checks that its
libvirt domain has the transition CPU, then restores the original nova.conf
and restarts nova-compute.  Asks before restarting servers; without a
terminal, give ``--auto-approve``.

The destinations that decide which servers can move are those given with
``--destination``, else those ``prepare`` was given (its nova.conf marker
records them).

Example::

    openstack cpumigrate pin intel-1 --auto-approve

Next: ``openstack cpumigrate migrate intel-1 --destination amd-1
--destination amd-2`` (runbook step 8)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        parser.add_argument(
            'host', metavar='<source-host>',
            help='Prepared compute host, as Nova names it')
        parser.add_argument(
            '--ignore-guest-floor', action='store_true',
            help='Restart servers even when their image or metadata says '
                 'they need more CPU than the transition CPU gives')
        base.add_destinations(
            parser, required=False,
            help_='Destination host migrate will use (repeat for more): '
                  'a server no destination would accept is refused '
                  'before it is restarted (default: those prepare was '
                  'given; with none known, pin restarts nobody)')
        base.add_restart_options(parser, restarts_compute=True)
        base.add_long(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import pin

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, pin.pin(
            ctx, parsed_args.host, **base.restart_options(parsed_args),
            ignore_guest_floor=parsed_args.ignore_guest_floor,
            destinations=parsed_args.destinations))

    def present(self, parsed_args: argparse.Namespace, results: list):
        return base.present(parsed_args, 'PinRow', results)
