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

"""A small simulated cloud for unit tests of the verbs.

The compute API is a ``Mock(spec=Proxy)`` whose methods act on real SDK
resources (as python-openstackclient's compute tests do); the hypervisors are
:class:`FakeHost` objects implementing the host layer's ``Host`` protocol.
A restart rebuilds a guest's CPU from what its host's nova-compute loaded at
its last start, and a live migration carries the guest CPU unchanged: the
same rules the libvirt driver follows.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import datetime
import itertools
import pathlib
import re
from typing import Any
from unittest import mock
import uuid

from openstack import exceptions as sdk_exc
from openstack.compute.v2 import _proxy
from openstack.compute.v2 import migration as _migration
from openstack.compute.v2 import server as _server
from openstack.compute.v2 import server_action as _server_action
from openstack.compute.v2 import service as _service
from openstack.image.v2 import image as _image

from osc_cpumigrate.cloud import Capacity
from osc_cpumigrate.cloud import Cloud
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow.common import Context

UTC = datetime.timezone.utc
CPU_MAP = pathlib.Path(__file__).parent / 'cpu' / 'data' / 'cpu_map'
HOST_MODELS = {'intel': 'Skylake-Server-IBRS', 'amd': 'EPYC-Rome'}


#: The user id of the fake cloud's admin token.
ADMIN = 'admin-user-id'


def now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.5)


class FakeHost:
    """A hypervisor: nova.conf CPU settings, a nova-compute, domains."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.vendor = 'intel' if name.startswith('intel') else 'amd'
        self.file = host_api.CpuSettings()          # what nova.conf says
        self.original = host_api.CpuSettings()
        self.transitioned = False
        self.changed_at: datetime.datetime | None = None
        self.destinations: tuple[str, ...] = ()   # the marker's
        self.loaded = host_api.CpuSettings()        # what nova-compute runs
        self.started_at = now() - datetime.timedelta(days=1)
        self.domains: dict[str, host_api.GuestCpu] = {}
        self.fail_start = False
        self.running = True
        self.unreadable = False
        self.calls: list[str] = []
        self.closed = False
        self.libvirt_version = '9.0.0'
        self.qemu_version = '7.2.0'
        self.refuse_compare = False
        self.compared: list[str] = []
        #: ConfState's virt_type / skip_cpu_compare_at_startup
        self.conf_options: dict = {}
        self.hostname = name          # what uname -n says
        self.conf_host: str | None = name   # [DEFAULT] host
        self.lock: str | None = None  # the lock file's content
        self.lock_age = 0
        self.restored: datetime.datetime | None = None
        self.problem: str | None = None          # ConfState.problem
        self.unrestorable: str | None = None     # restorable_problem()
        self.max_live_migrations = 1   # [DEFAULT] max_concurrent_...

    # -- what the simulation needs ---------------------------------------

    def build_guest(self) -> host_api.GuestCpu:
        """The CPU libvirt gives a guest that (re)starts here now."""
        s = self.loaded
        if s.mode == 'custom':
            feats = tuple(('require', f.lstrip('+')) for f in s.extra_flags)
            xml = "<cpu mode='custom'><model>%s</model>%s</cpu>" % (
                s.model, ''.join('<feature policy="%s" name="%s"/>' % f
                                 for f in feats))
            return host_api.GuestCpu('custom', s.model, None, feats, xml)
        return host_api.GuestCpu('custom', HOST_MODELS[self.vendor],
                                 self.vendor.upper(), (('require', 'ss'),))

    # -- the Host protocol -----------------------------------------------

    def nova_conf(self) -> host_api.ConfState:
        self.calls.append('nova_conf')
        if self.unreadable:
            raise host_api.HostError('cannot read /etc/nova/nova.conf on %s: '
                                     'Permission denied' % self.name)
        return host_api.ConfState(
            path='/etc/nova/nova.conf', sha256='0' * 64, settings=self.file,
            transitioned=self.transitioned, original=self.original,
            backup='/etc/nova/nova.conf.cpumigrate-1' if self.transitioned
            else None, changed_at=self.changed_at, problem=self.problem,
            max_live_migrations=self.max_live_migrations,
            destinations=self.destinations if self.transitioned else (),
            **self.conf_options)

    def apply_transition(self, model: str, flags: Sequence[str] = (), *,
                         destinations: Sequence[str] = (),
                         dry_run: bool = False) -> host_api.Change:
        before = self.file
        after = host_api.CpuSettings('custom', (model,), tuple(flags))
        same_cpu = self.transitioned and self.file == after
        marked = tuple(destinations) or (
            self.destinations if self.transitioned else ())
        changed = not (same_cpu and marked == self.destinations)
        if not dry_run and changed:
            self.calls.append('apply_transition')
            self.transitioned = True
            self.file = after
            self.destinations = marked
            if not same_cpu:
                self.changed_at = now()
        return host_api.Change('/etc/nova/nova.conf', before, after,
                               None if dry_run or not changed
                               else '/etc/nova/nova.conf.cpumigrate-1',
                               '--- a\n+++ b\n' if changed else '', changed)

    def restore_original(self, dry_run: bool = False) -> host_api.Change:
        before = self.file
        changed = self.transitioned
        if not dry_run and changed:
            self.calls.append('restore_original')
            self.file = self.original
            self.transitioned = False
            self.changed_at = None
            self.restored = now()
            self.problem = None
        return host_api.Change('/etc/nova/nova.conf', before, self.original,
                               None, '', changed)

    def restart_nova_compute(self) -> None:
        """Like systemd: the old process is gone when this returns; a new
        one heartbeats unless it fails to start (then Nova still shows the
        service up for a while: only the heartbeats stop)."""
        self.calls.append('restart_nova_compute')
        self.started_at = now()
        self.running = not self.fail_start
        if self.running:
            self.loaded = self.file

    def compute_started_at(self) -> datetime.datetime | None:
        return self.started_at

    def identity(self) -> host_api.HostIdentity:
        return host_api.HostIdentity(self.hostname, self.conf_host,
                                     frozenset(self.domains))

    def lock_file(self, op: str, *, token: str = '',
                  content: str = '') -> tuple[bool, str]:
        """The lock script's rules, in memory."""
        mine = bool(token) and self.lock is not None and (
            '"token": "%s"' % token) in self.lock
        held = ('age %d\n%s' % (self.lock_age, self.lock)
                if self.lock is not None else '')
        if op == 'take' and (mine or (not token and self.lock is None)):
            self.lock, self.lock_age = content, 0
            return True, ''
        if op == 'refresh' and mine:
            self.lock_age = 0
            return True, ''
        if op == 'release':
            if mine:
                self.lock = None
            return True, ''
        return False, held

    def restored_at(self) -> datetime.datetime | None:
        return self.restored

    def restorable_problem(self) -> str | None:
        return self.unrestorable

    def guest_cpu(self, instance_uuid: str) -> host_api.GuestCpu:
        if instance_uuid not in self.domains:
            raise host_api.HostError("no domain %s on %s" % (instance_uuid,
                                                             self.name))
        return self.domains[instance_uuid]

    def host_cpu(self) -> host_api.HostCpu:
        model = HOST_MODELS[self.vendor]
        return host_api.HostCpu('x86_64', self.vendor.upper(), model,
                                frozenset({'ss'}), host_model=model,
                                libvirt_version=self.libvirt_version,
                                qemu_version=self.qemu_version)

    def compare_cpu(self, cpu_xml: str) -> host_api.CompareResult:
        self.compared.append(cpu_xml)
        if self.refuse_compare:
            return host_api.CompareResult(
                False, 'incompatible', 'CPU described in /dev/stdin is '
                'incompatible with the CPU provided by hypervisor on the host')
        return host_api.CompareResult(True, 'superset')

    def cpu_map(self) -> dict[str, str]:
        """The real libvirt 9.0 CPU map the CPU tests ship."""
        return {p.name: p.read_text() for p in CPU_MAP.iterdir()
                if p.suffix == '.xml'}

    def close(self) -> None:
        self.closed = True


