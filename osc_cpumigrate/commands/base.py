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

"""What every cpumigrate command shares: options and the workflow context.

CLI only: parse, build the context, call the workflow, return cliff rows.
``openstack`` imports every command module at start (even for ``openstack
--help``), so the command modules import only this module, ``choices``,
``errors``, ``settings`` and ``logs``; the workflow, cloud and host layers
are imported when a verb runs.  Where each SSH and deployment setting comes
from is :mod:`settings`' business; how progress reaches the operator is
:mod:`logs`'.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import re
from typing import Any
from typing import TextIO

from osc_cpumigrate import audit
from osc_cpumigrate.choices import DEFAULT_RESTART_METHOD
from osc_cpumigrate.choices import ON_TIMEOUT
from osc_cpumigrate.choices import RESTART_METHODS
from osc_cpumigrate.commands import logs
from osc_cpumigrate.commands import settings
from osc_cpumigrate.errors import WorkflowError


def keep_paragraphs(parser: argparse.ArgumentParser) -> None:
    """Show the epilog as written: paragraphs, and examples indented by
    four spaces, as in the reStructuredText that the docs render from it
    (argparse would reflow it all into one paragraph)."""
    formatter = parser.formatter_class

    class ParagraphFormatter(formatter):  # type: ignore[valid-type,misc]
        def _fill_text(self, text: str, width: int, indent: str) -> str:
            blocks = re.split(r'\n\s*\n', text.strip('\n'))
            out = []
            for block in blocks:
                lines = block.splitlines()
                if all(line.startswith('    ') for line in lines):
                    out.append('\n'.join(indent + line for line in lines))
                else:
                    out.append(super()._fill_text(block, width, indent))
            return '\n\n'.join(out)

    parser.formatter_class = ParagraphFormatter


def add_dry_run(parser: argparse.ArgumentParser,
                read_only: bool = False) -> None:
    """--dry-run; a read-only verb accepts it (so a pipeline can pass it to
    every verb) but does not show it in its help."""
    parser.add_argument(
        '--dry-run', action='store_true',
        help=argparse.SUPPRESS if read_only else
        'Show what would be done (rows, and the nova.conf diff on stderr) '
        'and change nothing')


def add_auto_approve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--auto-approve', action='store_true',
        help='Restart servers without asking (needed without a terminal)')


def add_servers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--server', metavar='<server>', action='append', default=[],
        dest='servers',
        help='Only this server (name or ID; repeat for more); default: '
             'every server on the host')


def add_method(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--method', metavar='<method>', choices=RESTART_METHODS,
        default=DEFAULT_RESTART_METHOD,
        help='How to restart servers: stop-start (default: a clean ACPI '
             'shutdown within Nova\'s shutdown_timeout, then a start, as '
             'the manual runbook does) or hard-reboot (one action, but it '
             'cuts the guest\'s power: writes not yet on disk are lost)')


def add_destinations(parser: argparse.ArgumentParser, *, required: bool,
                     help_: str) -> None:
    parser.add_argument(
        '--destination', metavar='<host>', action='append',
        dest='destinations', required=required,
        default=None if required else [], help=help_)


def add_cpu_arguments(parser: argparse.ArgumentParser, *,
                      destinations_required: bool) -> None:
    """The transition CPU: auto, or a named model and extra flags.

    ``auto`` compares the source with its destinations, so it needs them:
    where the verb always needs destinations they are ``required``;
    elsewhere (prepare) a missing ``--destination`` with ``--cpu-model
    auto`` is still a usage error (exit 2), see
    :func:`require_destinations_for_auto`.
    """
    add_destinations(
        parser, required=destinations_required,
        help_='Destination host the servers will move to (repeat for '
              'more)' + ('' if destinations_required else
                         '; required with --cpu-model auto (the default)'))
    parser.add_argument(
        '--cpu-model', metavar='<model>', default='auto',
        help='Transition CPU model, or auto (default): the richest model '
             'every source and destination accepts; kvm64 is the manual '
             'runbook\'s choice')
    parser.add_argument(
        '--cpu-flag', metavar='<flag>', action='append', default=[],
        dest='cpu_flags',
        help='Extra CPU flag for cpu_model_extra_flags with an explicit '
             '--cpu-model (repeat for more; +flag or -flag)')
    if not destinations_required:
        require_destinations_for_auto(parser)


def add_long(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--long', action='store_true',
        help='Show CPUs in full in a table (every flag); -f json always '
             'gives them as objects (mode, model, flags)')


def present(parsed_args: argparse.Namespace, row_type: str,
            results: list) -> tuple:
    """A verb's rows (``row_type``: its class in ``workflow.rows``) as
    cliff's (columns, data)."""
    from osc_cpumigrate.commands import columns

    return columns.listing(row_type, results,
                           long=getattr(parsed_args, 'long', False))


