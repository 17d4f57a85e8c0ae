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

"""openstack cpumigrate prepare: runbook steps 1-3."""

import argparse

from osc_lib.command import command

from osc_cpumigrate.commands import base
from osc_cpumigrate.errors import translate_errors


class PrepareHost(command.Lister):
    _description = ('Disable a source host and give its nova-compute the '
                    'transition CPU (runbook steps 1-3)')
    _epilog = """\
The transition CPU is worked out from the source and its destinations
(``--cpu-model auto``, the default, which needs ``--destination``), or
named with ``--cpu-model`` (then no destination is needed).  Safe to re-run;
``--dry-run`` shows the nova.conf diff.

Example::

    openstack cpumigrate prepare intel-1 --destination amd-1 \\
        --destination amd-2
    openstack cpumigrate prepare intel-1 --cpu-model kvm64

Next: ``openstack cpumigrate pin intel-1`` (runbook steps 4-7)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        base.keep_paragraphs(parser)
        parser.add_argument(
            'host', metavar='<source-host>',
            help='Compute host to empty, as Nova names it')
        base.add_cpu_arguments(parser, destinations_required=False)
        parser.add_argument(
            '--disable-reason', metavar='<reason>',
            help='Reason recorded on the disabled compute service '
                 '(default: names this tool)')
        base.add_dry_run(parser)
        base.add_lock_options(parser)
        base.add_host_options(parser, restarts_compute=True)
        base.add_long(parser)
        return parser

    @translate_errors
    def take_action(self, parsed_args: argparse.Namespace):
        from osc_cpumigrate.workflow import prepare

        ctx = base.context(self, parsed_args)
        return self.present(parsed_args, prepare.prepare(
            ctx, parsed_args.host, destinations=parsed_args.destinations,
            model=parsed_args.cpu_model, flags=parsed_args.cpu_flags,
            disable_reason=parsed_args.disable_reason,
            dry_run=parsed_args.dry_run))

    def present(self, parsed_args: argparse.Namespace, results: list):
        return base.present(parsed_args, 'PrepareRow', results)
