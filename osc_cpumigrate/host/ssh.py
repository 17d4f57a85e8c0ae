"""The SSH connection factory: one fabric ``Connection`` per host.

fabric alone would accept any host key (it hard-codes paramiko's
``AutoAddPolicy``, fabric#1804); this module re-arms every client of the
connection chain (the host and each ProxyJump hop) with the user's known_hosts
files and a policy that refuses unknown keys, unless ``--insecure-ssh``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shlex

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.types import HostOptions

LOG = logging.getLogger(__name__)

USER_SSH_CONFIG = '~/.ssh/config'
DEFAULT_KNOWN_HOSTS = ('~/.ssh/known_hosts', '~/.ssh/known_hosts2')
GLOBAL_KNOWN_HOSTS = ('/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2')


def ssh_name(nova_host: str, options: HostOptions) -> str:
    """Nova's host name -> the name given to SSH (``--ssh-host-format``)."""
    try:
        return options.ssh_host_format.format(host=nova_host)
    except (KeyError, IndexError, ValueError) as exc:
        raise HostError(
            'invalid --ssh-host-format %r: use {host} for the Nova host name '
            '(%s)'
            % (options.ssh_host_format, exc)
        ) from None


def load_ssh_config(options: HostOptions):
    """The OpenSSH client config: ``--ssh-config`` or ``~/.ssh/config``.

    An explicit file must exist; a missing ``~/.ssh/config`` means no config.
    ``/etc/ssh/ssh_config`` is not read (paramiko does not follow its
    ``Include``); put what you need in your own file.
    """
    import paramiko

    config = paramiko.SSHConfig()
    path = options.ssh_config or USER_SSH_CONFIG
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        if options.ssh_config:
            raise HostError('SSH config file %s does not exist' % path)
        return config
    try:
        with open(full, encoding='utf-8') as handle:
            config.parse(handle)
    except (
        OSError,
        ValueError,
        paramiko.ssh_exception.ConfigParseError,
    ) as exc:
        raise HostError(
            'cannot read SSH config %s: %s' % (path, exc)
        ) from None
    return config


def known_hosts_files(host_config: dict, options: HostOptions) -> list[str]:
    """known_hosts files to trust, in OpenSSH's order.

    ``UserKnownHostsFile`` from the SSH config replaces the default
    ``~/.ssh/known_hosts`` as in OpenSSH; ``GlobalKnownHostsFile`` (or
    /etc/ssh/ssh_known_hosts) and ``HostOptions.known_hosts`` are added.
    """
    files: list[str] = []
    user = host_config.get('userknownhostsfile')
    files += shlex.split(user) if user else list(DEFAULT_KNOWN_HOSTS)
    glob = host_config.get('globalknownhostsfile')
    files += shlex.split(glob) if glob else list(GLOBAL_KNOWN_HOSTS)
    files += list(options.known_hosts)
    return [os.path.expanduser(f) for f in files if f and f.lower() != 'none']


def _key_error(name: str, addr: str, port: int) -> str:
    return (
        'SSH host key of %s (%s) is not known: verify it and add it to '
        '~/.ssh/known_hosts '
        '(e.g. ssh-keyscan -p %d %s >> ~/.ssh/known_hosts), or use '
        '--insecure-ssh'
        % (name, addr, port, shlex.quote(addr))
    )


@functools.cache
def _policies():
    """The two missing-host-key policies and the exception (built lazily, once:
    they subclass paramiko, which must not be imported at module level)."""
    import paramiko

    class UnknownHostKey(paramiko.SSHException):
        def __init__(self, hostname: str, key, hop: str | None):
            super().__init__('unknown host key for %s' % hostname)
            self.hostname = hostname
            self.key = key
            self.hop = hop  # None: the host itself, else the jump host's name

    class Refuse(paramiko.MissingHostKeyPolicy):
        """RejectPolicy that says which host, hop and key, for a useful
        message."""

        def __init__(self, hop: str | None = None):
            self.hop = hop

        def missing_host_key(self, client, hostname, key):
            raise UnknownHostKey(hostname, key, self.hop)

    class AcceptWithWarning(paramiko.MissingHostKeyPolicy):
        """--insecure-ssh: accept in memory only, never write known_hosts."""

        def missing_host_key(self, client, hostname, key):
            LOG.warning(
                '--insecure-ssh: accepting unverified SSH host key of %s (%s '
                '%s)',
                hostname,
                key.get_name(),
                key.fingerprint,
            )
            client.get_host_keys().add(hostname, key.get_name(), key)

    return UnknownHostKey, Refuse, AcceptWithWarning


def known_hosts_error(path: str, exc) -> str:
    """One line for a known_hosts line paramiko cannot read: a host CA
    (``@cert-authority``), a revocation (``@revoked``) or a malformed line
    makes it refuse the whole file."""
    line = (getattr(exc, 'line', '') or '').strip()
    number = '?'
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            for i, text in enumerate(handle, 1):
                if text.strip() == line:
                    number = str(i)
                    break
    except OSError:
        pass
    kind = line.split()[0] if line.startswith('@') else 'a malformed line'
    return ('cannot use known_hosts %s: line %s holds %s, which cpumigrate '
            '(paramiko) cannot read; give cpumigrate a known_hosts file '
            'without it (UserKnownHostsFile in --ssh-config)'
            % (path, number, kind))


