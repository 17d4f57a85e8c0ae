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

"""openstack cpumigrate check: the read-only pre-flight check."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class CheckHost(command.Lister):
    _description = ('Check whether a host\'s servers can move to the '
                    'destinations, and with which CPU (read-only)')
    _epilog = """\
Run it first, and again whenever the hosts change: it changes nothing, and
exits 1 when any check fails, so a pipeline can gate on it.

Example::

    openstack cpumigrate check intel-1 --destination amd-1 \\
        --destination amd-2

Next: ``openstack cpumigrate prepare intel-1 --destination amd-1
--destination amd-2`` (runbook steps 1-3)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        parser.add_argument(
            'host', metavar='<source-host>',
            help='Compute host to empty, as Nova names it')
        base.add_cpu_arguments(parser, destinations_required=True)
        base.add_dry_run(parser, read_only=True)
        base.add_host_options(parser, nova_conf=False)
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
