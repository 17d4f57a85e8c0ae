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

"""The cloud layer: every Nova and Placement call cpumigrate makes.

Thin over openstacksdk's compute and placement proxies.  Every wait goes
through :func:`osc_cpumigrate.poll.wait_for` (modelled on openstacksdk's
``wait_for_status``) with this gateway's interval, clock and sleep, which
unit tests inject so they never wait.

A cloud API misbehaves during a run of hours: a load balancer restarts
(503), a worker wedges (no answer), a connection drops.  So every HTTP
request has a timeout (``api_timeout``, on the keystoneauth session that
OSC made and the SDK connection shares: OSC itself sets none), and every
*read* goes through :meth:`Cloud.read`, tried again with backoff for
``retry_time`` seconds (:func:`osc_cpumigrate.poll.retry`).  keystoneauth's
own ``connect_retries`` and ``status_code_retries`` are left at 0: they
apply to every method of an adapter, and an action (stop, start, migrate)
that got no answer may have happened; repeating it blindly is not safe.
The workflow decides what an unanswered action means (it looks at the
server).  A wait treats the same transient errors as "nothing seen this
time" until its own deadline.  keystoneauth signs in again with the
password when the token expires (or a request meets a 401); a refusal then
is not transient.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
import datetime
import logging
import re
import time
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as sdk_exc
from openstack import utils as sdk_utils

from osc_cpumigrate import audit
from osc_cpumigrate import poll
from osc_cpumigrate.errors import describe
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.types import Capacity

LOG = logging.getLogger(__name__)

COMPUTE_BINARY = 'nova-compute'
#: Migration record states after which nothing more happens.
MIGRATION_DONE = ('completed', 'done', 'confirmed', 'finished')
MIGRATION_FAILED = ('error', 'failed', 'cancelled', 'aborted')
#: A read that fails this way is tried again: a migration of a large guest
#: can take an hour, and a dropped keep-alive connection or a restarting API
#: worker must not end the run with the operator unsure where things stand.
TRANSIENT_HTTP = (502, 503, 504)


def no_verdict(exc: Exception) -> bool:
    """No answer came: a refused, dropped or timed-out connection (a TLS
    failure is a configuration error, not one of these)."""
    return (isinstance(exc, ks_exc.ConnectionError)
            and not isinstance(exc, ks_exc.SSLError))


def status_in(exc: Exception, codes: tuple[int, ...]) -> bool:
    return (isinstance(exc, sdk_exc.HttpException)
            and getattr(exc, 'status_code', None) in codes)


def transient(exc: Exception) -> bool:
    """An API error after which the same read may well succeed: no
    answer, or a 502/503/504 (a proxy or load balancer without a working
    backend)."""
    return no_verdict(exc) or status_in(exc, TRANSIENT_HTTP)


def unanswered(exc: Exception) -> bool:
    """An action that met this may have happened all the same: the request
    went out (or may have) and no verdict came back (no answer, or a
    gateway's 502/504).  A 503 is a proxy without a backend: the action did
    not reach Nova."""
    return no_verdict(exc) or status_in(exc, (502, 504))


def materialise(result: Any) -> Any:
    """A listing's generator as a list (its pages are read now, inside the
    retry), anything else as it is."""
    if not isinstance(result, (dict, str)) and hasattr(result, '__next__'):
        return list(result)
    return result


def parse_time(value: str | None) -> datetime.datetime | None:
    """Nova timestamps (``2026-11-27T10:00:00.000000``, naive UTC) -> aware."""
    if not value:
        return None
    text = value.replace('Z', '+00:00')
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def set_timeout(conn: Any, seconds: float) -> None:
    """Every HTTP request of the connection (Keystone's included) waits at
    most ``seconds`` for a connection and for each read of the answer.

    OSC builds the keystoneauth session with no timeout (it sets
    ``api_timeout`` to None, whatever clouds.yaml says), and the SDK
    connection it hands the plugin shares that session; keystoneauth reads
    ``Session.timeout`` on each request."""
    session = getattr(conn, 'session', None)
    if session is not None:
        session.timeout = float(seconds)


class Cloud:
    """Nova (and Placement) as the workflow needs them."""

    def __init__(self, conn: Any, *, interval: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 recorder: audit.Recorder | None = None,
                 api_timeout: float | None = None,
                 retry_time: float = 180.0) -> None:
        self.conn = conn
        #: Every change below is one line of the audit trail.
        self.audit = recorder or audit.NULL
        self.compute = conn.compute
        self.interval = interval
        self.sleep = sleep
        self.clock = clock
        #: How long a read is tried again after transient errors.
        self.retry_time = retry_time
        #: Image properties by image ID: a server's guest floor and the
        #: gate's traits both read them, and an image does not change
        #: while a verb runs.
        self._images: dict[str, dict[str, str]] = {}
        if api_timeout is not None:
            set_timeout(conn, api_timeout)

    @property
    def placement(self) -> Any:
        """The SDK's placement proxy, made only when a verb needs it."""
        return self.conn.placement

    def wait(self, fetch: Callable[[], Any], **kwargs: Any) -> Any:
        """:func:`osc_cpumigrate.poll.wait_for` at this gateway's interval
        (unless the caller paces itself), clock and sleep; transient API
        errors do not end it."""
        kwargs.setdefault('interval', self.interval)
        return poll.wait_for(fetch, clock=self.clock, sleep=self.sleep,
                             transient=transient, **kwargs)

    def read(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A read-only API call (a list is materialised), tried again after
        transient errors for ``retry_time`` seconds, with backoff."""
        return poll.retry(lambda: materialise(call(*args, **kwargs)),
                          transient=transient, budget=self.retry_time,
                          describe=describe, clock=self.clock,
                          sleep=self.sleep)

    def update(self, change: Callable[[], Any]) -> Any:
        """An idempotent change (PUT a service's status, set or delete a
        metadata key): sending it twice ends the same as once, so it is
        tried again as a read is.  Never for an action."""
        return self.read(change)

    # -- compute services -------------------------------------------------

    def compute_service(self, host: str) -> Any:
        """The nova-compute service of ``host``; WorkflowError if unknown."""
        services = self.read(self.compute.services, host=host,
                             binary=COMPUTE_BINARY)
        if not services:
            raise WorkflowError(
                'unknown host %r: it has no nova-compute service (see '
                '"openstack compute service list --service nova-compute")'
                % host)
        return services[0]

    def disable_service(self, service: Any, reason: str) -> Any:
        with self.audit.action('service-disabled', host=service.host,
                               reason=reason):
            return self.update(lambda: self.compute.disable_service(
                service, host=service.host, binary=COMPUTE_BINARY,
                disabled_reason=reason))

    def enable_service(self, service: Any) -> Any:
        with self.audit.action('service-enabled', host=service.host):
            return self.update(lambda: self.compute.enable_service(
                service, host=service.host, binary=COMPUTE_BINARY))

    def wait_service_up(self, host: str, baseline: str | None,
                        timeout: float) -> Any:
        """Wait until ``host``'s nova-compute is up with a heartbeat newer
        than ``baseline`` (its ``updated_at`` read once the restart command
        returned, i.e. after the old process was gone).

        "up" alone proves nothing: Nova shows a service up for
        ``service_down_time`` after its last heartbeat, and the old process
        may have reported just before it stopped.  Only the controller's
        clock is used."""
        since = parse_time(baseline)

        def is_up(service: Any) -> bool:
            beat = parse_time(service.updated_at)
            return (service.state == 'up' and beat is not None
                    and (since is None or beat > since))

        return self.wait(
            lambda: self.compute_service(host), done=is_up, timeout=timeout,
            message=lambda service: (
                'nova-compute on %s did not report up within %d s '
                '(last heartbeat %s, state %s)'
                % (host, timeout, service.updated_at or 'never',
                   service.state)))

    # -- servers ----------------------------------------------------------

    def servers_on_host(self, host: str) -> list[Any]:
        servers = self.read(self.compute.servers, details=True,
                            all_projects=True, compute_host=host)
        return sorted(servers, key=lambda s: (s.name or '', s.id))

    def find_server(self, name_or_id: str) -> Any:
        """The server with this ID, else the one with exactly this name.

        Nova's ``name`` filter is a regular expression (``db(1)`` would
        match ``db1`` and never ``db(1)``), so the name is anchored and
        escaped, and the answer filtered for the exact name."""
        try:
            return self.read(self.compute.get_server, name_or_id)
        except (sdk_exc.NotFoundException, sdk_exc.BadRequestException):
            pass
        pattern = '^%s$' % re.sub(r'([\\.^$|?*+()\[\]{}])', r'\\\1',
                                  name_or_id)
        found = [s for s in self.read(self.compute.servers, details=True,
                                      all_projects=True, name=pattern)
                 if s.name == name_or_id]
        if not found:
            raise WorkflowError(
                'no server named or with ID %r' % name_or_id)
        if len(found) > 1:
            raise WorkflowError('more than one server is named %r: use its '
                                'ID' % name_or_id)
        return found[0]

    def get_server(self, server: Any) -> Any:
        return self.read(self.compute.get_server, server)

    def selected_servers(self, host: str, names: Iterable[str]) -> list[Any]:
        """The servers on ``host``, or the named ones, which must be there."""
        names = list(names)
        if not names:
            return self.servers_on_host(host)
        servers, wrong = [], []
        for name in names:
            server = self.find_server(name)
            if server.compute_host != host:
                wrong.append('%s is on %s' % (name, server.compute_host))
            elif server.id not in {s.id for s in servers}:
                servers.append(server)
        if wrong:
            raise WorkflowError('not on host %s: %s'
                                % (host, '; '.join(wrong)))
        return servers

    def wait_for_server(self, server: Any, status: str | tuple[str, ...],
                        timeout: float, host: str | None = None) -> Any:
        """Wait until the server has ``status`` with no task running (and,
        if given, is on ``host``); an ERROR status ends the wait at once.

        Waiting on the status alone is not enough: right after an action the
        server can still show its old status, so the task state must have
        come and gone too."""
        wanted = (status,) if isinstance(status, str) else status

        def reached(found: Any) -> bool:
            return (found.status in wanted and not found.task_state
                    and (host is None or found.compute_host == host))

        def failed(found: Any) -> str | None:
            if found.status != 'ERROR' or 'ERROR' in wanted:
                return None
            fault = (found.fault or {}).get('message', '')
            return 'server %s went to ERROR%s' % (
                found.id, ': %s' % fault if fault else '')

        return self.wait(
            lambda: self.get_server(server), done=reached, failed=failed,
            timeout=timeout,
            message=lambda found: (
                'server %s did not reach %s within %d s (status %s, '
                'task %s, host %s)' % (found.id, '/'.join(wanted), timeout,
                                       found.status, found.task_state,
                                       found.compute_host)))

    def reboot(self, server: Any) -> None:
        """A hard reboot: libvirt rebuilds the domain from nova.conf."""
        with self.audit.action('server-rebooted', type='HARD',
                               **audit.server_fields(server)):
            self.compute.reboot_server(server, 'HARD')

    def stop(self, server: Any) -> None:
        with self.audit.action('server-stopped',
                               **audit.server_fields(server)):
            self.compute.stop_server(server)

    def start(self, server: Any) -> None:
        with self.audit.action('server-started',
                               **audit.server_fields(server)):
            self.compute.start_server(server)

    def set_metadata(self, server: Any, **items: str) -> None:
        with self.audit.action('server-metadata-set', metadata=items,
                               **audit.server_fields(server)):
            self.update(lambda: self.compute.set_server_metadata(
                server, **items))

    def delete_metadata(self, server: Any, keys: list[str]) -> None:
        with self.audit.action('server-metadata-deleted', keys=list(keys),
                               **audit.server_fields(server)):
            self.update(lambda: self.delete_keys(server, keys))

    def delete_keys(self, server: Any, keys: list[str]) -> None:
        """Delete metadata keys; a key already gone (an earlier try that
        got no answer removed it) is deleted, a server gone is an error."""
        for key in keys:
            try:
                self.compute.delete_server_metadata(server, [key])
            except sdk_exc.NotFoundException:
                self.read(self.compute.get_server, server)

    def image_properties(self, server: Any) -> dict[str, str]:
        """The properties of the image a server was booted from ({} for a
        server booted from a volume or whose image is gone)."""
        image = server.image or {}
        image_id = image.get('id') if isinstance(image, dict) else getattr(
            image, 'id', None)
        if not image_id:
            return {}
        if image_id not in self._images:
            self._images[image_id] = self._read_image(image_id)
        return dict(self._images[image_id])

    def _read_image(self, image_id: str) -> dict[str, str]:
        try:
            found = self.read(self.conn.image.get_image, image_id)
        except sdk_exc.NotFoundException:
            return {}
        props = dict(found.properties or {})
        for name in ('os_distro', 'os_version', 'os_type'):
            value = getattr(found, name, None)
            if value:
                props[name] = value
        return {k: str(v) for k, v in props.items()}

    def server_groups(self) -> list[Any]:
        """Every server group of every project (one listing per fleet plan,
        never per step): their policies constrain the destinations."""
        return self.read(self.compute.server_groups, all_projects=True)

    # -- migrations -------------------------------------------------------

    def require_microversion(self, version: str, what: str) -> None:
        if not sdk_utils.supports_microversion(self.compute, version):
            raise WorkflowError('%s needs compute API microversion %s or '
                                'later' % (what, version))

    def live_migrate(self, server: Any, host: str) -> None:
        with self.audit.action('migration-started', kind='live',
                               destination=host,
                               **audit.server_fields(server)):
            self.compute.live_migrate_server(server, host=host,
                                             block_migration='auto')

    def cold_migrate(self, server: Any, host: str) -> None:
        self.require_microversion('2.56', 'cold migration to a named host')
        with self.audit.action('migration-started', kind='cold',
                               destination=host,
                               **audit.server_fields(server)):
            self.compute.migrate_server(server, host=host)

    def confirm_resize(self, server: Any) -> None:
        with self.audit.action('migration-confirmed',
                               **audit.server_fields(server)):
            self.compute.confirm_server_resize(server)

    def migrations(self, server: Any, kind: str) -> list[Any]:
        """The server's migration records of ``kind``, newest first."""
        records = self.read(self.compute.migrations, server_id=server.id,
                            migration_type=kind)
        return sorted(records, key=lambda m: (m.created_at or '', m.id),
                      reverse=True)

    def host_migrations(self, host: str, kind: str,
                        status: str = 'completed') -> list[Any]:
        """Migrations of ``kind`` into or out of ``host`` in ``status``,
        oldest first."""
        records = self.read(self.compute.migrations, host=host,
                            migration_type=kind, status=status)
        return sorted(records, key=lambda m: (m.created_at or '', m.id))

    def migration_progress(self, server: Any) -> Any | None:
        """The running migration as os-server-migrations shows it (memory
        transferred), or None."""
        try:
            running = self.read(self.compute.server_migrations, server)
        except (sdk_exc.HttpException, ks_exc.ConnectionError):
            return None
        return running[0] if running else None

    def abort_migration(self, migration: Any, server: Any) -> None:
        self.require_microversion('2.24', 'aborting a live migration')
        with self.audit.action('migration-aborted', migration=migration.id,
                               **audit.server_fields(server)):
            self.compute.abort_server_migration(migration.id, server,
                                                ignore_missing=False)

    def force_complete_migration(self, migration: Any, server: Any) -> None:
        self.require_microversion('2.22', 'force-completing a migration')
        with self.audit.action('migration-force-completed',
                               migration=migration.id,
                               **audit.server_fields(server)):
            self.compute.force_complete_server_migration(migration.id,
                                                         server)

    def action_error(self, server: Any, action: str) -> str | None:
        """Why the newest ``action`` on the server failed, from its
        instance-action events (``details`` from 2.84, else the traceback's
        last line), or None."""
        try:
            actions = [a for a in self.read(self.compute.server_actions,
                                            server)
                       if a.action == action]
            if not actions:
                return None
            newest = max(actions, key=lambda a: a.start_time or '')
            detail = self.read(self.compute.get_server_action,
                               newest.request_id, server)
        except (sdk_exc.HttpException, ks_exc.ConnectionError):
            return None
        for event in detail.events or []:
            if (event.result or '').lower() != 'error':
                continue
            if event.details:
                return str(event.details).strip().splitlines()[0]
            lines = [ln.strip() for ln in (event.traceback or '').splitlines()
                     if ln.strip()]
            if lines:
                return lines[-1]
            return '%s failed' % event.event
        return newest.message or None

    def user_id(self) -> str:
        """The user id of this session's token (who Nova records as the
        actor of the actions cpumigrate makes).  An auth plugin without
        Keystone cannot say: WorkflowError (no server is then started on
        the strength of its stop key alone)."""
        try:
            found = self.conn.current_user_id
        except (sdk_exc.SDKException, ks_exc.ClientException) as exc:
            found, why = None, str(exc).splitlines()[0] if str(exc) else ''
        else:
            why = 'the token names no user'
        if not found:
            raise WorkflowError(
                'cannot tell which user cpumigrate acts as (%s): it needs '
                'a Keystone token' % why)
        return found

    def server_actions(self, server: Any) -> list[Any]:
        """The server's instance actions (``os-instance-actions``): what
        was done to it, by which user, when."""
        return self.read(self.compute.server_actions, server)

    # -- capacity ---------------------------------------------------------

    def hypervisor_names(self, host: str) -> list[str]:
        """The names the host's resource provider may have: the
        hypervisor's (often the FQDN) first, then the service host.

        Nova names the provider after the hypervisor, not the compute
        service host (and since 2.53 its UUID is the hypervisor's).  Only
        the hypervisors whose name contains the host's are listed (Nova
        matches the pattern as a substring, 404 when none does), never every
        hypervisor of the cloud."""
        names = [host]
        try:
            for hyp in self.read(self.compute.hypervisors, details=True,
                                 hypervisor_hostname_pattern=host):
                details = hyp.service_details or {}
                if details.get('host') == host and hyp.name not in names:
                    names.insert(0, hyp.name)
        except sdk_exc.NotFoundException:
            pass            # Nova's answer when no hypervisor name matches
        return names

    def resource_provider(self, host: str) -> Any:
        """The host's Placement resource provider; WorkflowError if none."""
        names = self.hypervisor_names(host)
        for name in names:
            found = self.read(self.placement.resource_providers, name=name)
            if found:
                return found[0]
        raise WorkflowError('host %s has no resource provider in '
                            'Placement (looked for %s)'
                            % (host, ', '.join(names)))

    def provider_usages(self, provider: Any) -> dict[str, float]:
        """Placement's usages of a resource provider, per resource class.

        ``fetch_resource_provider_usages`` came late to openstacksdk's
        placement proxy; with an SDK that lacks it, a raw GET
        (:meth:`placement_json`)."""
        fetch = getattr(self.placement, 'fetch_resource_provider_usages',
                        None)
        if fetch is not None:
            return dict(self.read(fetch, provider).usages or {})
        return dict(self.placement_json(
            '/resource_providers/%s/usages' % provider.id)['usages'])

    def placement_json(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """A raw GET to Placement, for what the SDK's proxy lacks; the raw
        GET does not raise, so a Placement error is raised here (it must
        never read as an empty answer)."""
        response = self.read(self.placement.get, path, **kwargs)
        sdk_exc.raise_from_response(response)
        return response.json()

    def capacity(self, host: str) -> Capacity:
        """Free vCPU, RAM and disk of the host's resource provider, from its
        Placement inventories and usages."""
        provider = self.resource_provider(host)
        inventories = {
            inv.resource_class: inv for inv in self.read(
                self.placement.resource_provider_inventories, provider)}
        usages = self.provider_usages(provider)

        def free(rc: str) -> float:
            return free_of(inventories.get(rc), usages.get(rc, 0))

        return Capacity(free('VCPU'), free('MEMORY_MB'), free('DISK_GB'))

    def provider_traits(self, host: str) -> frozenset[str]:
        """The traits of the host's resource provider (what Placement
        matches a server's required traits against when Nova schedules a
        migration there)."""
        provider = self.resource_provider(host)
        return frozenset(self.placement_json(
            '/resource_providers/%s/traits' % provider.id,
            microversion='1.6').get('traits') or ())

    def tree_free(self, host: str, resource_class: str) -> float:
        """Free ``resource_class`` (PCPU, VGPU...) in the host's provider
        tree (vGPUs live on child providers), from Placement."""
        root = self.resource_provider(host)
        total = 0.0
        for provider in self.read(self.placement.resource_providers,
                                  in_tree=root.id):
            inventories = {inv.resource_class: inv for inv in self.read(
                self.placement.resource_provider_inventories, provider)}
            inv = inventories.get(resource_class)
            if inv is None or inv.total is None:
                continue
            total += free_of(inv, self.provider_usages(provider).get(
                resource_class, 0))
        return total

    def server_ports(self, server: Any) -> list[Any]:
        """The server's Neutron ports (their ``binding:vnic_type``)."""
        return self.read(self.conn.network.ports, device_id=server.id)


def free_of(inventory: Any, used: float) -> float:
    """What Placement still has of one inventory: (total - reserved) *
    allocation_ratio - used; 0 without an inventory."""
    if inventory is None or inventory.total is None:
        return 0.0
    ratio = inventory.allocation_ratio
    return (inventory.total - (inventory.reserved or 0)) * (
        ratio if ratio is not None else 1.0) - used


def flavor_specs(server: Any) -> dict[str, str]:
    """The extra specs of the server's embedded flavor (microversion
    2.47 and later), as strings."""
    flavor = server.flavor
    specs = (flavor.get('extra_specs') if isinstance(flavor, dict)
             else getattr(flavor, 'extra_specs', None)) or {}
    return {str(k): str(v) for k, v in specs.items()}


def flavor_needs(server: Any) -> tuple[float, float, float]:
    """(vcpus, ram_mb, disk_gb) a server takes, from its embedded flavor."""
    flavor = server.flavor
    get = (flavor.get if isinstance(flavor, dict)
           else lambda k, d=0: getattr(flavor, k, d))
    return (float(get('vcpus', 0) or 0), float(get('ram', 0) or 0),
            float((get('disk', 0) or 0) + (get('ephemeral', 0) or 0)
                  + (get('swap', 0) or 0) / 1024.0))
