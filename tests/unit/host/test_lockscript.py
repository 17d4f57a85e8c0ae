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

"""The host lock script (remote.LOCK_SCRIPT), run by a local ``sh``: the
same shell code cpumigrate runs as root on a hypervisor."""

import json
import subprocess

from osc_cpumigrate.host import remote


def lock(path, op, token='', content=''):
    proc = subprocess.run(['sh', '-c', remote.LOCK_SCRIPT, 'cpumigrate-lock',
                           op, str(path), token, content],
                          capture_output=True, text=True)
    return proc.returncode, proc.stdout


def record(token):
    return json.dumps({'user': 'alice', 'token': token})


def test_take_is_exclusive_and_names_the_holder(tmp_path):
    path = tmp_path / 'cpumigrate.lock'
    assert lock(path, 'take', content=record('t1')) == (0, '')
    code, out = lock(path, 'take', content=record('t2'))
    assert code == 3
    head, _, body = out.partition('\n')
    assert head.startswith('age ') and int(head.split()[1]) >= 0
    assert json.loads(body)['token'] == 't1'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cpumigrate.lock']


def test_refresh_and_release_need_the_token(tmp_path):
    path = tmp_path / 'cpumigrate.lock'
    lock(path, 'take', content=record('t1'))
    assert lock(path, 'refresh', 't2', record('t2'))[0] == 3
    assert lock(path, 'refresh', 't1', record('t1'))[0] == 0
    assert lock(path, 'release', 't2')[0] == 0
    assert path.exists()
    assert lock(path, 'release', 't1')[0] == 0
    assert not path.exists()


def test_take_over_replaces_only_the_lock_it_was_told_of(tmp_path):
    path = tmp_path / 'cpumigrate.lock'
    lock(path, 'take', content=record('dead'))
    assert lock(path, 'take', 'other', record('me'))[0] == 3
    assert lock(path, 'take', 'dead', record('me'))[0] == 0
    assert json.loads(path.read_text())['token'] == 'me'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cpumigrate.lock']


def test_a_full_file_system_leaves_no_unreadable_lock(tmp_path):
    """/etc/nova full (the lab's etc-nova-full): the empty staging file
    must not become the lock, or every later run meets an unreadable lock
    that --break-lock cannot take over.  ``ulimit -f 0`` makes every write
    fail as ENOSPC does, while creating a file still works."""
    path = tmp_path / 'cpumigrate.lock'
    proc = subprocess.run(
        ['sh', '-c', 'trap "" XFSZ; ulimit -f 0; ' + remote.LOCK_SCRIPT,
         'cpumigrate-lock', 'take', str(path), '', record('t1')],
        capture_output=True, text=True)
    assert proc.returncode == 10
    assert 'cannot write a file next to' in proc.stderr
    assert list(tmp_path.iterdir()) == []
