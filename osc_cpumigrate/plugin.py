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

"""OpenStackClient plugin contract for ``openstack cpumigrate``.

Kept deliberately light: ``openstack`` imports this module on every run, so
nothing here (or in the command modules) imports fabric, paramiko, invoke or
configupdater.
"""

import argparse
import logging
import os
from typing import Any

LOG = logging.getLogger(__name__)

API_NAME = 'cpumigrate'
API_VERSION_OPTION = 'os_cpumigrate_api_version'
API_VERSIONS = {'1': 'osc_cpumigrate.plugin.Client'}
DEFAULT_API_VERSION = '1'


class Client:
    """What the commands get as ``client_manager.cpumigrate``."""

    def __init__(self, sdk_connection: Any) -> None:
        self.sdk_connection = sdk_connection


def make_client(instance: Any) -> Client:
    """Hand the commands the SDK connection OSC already built."""
    LOG.debug('cpumigrate client built on the SDK connection')
    return Client(instance.sdk_connection)


def build_option_parser(
    parser: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    """Global option, as every OSC plugin has; SSH options live on the
    verbs."""
    parser.add_argument(
        '--os-cpumigrate-api-version',
        metavar='<cpumigrate-api-version>',
        default=os.environ.get('OS_CPUMIGRATE_API_VERSION'),
        help='cpumigrate API version, default=%s '
        '(Env: OS_CPUMIGRATE_API_VERSION)' % DEFAULT_API_VERSION,
    )
    return parser
