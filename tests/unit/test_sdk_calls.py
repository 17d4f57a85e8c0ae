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

"""Every openstacksdk compute proxy call the plugin makes binds to the
installed SDK's signature.

The requirement floor is only true if this holds for the oldest version
requirements.txt allows (``tools/lower-bounds`` runs this test against
it): with openstacksdk 4.0.x, ``migrate_server(server, host=...)`` is a
TypeError at the moment a stopped server is cold-migrated.
"""

import ast
import inspect
import pathlib

from openstack.compute.v2 import _proxy
import pytest

PACKAGE = pathlib.Path(__file__).parents[2] / 'osc_cpumigrate'


def _is_compute(node):
    """``<anything>.compute`` or a name ``compute``."""
    return ((isinstance(node, ast.Attribute) and node.attr == 'compute')
            or (isinstance(node, ast.Name) and node.id == 'compute'))


def compute_calls():
    """(where, method, positional count, keyword names) of every call of a
    compute proxy method, direct or through ``read(method, ...)``."""
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func, args = node.func, node.args
            if (isinstance(func, ast.Attribute) and func.attr == 'read'
                    and args and isinstance(args[0], ast.Attribute)
                    and _is_compute(args[0].value)):
                func, args = args[0], args[1:]
            elif not (isinstance(func, ast.Attribute)
                      and _is_compute(func.value)):
                continue
            if any(isinstance(a, ast.Starred) for a in args) or any(
                    k.arg is None for k in node.keywords):
                continue
            where = '%s:%d' % (path.relative_to(PACKAGE.parent), node.lineno)
            found.append((where, func.attr, len(args),
                          tuple(k.arg for k in node.keywords)))
    return found


CALLS = compute_calls()


def test_calls_were_found():
    names = {call[1] for call in CALLS}
    assert {'migrate_server', 'live_migrate_server'} <= names


@pytest.mark.parametrize('where,method,positional,keywords', CALLS,
                         ids=['%s %s' % (c[0], c[1]) for c in CALLS])
def test_call_binds_to_the_installed_sdk(where, method, positional,
                                         keywords):
    signature = inspect.signature(getattr(_proxy.Proxy, method))
    try:
        signature.bind(None, *([None] * positional),
                       **dict.fromkeys(keywords))
    except TypeError as exc:
        pytest.fail('%s: Proxy.%s%s does not take this call: %s'
                    % (where, method, signature, exc))
