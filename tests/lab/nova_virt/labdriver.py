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

"""The lab hypervisor: a Nova virt driver that models a libvirt/KVM host's CPU.

Loaded as ``compute_driver = labdriver.LabDriver``: the lab's launcher
appends this directory to ``nova.virt.__path__`` (Nova only loads drivers
from under ``nova.virt``).

It behaves like nova.virt.libvirt.driver.LibvirtDriver where cpumigrate
cares:

* the host has a CPU (a named libvirt model plus host-only extras, read from
  libvirt's CPU map), reported as ``cpu_info`` like ``_get_cpu_info()``;
* every guest's CPU is built on spawn, power-on, hard reboot and cold
  migration from this host's ``[libvirt] cpu_mode / cpu_models /
  cpu_model_extra_flags`` and recorded in ``instance.vcpu_model`` the way
  ``_get_guest_cpu_model_config()`` and ``_cpu_config_to_vcpu_model()`` do;
* ``init_host`` refuses a configured model or flag the host cannot provide,
  like ``_check_cpu_compatibility()``;
* ``check_can_live_migrate_destination`` compares CPUs like ``_compare_cpu()``
  and fails with ``Unacceptable CPU info: CPU doesn't have compatibility.``;
* live migration moves the guest with its CPU unchanged;
* Nova's own failures (labfailures.py): CPU traits for Placement,
  trait-matched custom models, guests libvirt refuses to start, clean
  shutdowns and power cuts, live migrations at the lab's bandwidth.

Guests are persisted in the host's ``state.json`` (which the lab's fake
``virsh`` reads) and re-adopted when nova-compute restarts.
"""

import json
import os
import sys
import threading
import time

from oslo_log import log as logging

from nova import exception
from nova import objects
from nova.compute import power_state
import nova.conf
from nova.objects import fields as obj_fields
from nova.virt import fake

LAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if LAB_DIR not in sys.path:
    sys.path.insert(0, LAB_DIR)

from lablib import cpumap  # noqa: E402
from lablib import hostdata  # noqa: E402
from lablib import realcpu  # noqa: E402

from nova.virt import labfailures  # noqa: E402

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

STATE_NAMES = {
    power_state.RUNNING: 'running',
    power_state.PAUSED: 'paused',
    power_state.SHUTDOWN: 'shut off',
    power_state.CRASHED: 'crashed',
    power_state.SUSPENDED: 'pmsuspended',
    power_state.NOSTATE: 'shut off',
}

COMPARE_URL = ("http://libvirt.org/html/libvirt-libvirt-host.html#"
               "virCPUCompareResult")


def _write_json(path, data):
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _version_int(text):
    parts = ([int(p) for p in text.split('.')] + [0, 0])[:3]
    return parts[0] * 1000000 + parts[1] * 1000 + parts[2]


