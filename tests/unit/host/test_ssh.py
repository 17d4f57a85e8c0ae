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
