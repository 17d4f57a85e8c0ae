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

"""The SSH connection factory: one fabric ``Connection`` per host.

Settings come from the operator's own OpenSSH client (``ssh -G``, see
:mod:`sshconfig`), or paramiko's parser where no ``ssh`` is installed.

fabric alone would accept any host key (it hard-codes paramiko's
``AutoAddPolicy``, fabric#1804), and paramiko's known_hosts reader knows no
``@cert-authority``/``@revoked`` lines and crashes on malformed ones.  So
this module decides on every client of the connection chain (the host and
each ProxyJump hop) itself, with :mod:`knownhosts`: paramiko is given one
stand-in entry per key type for the host, whose comparison with the key the
server presents runs the decision (and asks for a host certificate first
when a CA is trusted for the host).  Unknown keys are refused unless
``--insecure-ssh``; changed, revoked and badly certified keys always are.

Long sessions (a migration can run for an hour) send SSH keepalives:
``ServerAliveInterval`` from the config, else every
:data:`DEFAULT_KEEPALIVE` seconds.
"""

from __future__ import annotations

import logging
import math
import os
import shlex

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.host import knownhosts
from osc_cpumigrate.host import sshconfig
from osc_cpumigrate.types import HostOptions

LOG = logging.getLogger(__name__)

USER_SSH_CONFIG = '~/.ssh/config'
DEFAULT_KNOWN_HOSTS = ('~/.ssh/known_hosts', '~/.ssh/known_hosts2')
GLOBAL_KNOWN_HOSTS = ('/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2')
DEFAULT_KEEPALIVE = 30
#: Host key types a stand-in entry is registered for (see _arm).
KEY_TYPES = ('ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384',
             'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa')


def ssh_name(nova_host: str, options: HostOptions) -> str:
    """Nova's host name -> the name given to SSH (``--ssh-host-format``)."""
    try:
        return options.ssh_host_format.format(host=nova_host)
    except (KeyError, IndexError, ValueError) as exc:
        raise HostError('invalid --ssh-host-format %r: use {host} for the '
                        'Nova host name (%s)'
                        % (options.ssh_host_format, exc)) from None


