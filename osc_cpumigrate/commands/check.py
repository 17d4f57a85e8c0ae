"""openstack cpumigrate check: the read-only pre-flight check."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class CheckHost(command.Lister):
    _description = ('Check that servers of a source host can move to the '
                    'destination(s) and which transition CPU to use '
                    '(read-only)')

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            'host', metavar='<source-host>',
            help='Compute host to empty, as Nova names it')
        base.add_cpu_arguments(parser)
        base.add_dry_run(parser, read_only=True)
        base.add_host_options(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import check

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, check.check(
            ctx, parsed_args.host, destinations=parsed_args.destinations,
            model=parsed_args.cpu_model, flags=parsed_args.cpu_flags))

    def present(self, parsed_args: argparse.Namespace, results: list):
        return base.present(parsed_args, 'CheckRow', results)