def _arm(connection, options: HostOptions) -> None:
    """Known hosts + key policy on the connection and every gateway hop."""
    import paramiko

    _, refuse, accept = _policies()
    hop = connection
    while hop is not None and not isinstance(hop, (str, bool)):
        label = None if hop is connection else hop.original_host
        lookup = dict(hop.ssh_config)
        for path in known_hosts_files(lookup, options):
            if os.path.isfile(path):
                try:
                    # "system" keys: paramiko never writes them back
                    hop.client.load_system_host_keys(path)
                except (OSError, ValueError) as exc:
                    LOG.warning(
                        'ignoring unreadable known_hosts %s: %s', path, exc
                    )
                except paramiko.hostkeys.InvalidHostKey as exc:
                    raise HostError(known_hosts_error(path, exc)) from None
        hop.client.set_missing_host_key_policy(
            accept() if options.insecure_ssh else refuse(label))
        hop = hop.gateway


def connect(nova_host: str, options: HostOptions):
    """Open and return a fabric ``Connection`` to ``nova_host``.

    Honours the OpenSSH config (HostName, User, Port, IdentityFile,
    ProxyJump/ProxyCommand, UserKnownHostsFile), ``--ssh-user``, the connect
    timeout and host key verification.  Raises HostError with one line that
    names the host and says what to do.
    """

    import fabric

    target = ssh_name(nova_host, options)
    timeout = max(1, math.ceil(options.connect_timeout))
    config = _fabric_config(load_ssh_config(options), timeout)
    if options.insecure_ssh:
        LOG.warning(
            '--insecure-ssh: SSH host keys are not verified for %s', nova_host
        )
    try:
        conn = fabric.Connection(
            target, user=options.ssh_user or None, config=config
        )
    except ValueError as exc:
        raise HostError(
            'invalid SSH destination %r for host %s: %s'
            % (target, nova_host, exc)
        ) from None
    _arm(conn, options)
    _open(conn, nova_host, timeout)
    return conn


def _fabric_config(ssh_config, timeout: int):
    """fabric settings: output captured, no pty, stdin closed, timeouts."""
    import fabric

    return fabric.Config(
        ssh_config=ssh_config,
        # no /etc/fabric.yml & co: behaviour must not depend on them
        lazy=True,
        overrides={
            'run': {
                'hide': True,
                'warn': True,
                'in_stream': False,
                'pty': False,
                'encoding': 'utf-8',
            },
            'timeouts': {'connect': timeout},
            'connect_kwargs': {
                'banner_timeout': timeout,
                'auth_timeout': timeout,
                'channel_timeout': timeout,
            },
        },
    )


def _open(conn, nova_host: str, timeout: int) -> None:
    """Open ``conn``; every failure closes it and becomes one HostError line
    that says what to check."""
    import paramiko

    unknown_key_type, _, _ = _policies()
    addr = '%s:%s' % (conn.host, conn.port)
    try:
        conn.open()
    except unknown_key_type as exc:
        conn.close()
        key_addr, key_port = split_key_name(exc.hostname)
        who = (
            nova_host
            if exc.hop is None
            else 'jump host %s of %s' % (exc.hop, nova_host)
        )
        raise HostError(_key_error(who, key_addr, key_port)) from None
    except paramiko.BadHostKeyException as exc:
        conn.close()
        raise HostError(
            'SSH host key of %s (%s) has CHANGED since it was stored in '
            'known_hosts: this might '
            'be an attack (or the host was reinstalled); verify the new key '
            '(%s %s) and replace '
            'the old entry (ssh-keygen -R %s) before going on'
            % (
                nova_host,
                exc.hostname,
                exc.key.get_name(),
                exc.key.fingerprint,
                shlex.quote(exc.hostname),
            )
        ) from None
    except paramiko.AuthenticationException as exc:
        conn.close()
        raise HostError(
            'SSH login to %s (%s) as %s failed: %s (check --ssh-user, '
            'IdentityFile, '
            'your SSH agent)' % (nova_host, addr, conn.user, exc)
        ) from None
    except TimeoutError:
        conn.close()
        raise HostError(
            'cannot reach %s (%s): timed out after %d s'
            % (nova_host, addr, timeout)
        ) from None
    except (OSError, paramiko.SSHException, EOFError) as exc:
        conn.close()
        raise HostError(
            'cannot connect to %s (%s): %s'
            % (nova_host, addr, exc or type(exc).__name__)
        ) from None


def split_key_name(hostname: str) -> tuple[str, int]:
    """paramiko's known_hosts name (``[addr]:port`` unless port 22) ->
    (addr, port)."""
    if hostname.startswith('[') and ']:' in hostname:
        addr, _, port = hostname[1:].partition(']:')
        try:
            return addr, int(port)
        except ValueError:
            return addr, 22
    return hostname, 22
