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

"""Real OpenSSH servers on loopback for the host layer's integration tests.

One ``/usr/sbin/sshd -D -e`` (Debian's openssh-server, installed by
``tools/setup-test-deps``) runs for the whole session on 127.0.0.1 and a free
port, with its own host key, authorized_keys, known_hosts and an ssh_config
for the client.  It needs root: it creates the local users ``cpmtest``
(passwordless sudo), ``cpmnosudo`` (sudo wants a password) and the group
``nova``.  Stopped by the pid it was started with.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

SSHD = '/usr/sbin/sshd'
SUDO_USER = 'cpmtest'
NOSUDO_USER = 'cpmnosudo'
ODD_HOST = 'it\'s cmp1 "box"'          # what --ssh-host-format makes of "cmp1"
ODD_FORMAT = 'it\'s {host} "box"'
SUDOERS = {
    SUDO_USER: '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' % SUDO_USER,
    NOSUDO_USER: '%s ALL=(ALL:ALL) ALL\n' % NOSUDO_USER,
}


def pytest_collection_modifyitems(items):
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@dataclasses.dataclass
class Sshd:
    """A running sshd and the client-side files that reach it."""

    port: int
    pid: int
    dir: pathlib.Path
    host_key_pub: str
    client_key: pathlib.Path
    ssh_config: pathlib.Path
    known_hosts: pathlib.Path
    log: pathlib.Path
    ca_pub: str = ''            # the SSH CA that signed the host key

    def session_pids(self) -> list[int]:
        """sshd processes serving connections (descendants of our master)."""
        children: dict[int, list[int]] = {}
        comms: dict[int, str] = {}
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                stat = pathlib.Path('/proc', entry, 'stat').read_text()
            except OSError:
                continue
            comm = stat[stat.index('(') + 1:stat.rindex(')')]
            fields = stat[stat.rindex(')') + 2:].split()
            if fields[0] == 'Z':
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
            comms[int(entry)] = comm
        found, todo = [], list(children.get(self.pid, []))
        while todo:
            pid = todo.pop()
            if comms.get(pid) == 'sshd':
                found.append(pid)
                todo.extend(children.get(pid, []))
        return found

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes: the network 'drops'."""
        for pid in self.session_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _run(*argv: str) -> None:
    subprocess.run(
        argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _ensure_users() -> None:
    try:
        grp.getgrnam('nova')
    except KeyError:
        _run('groupadd', '--system', 'nova')
    for user in (SUDO_USER, NOSUDO_USER):
        if subprocess.run(['id', user], capture_output=True).returncode != 0:
            _run('useradd', '--no-create-home', '--shell', '/bin/sh', user)
        # '*': no password, but not "locked" ('!'), which sshd refuses
        _run('usermod', '--password', '*', user)
        path = pathlib.Path('/etc/sudoers.d', user)
        if not path.exists() or path.read_text() != SUDOERS[user]:
            path.write_text(SUDOERS[user])
            path.chmod(0o440)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _keygen(path: pathlib.Path, comment: str) -> str:
    _run(
        'ssh-keygen',
        '-q',
        '-t',
        'ed25519',
        '-N',
        '',
        '-C',
        comment,
        '-f',
        str(path),
    )
    return pathlib.Path(str(path) + '.pub').read_text().strip()


def _host_entry(alias: str, port: int, user: str, key: pathlib.Path,
                known_hosts: pathlib.Path) -> str:
    quoted = '"%s"' % alias.replace('\\', '\\\\').replace('"', '\\"')
    return (
        'Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile '
        '%s\n'
        '  UserKnownHostsFile %s\n  IdentitiesOnly yes\n\n'
        % (quoted, port, user, key, known_hosts)
    )


@pytest.fixture(scope='session')
def sshd():
    if os.geteuid() != 0:
        pytest.skip(
            'integration tests start sshd and create users: run them as root'
        )
    for tool in (
        SSHD,
        '/usr/bin/ssh-keygen',
        '/usr/bin/sudo',
        '/usr/sbin/useradd',
    ):
        if not os.path.exists(tool):
            pytest.skip('%s missing: run tools/setup-test-deps first' % tool)
    _ensure_users()
    pathlib.Path('/run/sshd').mkdir(mode=0o755, exist_ok=True)
    base = pathlib.Path(tempfile.mkdtemp(prefix='cpumigrate-sshd-'))
    base.chmod(0o755)      # the test users' sshd must read authorized_keys
    port = _free_port()
    host_key = base / 'ssh_host_ed25519_key'
    host_pub = _keygen(host_key, 'cpumigrate-test-host')
    client_key = base / 'id_ed25519'
    client_pub = _keygen(client_key, 'cpumigrate-test-client')
    authorized = base / 'authorized_keys'
    authorized.write_text(client_pub + '\n')
    authorized.chmod(0o644)
    # an SSH CA: it signs the host key (principal 127.0.0.1) and is trusted
    # for user certificates (tests/integration/test_openssh_config.py)
    ca_key = base / 'ca'
    ca_pub = _keygen(ca_key, 'cpumigrate-test-ca')
    _run('ssh-keygen', '-q', '-s', str(ca_key), '-I', 'cpumigrate-test-host',
         '-h', '-n', '127.0.0.1', '-V', '-5m:+1d', str(host_key) + '.pub')
    known_hosts = base / 'known_hosts'
    known_hosts.write_text(
        '[127.0.0.1]:%d %s\n' % (port, ' '.join(host_pub.split()[:2]))
    )
    config = base / 'sshd_config'
    config.write_text(
        'Port %d\nListenAddress 127.0.0.1\nHostKey %s\nPidFile '
        '%s\nAuthorizedKeysFile %s\n'
        'StrictModes no\nUsePAM no\nPasswordAuthentication '
        'no\nKbdInteractiveAuthentication no\n'
        'PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n'
        'AllowUsers %s %s root\nMaxStartups 100\nMaxSessions 100\nLogLevel '
        'VERBOSE\n'
        'Subsystem sftp internal-sftp\n'
        'HostCertificate %s-cert.pub\nTrustedUserCAKeys %s.pub\n'
        % (port, host_key, base / 'sshd.pid', authorized, SUDO_USER,
           NOSUDO_USER, host_key, ca_key)
    )
    ssh_config = base / 'ssh_config'
    ssh_config.write_text(
        _host_entry('cmp1', port, SUDO_USER, client_key, known_hosts)
        + _host_entry(ODD_HOST, port, SUDO_USER, client_key, known_hosts)
        + _host_entry('nosudo', port, NOSUDO_USER, client_key, known_hosts)
        + _host_entry('rootlogin', port, 'root', client_key, known_hosts)
        + _host_entry('jumped', port, SUDO_USER, client_key, known_hosts)
        .replace('\n\n', '\n  ProxyJump cmp1\n\n'))
    check = subprocess.run(
        [SSHD, '-t', '-f', str(config)], capture_output=True, text=True
    )
    if check.returncode != 0:
        pytest.fail('sshd rejects the test config: %s' % check.stderr.strip())
    log = base / 'sshd.log'
    with open(log, 'wb') as handle:
        proc = subprocess.Popen(
            [SSHD, '-D', '-e', '-f', str(config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(
                ('127.0.0.1', port), timeout=1
            ) as sock:
                if sock.recv(4).startswith(b'SSH-'):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail('sshd did not start: %s' % log.read_text()[-2000:])
        time.sleep(0.05)
    server = Sshd(
        port=port,
        pid=proc.pid,
        dir=base,
        host_key_pub=host_pub,
        client_key=client_key,
        ssh_config=ssh_config,
        known_hosts=known_hosts,
        log=log,
        ca_pub=ca_pub,
    )
    try:
        yield server
    finally:
        server.drop_connections()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def conf_dir():
    """A root-owned directory (0755) for nova.conf files; removed
    afterwards."""
    path = pathlib.Path(tempfile.mkdtemp(prefix='cpumigrate-conf-'))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def install_conf(directory: pathlib.Path, data: bytes, name: str = 'nova.conf',
                 mode: int = 0o640) -> pathlib.Path:
    """nova.conf as packages install it: root:nova, 0640."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    os.chown(path, 0, grp.getgrnam('nova').gr_gid)
    path.chmod(mode)
    return path
