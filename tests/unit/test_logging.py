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

"""Progress and warnings through logging, configured the way OSC does it
(osc_lib.logs.LogConfigurator, the real one): -q silences progress,
--log-file captures it with timestamps, --debug keeps tracebacks."""

import argparse
import io
import logging
import re
from unittest import mock

from osc_lib import exceptions as osc_exc
from osc_lib import logs as osc_logs
import pytest

from osc_cpumigrate import errors
from osc_cpumigrate.commands import logs
from osc_cpumigrate.commands import prepare
from tests.unit.test_commands import CommandTest


@pytest.fixture
def osc_logging():
    """Configure logging as `openstack` does; restore the root logger."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    made = []

    def configure(verbose_level=1, log_file=None, debug=False):
        options = argparse.Namespace(verbose_level=verbose_level,
                                     log_file=log_file, debug=debug,
                                     cloud='', os_project_name='',
                                     username='')
        configurator = osc_logs.LogConfigurator(options)
        made.append(configurator)
        return argparse.Namespace(options=options,
                                  log_configurator=configurator)

    yield configure
    for configurator in made:
        for handler in (configurator.console_logger,
                        configurator.file_logger):
            if handler is not None:
                handler.close()
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])
    logging.getLogger(logs.PROGRESS).handlers[:] = []


def test_progress_shown_by_default_with_time(osc_logging):
    app = osc_logging(verbose_level=1)
    err = io.StringIO()
    logs.progress_callback(app, err)('intel-1: restarting nova-compute\n')
    assert re.fullmatch(r'\d\d:\d\d:\d\d intel-1: restarting nova-compute\n',
                        err.getvalue())


def test_quiet_silences_progress_not_errors(osc_logging, capsys):
    app = osc_logging(verbose_level=0)
    err = io.StringIO()
    logs.progress_callback(app, err)('intel-1: restarting nova-compute')
    logging.getLogger('osc_cpumigrate.host.ssh').error('sshd went away')
    assert err.getvalue() == ''
    assert 'sshd went away' in capsys.readouterr().err


def test_log_file_captures_progress_and_warnings(osc_logging, tmp_path):
    path = tmp_path / 'cpumigrate.log'
    app = osc_logging(verbose_level=1, log_file=str(path))
    err = io.StringIO()
    progress = logs.progress_callback(app, err)
    progress('amd-1: restarting vm-1 (hard-reboot)')
    logging.getLogger('osc_cpumigrate.host.ssh').warning(
        '--insecure-ssh: SSH host keys are not verified for intel-1')
    logging.getLogger('osc_cpumigrate.host.remote').debug('not wanted')
    app.log_configurator.file_logger.flush()
    lines = path.read_text().splitlines()
    stamp = r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ '
    assert re.match(stamp + r'INFO osc_cpumigrate.progress .*'
                    r'amd-1: restarting vm-1', lines[0]), lines
    assert re.match(stamp + r'WARNING osc_cpumigrate.host.ssh .*'
                    r'--insecure-ssh', lines[1]), lines
    assert len(lines) == 2
    # progress still on the console, once
    assert err.getvalue().count('restarting vm-1') == 1


def test_verbose_shows_progress_once(osc_logging, capsys):
    app = osc_logging(verbose_level=2)
    err = io.StringIO()
    logs.progress_callback(app, err)('amd-1: restarting vm-1')
    logs.progress_callback(app, err)('amd-1: restarting vm-2')
    assert err.getvalue().count('restarting') == 2
    assert 'restarting' not in capsys.readouterr().err


class TestQuietCommand(CommandTest):

    def test_quiet_prepare_prints_no_progress(self):
        self.app.options = argparse.Namespace(verbose_level=0, debug=False)
        self.app.log_configurator = None
        cmd, parsed = self.run_cmd(prepare.PrepareHost,
                                   ['intel-1', '--cpu-model', 'kvm64'])
        cmd.take_action(parsed)
        self.assertEqual('', self.app.stderr.getvalue())
        self.app.options.verbose_level = 1
        cmd.take_action(parsed)         # idempotent: nothing to do
        self.addCleanup(logging.getLogger(logs.PROGRESS).handlers.clear)


def test_command_error_keeps_the_cause_for_debug():
    from osc_cpumigrate.errors import HostError

    class Cmd:
        @errors.translate_errors
        def take_action(self, parsed_args):
            raise HostError('cannot reach intel-1')

    with pytest.raises(osc_exc.CommandError) as exc:
        Cmd().take_action(mock.Mock())
    assert isinstance(exc.value.__cause__, HostError)
    assert str(exc.value) == 'cannot reach intel-1'
