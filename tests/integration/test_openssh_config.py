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

"""SSH as the operator's own OpenSSH connects, against the real sshd of
conftest.py: settings from ``ssh -G`` (an ``Include``-only config),
host certificates and ``@cert-authority``, ``@revoked``, malformed
known_hosts lines, user certificates (``CertificateFile``), keepalive."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pathlib
import subprocess

import paramiko
import pytest

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.host import api
from osc_cpumigrate.host import sshconfig
from osc_cpumigrate.types import HostOptions


def host_block(sshd, alias: str, known_hosts: pathlib.Path,
               extra: str = '') -> str:
    return ('Host %s\n  HostName 127.0.0.1\n  Port %d\n  User cpmtest\n'
            '  IdentityFile %s\n  IdentitiesOnly yes\n'
            '  UserKnownHostsFile %s\n  GlobalKnownHostsFile none\n%s\n'
            % (alias, sshd.port, sshd.client_key, known_hosts, extra))


def plain_key(sshd) -> str:
    return ' '.join(sshd.host_key_pub.split()[:2])


def name(sshd) -> str:
    return '[127.0.0.1]:%d' % sshd.port


def connect(config: pathlib.Path, host: str = 'cmp-x', **kwargs):
    return api.open_host(host, HostOptions(ssh_config=str(config),
                                           connect_timeout=5, **kwargs))


def write_config(tmp_path, sshd, known_text: str, extra: str = ''):
    known = tmp_path / 'known_hosts'
    known.write_text(known_text)
    config = tmp_path / 'ssh_config'
    config.write_text(host_block(sshd, 'cmp-x', known, extra))
    return config


def test_hosts_reached_only_through_include(sshd, tmp_path, monkeypatch):
    included = tmp_path / 'conf.d'
    included.mkdir()
    (included / 'hypervisors.conf').write_text(
        host_block(sshd, 'cmp-inc', sshd.known_hosts))
    config = tmp_path / 'ssh_config'
    config.write_text('Include %s/*.conf\n' % included)
    host = connect(config, 'cmp-inc')
    try:
        assert host.connection.host == '127.0.0.1'
        assert host.connection.port == sshd.port
        assert host.connection.user == 'cpmtest'
    finally:
        host.close()
    # paramiko's own parser ignores Include: the fallback cannot get there
    monkeypatch.setattr(sshconfig, 'openssh_client', lambda: None)
    with pytest.raises(HostError, match='cmp-inc'):
        connect(config, 'cmp-inc')


def test_ssh_config_errors_are_one_line(sshd, tmp_path):
    config = tmp_path / 'ssh_config'
    config.write_text('Host cmp-x\n  NoSuchOption yes\n')
    with pytest.raises(HostError) as err:
        connect(config)
    assert 'the SSH config does not resolve cmp-x (ssh -G:' in str(err.value)
    assert '\n' not in str(err.value)
    with pytest.raises(HostError, match='does not exist'):
        connect(tmp_path / 'missing')


def test_host_certificate_from_trusted_ca(sshd, tmp_path):
    config = write_config(tmp_path, sshd, '@cert-authority %s %s\n' % (
        name(sshd), ' '.join(sshd.ca_pub.split()[:2])))
    host = connect(config)
    try:
        key = host.connection.transport.get_remote_server_key()
        assert key.public_blob.key_type == (
            'ssh-ed25519-cert-v01@openssh.com')
    finally:
        host.close()


def test_host_certificate_from_untrusted_ca_refused(sshd, tmp_path):
    other = tmp_path / 'other-ca'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                    str(other)], check=True)
    other_pub = ' '.join((tmp_path / 'other-ca.pub').read_text().split()[:2])
    config = write_config(tmp_path, sshd, '@cert-authority * %s\n'
                          % other_pub)
    with pytest.raises(HostError) as err:
        connect(config)
    assert str(err.value).startswith(
        'SSH host certificate of cmp-x (%s) is not accepted: known_hosts '
        'trusts an SSH CA for it' % name(sshd))
    # never with --insecure-ssh either: a CA is trusted for that host
    with pytest.raises(HostError, match='is not accepted'):
        connect(config, insecure_ssh=True)


def test_host_certificate_for_another_name_refused(sshd, tmp_path):
    config = write_config(
        tmp_path, sshd, '@cert-authority hv-alias %s\n'
        % ' '.join(sshd.ca_pub.split()[:2]), '  HostKeyAlias hv-alias\n')
    with pytest.raises(HostError, match="certificate 'cpumigrate-test-host' "
                       "is for 127.0.0.1, not hv-alias"):
        connect(config)


def test_revoked_key_refused(sshd, tmp_path):
    config = write_config(tmp_path, sshd, '%s %s\n@revoked * %s\n' % (
        name(sshd), plain_key(sshd), plain_key(sshd)))
    with pytest.raises(HostError, match=r'is REVOKED: the key is marked '
                       r'@revoked in .*known_hosts:2'):
        connect(config)


def test_malformed_known_hosts_lines_are_skipped(sshd, tmp_path, caplog):
    config = write_config(tmp_path, sshd, (
        'garbage\n'
        '%s ssh-ed25519 !!!not-base64!!!\n'
        '@bogus-marker * ssh-ed25519 AAAA\n'
        '@cert-authority\n'
        '|1|bad-hash|entry ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n'
        '%s %s\n') % (name(sshd), name(sshd), plain_key(sshd)))
    host = connect(config)
    host.close()
    assert 'malformed known_hosts line ignored' in caplog.text
    assert 'not valid base64' in caplog.text


def test_hashed_and_wildcard_entries(sshd, tmp_path):
    salt = os.urandom(20)
    digest = hmac.new(salt, name(sshd).encode(), hashlib.sha1).digest()
    hashed = '|1|%s|%s %s\n' % (base64.b64encode(salt).decode(),
                                base64.b64encode(digest).decode(),
                                plain_key(sshd))
    host = connect(write_config(tmp_path, sshd, hashed))
    host.close()
    host = connect(write_config(tmp_path, sshd, '[127.0.0.*]:*,!nothing %s\n'
                                % plain_key(sshd)))
    host.close()


def test_user_certificate_file(sshd, tmp_path):
    key = tmp_path / 'id_cert_only'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                    str(key)], check=True)
    subprocess.run(['ssh-keygen', '-q', '-s', str(sshd.dir / 'ca'), '-I',
                    'ops', '-n', 'cpmtest', '-V', '-5m:+1h',
                    str(key) + '.pub'], check=True)
    elsewhere = tmp_path / 'certs'
    elsewhere.mkdir()
    cert = elsewhere / 'ops-cert.pub'
    (tmp_path / 'id_cert_only-cert.pub').rename(cert)
    known = tmp_path / 'known_hosts'
    known.write_text('%s %s\n' % (name(sshd), plain_key(sshd)))
    config = tmp_path / 'ssh_config'
    config.write_text(
        'Host cmp-cert\n  HostName 127.0.0.1\n  Port %d\n  User cpmtest\n'
        '  IdentityFile %s\n  CertificateFile %s\n  IdentitiesOnly yes\n'
        '  UserKnownHostsFile %s\n' % (sshd.port, key, cert, known))
    host = connect(config, 'cmp-cert')
    host.close()
    config.write_text(config.read_text().replace(
        '  CertificateFile %s\n' % cert, ''))
    with pytest.raises(HostError, match='SSH login to cmp-cert'):
        connect(config, 'cmp-cert')


def test_keepalive_from_server_alive_interval(sshd, tmp_path, monkeypatch):
    intervals = []
    original = paramiko.Transport.set_keepalive

    def spy(self, interval):
        intervals.append(interval)
        return original(self, interval)

    monkeypatch.setattr(paramiko.Transport, 'set_keepalive', spy)
    known = '%s %s\n' % (name(sshd), plain_key(sshd))
    connect(write_config(tmp_path, sshd, known,
                         '  ServerAliveInterval 7\n')).close()
    connect(write_config(tmp_path, sshd, known)).close()
    assert intervals == [7, 30]
