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

"""Settings: command line > environment > clouds.yaml > default; bad
values are errors wherever they come from."""

import argparse
import io
from unittest import mock

from osc_lib import exceptions as osc_exc
import pytest

from osc_cpumigrate.commands import base
from osc_cpumigrate.commands import settings
from osc_cpumigrate.commands import status
from tests.unit.test_commands import CommandTest


def parsed(**given):
    return argparse.Namespace(**given)


def test_defaults():
    values = settings.resolve(parsed(), {}, environ={})
    assert values == {s.name: s.default for s in settings.SETTINGS}
    assert values['ssh_host_format'] == '{host}'
    assert values['service_timeout'] == 180.0


def test_precedence_cli_env_cloud_default():
    cloud = {'cloud': 'prod', 'cpumigrate': {
        'ssh_user': 'from-cloud', 'profile': 'kolla',
        'ssh_timeout': 30, 'insecure_ssh': True,
        'nova_conf': '/etc/kolla/nova-compute/nova.conf'}}
    env = {'OS_CPUMIGRATE_SSH_USER': 'from-env',
           'OS_CPUMIGRATE_PROFILE': 'rhel'}
    values = settings.resolve(parsed(ssh_user='from-cli'), cloud, env)
    assert values['ssh_user'] == 'from-cli'          # CLI beats all
    assert values['profile'] == 'rhel'               # env beats clouds.yaml
    assert values['ssh_timeout'] == 30.0             # clouds.yaml
    assert values['insecure_ssh'] is True
    assert values['nova_conf'] == '/etc/kolla/nova-compute/nova.conf'
    assert values['restart_command'] is None         # default


def test_empty_environment_variable_is_unset():
    cloud = {'cpumigrate': {'ssh_user': 'ops'}}
    values = settings.resolve(parsed(), cloud, {'OS_CPUMIGRATE_SSH_USER': ''})
    assert values['ssh_user'] == 'ops'


@pytest.mark.parametrize('env,cloud,needle', [
    ({'OS_CPUMIGRATE_SSH_TIMEOUT': 'ten'}, {},
     'invalid OS_CPUMIGRATE_SSH_TIMEOUT=ten: expected a number'),
    ({'OS_CPUMIGRATE_SERVICE_TIMEOUT': '-5'}, {},
     'expected a positive number'),
    ({'OS_CPUMIGRATE_INSECURE_SSH': 'maybe'}, {},
     'invalid OS_CPUMIGRATE_INSECURE_SSH=maybe: expected one of'),
    ({'OS_CPUMIGRATE_PROFILE': 'openshift'}, {},
     'expected one of default, rhel, kolla'),
    ({}, {'cpumigrate': {'profile': 'Kolla'}},
     "clouds.yaml (cloud prod): cpumigrate.profile: 'Kolla'"),
    ({}, {'cpumigrate': {'ssh_host_format': 'mgmt.example.net'}},
     'containing {host}'),
    ({}, {'cpumigrate': {'ssh_host_format': '{hostname}.x'}},
     'containing {host}'),
    ({}, {'cpumigrate': {'ssh_host_format': '{host}.{x}'}},
     'use {host} for the Nova host name'),
    ({}, {'cpumigrate': {'nova_conf': 'nova.conf'}}, 'absolute path'),
    ({}, {'cpumigrate': {'ssh_timeout': True}}, 'number of seconds'),
    ({}, {'cpumigrate': {'no_sudo': 'sometimes'}}, 'expected one of'),
    ({}, {'cpumigrate': {'ssh_usr': 'ops'}},
     'unknown setting ssh_usr (known: ssh_config, ssh_user,'),
    ({}, {'cpumigrate': ['ssh_user']}, 'must be a mapping'),
])
def test_invalid_values_are_errors(env, cloud, needle):
    cloud = dict(cloud, cloud='prod')
    with pytest.raises(settings.SettingsError) as exc:
        settings.resolve(parsed(), cloud, env)
    assert needle in str(exc.value)
    assert '\n' not in str(exc.value)


def test_invalid_command_line_value_is_a_usage_error():
    cmd = status.ShowStatus(None, None)
    parser = cmd.get_parser('openstack cpumigrate status')
    for args in (['h', '--ssh-timeout', 'x'], ['h', '--profile', 'nope'],
                 ['h', '--ssh-host-format', 'static-name'],
                 ['h', '--nova-conf', 'relative/nova.conf']):
        with mock.patch('sys.stderr', io.StringIO()) as err:
            with pytest.raises(SystemExit) as exc:
                parser.parse_args(args)
        assert exc.value.code == 2
        assert 'error: argument --' in err.getvalue()


class TestCloudsYaml(CommandTest):
    """The cloud's ``cpumigrate:`` mapping as OSC's ClientManager hands it
    over (``get_configuration()``) reaches the host layer."""

    def setUp(self):
        super().setUp()
        self.config = {'cloud': 'lab', 'cpumigrate': {
            'ssh_user': 'ops', 'ssh_host_format': '{host}.mgmt',
            'profile': 'kolla', 'service_timeout': 42}}
        self.app.client_manager.get_configuration = lambda: self.config
        env = mock.patch.dict('os.environ', dict.fromkeys(
            (s.env for s in settings.SETTINGS), ''))
        env.start()
        self.addCleanup(env.stop)

    def test_clouds_yaml_settings_reach_the_host_layer(self):
        cmd, parsed_args = self.run_cmd(status.ShowStatus,
                                        ['amd-1', '--profile', 'rhel'])
        ctx = base.context(cmd, parsed_args)
        opts = ctx.host_options
        self.assertEqual('ops', opts.ssh_user)
        self.assertEqual('{host}.mgmt', opts.ssh_host_format)
        self.assertEqual('rhel', opts.profile)        # the command line wins
        self.assertEqual(42.0, ctx.service_timeout)

    def test_bad_clouds_yaml_value_fails_the_verb(self):
        self.config['cpumigrate']['ssh_timeout'] = 'soon'
        cmd, parsed_args = self.run_cmd(status.ShowStatus, ['amd-1'])
        exc = self.assertRaises(osc_exc.CommandError, cmd.take_action,
                                parsed_args)
        self.assertIn('cpumigrate.ssh_timeout', str(exc))
        self.open_host.assert_not_called()


def test_openstack_config_keeps_the_cpumigrate_key(tmp_path):
    """OSC builds ClientManager from openstack.config's CloudRegion, whose
    ``config`` is what ``get_configuration()`` returns: the cloud's own
    ``cpumigrate:`` mapping must survive openstack.config's loading."""
    from openstack import config as os_config

    path = tmp_path / 'clouds.yaml'
    path.write_text(
        'clouds:\n'
        '  lab:\n'
        '    auth: {auth_url: "http://127.0.0.1:1/identity",'
        ' username: u, password: p, project_name: p}\n'
        '    cpumigrate:\n'
        '      ssh_user: ops\n'
        '      ssh_timeout: 30\n')
    loader = os_config.OpenStackConfig(config_files=[str(path)],
                                       vendor_files=[])
    region = loader.get_one(cloud='lab')
    values = settings.resolve(parsed(), region.config, environ={})
    assert values['ssh_user'] == 'ops'
    assert values['ssh_timeout'] == 30.0
