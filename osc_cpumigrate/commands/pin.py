"""openstack cpumigrate pin: runbook steps 4-7."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class PinServers(command.Lister):
    _description = ('Restart the servers of a prepared host so they run the '
                    'transition CPU, then restore its nova.conf '
                    '(runbook steps 4-7)')

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            'host', metavar='<source-host>',
            help='Prepared compute host, as Nova names it')
        parser.add_argument(
            '--ignore-guest-floor', action='store_true',
            help='Restart servers even when their image or metadata says '
                 'they need more CPU than the transition CPU gives')
        base.add_restart_options(parser)
        base.add_long(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import pin

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, pin.pin(
            ctx, parsed_args.host, **base.restart_options(parsed_args),
            ignore_guest_floor=parsed_args.ignore_guest_floor))

    def present(self, parsed_args: argparse.Namespace, results: list):
        return base.present(parsed_args, 'PinRow', results)