class World:
    """Nova as the verbs see it, with hosts behind it."""

    def __init__(self, hosts: Sequence[str] = ('intel-1', 'intel-2',
                                               'amd-1', 'amd-2')) -> None:
        self.clock = FakeClock()
        self.compute = mock.Mock(spec=_proxy.Proxy)
        self.conn = mock.Mock()
        self.conn.compute = self.compute
        self.conn.current_user_id = ADMIN
        self.user = ADMIN                  # who the next action is by
        self.acted: dict[str, list[_server_action.ServerAction]] = {}
        self.images = {'img': {}}
        self.conn.image.get_image.side_effect = (
            lambda image_id: _image.Image(id=image_id,
                                          **self.images[image_id]))
        self.hosts = {h: FakeHost(self, h) for h in hosts}
        self.services = {
            h: _service.Service(
                id=str(i), host=h, binary='nova-compute', status='enabled',
                state='up', disabled_reason=None,
                updated_at=(now() - datetime.timedelta(seconds=5)).isoformat())
            for i, h in enumerate(hosts)}
        self.servers: dict[str, _server.Server] = {}
        self.records: list[_migration.Migration] = []
        self.capacity = {h: Capacity(64, 65536, 1000) for h in hosts}
        self.fail_migration: str | None = None   # reason of the next failure
        self.hang_migration = False
        self.aborted: list[str] = []
        self.groups: list[Any] = []               # server groups
        self.seq = itertools.count(1)
        self.beats = itertools.count(1)
        self._wire()

    # -- setup helpers -----------------------------------------------------

    def boot(self, host: str, count: int = 1, status: str = 'ACTIVE',
             prefix: str = 'vm', image: str = 'img',
             metadata: dict | None = None) -> list[_server.Server]:
        out = []
        for _ in range(count):
            n = next(self.seq)
            sid = str(uuid.UUID(int=n))
            server = _server.Server(
                id=sid, name='%s-%d' % (prefix, n), status=status,
                compute_host=host, task_state=None, fault=None,
                flavor={'vcpus': 1, 'ram': 512, 'disk': 1},
                image={'id': image}, metadata=dict(metadata or {}))
            self.servers[sid] = server
            self.hosts[host].domains[sid] = self.hosts[host].build_guest()
            out.append(server)
        return out

    def context(self, **kwargs: Any) -> Context:
        cloud = Cloud(self.conn, interval=1.0, sleep=self.clock.sleep,
                      clock=self.clock)
        cloud.capacity = lambda host: self.capacity[host]  # type: ignore
        kwargs.setdefault('confirm', lambda question: True)
        kwargs.setdefault('progress', lambda message: None)
        return Context(cloud=cloud, host_options=host_api.HostOptions(),
                       open_host=lambda name, opts: self.hosts[name],
                       service_timeout=30, server_timeout=60, **kwargs)

    def heartbeat(self, host: str) -> None:
        service = self.services[host]
        service.state = 'up'
        service.updated_at = (now() + datetime.timedelta(
            microseconds=next(self.beats))).isoformat()

    def guest(self, server: _server.Server) -> host_api.GuestCpu:
        return self.hosts[server.compute_host].domains[server.id]

    # -- the compute API ---------------------------------------------------

    def _wire(self) -> None:
        c = self.compute
        c.services.side_effect = self._services
        c.disable_service.side_effect = self._disable
        c.enable_service.side_effect = self._enable
        c.servers.side_effect = self._list_servers
        c.find_server.side_effect = self._find_server
        c.get_server.side_effect = self._get_server
        c.reboot_server.side_effect = (
            lambda s, kind: self.act(s, 'reboot') or self._restart(s))
        c.stop_server.side_effect = self._stop
        c.start_server.side_effect = self._start
        c.live_migrate_server.side_effect = self._live_migrate
        c.migrate_server.side_effect = self._cold_migrate
        c.confirm_server_resize.side_effect = self._confirm
        c.migrations.side_effect = self._migrations
        c.server_groups.side_effect = lambda **_: iter(self.groups)
        c.server_migrations.side_effect = lambda s: iter(())
        c.abort_server_migration.side_effect = self._abort
        c.server_actions.side_effect = self._actions
        c.get_server_action.side_effect = self._action
        c.set_server_metadata.side_effect = (
            lambda s, **kv: self.servers[self._sid(s)].metadata.update(kv))
        c.delete_server_metadata.side_effect = (
            lambda s, keys: [self.servers[self._sid(s)].metadata.pop(k, None)
                             for k in keys])
        c.get_endpoint_data.return_value = mock.Mock(
            min_microversion='2.1', max_microversion='2.96')
        c.default_microversion = None

    def _services(self, host=None, binary=None, **_):
        for name, h in self.hosts.items():     # running computes report
            if h.running:
                self.heartbeat(name)
        return iter([s for h, s in self.services.items()
                     if host is None or h == host])

    def _disable(self, service, host=None, binary=None,
                 disabled_reason=None):
        s = self.services[host]
        s.status, s.disabled_reason = 'disabled', disabled_reason
        return s

    def _enable(self, service, host=None, binary=None):
        s = self.services[host]
        s.status, s.disabled_reason = 'enabled', None
        return s

    def _sid(self, server) -> str:
        return server if isinstance(server, str) else server.id

    def _list_servers(self, details=True, all_projects=False,
                      compute_host=None, name=None, **_):
        """As Nova: ``name`` is a regular expression (re.search)."""
        return iter([s for s in self.servers.values()
                     if compute_host in (None, s.compute_host)
                     and (name is None or re.search(name, s.name or ''))])

    def _find_server(self, name_or_id, ignore_missing=True, **_):
        """As the SDK: by ID, else list with the name filter (a regular
        expression in Nova) and keep the exact match."""
        if name_or_id in self.servers:
            return self.servers[name_or_id]
        for s in self._list_servers(name=name_or_id):
            if s.name == name_or_id:
                return s
        raise sdk_exc.NotFoundException('no server %s' % name_or_id)

    def _get_server(self, server):
        try:
            return self.servers[self._sid(server)]
        except KeyError:
            raise sdk_exc.NotFoundException('no server %s'
                                            % self._sid(server)) from None

    def _restart(self, server):
        s = self.servers[self._sid(server)]
        host = self.hosts[s.compute_host]
        host.domains[s.id] = host.build_guest()
        s.status = 'ACTIVE'

    def act(self, server, action: str, user: str | None = None,
            when: datetime.datetime | None = None) -> None:
        """Record an instance action, as Nova's API does."""
        when = when or datetime.datetime.now(datetime.timezone.utc)
        self.acted.setdefault(self._sid(server), []).append(
            _server_action.ServerAction(
                action=action, request_id='req-%d' % next(self.seq),
                user_id=user or self.user,
                start_time=when.strftime('%Y-%m-%dT%H:%M:%S.%f')))

    def _stop(self, server):
        self.act(server, 'stop')
        self.servers[self._sid(server)].status = 'SHUTOFF'

    def _start(self, server):
        self.act(server, 'start')
        self._restart(server)

    def _record(self, s, kind, dest, status):
        rec = _migration.Migration(
            id=str(next(self.seq)), server_id=s.id, migration_type=kind,
            status=status, source_compute=s.compute_host, dest_compute=dest,
            created_at='2026-11-27T10:%02d:00' % (len(self.records) % 60))
        self.records.append(rec)
        return rec

    def _live_migrate(self, server, host=None, block_migration=None, **_):
        s = self.servers[self._sid(server)]
        if self.fail_migration:
            self._record(s, 'live-migration', host, 'error')
            return
        if self.hang_migration:
            self._record(s, 'live-migration', host, 'running')
            s.status = 'MIGRATING'
            return
        src = self.hosts[s.compute_host]
        self._record(s, 'live-migration', host, 'completed')
        self.hosts[host].domains[s.id] = src.domains.pop(s.id)
        s.compute_host = host

    def _cold_migrate(self, server, host=None):
        s = self.servers[self._sid(server)]
        self._record(s, 'migration', host, 'finished')
        source = self.hosts[s.compute_host]
        self.hosts[host].domains[s.id] = source.domains.pop(s.id)
        s.compute_host = host
        s.status = 'VERIFY_RESIZE'

    def _confirm(self, server):
        s = self.servers[self._sid(server)]
        s.status = 'SHUTOFF'
        for rec in self.records:
            if rec.server_id == s.id and rec.status == 'finished':
                rec.status = 'confirmed'

    def _migrations(self, server_id=None, migration_type=None, host=None,
                    status=None, **_):
        return iter([m for m in self.records
                     if (server_id is None or m.server_id == server_id)
                     and (migration_type is None
                          or m.migration_type == migration_type)
                     and (host is None
                          or host in (m.source_compute, m.dest_compute))
                     and (status is None or m.status == status)])

    def _abort(self, migration_id, server, ignore_missing=True):
        for rec in self.records:
            if rec.id == migration_id:
                rec.status = 'cancelled'
        s = self.servers[self._sid(server)]
        s.status = 'ACTIVE'
        self.aborted.append(s.id)

    def _actions(self, server):
        acted = list(self.acted.get(self._sid(server), []))
        if not self.fail_migration:
            return iter(acted)
        return iter(acted + [_server_action.ServerAction(
            action='live-migration', request_id='req-1',
            start_time='2026-11-27T10:00:00', message='Error')])

    def _action(self, request_id, server):
        return _server_action.ServerAction(
            action='live-migration', request_id=request_id,
            events=[{'event': 'compute_check_can_live_migrate_destination',
                     'result': 'Error', 'details': self.fail_migration,
                     'traceback': None}])


@dataclasses.dataclass
class Prepared:
    world: World
    servers: list[_server.Server]


def prepared_world(active: int = 3, stopped: int = 1) -> Prepared:
    """intel-1 carrying servers, its nova.conf holding kvm64, restarted."""
    world = World()
    servers = world.boot('intel-1', active)
    servers += world.boot('intel-1', stopped, status='SHUTOFF',
                          prefix='off')
    host = world.hosts['intel-1']
    host.apply_transition('kvm64', destinations=['amd-1'])
    host.restart_nova_compute()
    world.services['intel-1'].status = 'disabled'
    return Prepared(world, servers)


def pinned_world(active: int = 2, stopped: int = 1) -> Prepared:
    """prepared_world after a pin."""
    from osc_cpumigrate.workflow import pin

    p = prepared_world(active=active, stopped=stopped)
    pin.pin(p.world.context(), 'intel-1')
    return p


def migrated_world() -> Prepared:
    """pinned_world (two ACTIVE, one SHUTOFF) after a migrate to amd-1."""
    from osc_cpumigrate.workflow import migrate

    p = pinned_world(active=2, stopped=1)
    migrate.migrate(p.world.context(), 'intel-1', destinations=['amd-1'],
                    timeout=60)
    return p
