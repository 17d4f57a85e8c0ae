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

"""Each host's SSH settings as the operator's own OpenSSH client sees them.

``ssh -G HOST`` prints the configuration ssh would use for HOST after
reading everything it reads: ``/etc/ssh/ssh_config`` and its
``ssh_config.d``, ``~/.ssh/config``, ``Include``, ``Match`` (host, user,
exec, final), ``CanonicalizeHostname``.  paramiko's parser knows only a
part of that (no ``Include``, no system file), so when the ``ssh`` client
is installed its answer is used, and paramiko's parser is the fallback.

fabric looks a host (and each ProxyJump hop, through a clone of its config)
up in a paramiko ``SSHConfig``; this module resolves the host and its hops
up front and hands fabric an ``SSHConfig`` holding exactly those answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import Any

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.types import HostOptions

LOG = logging.getLogger(__name__)

SSH_G_TIMEOUT = 30.0
MAX_HOPS = 10
#: Options that may appear several times; the rest: the first value wins.
MULTI = ('identityfile', 'certificatefile')
#: What fabric, paramiko and cpumigrate use of ssh -G's answer.
USED = ('hostname', 'user', 'port', 'identityfile', 'certificatefile',
        'proxyjump', 'proxycommand', 'userknownhostsfile',
        'globalknownhostsfile', 'hostkeyalias', 'serveraliveinterval',
        'connecttimeout', 'forwardagent', 'identitiesonly')
#: "none" means "no file" here, not "unset" (ProxyJump none, ...).
KEEP_NONE = ('userknownhostsfile', 'globalknownhostsfile')


def openssh_client() -> str | None:
    """Path of the ``ssh`` client, or None (then paramiko's parser)."""
    return shutil.which('ssh')


def parse_ssh_g(text: str) -> dict[str, Any]:
    """``ssh -G`` output -> paramiko-style lookup dict (lower-case keys,
    lists for IdentityFile/CertificateFile, 'none' values dropped)."""
    config: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(' ')
        key = key.lower()
        value = value.strip()
        if key not in USED or not value:
            continue
        if key in MULTI:
            path = os.path.expanduser(value)
            if key == 'identityfile' and not os.path.exists(path):
                continue          # OpenSSH skips missing default keys too
            config.setdefault(key, []).append(path)
        elif value.lower() != 'none' or key in KEEP_NONE:
            config.setdefault(key, value)
    return config


def ssh_g(ssh: str, name: str, options: HostOptions) -> dict[str, Any]:
    """What ``ssh -G`` says about ``name``; HostError when ssh refuses."""
    argv = [ssh, '-G']
    if options.ssh_config:
        argv += ['-F', os.path.expanduser(options.ssh_config)]
    argv += ['--', name]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL,
                              timeout=SSH_G_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError('cannot run %s -G %s: %s' % (ssh, name, exc)) from exc
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise HostError('the SSH config does not resolve %s (ssh -G: %s)'
                        % (name, lines[-1] if lines else
                           'exit status %d' % proc.returncode))
    return parse_ssh_g(proc.stdout)


def _hop_hosts(proxyjump: str) -> list[str]:
    """Host names of a ProxyJump list, as fabric looks them up."""
    hosts = []
    for hop in proxyjump.split(','):
        hop = hop.strip()
        if not hop or hop.startswith('ssh://'):
            continue
        host = hop.rpartition('@')[2]
        if host.startswith('['):
            host = host[1:].partition(']')[0]
        elif host.count(':') == 1:
            host = host.partition(':')[0]
        hosts.append(host)
    return hosts


def _escape(name: str) -> str:
    """A host name as a paramiko Host pattern matching only itself."""
    return ''.join('[%s]' % c if c in '*?[' else c for c in name)


def resolve(target: str, options: HostOptions):
    """A paramiko ``SSHConfig`` answering for ``target`` and its ProxyJump
    hops as ``ssh -G`` does, or None when no ``ssh`` client is installed."""
    import paramiko

    ssh = openssh_client()
    if ssh is None:
        return None
    if options.ssh_config and not os.path.exists(
            os.path.expanduser(options.ssh_config)):
        raise HostError('SSH config file %s does not exist'
                        % options.ssh_config)
    answers: dict[str, dict[str, Any]] = {}
    todo = [target]
    while todo:
        name = todo.pop()
        if name in answers:
            continue
        if len(answers) > MAX_HOPS:
            raise HostError('ProxyJump of %s goes through more than %d hosts'
                            % (target, MAX_HOPS))
        answers[name] = ssh_g(ssh, name, options)
        todo += _hop_hosts(answers[name].get('proxyjump', ''))
    LOG.debug('ssh -G for %s: %s', target, answers[target])
    config = paramiko.SSHConfig()
    # fabric and paramiko keep the rules in ``_config`` (fabric's clone for
    # ProxyJump hops copies exactly this list)
    config._config = [{'host': [_escape(name)], 'config': answer}
                      for name, answer in answers.items()]
    return config
