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

"""The host layer against a real sshd on loopback (see conftest.py)."""

from __future__ import annotations

import datetime
import grp
import logging
import os
import pathlib
import socket
import time

import pytest

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.host import api
from osc_cpumigrate.host import novaconf
from osc_cpumigrate.host import remote
from osc_cpumigrate.host import sshconfig
from osc_cpumigrate.types import CpuSettings
from osc_cpumigrate.types import HostOptions

from .conftest import install_conf
from .conftest import ODD_FORMAT

FIXTURES = pathlib.Path(__file__).parents[1] / 'fixtures' / 'novaconf'
KOLLA = (FIXTURES / 'kolla.conf').read_bytes()
DEVSTACK = (FIXTURES / 'devstack.conf').read_bytes()


def options(sshd, path=None, **kwargs) -> HostOptions:
    kwargs.setdefault('connect_timeout', 5)
    return HostOptions(ssh_config=str(sshd.ssh_config),
                       nova_conf=str(path) if path else None, **kwargs)


@pytest.fixture
def opened():
    hosts = []

    def open_(name, opts):
        host = api.open_host(name, opts)
        hosts.append(host)
        return host
    yield open_
    for host in hosts:
        host.close()


def stat_of(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(
        p.name
        for p in directory.iterdir()
        if 'cpumigrate-stage' in p.name or 'cpumigrate-backup' in p.name
    )


def backups(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in directory.iterdir() if '.cpumigrate-2' in p.name)


def test_connect_and_read_root_only_file(sshd, conf_dir, opened):
    path = install_conf(conf_dir, KOLLA)
    host = opened('cmp1', options(sshd, path))
    state = host.nova_conf()
    assert state.path == str(path)
    assert state.sha256 == novaconf.sha256(KOLLA)
    assert state.settings == CpuSettings(
        'custom', ('Skylake-Server-IBRS',), ('pcid', 'ssbd')
    )
    assert (
        not state.transitioned
        and state.backup is None
        and state.original == state.settings
    )
    # what decides whether nova-compute checks its CPU at start
    assert (state.virt_type, state.skip_cpu_compare_at_startup) == (
        'kvm', False)


def test_apply_then_restore_keeps_bytes_owner_and_mode(sshd, conf_dir, opened):
    path = install_conf(conf_dir, KOLLA)
    before_stat = stat_of(path)
    assert before_stat == (0, grp.getgrnam('nova').gr_gid, 0o640)
    host = opened('cmp1', options(sshd, path))

    change = host.apply_transition('Westmere', ['+pcid'])
    assert change.changed and change.after == CpuSettings(
        'custom', ('Westmere',), ('+pcid',)
    )
    assert (
        'Kq9xT2pLm' not in change.diff
        and '+cpu_models = Westmere' in change.diff
    )
    new = path.read_bytes()
    marker = novaconf.find_marker(novaconf.decode(new))
    assert marker.backup == change.backup
    assert new == novaconf.encode(
        novaconf.apply_transition(
            novaconf.decode(KOLLA),
            'Westmere',
            ['+pcid'],
            marker.changed_at,
            marker.backup,
        )
    )
    assert stat_of(path) == before_stat
    (backup,) = backups(conf_dir)
    assert str(backup) == change.backup and backup.read_bytes() == KOLLA
    assert stat_of(backup) == before_stat
    assert leftovers(conf_dir) == []

    state = host.nova_conf()
    assert state.transitioned and state.backup == change.backup
    assert state.original.model == 'Skylake-Server-IBRS'
    assert (
        abs(
            state.changed_at - datetime.datetime.now(datetime.timezone.utc)
        ).total_seconds()
        < 60
    )

    # same settings again: nothing written
    again = host.apply_transition('Westmere', ['+pcid'])
    assert not again.changed and path.read_bytes() == new
    # same CPU, destinations named: the marker records them, keeps its
    # time (no CPU change, so no nova-compute restart is owed)
    named = host.apply_transition('Westmere', ['+pcid'],
                                  destinations=['amd-1', 'amd-2'])
    assert named.changed and named.before == named.after
    state = host.nova_conf()
    assert state.destinations == ('amd-1', 'amd-2')
    assert state.changed_at == marker.changed_at
    assert not host.apply_transition('Westmere', ['+pcid']).changed
    assert host.nova_conf().destinations == ('amd-1', 'amd-2')
    # other settings: re-applied on the original, same backup
    other = host.apply_transition('Nehalem', [])
    assert other.changed and other.backup == change.backup
    assert novaconf.read_settings(path.read_text()).extra_flags == ()
    assert backups(conf_dir) == [backup]

    restored = host.restore_original()
    assert restored.changed and restored.after.model == 'Skylake-Server-IBRS'
    assert path.read_bytes() == KOLLA
    assert stat_of(path) == before_stat
    assert not host.nova_conf().transitioned
    assert not host.restore_original().changed
    # a second transition reuses the identical backup
    third = host.apply_transition('Westmere', ['+pcid'])
    assert third.backup == change.backup and backups(conf_dir) == [backup]
    assert leftovers(conf_dir) == []


def test_dry_run_changes_nothing_and_masks(sshd, conf_dir, opened):
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('cmp1', options(sshd, path))
    change = host.apply_transition('Westmere', ['+pcid'], dry_run=True)
    assert change.changed and change.backup is None
    assert path.read_bytes() == DEVSTACK and backups(conf_dir) == []
    assert '-cpu_mode = host-model' in change.diff
    for secret in (
        'secretrabbit',
        'Sup3rS3cret',
        's3rv1ce-pa55',
        'dont-show-me',
    ):
        assert secret not in change.diff
    host.apply_transition('Westmere', ['+pcid'])
    dry = host.restore_original(dry_run=True)
    assert dry.changed and '+cpu_mode = host-model' in dry.diff
    assert path.read_bytes() != DEVSTACK


def test_restore_refuses_after_foreign_edit(sshd, conf_dir, opened):
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('cmp1', options(sshd, path))
    host.apply_transition('Westmere')
    edited = (
        path.read_bytes()
        + b'\n[workarounds]\nskip_cpu_compare_on_dest = True\n'
    )
    path.write_bytes(edited)
    with pytest.raises(HostError, match='edited after cpumigrate changed it'):
        host.restore_original()
    with pytest.raises(HostError, match='edited after cpumigrate changed it'):
        host.apply_transition('Nehalem')
    assert path.read_bytes() == edited


def test_odd_path_and_host_name(sshd, conf_dir, opened, monkeypatch):
    odd = conf_dir / 'it\'s a "dir" $(touch pwned)'
    path = install_conf(odd, DEVSTACK)
    # OpenSSH itself refuses such a host name, clearly
    with pytest.raises(HostError,
                       match='hostname contains invalid characters'):
        api.open_host('cmp1', options(sshd, path, ssh_host_format=ODD_FORMAT))
    # paramiko's parser (no ssh client installed) takes it: quoting is safe
    monkeypatch.setattr(sshconfig, 'openssh_client', lambda: None)
    host = opened('cmp1', options(sshd, path, ssh_host_format=ODD_FORMAT))
    assert host.name == 'cmp1'
    change = host.apply_transition('Westmere', ['+pcid'])
    assert pathlib.Path(change.backup).read_bytes() == DEVSTACK
    assert host.nova_conf().transitioned
    host.restore_original()
    assert path.read_bytes() == DEVSTACK
    assert not any('pwned' == p.name for p in conf_dir.rglob('*'))
    assert leftovers(odd) == []


def test_changed_host_key_refused(sshd, tmp_path):
    other = tmp_path / 'other'
    os.system('ssh-keygen -q -t ed25519 -N "" -f %s' % other)
    known = tmp_path / 'known_hosts'
    known.write_text('[127.0.0.1]:%d %s\n' % (
        sshd.port, ' '.join((tmp_path / 'other.pub').read_text().split()[:2])))
    config = tmp_path / 'ssh_config'
    config.write_text(
        sshd.ssh_config.read_text().replace(str(sshd.known_hosts), str(known))
    )
    with pytest.raises(HostError, match='has CHANGED .* might be an attack'):
        api.open_host('cmp1', HostOptions(ssh_config=str(config)))


def test_unknown_host_key_refused_unless_insecure(sshd, tmp_path, caplog):
    known = tmp_path / 'known_hosts'
    known.write_text('')
    config = tmp_path / 'ssh_config'
    config.write_text(
        sshd.ssh_config.read_text().replace(str(sshd.known_hosts), str(known))
    )
    with pytest.raises(HostError) as err:
        api.open_host('cmp1', HostOptions(ssh_config=str(config)))
    assert str(err.value) == (
        'SSH host key of cmp1 (127.0.0.1) is not known: verify it and add it '
        'to '
        '~/.ssh/known_hosts (e.g. ssh-keyscan -p %d 127.0.0.1 >> '
        '~/.ssh/known_hosts), '
        'or use --insecure-ssh' % sshd.port
    )
    with caplog.at_level(logging.WARNING):
        host = api.open_host(
            'cmp1', HostOptions(ssh_config=str(config), insecure_ssh=True)
        )
        host.close()
    assert 'insecure-ssh' in caplog.text
    assert known.read_text() == ''   # never written to


def test_sudo_asking_for_password_is_a_clear_error(sshd):
    with pytest.raises(HostError) as err:
        api.open_host('nosudo', HostOptions(ssh_config=str(sshd.ssh_config)))
    assert str(err.value) == (
        'sudo on nosudo asks for a password: cpumigrate needs passwordless '
        'sudo (sudo -n) '
        'for cpmnosudo; or log in as root and use --no-sudo'
    )


def test_root_login_without_sudo(sshd, conf_dir, opened):
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('rootlogin', options(sshd, path, sudo=False))
    assert 'sudo' not in host.command_line(['true'])
    host.apply_transition('Westmere')
    host.restore_original()
    assert path.read_bytes() == DEVSTACK


def test_unreachable_and_bad_login(sshd, tmp_path):
    with socket.socket() as sock:      # a port nobody listens on
        sock.bind(('127.0.0.1', 0))
        free_port = sock.getsockname()[1]
    config = tmp_path / 'ssh_config'
    config.write_text(
        'Host nohost\n  HostName 127.0.0.1\n  Port %d\n' % free_port
    )
    with pytest.raises(
        HostError,
        match=r'cannot connect to nohost \(127.0.0.1:%d\)' % free_port,
    ):
        api.open_host(
            'nohost', HostOptions(ssh_config=str(config), connect_timeout=2)
        )
    with pytest.raises(
        HostError, match='SSH login to cmp1 .* as nobody failed'
    ):
        api.open_host(
            'cmp1',
            HostOptions(ssh_config=str(sshd.ssh_config), ssh_user='nobody'),
        )


def test_restart_override_and_started_at(sshd, conf_dir, opened):
    flag = conf_dir / "restarted it's"
    host = opened(
        'cmp1',
        options(
            sshd,
            restart_command='touch %s' % __import__('shlex').quote(str(flag)),
        ),
    )
    host.restart_nova_compute()
    assert flag.exists() and os.stat(flag).st_uid == 0
    # no systemd in the test container: unknown, not an error
    assert host.compute_started_at() is None
    bad = opened('cmp1', options(sshd, restart_command='exit 3'))
    with pytest.raises(
        HostError, match='restarting nova-compute on cmp1 failed'
    ):
        bad.restart_nova_compute()


def test_libvirt_reads(sshd, opened):
    host = opened('cmp1', options(sshd))
    cpu_map = host.cpu_map()
    if cpu_map:
        assert 'index.xml' in cpu_map and '<cpus>' in cpu_map['index.xml']
    run, host._run = host._run, None      # read once per session
    assert host.cpu_map() == cpu_map
    host._run = run
    # no libvirtd here: a clear HostError, not a hang or a crash
    with pytest.raises(HostError):
        host.compare_cpu("<cpu mode='custom'><model>Westmere</model></cpu>")
    with pytest.raises(HostError):
        host.guest_cpu('0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0')


def _wait_no_stage(directory, timeout=10.0):
    deadline = time.monotonic() + timeout
    while leftovers(directory) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_connection_dropped_during_upload_leaves_old_file(
    sshd, conf_dir, opened, monkeypatch
):
    big = DEVSTACK + b''.join(
        b'# padding line %06d to make the upload span many packets\n' % i
        for i in range(40000)
    )
    path = install_conf(conf_dir, big)
    before = stat_of(path)
    host = opened('cmp1', options(sshd, path))
    real_send = remote.RemoteHost._send

    def send_half_then_drop(self, channel, data):
        real_send(self, channel, data[:len(data) // 2])
        time.sleep(0.2)
        sshd.drop_connections()
        time.sleep(0.2)
        real_send(self, channel, data[len(data) // 2:])

    monkeypatch.setattr(remote.RemoteHost, '_send', send_half_then_drop)
    with pytest.raises(
        HostError, match='either unchanged or completely written'
    ):
        host.apply_transition('Westmere', ['+pcid'])
    _wait_no_stage(conf_dir)
    assert path.read_bytes() == big
    assert stat_of(path) == before
    assert leftovers(conf_dir) == [] and backups(conf_dir) == []


def test_connection_dropped_after_write_leaves_new_file(
    sshd, conf_dir, opened, monkeypatch
):
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('cmp1', options(sshd, path))
    real = remote.RemoteHost._run_input

    def run_then_drop(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        sshd.drop_connections()
        return result

    monkeypatch.setattr(remote.RemoteHost, '_run_input', run_then_drop)
    try:
        host.apply_transition('Westmere', ['+pcid'])
    except HostError:
        pass   # the read-back may or may not reconnect: both are fine
    content = path.read_bytes()
    marker = novaconf.find_marker(novaconf.decode(content))
    assert content == novaconf.encode(
        novaconf.apply_transition(
            novaconf.decode(DEVSTACK),
            'Westmere',
            ['+pcid'],
            marker.changed_at,
            marker.backup,
        )
    )
    assert leftovers(conf_dir) == []


def test_concurrent_change_aborts_write(sshd, conf_dir, opened, monkeypatch):
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('cmp1', options(sshd, path))
    real = remote.RemoteHost.write_file

    def someone_edits_first(self, *args, **kwargs):
        path.write_bytes(DEVSTACK + b'# edited meanwhile\n')
        return real(self, *args, **kwargs)

    monkeypatch.setattr(remote.RemoteHost, 'write_file', someone_edits_first)
    with pytest.raises(HostError, match='changed by someone else'):
        host.apply_transition('Westmere')
    assert path.read_bytes() == DEVSTACK + b'# edited meanwhile\n'
    assert leftovers(conf_dir) == [] and backups(conf_dir) == []


def test_proxy_jump_verifies_every_hop(sshd, conf_dir, opened, tmp_path):
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('jumped', options(sshd, path))
    assert host.connection.gateway.original_host == 'cmp1'
    assert host.nova_conf().sha256 == novaconf.sha256(DEVSTACK)
    # the jump host's key unknown: refused, and the message says which hop
    known = tmp_path / 'known_hosts'
    known.write_text('')
    text = sshd.ssh_config.read_text()
    head, _, tail = text.partition('Host "jumped"')
    config = tmp_path / 'ssh_config'
    config.write_text(
        head.replace(str(sshd.known_hosts), str(known))
        + 'Host "jumped"'
        + tail
    )
    with pytest.raises(
        HostError,
        match=r'SSH host key of jump host cmp1 of jumped \(127.0.0.1\) '
        r'is not known',
    ):
        api.open_host('jumped', HostOptions(ssh_config=str(config)))


def test_identity_and_lock_over_ssh(sshd, conf_dir, opened):
    """The machine's name ([DEFAULT] host, else uname -n) and the host lock
    next to nova.conf, through sudo."""
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('cmp1', options(sshd, path))
    ident = host.identity()
    assert ident.hostname == os.uname().nodename
    assert ident.conf_host == novaconf.read_option(
        novaconf.decode(DEVSTACK), 'DEFAULT', 'host')
    other = opened('cmp1', options(sshd, path))
    assert host.lock_file('take', content='{"token": "t1"}') == (True, '')
    done, held = other.lock_file('take', content='{"token": "t2"}')
    assert not done and held.splitlines()[1] == '{"token": "t1"}'
    lock = conf_dir / 'cpumigrate.lock'
    assert lock.stat().st_uid == 0
    assert host.lock_file('release', token='t1') == (True, '')
    assert not lock.exists() and sorted(os.listdir(conf_dir)) == ['nova.conf']


def test_deleted_backup_restores_from_the_marker(sshd, conf_dir, opened):
    """Issue 11 part 5: the marker keeps the original CPU lines."""
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('cmp1', options(sshd, path))
    change = host.apply_transition('Westmere', ['+pcid'])
    assert host.restorable_problem() is None
    os.unlink(change.backup)
    state = host.nova_conf()                 # status still works
    assert state.transitioned
    assert 'cannot read %s' % change.backup in state.problem
    assert 'marker comment stand in' in state.problem
    assert state.original == novaconf.read_settings(DEVSTACK.decode())
    assert host.restorable_problem() is None
    before = datetime.datetime.now(datetime.timezone.utc).replace(
        microsecond=0)
    host.restore_original()
    assert novaconf.read_settings(path.read_text()) == \
        novaconf.read_settings(DEVSTACK.decode())
    assert path.read_bytes() == DEVSTACK     # one block: exact
    assert stat_of(path)[2] == 0o640
    assert host.restored_at() >= before      # restart pending from here


def test_changed_backup_is_not_restored(sshd, conf_dir, opened):
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('cmp1', options(sshd, path))
    change = host.apply_transition('Westmere')
    pathlib.Path(change.backup).write_bytes(DEVSTACK + b'# someone\n')
    assert 'was changed after it was saved' in host.nova_conf().problem
    host.restore_original()
    assert path.read_bytes() == DEVSTACK


def test_restorable_problem_names_a_foreign_edit(sshd, conf_dir, opened):
    path = install_conf(conf_dir, DEVSTACK)
    host = opened('cmp1', options(sshd, path))
    host.apply_transition('Westmere')
    path.write_bytes(path.read_bytes() + b'\n[workarounds]\nx = 1\n')
    assert 'edited after cpumigrate changed it' in host.restorable_problem()
    assert host.restored_at() is None
