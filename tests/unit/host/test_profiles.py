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

"""Deployment profiles and service start times."""

import datetime

import pytest

from osc_cpumigrate.errors import HostError
from osc_cpumigrate.host import profiles

UTC = datetime.timezone.utc


def test_profiles():
    assert profiles.get_profile('default').nova_conf == '/etc/nova/nova.conf'
    assert profiles.get_profile('rhel').restart[-1] == 'openstack-nova-compute'
    kolla = profiles.get_profile('kolla')
    assert (
        kolla.nova_conf == '/etc/kolla/nova-compute/nova.conf'
        and kolla.needs_engine
    )
    assert profiles.with_engine(kolla.restart, 'podman') == (
        'podman',
        'restart',
        'nova_compute',
    )
    with pytest.raises(HostError, match='neither docker nor podman'):
        profiles.with_engine(kolla.restart, None)
    with pytest.raises(HostError, match='unknown deployment profile'):
        profiles.get_profile('juju')
    assert '| `kolla` |' in profiles.readme_table()


@pytest.mark.parametrize(
    'text,expected',
    [
        (
            'Fri 2026-11-27 10:00:00 UTC\n',
            datetime.datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        ),
        (
            '2026-11-27 10:00:00 UTC',
            datetime.datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        ),
        (
            '2026-11-27T10:00:00.123456789Z\n',
            datetime.datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC),
        ),
        (
            '2026-11-27T11:00:00+01:00',
            datetime.datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        ),
        (
            '2026-11-27 11:00:00.5 +0100 CET',
            datetime.datetime(2026, 11, 27, 10, 0, 0, 500000, tzinfo=UTC),
        ),
        ('', None),
        ('\n', None),
        ('n/a', None),
        ('0001-01-01T00:00:00Z', None),
        ('Fri 2026-11-27 11:00:00 CET', None),
        ('garbage', None),
    ],
)
def test_parse_started_at(text, expected):
    assert profiles.parse_started_at(text) == expected
