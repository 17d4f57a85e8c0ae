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

"""Deployment profiles: where nova.conf lives and how nova-compute restarts.

A profile is data; :class:`osc_cpumigrate.host.remote.RemoteHost` turns it
into remote commands (every argument quoted there).  ``{engine}`` in a kolla
command stands for ``docker`` or ``podman``, whichever the host has.
"""

from __future__ import annotations

import dataclasses
import datetime
import re

from osc_cpumigrate.errors import HostError

ENGINE = '{engine}'


@dataclasses.dataclass(frozen=True)
class Profile:
    """How one kind of deployment runs nova-compute.

    ``restart`` and ``started_at`` are argv tuples; ``libvirt_exec`` is the
    argv prefix that runs a command where libvirt lives (empty: on the host,
    kolla: inside the ``nova_libvirt`` container).
    """

    name: str
    nova_conf: str
    restart: tuple[str, ...]
    started_at: tuple[str, ...]
    libvirt_exec: tuple[str, ...] = ()
    description: str = ''

    @property
    def needs_engine(self) -> bool:
        return any(
            ENGINE in part
            for part in self.restart + self.started_at + self.libvirt_exec
        )


PROFILES: dict[str, Profile] = {
    'default': Profile(
        name='default',
        nova_conf='/etc/nova/nova.conf',
        restart=('systemctl', 'restart', 'nova-compute'),
        started_at=(
            'systemctl',
            'show',
            '--property=ActiveEnterTimestamp',
            '--value',
            'nova-compute',
        ),
        description='Debian/Ubuntu packages, devstack-like installs',
    ),
    'rhel': Profile(
        name='rhel',
        nova_conf='/etc/nova/nova.conf',
        restart=('systemctl', 'restart', 'openstack-nova-compute'),
        started_at=(
            'systemctl',
            'show',
            '--property=ActiveEnterTimestamp',
            '--value',
            'openstack-nova-compute',
        ),
        description='RDO / RHEL OSP packages',
    ),
    'kolla': Profile(
        name='kolla',
        nova_conf='/etc/kolla/nova-compute/nova.conf',
        restart=(ENGINE, 'restart', 'nova_compute'),
        started_at=(
            ENGINE,
            'inspect',
            '-f',
            '{{.State.StartedAt}}',
            'nova_compute',
        ),
        libvirt_exec=(ENGINE, 'exec', '-i', '-e', 'LC_ALL=C', 'nova_libvirt'),
        description='kolla-ansible containers (docker or podman)',
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise HostError('unknown deployment profile %r (choose from: %s)'
                        % (name, ', '.join(sorted(PROFILES)))) from None


def with_engine(argv: tuple[str, ...], engine: str | None) -> tuple[str, ...]:
    """Replace ``{engine}`` with the container engine found on the host."""
    if not any(ENGINE in part for part in argv):
        return argv
    if not engine:
        raise HostError(
            'neither docker nor podman found on the host (kolla profile)'
        )
    return tuple(
        part.replace(ENGINE, engine) if part == ENGINE else part
        for part in argv
    )


_SYSTEMD_TS_RE = re.compile(
    r'^(?:[A-Za-z]{3}\s+)?(?P<date>\d{4}-\d\d-\d\d)\s+(?P<time>\d\d:\d\d:\d\d)'
    r'(?:\.\d+)?\s*(?P<tz>\S+)?$')
_RFC3339_RE = re.compile(
    r'^(?P<date>\d{4}-\d\d-\d\d)T(?P<time>\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?'
    r'(?P<tz>Z|[+-]\d\d:\d\d)$')


def parse_started_at(text: str) -> datetime.datetime | None:
    """Parse systemd's ``ActiveEnterTimestamp`` or docker/podman StartedAt.

    systemd prints e.g. ``Fri 2026-11-27 10:00:00 UTC`` (we run it with
    ``TZ=UTC`` so the zone is UTC); docker prints RFC 3339 with nanoseconds,
    podman ``2026-11-27 10:00:00.123 +0000 UTC``.  Empty, ``n/a`` or the zero
    time mean "never started" -> None.
    """
    text = (text or '').strip()
    if not text or text.lower() == 'n/a':
        return None
    match = _RFC3339_RE.match(text)
    if match:
        tz = match['tz']
        offset = datetime.timedelta(0)
        if tz != 'Z':
            sign = 1 if tz[0] == '+' else -1
            offset = sign * datetime.timedelta(
                hours=int(tz[1:3]), minutes=int(tz[4:6])
            )
        base = datetime.datetime.strptime(match['date'] + ' ' + match['time'],
                                          '%Y-%m-%d %H:%M:%S')
        frac = match['frac'] or '0'
        base = base.replace(microsecond=int(frac[:6].ljust(6, '0')))
        result = (base - offset).replace(tzinfo=datetime.timezone.utc)
        return None if result.year <= 1 else result
    # podman: "2026-11-27 10:00:00.123456789 +0000 UTC"
    podman = re.match(
        r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))? ([+-])(\d\d)(\d\d)\b',
        text,
    )
    if podman:
        base = datetime.datetime.strptime(podman[1], '%Y-%m-%d %H:%M:%S')
        frac = podman[2] or '0'
        base = base.replace(microsecond=int(frac[:6].ljust(6, '0')))
        offset = datetime.timedelta(
            hours=int(podman[4]), minutes=int(podman[5])
        )
        if podman[3] == '-':
            offset = -offset
        result = (base - offset).replace(tzinfo=datetime.timezone.utc)
        return None if result.year <= 1 else result
    match = _SYSTEMD_TS_RE.match(text)
    if match:
        tz = (match['tz'] or 'UTC').upper()
        if tz not in ('UTC', 'GMT', 'Z', '+0000', 'UTC0'):
            return None   # we ask for TZ=UTC; anything else we do not guess
        base = datetime.datetime.strptime(match['date'] + ' ' + match['time'],
                                          '%Y-%m-%d %H:%M:%S')
        return base.replace(tzinfo=datetime.timezone.utc)
    return None


def readme_table() -> str:
    """The profiles table of the README (kept next to the data it shows)."""
    rows = ['| profile | nova.conf | restart | started at |',
            '| --- | --- | --- | --- |']
    for profile in PROFILES.values():
        rows.append('| `%s` | `%s` | `%s` | `%s` |' % (
            profile.name, profile.nova_conf, ' '.join(profile.restart),
            ' '.join(profile.started_at)))
    return '\n'.join(rows)
