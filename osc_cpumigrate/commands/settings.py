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

"""Where the SSH and deployment settings come from, and what is valid.

An operator with several clouds wants each cloud's hypervisor access
(login user, SSH name format, deployment profile, nova.conf path) written
down once, next to the cloud's credentials: clouds.yaml takes a
``cpumigrate:`` mapping in each cloud::

    clouds:
      prod:
        auth: ...
        cpumigrate:
          ssh_user: ops
          ssh_host_format: '{host}.mgmt.example.net'
          profile: kolla

Precedence is the usual one: the command line, then the environment
(``OS_CPUMIGRATE_*``), then clouds.yaml, then the default.  A value that is
not valid is an error wherever it comes from, never a silent default, and
so is an unknown key under ``cpumigrate:`` (a typo must not go unnoticed).

The command line defaults are ``None``, so "not given" can be told from "given
the default"; the same parsers check command line values (argparse ``type``:
a bad value there is a usage error, exit 2) and the other sources.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Mapping
import dataclasses
import os
from typing import Any

from osc_cpumigrate.choices import PROFILES
from osc_cpumigrate.errors import WorkflowError

TRUE = ('1', 'true', 'yes', 'on')
FALSE = ('0', 'false', 'no', 'off')
SECTION = 'cpumigrate'


class SettingsError(WorkflowError):
    """A setting has a value that is not valid; one line for the operator."""


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError('expected a non-empty string')
    return value


def path(value: Any) -> str:
    return text(value)


def absolute_path(value: Any) -> str:
    if not text(value).startswith('/'):
        raise ValueError('expected an absolute path on the hypervisor')
    return value


def seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError('expected a number of seconds')
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError('expected a number of seconds') from None
    if not 0 < number < float('inf'):
        raise ValueError('expected a positive number of seconds')
    return number


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise ValueError('expected one of %s' % ', '.join(TRUE + FALSE))


def profile(value: Any) -> str:
    if value not in PROFILES:
        raise ValueError('expected one of %s' % ', '.join(PROFILES))
    return value


def host_format(value: Any) -> str:
    text(value)
    if '{host}' not in value:
        raise ValueError('expected a format containing {host}, '
                         'e.g. {host}.mgmt.example.net')
    try:
        value.format(host='compute-1')
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError('use {host} for the Nova host name (%s)'
                         % exc) from None
    return value


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its option dest and clouds.yaml key, its variable."""

    name: str
    parse: Callable[[Any], Any]
    default: Any

    @property
    def env(self) -> str:
        return 'OS_CPUMIGRATE_' + self.name.upper()

    @property
    def option(self) -> str:
        return '--' + self.name.replace('_', '-')


SETTINGS = (
    Setting('ssh_config', path, None),
    Setting('ssh_user', text, None),
    Setting('ssh_host_format', host_format, '{host}'),
    Setting('ssh_timeout', seconds, 10.0),
    Setting('insecure_ssh', flag, False),
    Setting('no_sudo', flag, False),
    Setting('profile', profile, 'default'),
    Setting('nova_conf', absolute_path, None),
    Setting('restart_command', text, None),
    Setting('service_timeout', seconds, 180.0),
    Setting('api_timeout', seconds, 60.0),
    Setting('api_retry_time', seconds, 180.0),
    # None: audit.default_path() (XDG state directory)
    Setting('audit_log', path, None),
)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def arg_type(name: str) -> Callable[[str], Any]:
    """argparse ``type=`` for a setting: a bad value is a usage error."""
    parse = BY_NAME[name].parse

    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name     # argparse names it in "invalid <name> value"
    return convert


def help_suffix(name: str) -> str:
    """The help text's note of where else the setting can come from."""
    return '(Env: %s; clouds.yaml: %s.%s)' % (BY_NAME[name].env, SECTION,
                                              name)


def cloud_section(cloud_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``cpumigrate:`` mapping of the cloud in use, checked."""
    config = cloud_config or {}
    section = config.get(SECTION)
    where = 'clouds.yaml (cloud %s): %s' % (config.get('cloud') or '?',
                                           SECTION)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise SettingsError('%s: must be a mapping of settings (%s)'
                            % (where, ', '.join(BY_NAME)))
    unknown = sorted(str(key) for key in section if key not in BY_NAME)
    if unknown:
        raise SettingsError('%s: unknown setting %s (known: %s)'
                            % (where, ', '.join(unknown), ', '.join(BY_NAME)))
    return dict(section)


def resolve(parsed_args: argparse.Namespace,
            cloud_config: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting's value: command line, environment, clouds.yaml,
    default.  Raises :class:`SettingsError` naming the source of a bad
    value."""
    environ = os.environ if environ is None else environ
    section = cloud_section(cloud_config)
    cloud = (cloud_config or {}).get('cloud') or '?'
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        given = getattr(parsed_args, setting.name, None)
        if given is not None:
            values[setting.name] = given
            continue
        raw = environ.get(setting.env, '')
        if raw.strip():
            source = '%s=%s' % (setting.env, raw)
        elif setting.name in section:
            raw = section[setting.name]
            source = 'clouds.yaml (cloud %s): %s.%s: %r' % (
                cloud, SECTION, setting.name, raw)
        else:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise SettingsError('invalid %s: %s' % (source, exc)) from None
    return values