class LabDriver(fake.FakeDriverWithoutFakeNodes):
    """A fake libvirt/KVM hypervisor with a CPU."""

    vcpus = 32
    memory_mb = 131072
    local_gb = 2000

    capabilities = dict(fake.FakeDriver.capabilities,
                        supports_migrate_to_same_host=False)

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self.host_dir = os.environ['LAB_HOST_DIR']
        self.state_dir = os.environ['LAB_STATE_DIR']
        self.host_def = _read_json(os.path.join(self.host_dir, 'host.json'))
        # Nova caches the host's capabilities at start: cpu_info stays what
        # it was then, even when a microcode update changes the CPU.
        self.cpu = self._hv_cpu()
        _libvirt, self.qemu_version = hostdata.versions(self.host_def)
        self.domains = {}
        self._lock = threading.RLock()
        self._aborts = set()
        self._cpu_traits = None
        self.ledger = labfailures.PowerLedger(self.state_dir)
        self.host_status_base.update({
            'hypervisor_type': 'QEMU',
            'hypervisor_version': _version_int(self.qemu_version),
            'supported_instances': [
                (obj_fields.Architecture.X86_64, obj_fields.HVType.KVM,
                 obj_fields.VMMode.HVM),
                (obj_fields.Architecture.X86_64, obj_fields.HVType.QEMU,
                 obj_fields.VMMode.HVM)],
        })

    # -- lab plumbing -----------------------------------------------------

    @property
    def _state_file(self):
        return os.path.join(self.host_dir, 'state.json')

    def _fault(self, host, name):
        return os.path.exists(
            os.path.join(self.state_dir, 'faults', host, name))

    def _persist(self):
        with self._lock:
            _write_json(self._state_file, {
                'host': self._host,
                'updated': time.time(),
                'domains': self.domains,
            })

    def _set_domain(self, instance, state, cpu=None):
        with self._lock:
            dom = self.domains.get(instance.uuid, {})
            dom.update({
                'uuid': instance.uuid,
                'name': instance.name,
                'state': state,
                'vcpus': instance.flavor.vcpus,
                'memory_mb': instance.flavor.memory_mb,
            })
            if cpu is not None:
                dom['cpu'] = cpu
            self.domains[instance.uuid] = dom
            self.instances[instance.uuid] = fake.FakeInstance(
                instance.name, state, instance.uuid)
            self._persist()

    def _drop_domain(self, uuid):
        with self._lock:
            self.domains.pop(uuid, None)
            self.instances.pop(uuid, None)
            self._persist()

    # -- the guest CPU, like LibvirtDriver._get_guest_cpu_model_config ------

    def _hv_cpu(self):
        """The CPU libvirt offers guests now (host-model, drift included):
        what new guests get and what CPUs are compared with."""
        return hostdata.host_cpu({'host_dir': self.host_dir}, self.host_def)

    def _cpu_mode(self):
        # virt_type=kvm on x86_64: no cpu_mode means host-model
        return CONF.libvirt.cpu_mode or 'host-model'

    def _build_guest_cpu(self, instance):
        """Set instance.vcpu_model and return the guest's live CPU."""
        mode = self._cpu_mode()
        vcpus = instance.flavor.vcpus if instance.flavor else 1
        topology = objects.VirtCPUTopology(sockets=vcpus, cores=1, threads=1)
        vm = objects.VirtCPUModel(arch=None, vendor=None, model=None,
                                  mode=mode, match=None, topology=topology,
                                  features=[])
        if mode == 'custom':
            model = self._custom_model(instance)
            flags = []
            for flag in sorted({f.lower() for f in
                                CONF.libvirt.cpu_model_extra_flags}):
                if flag.startswith('-'):
                    flags.append((flag.lstrip('-'), 'disable'))
                else:
                    flags.append((flag.lstrip('+'), 'require'))
            vm.model = model
            vm.match = 'exact'
            vm.features = [objects.VirtCPUFeature(name=n, policy=p)
                           for n, p in flags]
            live = realcpu.live_guest_cpu(self._hv_cpu(), 'custom', model,
                                          flags)
        else:
            # host-model: libvirt expands it at start to the host-model
            # (model, features) as it is now (what `virsh dumpxml` shows).
            live = realcpu.live_guest_cpu(self._hv_cpu(), mode)
        live['machine'] = realcpu.canonical_machine('q35', self.qemu_version)
        live['built_on'] = self._host
        live['built_at'] = time.time()
        instance.vcpu_model = vm
        return live

    def _check_cpu_compatibility(self):
        """Like LibvirtDriver._check_cpu_compatibility() at init_host."""
        mode = CONF.libvirt.cpu_mode
        models = CONF.libvirt.cpu_models
        if mode != 'custom':
            if not models:
                return
            raise exception.Invalid(
                "The cpu_models option is not required when "
                "cpu_mode!=custom")
        if not models:
            raise exception.Invalid(
                "The cpu_models option is required when cpu_mode=custom")
        if CONF.workarounds.skip_cpu_compare_at_startup:
            return
        flags = {x.lower() for x in CONF.libvirt.cpu_model_extra_flags}
        for model in models:
            try:
                name = cpumap.canonical_model(model)
            except cpumap.UnknownModel:
                raise exception.InvalidCPUInfo(
                    reason="Invalid CPU model '%s'" % model) from None
            feats = [(f.lstrip('+-'),
                      'disable' if f.startswith('-') else 'require')
                     for f in flags]
            result, missing = self._hv_cpu().compare(name, None, feats)
            if result == 'incompatible':
                inner = exception.InvalidCPUInfo(
                    reason="CPU doesn't have compatibility.\n\n0\n\n"
                           "Refer to %s" % COMPARE_URL)
                msg = ("Configured CPU model: %(model)s and CPU Flags "
                       "%(flags)s are not compatible with host CPU. Please "
                       "correct your config and try again. %(e)s "
                       "(host lacks: %(missing)s)") % {
                    'model': model, 'e': inner,
                    'flags': CONF.libvirt.cpu_model_extra_flags,
                    'missing': ', '.join(missing)}
                raise exception.InvalidCPUInfo(reason=msg)

    def _compare_cpu(self, guest_cpu, host_cpu_str):
        """Like LibvirtDriver._compare_cpu(), against this host."""
        if guest_cpu is None:
            info = json.loads(host_cpu_str)
            model, vendor = info.get('model'), info.get('vendor')
            feats = [(f, 'require') for f in info.get('features', [])]
        else:
            model, vendor = guest_cpu.model, guest_cpu.vendor
            feats = [(f.name, f.policy) for f in (guest_cpu.features or [])]
        try:
            result, message = realcpu.compare(self._hv_cpu(), model, vendor,
                                              feats)
        except cpumap.UnknownModel:
            result, message = 'incompatible', 'Unknown CPU model %s' % model
        LOG.info('Lab CPU compare on %s: %s %s', self._host, result,
                 message)
        if result == 'incompatible':
            m = "CPU doesn't have compatibility.\n\n%(ret)s\n\nRefer to %(u)s"
            raise exception.InvalidCPUInfo(
                reason=m % {'ret': 0, 'u': COMPARE_URL})

    # -- Nova's failures (see labfailures.py) --------------------------------

    def _model_features(self, name):
        try:
            return cpumap.model(name)[1]
        except cpumap.UnknownModel:
            raise labfailures.unknown_model_error(name) from None

    def _custom_model(self, instance):
        """The configured model this guest gets (_get_cpu_model_mapping,
        then _match_cpu_model_by_flags when its flavor requires CPU
        traits)."""
        models = []
        for name in CONF.libvirt.cpu_models:
            try:
                models.append(cpumap.canonical_model(name))
            except cpumap.UnknownModel:
                raise labfailures.unknown_model_error(name) from None
        return labfailures.custom_cpu_model(models, instance.flavor,
                                            self._model_features)

    def _start_guest(self, instance, state=power_state.RUNNING):
        """A new domain from the current nova.conf (_get_guest_xml), then
        started as libvirt starts it (or refuses to)."""
        cpu = self._build_guest_cpu(instance)
        if state == power_state.RUNNING:
            labfailures.check_guest_can_start(cpu, self._hv_cpu().compare)
        self._set_domain(instance, state, cpu)

    def _running(self, uuid):
        dom = self.domains.get(uuid)
        return bool(dom) and dom.get('state') in (power_state.RUNNING,
                                                  power_state.PAUSED)

    def _destroy_guest(self, instance):
        """virDomainDestroy: a power cut for a running guest."""
        if self._running(instance.uuid):
            self.ledger.record(instance.uuid, 'power-cut')
            LOG.info('Lab guest %s: power cut (domain destroyed)',
                     instance.uuid)

    def _hard_reboot(self, instance):
        """_hard_reboot(): destroy and undefine the domain first, then a
        new one from the current nova.conf.  power_on() is this too.  If
        the new one cannot be built or started, the domain stays gone."""
        self._destroy_guest(instance)
        self._drop_domain(instance.uuid)
        self._start_guest(instance)

    def _clean_shutdown(self, instance, timeout):
        """_clean_shutdown(): ACPI shutdown, then wait up to timeout s."""
        for _sec in range(timeout):
            dom = self.domains.get(instance.uuid) or {}
            if (dom.get('state') == power_state.RUNNING and
                    not self.ledger.ignores_acpi(instance)):
                self.ledger.record(instance.uuid, 'clean-shutdown')
                self._set_domain(instance, power_state.SHUTDOWN)
                return True
            time.sleep(1)
        LOG.info('Instance failed to shutdown in %d seconds.', timeout,
                 instance=instance)
        return False

    def _power_off_guest(self, instance, timeout, retry_interval):
        """power_off(): a clean shutdown when timeout > 0 (stop honours
        shutdown_timeout or the image's os_shutdown_timeout), then
        _destroy(): a power cut for a guest still running."""
        if not self._running(instance.uuid):
            return
        if timeout and self._clean_shutdown(instance, timeout):
            return
        self._destroy_guest(instance)
        self._set_domain(instance, power_state.SHUTDOWN)

    def _soft_reboot(self, instance):
        """_soft_reboot(): ACPI shutdown and relaunch, CPU unchanged;
        False after wait_soft_reboot_seconds if the guest did not go down
        (the caller then hard reboots)."""
        dom = self.domains.get(instance.uuid) or {}
        if (dom.get('state') == power_state.RUNNING and
                not self.ledger.ignores_acpi(instance)):
            self.ledger.record(instance.uuid, 'clean-shutdown')
            self._set_domain(instance, power_state.RUNNING)
            return True
        if dom:
            time.sleep(CONF.libvirt.wait_soft_reboot_seconds)
        return False

    def _migration_of(self, migrate_data):
        try:
            if migrate_data.obj_attr_is_set('migration'):
                return migrate_data.migration
        except Exception:
            pass
        return None

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename, allocations)
        if self._cpu_traits is None:
            # static_traits: computed once per nova-compute process
            self._cpu_traits = labfailures.cpu_traits(
                CONF, self.cpu.features, self._model_features,
                hyperthreading=self.cpu.threads > 1)
        labfailures.update_provider_traits(provider_tree, nodename,
                                           self._cpu_traits)

    # -- driver interface -----------------------------------------------------

    def init_host(self, host):
        super().init_host(host)
        self._check_cpu_compatibility()
        state = _read_json(self._state_file, {}) or {}
        with self._lock:
            for uuid, dom in (state.get('domains') or {}).items():
                self.domains[uuid] = dom
                self.instances[uuid] = fake.FakeInstance(
                    dom['name'], dom['state'], uuid)
            self._persist()
        LOG.info('Lab hypervisor %s (%s %s) re-adopted %d guest(s)', host,
                 self.cpu.vendor, self.cpu.model, len(self.domains))

    def get_host_ip_addr(self):
        return self.host_def.get('ip', '127.0.0.1')

    def get_available_resource(self, nodename):
        resources = super().get_available_resource(nodename)
        if resources:
            resources['cpu_info'] = json.dumps(self.cpu.cpu_info())
        return resources

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        self._start_guest(instance, power_state.RUNNING if power_on
                          else power_state.SHUTDOWN)

    def power_off(self, instance, timeout=0, retry_interval=0):
        # libvirt: no domain is no error (the guest is down already)
        self._power_off_guest(instance, timeout, retry_interval)

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        # libvirt: power_on() is _hard_reboot(): new XML from current conf
        self._hard_reboot(instance)

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        if reboot_type.upper() == 'SOFT' and self._soft_reboot(instance):
            return
        self._hard_reboot(instance)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        self._destroy_guest(instance)
        self._drop_domain(instance.uuid)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        pass

    def unrescue(self, context, instance):
        self._set_domain(instance, power_state.RUNNING)

    def pause(self, instance):
        self._set_domain(instance, power_state.PAUSED)

    def unpause(self, instance):
        self._set_domain(instance, power_state.RUNNING)

    def suspend(self, context, instance):
        self._set_domain(instance, power_state.SUSPENDED)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        self._set_domain(instance, power_state.RUNNING)

    # cold migration / resize

    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   network_info, block_device_info=None,
                                   timeout=0, retry_interval=0):
        # libvirt: power_off(instance, timeout, retry_interval) first
        self._power_off_guest(instance, timeout, retry_interval)
        return ''

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        self._start_guest(instance, power_state.RUNNING if power_on
                          else power_state.SHUTDOWN)

    def confirm_migration(self, context, migration, instance, network_info):
        if migration.source_compute != migration.dest_compute:
            self._drop_domain(instance.uuid)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        cpu = None
        if instance.uuid not in self.domains:
            cpu = self._build_guest_cpu(instance)
        self._set_domain(instance, power_state.RUNNING if power_on
                         else power_state.SHUTDOWN, cpu)

    # live migration

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info, dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        if self._fault(self._host, 'migration-precheck-fails'):
            raise exception.MigrationPreCheckError(
                reason='lab fault: live migrations to %s fail at pre-check'
                       % self._host)
        if not CONF.workarounds.skip_cpu_compare_on_dest:
            try:
                if not instance.vcpu_model or not instance.vcpu_model.model:
                    self._compare_cpu(None, src_compute_info['cpu_info'])
                else:
                    self._compare_cpu(instance.vcpu_model, None)
            except exception.InvalidCPUInfo as e:
                raise exception.MigrationPreCheckError(reason=e) from e
        return super().check_can_live_migrate_destination(
            context, instance, src_compute_info, dst_compute_info,
            block_migration, disk_over_commit)

    def live_migration(self, context, instance, dest,
                       post_method, recover_method, block_migration=False,
                       migrate_data=None):
        """The guest's memory crosses the lab's migration network at its
        bandwidth; the migration record gets libvirt's memory stats every
        live_migration_monitor_interval seconds, as
        _live_migration_monitor() saves them (none at the end)."""
        uuid = instance.uuid
        self._aborts.discard(uuid)
        dom = dict(self.domains.get(uuid) or {})
        os.makedirs(os.path.join(self.state_dir, 'transfer'), exist_ok=True)
        _write_json(os.path.join(self.state_dir, 'transfer', uuid + '.json'),
                    dom)
        migration = self._migration_of(migrate_data)
        bandwidth = labfailures.migration_bandwidth(self.state_dir, CONF)
        copy = labfailures.MemoryCopy(instance.flavor.memory_mb or 512,
                                      bandwidth, time.monotonic())
        interval = max(CONF.libvirt.live_migration_monitor_interval, 1)
        LOG.info('Lab live migration of %s to %s: %d MiB at %.1f MiB/s',
                 uuid, dest, instance.flavor.memory_mb, bandwidth)
        next_save = 0.0
        while True:
            if uuid in self._aborts:
                self._aborts.discard(uuid)
                LOG.info('Lab live migration of %s to %s aborted', uuid, dest)
                recover_method(context, instance, dest, migrate_data,
                               migration_status='cancelled')
                return
            now = time.monotonic()
            converging = not self._fault(dest, 'migration-hangs')
            stats = copy.stats(now, converging)
            if converging and not stats.memory_remaining:
                break
            if migration is not None and now >= next_save:
                next_save = now + interval
                try:
                    labfailures.save_stats(instance, migration, stats)
                except Exception:  # progress is best effort
                    LOG.debug('could not save migration progress',
                              exc_info=True)
            time.sleep(0.5)
        LOG.info('Migration operation has completed', instance=instance)
        post_method(context, instance, dest, block_migration, migrate_data)

    def live_migration_abort(self, instance):
        self._aborts.add(instance.uuid)

    def live_migration_force_complete(self, instance):
        return

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None):
        # source side: the guest left this host
        self._drop_domain(instance.uuid)

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        # destination side: the guest arrives with its CPU unchanged
        path = os.path.join(self.state_dir, 'transfer',
                            instance.uuid + '.json')
        dom = _read_json(path, {}) or {}
        cpu = dom.get('cpu')
        if cpu is None:
            cpu = self._build_guest_cpu(instance)
        state = dom.get('state', power_state.RUNNING)
        self._set_domain(instance, state, cpu)
        try:
            os.unlink(path)
        except OSError:
            pass

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        if instance.uuid in self.domains and instance.host != self._host:
            self._drop_domain(instance.uuid)
