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

"""openstack cpumigrate host show: one host, apart from its servers."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class ShowHost(command.ShowOne):
    _description = ('Show a host\'s compute service, whether its nova.conf '
                    'holds transition settings, its CPU settings (in force '
                    'and original) and the backup (read-only)')
    _epilog = """\
The host's side of ``status``: one object, so a pipeline can gate on it.

Example::

    openstack cpumigrate host show intel-1 -f json

``Nova Conf`` is ``transition`` between ``prepare`` and the end of ``pin``,
else ``normal``; ``Backup`` names the original nova.conf kept beside it.

Next: ``openstack cpumigrate status intel-1`` for its servers."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        parser.add_argument(
            'host', metavar='<host>',
            help='Compute host, as Nova names it')
        base.add_host_options(parser)
        base.add_long(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.commands import columns
        from osc_cpumigrate.workflow import host_show

        ctx = base.context(self, parsed_args)
        return columns.show(host_show.show_host(ctx, parsed_args.host),
                            long=parsed_args.long)
