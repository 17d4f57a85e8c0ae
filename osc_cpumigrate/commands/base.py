"""What every cpumigrate command shares: options and the workflow context.

CLI only: parse, build the context, call the workflow, return cliff rows.
``openstack`` imports every command module at start (even for ``openstack
--help``), so the command modules import only this module, ``choices`` and
``errors``; the workflow, cloud and host layers are imported when a verb
runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any
from typing import TextIO

from osc_lib import utils

from osc_cpumigrate.choices import DEFAULT_RESTART_METHOD
from osc_cpumigrate.choices import PROFILES
from osc_cpumigrate.choices import RESTART_METHODS
from osc_cpumigrate.errors import WorkflowError


def env_flag(name: str) -> bool:
    value = (utils.env(name) or '').strip().lower()
    return value in ('1', 'true', 'yes', 'on')


def env_float(name: str, default: float) -> float:
    value = utils.env(name)
    try:
        return float(value) if value else default
    except ValueError:
        return default


def add_dry_run(parser: argparse.ArgumentParser,
                read_only: bool = False) -> None:
    parser.add_argument(
        '--dry-run', action='store_true',
        help='Accepted for uniform pipelines: this command is read-only'
        if read_only else
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


def add_cpu_arguments(parser: argparse.ArgumentParser) -> None:
    """The transition CPU: auto, or a named model and extra flags."""
    parser.add_argument(
        '--destination', metavar='<host>', action='append', default=[],
        dest='destinations',
        help='Destination host the servers will move to (repeat for more); '
             '--cpu-model auto chooses a CPU that they all accept')
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


def add_restart_options(parser: argparse.ArgumentParser) -> None:
    """What the verbs that restart servers (pin, finalize) share."""
    add_servers(parser)
    add_method(parser)
    add_auto_approve(parser)
    add_dry_run(parser)
    add_host_options(parser)


def add_host_options(parser: argparse.ArgumentParser) -> None:
    """SSH and deployment options, each with an OS_CPUMIGRATE_* variable."""
    group = parser.add_argument_group('hypervisor access (SSH)')
    group.add_argument(
        '--ssh-config', metavar='<file>',
        default=utils.env('OS_CPUMIGRATE_SSH_CONFIG') or None,
        help='OpenSSH client config to use (default: ~/.ssh/config) '
             '(Env: OS_CPUMIGRATE_SSH_CONFIG)')
    group.add_argument(
        '--ssh-user', metavar='<user>',
        default=utils.env('OS_CPUMIGRATE_SSH_USER') or None,
        help='Log in as this user (default: from the SSH config) '
             '(Env: OS_CPUMIGRATE_SSH_USER)')
    group.add_argument(
        '--ssh-host-format', metavar='<format>',
        default=utils.env('OS_CPUMIGRATE_SSH_HOST_FORMAT') or '{host}',
        help='SSH name of a Nova host, e.g. {host}.mgmt.example.net '
             '(Env: OS_CPUMIGRATE_SSH_HOST_FORMAT)')
    group.add_argument(
        '--ssh-timeout', metavar='<seconds>', type=float,
        default=env_float('OS_CPUMIGRATE_SSH_TIMEOUT', 10.0),
        help='SSH connect timeout (default: 10) '
             '(Env: OS_CPUMIGRATE_SSH_TIMEOUT)')
    group.add_argument(
        '--insecure-ssh', action='store_true',
        default=env_flag('OS_CPUMIGRATE_INSECURE_SSH'),
        help='Accept unknown SSH host keys (not recommended) '
             '(Env: OS_CPUMIGRATE_INSECURE_SSH=1)')
    group.add_argument(
        '--no-sudo', action='store_true',
        default=env_flag('OS_CPUMIGRATE_NO_SUDO'),
        help='The SSH user is root: do not use sudo '
             '(Env: OS_CPUMIGRATE_NO_SUDO=1)')
    group.add_argument(
        '--profile', metavar='<profile>', choices=PROFILES,
        default=utils.env('OS_CPUMIGRATE_PROFILE') or 'default',
        help='Deployment: default, rhel or kolla (where nova.conf lives, how '
             'nova-compute restarts) (Env: OS_CPUMIGRATE_PROFILE)')
    group.add_argument(
        '--nova-conf', metavar='<path>',
        default=utils.env('OS_CPUMIGRATE_NOVA_CONF') or None,
        help='nova.conf path on the hypervisor, overriding the profile '
             '(Env: OS_CPUMIGRATE_NOVA_CONF)')
    group.add_argument(
        '--restart-command', metavar='<command>',
        default=utils.env('OS_CPUMIGRATE_RESTART_COMMAND') or None,
        help='Command that restarts nova-compute, overriding the profile '
             '(Env: OS_CPUMIGRATE_RESTART_COMMAND)')
    group.add_argument(
        '--service-timeout', metavar='<seconds>', type=float,
        default=env_float('OS_CPUMIGRATE_SERVICE_TIMEOUT', 180.0),
        help='How long nova-compute may take to report up after a restart '
             '(default: 180) (Env: OS_CPUMIGRATE_SERVICE_TIMEOUT)')


def host_options(parsed_args: argparse.Namespace) -> Any:
    """The parsed SSH options as the host layer's ``HostOptions``."""
    from osc_cpumigrate.host.api import HostOptions

    return HostOptions(
        ssh_config=parsed_args.ssh_config,
        ssh_user=parsed_args.ssh_user,
        ssh_host_format=parsed_args.ssh_host_format,
        connect_timeout=parsed_args.ssh_timeout,
        insecure_ssh=parsed_args.insecure_ssh,
        sudo=not parsed_args.no_sudo,
        profile=parsed_args.profile,
        nova_conf=parsed_args.nova_conf,
        restart_command=parsed_args.restart_command,
    )


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

    def progress(message: str) -> None:
        stderr.write(message.rstrip('\n') + '\n')
        stderr.flush()

    return Context(
        cloud=Cloud(cmd.app.client_manager.cpumigrate.sdk_connection),
        host_options=host_options(parsed_args),
        progress=progress,
        confirm=terminal_confirm(cmd.app.stdin, stderr,
                                 getattr(parsed_args, 'auto_approve', False)),
        service_timeout=parsed_args.service_timeout,
    )