def restart_options(parsed_args: argparse.Namespace) -> dict[str, Any]:
    """The options of add_restart_options, as the workflow takes them."""
    return {'servers': parsed_args.servers, 'method': parsed_args.method,
            'dry_run': parsed_args.dry_run}


def require_destinations_for_auto(parser: argparse.ArgumentParser) -> None:
    """Make ``--cpu-model auto`` without ``--destination`` a usage error.

    argparse cannot say "required unless another option has a value", so
    the parser checks it once the arguments are parsed and fails as argparse
    does (usage, one line, exit 2).
    """
    parse_known_args = parser.parse_known_args

    def checked(args=None, namespace=None):
        parsed, extras = parse_known_args(args, namespace)
        if (getattr(parsed, 'cpu_model', None) == 'auto'
                and not getattr(parsed, 'destinations', None)):
            parser.error('--cpu-model auto (the default) needs the '
                         'destinations: give --destination <host> (repeat '
                         'for more), or an explicit --cpu-model')
        return parsed, extras

    parser.parse_known_args = checked  # type: ignore[method-assign]


def add_restart_options(parser: argparse.ArgumentParser, *,
                        restarts_compute: bool) -> None:
    """What the verbs that restart servers (pin, finalize) share."""
    add_servers(parser)
    add_method(parser)
    add_auto_approve(parser)
    add_dry_run(parser)
    add_lock_options(parser)
    add_host_options(parser, restarts_compute=restarts_compute)


def _setting(group: Any, name: str, metavar: str | None, help_: str,
             **kwargs: Any) -> None:
    if metavar is None:
        group.add_argument(settings.BY_NAME[name].option, dest=name,
                           action='store_true', default=None,
                           help='%s %s' % (help_, settings.help_suffix(name)))
        return
    group.add_argument(settings.BY_NAME[name].option, dest=name,
                       metavar=metavar, type=settings.arg_type(name),
                       default=None,
                       help='%s %s' % (help_, settings.help_suffix(name)),
                       **kwargs)


def add_migration_timeout(parser: argparse.ArgumentParser) -> None:
    """What the verbs that live-migrate (migrate, run) share."""
    parser.add_argument(
        '--timeout', metavar='<seconds>', type=float, default=1800.0,
        help='How long one migration may run before --on-timeout '
             'applies (default: 1800)')
    parser.add_argument(
        '--on-timeout', metavar='<action>', choices=ON_TIMEOUT,
        default='abort',
        help='abort (default: the server stays on its source) or '
             'force-complete (pause the guest to finish)')


def add_lock_options(parser: argparse.ArgumentParser) -> None:
    """What the verbs that change a host (and hold its lock) share."""
    parser.add_argument(
        '--break-lock', action='store_true',
        help='Take over the host lock of a run that died (a stale lock: '
             'its process is gone, or it was not refreshed for 5 minutes); '
             'a live lock is never broken')


def add_host_options(parser: argparse.ArgumentParser, *,
                     nova_conf: bool = True,
                     restarts_compute: bool = False) -> None:
    """SSH and deployment options.

    Each can also come from an ``OS_CPUMIGRATE_*`` variable or the cloud's
    ``cpumigrate:`` mapping in clouds.yaml (:mod:`settings`); a verb shows
    only the options it uses (``nova_conf``: it reads nova.conf;
    ``restarts_compute``: it restarts nova-compute).
    """
    ssh = parser.add_argument_group(
        'SSH options', 'How cpumigrate logs in to the hypervisors.')
    _setting(ssh, 'ssh_config', '<file>',
             'OpenSSH client config file (default: what ssh itself reads: '
             '~/.ssh/config, then /etc/ssh/ssh_config)')
    _setting(ssh, 'ssh_user', '<user>',
             'Log in as this user (default: from the SSH config)')
    _setting(ssh, 'ssh_host_format', '<format>',
             'SSH name of a Nova host, e.g. {host}.mgmt.example.net '
             '(default: {host})')
    _setting(ssh, 'ssh_timeout', '<seconds>',
             'SSH connect timeout (default: 10)')
    _setting(ssh, 'insecure_ssh', None,
             'Accept unknown SSH host keys (not recommended)')
    _setting(ssh, 'no_sudo', None,
             'The SSH user is root: do not use sudo')
    deploy = parser.add_argument_group(
        'deployment options',
        'Where nova.conf lives and how nova-compute runs on the hypervisors.')
    _setting(deploy, 'profile', '<profile>',
             'Deployment: default, rhel or kolla (where nova.conf lives, how '
             'nova-compute restarts and virsh runs) (default: default)')
    if nova_conf:
        _setting(deploy, 'nova_conf', '<path>',
                 'nova.conf path on the hypervisor, overriding the profile')
    if restarts_compute:
        _setting(deploy, 'restart_command', '<command>',
                 'Command that restarts nova-compute, overriding the '
                 'profile')
        _setting(deploy, 'service_timeout', '<seconds>',
                 'How long nova-compute may take to report up after a '
                 'restart (default: 180)')
    _setting(deploy, 'audit_log', '<path>',
             'Append a JSON line per change made to this file (default: '
             '$XDG_STATE_HOME/osc-cpumigrate/audit.log, i.e. '
             '~/.local/state/osc-cpumigrate/audit.log)')
    add_api_options(parser)