def load_ssh_config(options: HostOptions):
    """paramiko's reading of ``--ssh-config`` or ``~/.ssh/config``: the
    fallback when no ``ssh`` client is installed.

    An explicit file must exist; a missing ``~/.ssh/config`` means no config.
    paramiko does not follow ``Include`` nor read ``/etc/ssh/ssh_config``.
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
    except (OSError, ValueError,
            paramiko.ssh_exception.ConfigParseError) as exc:
        raise HostError('cannot read SSH config %s: %s'
                        % (path, exc)) from None
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
    return ('SSH host key of %s (%s) is not known: verify it and add it '
            'to ~/.ssh/known_hosts (e.g. ssh-keyscan -p %d %s >> '
            '~/.ssh/known_hosts), or use --insecure-ssh'
            % (name, addr, port, shlex.quote(addr)))


class _StandIn:
    """What paramiko finds in its host keys for a host: comparing it with
    the key the server presented runs :func:`knownhosts.verify`.  paramiko
    asks for the key type of its first entry first (see _arm)."""

    def __init__(self, keytype: str, judge: _Judge) -> None:
        self.keytype = keytype
        self.judge = judge

    def get_name(self) -> str:
        return self.keytype

    def __eq__(self, other: object) -> bool:
        return self.judge(other)

    def __ne__(self, other: object) -> bool:
        return not self.judge(other)

    __hash__ = None  # type: ignore[assignment]


class _Judge:
    """The host key decision for one hop; keeps the refusal for the error."""

    def __init__(self, entries, name: str, host: str, hop: str | None,
                 options: HostOptions) -> None:
        self.entries = entries
        self.name = name            # as known_hosts lists it
        self.host = host            # for certificate principals
        self.hop = hop              # None: the host itself
        self.options = options
        self.refusal: knownhosts.Refused | None = None
        self.key = None

    def __call__(self, key) -> bool:
        self.key = key
        try:
            how = knownhosts.verify(self.entries, self.name, self.host, key)
        except knownhosts.Refused as exc:
            if exc.kind == 'unknown' and self.options.insecure_ssh:
                LOG.warning('--insecure-ssh: accepting unverified SSH '
                            'host key of %s (%s %s)', self.name,
                            key.get_name(), key.fingerprint)
                return True
            self.refusal = exc
            return False
        LOG.debug('SSH host %s of %s verified', how, self.name)
        return True


def _arm(connection, options: HostOptions) -> list[_Judge]:
    """Host key decision on the connection and every gateway hop."""
    import paramiko

    judges = []
    hop = connection
    while hop is not None and not isinstance(hop, (str, bool)):
        label = None if hop is connection else hop.original_host
        lookup = dict(hop.ssh_config)
        entries = knownhosts.load(known_hosts_files(lookup, options))
        alias = lookup.get('hostkeyalias')
        name = alias or knownhosts.host_name(hop.host, int(hop.port))
        judge = _Judge(entries, name, alias or hop.host, label, options)
        judges.append(judge)
        first = knownhosts.preferred_keytype(entries, name)
        keytypes = [first] if first else []
        keytypes += [k for k in KEY_TYPES if k not in keytypes]
        # the name paramiko looks itself up under (never the alias)
        paramiko_name = knownhosts.host_name(hop.host, int(hop.port))
        host_keys = hop.client.get_host_keys()
        for keytype in keytypes:
            host_keys.add(paramiko_name, keytype, _StandIn(keytype, judge))
        # never reached while the stand-ins are found; fabric's default
        # (AutoAddPolicy) must not be what answers if they were not
        hop.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        hop = hop.gateway
    return judges


def _keepalive(connection) -> None:
    """ServerAliveInterval (else DEFAULT_KEEPALIVE) on every open hop."""
    hop = connection
    while hop is not None and not isinstance(hop, (str, bool)):
        try:
            interval = int(hop.ssh_config.get('serveraliveinterval') or 0)
        except ValueError:
            interval = 0
        transport = hop.client.get_transport()
        if transport is not None:
            transport.set_keepalive(
                interval if interval > 0 else DEFAULT_KEEPALIVE)
        hop = hop.gateway


def _refused(judge: _Judge, nova_host: str) -> HostError:
    """The one-line error for a host key that was not trusted."""
    exc = judge.refusal
    who = (nova_host if judge.hop is None
           else 'jump host %s of %s' % (judge.hop, nova_host))
    addr, port = split_key_name(judge.name)
    key = judge.key
    seen = ('%s %s' % (key.get_name(), key.fingerprint)
            if key is not None else '?')
    if exc is None or exc.kind == 'unknown':
        return HostError(_key_error(who, addr, port))
    if exc.kind == 'changed':
        return HostError(
            'SSH host key of %s (%s) has CHANGED since it was stored in '
            'known_hosts: this might be an attack (or the host was '
            'reinstalled); verify the new key (%s) and replace the old '
            'entry (ssh-keygen -R %s) before going on'
            % (who, judge.name, seen, shlex.quote(judge.name)))
    if exc.kind == 'revoked':
        return HostError('SSH host key of %s (%s) is REVOKED: %s; refusing '
                         'to connect' % (who, judge.name, exc))
    return HostError('SSH host certificate of %s (%s) is not accepted: %s '
                     '(key %s)' % (who, judge.name, exc, seen))


def connect(nova_host: str, options: HostOptions):
    """Open and return a fabric ``Connection`` to ``nova_host``.

    Honours the OpenSSH config as ``ssh -G`` reads it (HostName, User,
    Port, IdentityFile, CertificateFile, ProxyJump/ProxyCommand,
    UserKnownHostsFile, HostKeyAlias, ServerAliveInterval), ``--ssh-user``,
    the connect timeout and host key verification.  Raises HostError with
    one line that names the host and says what to do.
    """

    import fabric
    import paramiko

    target = ssh_name(nova_host, options)
    ssh_config = sshconfig.resolve(target, options) or load_ssh_config(options)
    timeout = max(1, math.ceil(options.connect_timeout))
    config = fabric.Config(
        ssh_config=ssh_config,
        lazy=True,   # no /etc/fabric.yml & co: behaviour must not vary
        overrides={
            'run': {'hide': True, 'warn': True, 'in_stream': False,
                    'pty': False, 'encoding': 'utf-8'},
            'timeouts': {'connect': timeout},
            'connect_kwargs': {'banner_timeout': timeout,
                               'auth_timeout': timeout,
                               'channel_timeout': timeout},
        })
    if options.insecure_ssh:
        LOG.warning('--insecure-ssh: SSH host keys are not verified for %s',
                    nova_host)
    try:
        conn = fabric.Connection(target, user=options.ssh_user or None,
                                 config=config)
    except ValueError as exc:
        raise HostError('invalid SSH destination %r for host %s: %s'
                        % (target, nova_host, exc)) from exc
    _certificate(conn)
    judges = _arm(conn, options)
    addr = '%s:%s' % (conn.host, conn.port)
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        conn.close()
        judge = next((j for j in judges if j.refusal is not None), None)
        if judge is None:       # not our stand-in's verdict
            raise HostError('SSH host key of %s (%s) was refused: %s'
                            % (nova_host, addr, exc)) from exc
        raise _refused(judge, nova_host) from exc
    except paramiko.AuthenticationException as exc:
        conn.close()
        raise HostError('SSH login to %s (%s) as %s failed: %s (check '
                        '--ssh-user, IdentityFile, your SSH agent)'
                        % (nova_host, addr, conn.user, exc)) from exc
    except TimeoutError as exc:
        conn.close()
        raise HostError('cannot reach %s (%s): timed out after %d s'
                        % (nova_host, addr, timeout)) from exc
    except (OSError, paramiko.SSHException, EOFError) as exc:
        conn.close()
        judge = next((j for j in judges if j.refusal is not None), None)
        if judge is not None:   # a hop refused: the gateway's open failed
            raise _refused(judge, nova_host) from exc
        raise HostError('cannot connect to %s (%s): %s' % (
            nova_host, addr, exc or type(exc).__name__)) from exc
    _keepalive(conn)
    return conn


def _certificate(conn) -> None:
    """CertificateFile: log in with the identity its certificate names.

    paramiko finds ``<key>-cert.pub`` next to a key by itself; a
    certificate elsewhere (``CertificateFile``) is paired here with the
    IdentityFile whose public key it certifies, and passed as the ``pkey``.
    """
    certs = conn.ssh_config.get('certificatefile') or []
    keys = conn.ssh_config.get('identityfile') or []
    if not certs or not keys:
        return
    import paramiko

    for cert_path in certs:
        cert_path = os.path.expanduser(cert_path)
        if not os.path.isfile(cert_path):
            LOG.warning('ignoring CertificateFile %s: no such file', cert_path)
            continue
        for key_path in keys:
            try:
                key = paramiko.PKey.from_path(key_path)
                # refuses a certificate of another public key
                key.load_certificate(cert_path)
            except (OSError, ValueError, paramiko.SSHException) as exc:
                LOG.debug('CertificateFile %s does not go with %s: %s',
                          cert_path, key_path, exc)
                continue
            conn.connect_kwargs['pkey'] = key
            return


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
