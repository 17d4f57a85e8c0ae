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

"""Help that teaches: one-line descriptions, epilogs with an example and
the next verb, only the options a verb uses, usage errors from argparse."""

import os
import shutil
import subprocess
import sys

import pytest

from osc_cpumigrate.commands import check
from osc_cpumigrate.commands import finalize
from osc_cpumigrate.commands import migrate
from osc_cpumigrate.commands import pin
from osc_cpumigrate.commands import prepare
from osc_cpumigrate.commands import status

COMMANDS = {
    'check': check.CheckHost,
    'prepare': prepare.PrepareHost,
    'pin': pin.PinServers,
    'migrate': migrate.MigrateServers,
    'finalize': finalize.FinalizeServers,
    'status': status.ShowStatus,
}
NEXT = {'check': 'prepare', 'prepare': 'pin', 'pin': 'migrate',
        'migrate': 'finalize', 'finalize': 'status', 'status': 'pin'}


def help_text(verb):
    cmd = COMMANDS[verb](None, None)
    return cmd.get_parser('openstack cpumigrate %s' % verb).format_help()


@pytest.mark.parametrize('verb', sorted(COMMANDS))
def test_description_is_one_osc_style_line(verb):
    description = COMMANDS[verb](None, None).get_description()
    assert '\n' not in description
    assert description[0].isupper() and not description.endswith('.')
    assert len(description) <= 100


@pytest.mark.parametrize('verb', sorted(COMMANDS))
def test_epilog_has_an_example_and_the_next_verb(verb):
    text = help_text(verb)
    example = text[text.index('Example::'):]
    # the example is kept as an indented block, not reflowed
    assert '\n    openstack cpumigrate %s ' % verb in example
    assert 'Next: ``openstack cpumigrate %s' % NEXT[verb] in text


@pytest.mark.parametrize('verb', sorted(COMMANDS))
def test_ssh_and_deployment_options_are_grouped(verb):
    text = help_text(verb)
    ssh = text[text.index('SSH options:'):text.index('deployment options:')]
    for option in ('--ssh-config', '--ssh-user', '--ssh-host-format',
                   '--ssh-timeout', '--insecure-ssh', '--no-sudo'):
        assert option in ssh
    assert '--profile' in text[text.index('deployment options:'):]


@pytest.mark.parametrize('verb,hidden', [
    ('check', ('--restart-command', '--service-timeout', '--nova-conf',
               '--dry-run')),
    ('status', ('--restart-command', '--service-timeout', '--dry-run')),
    ('migrate', ('--restart-command', '--service-timeout')),
    ('finalize', ('--restart-command', '--service-timeout')),
])
def test_verbs_do_not_show_options_they_ignore(verb, hidden):
    text = help_text(verb)
    for option in hidden:
        assert option not in text


def test_read_only_verbs_still_accept_dry_run():
    for verb in ('check', 'status'):
        parser = COMMANDS[verb](None, None).get_parser(verb)
        args = ['h', '--dry-run'] + (['--destination', 'd']
                                     if verb == 'check' else [])
        assert parser.parse_args(args).dry_run


def openstack(*argv):
    exe = shutil.which('openstack') or os.path.join(
        os.path.dirname(sys.executable), 'openstack')
    # OSC authenticates before it parses a verb's arguments; with auth type
    # "none" it has nothing to fetch, so the parse is all that happens
    env = dict(os.environ, OS_CLOUD='', OS_CLIENT_CONFIG_FILE='/nonexistent',
               OS_AUTH_TYPE='none', OS_ENDPOINT='http://127.0.0.1:9')
    return subprocess.run([exe, *argv], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize('argv,message', [
    (['migrate', 'intel-1'],
     'the following arguments are required: --destination'),
    (['check', 'intel-1'],
     'the following arguments are required: --destination'),
    (['prepare', 'intel-1'], '--cpu-model auto (the default) needs the '
                             'destinations'),
    (['status', 'intel-1', '--ssh-timeout', 'soon'],
     'argument --ssh-timeout: expected a number of seconds'),
])
def test_usage_errors_exit_2_before_any_cloud_call(argv, message):
    proc = openstack('cpumigrate', *argv)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ''