def add_api_options(parser: argparse.ArgumentParser) -> None:
    """How long the cloud's API may take, and how long a read of it is
    tried again (every verb talks to the API)."""
    api = parser.add_argument_group(
        'cloud API options',
        'How long cpumigrate waits for Nova, Placement and Keystone.  Reads '
        'are tried again; actions (stop, start, migrate...) never are.')
    _setting(api, 'api_timeout', '<seconds>',
             'Longest wait for a connection to or an answer from the cloud '
             'API, per HTTP request (default: 60)')
    _setting(api, 'api_retry_time', '<seconds>',
             'How long a read of the cloud API is tried again, with '
             'backoff, after a timeout, a refused connection or an HTTP '
             '502/503/504 (default: 180)')


def host_options(parsed_args: argparse.Namespace,
                 values: dict[str, Any] | None = None) -> Any:
    """The SSH and deployment settings as the host layer's ``HostOptions``.

    ``values``: the settings as :func:`settings.resolve` gives them
    (command line, environment, clouds.yaml, default); resolved here from
    the command line and the environment when not given.
    """
    from osc_cpumigrate.types import HostOptions

    if values is None:
        values = settings.resolve(parsed_args)
    return HostOptions(
        ssh_config=values['ssh_config'],
        ssh_user=values['ssh_user'],
        ssh_host_format=values['ssh_host_format'],
        connect_timeout=values['ssh_timeout'],
        insecure_ssh=values['insecure_ssh'],
        sudo=not values['no_sudo'],
        profile=values['profile'],
        nova_conf=values['nova_conf'],
        restart_command=values['restart_command'],
    )


def cloud_config(cmd: Any) -> dict[str, Any]:
    """The cloud's clouds.yaml entry as OSC loaded it (``{}`` if none)."""
    manager = cmd.app.client_manager
    getter = getattr(manager, 'get_configuration', None)
    try:
        config = getter() if callable(getter) else None
    except AttributeError:          # no cloud configured at all
        config = None
    return config if isinstance(config, dict) else {}


def terminal_confirm(stdin: TextIO, stderr: TextIO,
                     auto_approve: bool) -> Callable[[str], bool]:
    """Ask on the terminal; refuse without one unless auto-approved."""

    def confirm(question: str) -> bool:
        if auto_approve:
            return True
        if not (hasattr(stdin, 'isatty') and stdin.isatty()):
            raise WorkflowError('this would %s; without a terminal to ask '
                                'on, give --auto-approve' % question)
        stderr.write('About to %s.\nProceed? [y/N] ' % question)
        stderr.flush()
        return stdin.readline().strip().lower() in ('y', 'yes')

    return confirm


def context(cmd: Any, parsed_args: argparse.Namespace) -> Any:
    """The workflow context of a command: SDK connection, hosts, stderr."""
    from osc_cpumigrate.cloud import Cloud
    from osc_cpumigrate.workflow.common import Context

    stderr = cmd.app.stderr
    values = settings.resolve(parsed_args, cloud_config(cmd))
    conn = cmd.app.client_manager.cpumigrate.sdk_connection
    recorder = recorder_of(cmd, values['audit_log'], conn)
    return Context(
        cloud=Cloud(conn, recorder=recorder,
                    api_timeout=values['api_timeout'],
                    retry_time=values['api_retry_time']),
        host_options=host_options(parsed_args, values),
        audit=recorder,
        break_lock=getattr(parsed_args, 'break_lock', False),
        progress=logs.progress_callback(cmd.app, stderr),
        confirm=terminal_confirm(cmd.app.stdin, stderr,
                                 getattr(parsed_args, 'auto_approve', False)),
        service_timeout=values['service_timeout'],
    )


def recorder_of(cmd: Any, audit_log: str | None,
                conn: Any) -> audit.Recorder:
    """The audit trail of this run: who (local user, cloud user), which
    cloud, which verb."""
    options = getattr(cmd.app, 'options', None)
    cloud = (getattr(options, 'cloud', None) or getattr(getattr(
        cmd.app.client_manager, '_cli_options', None), 'name', None) or '')

    def os_user() -> str:
        auth = getattr(getattr(conn, 'config', None), 'auth', None)
        name = auth.get('username') if isinstance(auth, dict) else None
        name = name or conn.current_user_id
        return name if isinstance(name, str) else ''

    verb = getattr(cmd, 'cmd_name', None)
    return audit.Recorder(
        audit_log or audit.default_path(),
        cloud=cloud if isinstance(cloud, str) else '',
        verb=verb if isinstance(verb, str) else '', os_user=os_user)
