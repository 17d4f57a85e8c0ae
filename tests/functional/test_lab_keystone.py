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

"""The lab's Keystone behaves as a real cloud's: passwords are checked,
roles decide, and tokens expire while long verbs run (that one is
test_lab_nova_failures.py::test_verb_outlives_its_token: it needs a
same-CPU live migration, and shares the destination's one workaround
restart with the other test that needs one).
"""

import pytest

from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import run

pytestmark = pytest.mark.lab


def test_invalid_password_is_refused(lab_env):
    proc = run(lab_env, [OPENSTACK, '--os-password', 'not-the-password',
                         'server', 'list'], ok=False)
    assert proc.returncode != 0
    assert 'HTTP 401' in proc.stderr, proc.stderr


def test_member_signs_in_but_gets_403_on_admin_apis(lab_env):
    member = dict(lab_env, OS_CLOUD='cpumigrate-lab-member')
    token = osc(member, 'token', 'issue')
    project = osc(lab_env, 'project', 'show', 'demo')
    assert token['project_id'] == project['id']
    assert osc(member, 'server', 'list') == []
    proc = run(member, [OPENSTACK, 'hypervisor', 'list'], ok=False)
    assert proc.returncode != 0
    assert '403' in proc.stderr, proc.stderr
