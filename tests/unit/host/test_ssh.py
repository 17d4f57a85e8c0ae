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

"""The pure parts of the connection factory."""

import os

import pytest

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.host import ssh
from osc_cpumigrate.types import HostOptions


def test_ssh_name():
    assert ssh.ssh_name('cmp1', HostOptions()) == 'cmp1'
    opts = HostOptions(ssh_host_format='{host}.mgmt.example.net')
    assert ssh.ssh_name('cmp1', opts) == 'cmp1.mgmt.example.net'
    with pytest.raises(HostError, match='ssh-host-format'):
        ssh.ssh_name('cmp1', HostOptions(ssh_host_format='{hostname}'))


def test_known_hosts_files_follow_openssh():
    home = os.path.expanduser('~')
    files = ssh.known_hosts_files({}, HostOptions(known_hosts=('/x/kh',)))
    assert files == [
        home + '/.ssh/known_hosts',
        home + '/.ssh/known_hosts2',
        '/etc/ssh/ssh_known_hosts',
        '/etc/ssh/ssh_known_hosts2',
        '/x/kh',
    ]
    files = ssh.known_hosts_files(
        {'userknownhostsfile': '/a "/b c"', 'globalknownhostsfile': 'none'},
        HostOptions(),
    )
    assert files == ['/a', '/b c']


def test_split_key_name():
    assert ssh.split_key_name('[127.0.0.1]:2222') == ('127.0.0.1', 2222)
    assert ssh.split_key_name('cmp1.example.net') == ('cmp1.example.net', 22)


def test_ssh_config(tmp_path):
    with pytest.raises(HostError, match='does not exist'):
        ssh.load_ssh_config(HostOptions(ssh_config=str(tmp_path / 'missing')))
    cfg = tmp_path / 'config'
    cfg.write_text('Host "it\'s a host"\n  HostName 127.0.0.1\n  Port 2222\n'
                   'Host *.mgmt\n  User ops\n  ProxyJump bastion\n')
    config = ssh.load_ssh_config(HostOptions(ssh_config=str(cfg)))
    assert config.lookup("it's a host")['port'] == '2222'
    assert config.lookup('cmp1.mgmt')['proxyjump'] == 'bastion'


def test_parse_ssh_g(tmp_path):
    from osc_cpumigrate.host import sshconfig

    key = tmp_path / 'id_ed25519'
    key.write_text('')
    parsed = sshconfig.parse_ssh_g(
        'user ops\nhostname 10.0.0.5\nport 2222\n'
        'identityfile %s\nidentityfile ~/.ssh/does-not-exist\n'
        'certificatefile ~/certs/ops-cert.pub\n'
        'proxyjump bastion\nproxycommand none\nconnecttimeout none\n'
        'userknownhostsfile /a /b\nglobalknownhostsfile none\n'
        'serveraliveinterval 15\nciphers aes128-ctr\n' % key)
    assert parsed == {
        'user': 'ops', 'hostname': '10.0.0.5', 'port': '2222',
        'identityfile': [str(key)],
        'certificatefile': [os.path.expanduser('~/certs/ops-cert.pub')],
        'proxyjump': 'bastion', 'userknownhostsfile': '/a /b',
        'globalknownhostsfile': 'none', 'serveraliveinterval': '15'}
    assert ssh.known_hosts_files(parsed, HostOptions()) == ['/a', '/b']
    assert sshconfig._hop_hosts('ops@j1:2222,[fe80::1]:22,j3') == [
        'j1', 'fe80::1', 'j3']
