"""openstack cpumigrate status: where a host and its servers stand."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class ShowStatus(command.Lister):
    _description = ('Show the phase of every server on a host and whether '
                    'its nova.conf holds transition settings (read-only)')

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            'host', metavar='<host>',
            help='Compute host, as Nova names it')
        base.add_dry_run(parser, read_only=True)
        base.add_host_options(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import status

        ctx = base.context(self, parsed_args)
        return status.status(ctx, parsed_args.host)
