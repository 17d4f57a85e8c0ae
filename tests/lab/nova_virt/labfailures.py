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

"""Nova's own failures, for the lab driver (as Nova 34's libvirt driver).

The lab driver (labdriver.py) imports this module for the paths where a
real cloud hurts: which CPU traits a host reports to Placement, which CPU
model a guest gets when its flavor requires CPU traits, when a guest
cannot start, how a guest goes down (a clean ACPI shutdown or a power
cut) and how long a live migration takes.  Each function names the Nova
code it follows (nova/virt/libvirt/driver.py unless said otherwise); where
Nova's own helpers run without libvirt they are called, not copied.

Lab state this module reads or writes, under the lab's state directory:

* ``guests/UUID.json``: a guest's power history (``power_cuts``,
  ``clean_shutdowns``, ``last_down``); it outlives the libvirt domain
  (a failed hard reboot undefines the domain, the disk and its history
  stay);
* ``guests/UUID.acpi``: ``ignore`` or ``obey``, the ``labctl guest-acpi``
  switch; without it the image property ``lab_ignores_acpi`` decides;
* ``migration.json``: ``bandwidth_mibps``, the lab's migration network
  (``labctl up --migration-bandwidth``).
"""

import json
import os
import time

import os_traits

from nova import exception
from nova.virt.libvirt import migration as libvirt_migrate
from nova.virt.libvirt import utils as libvirt_utils

#: MiB/s of the lab's migration network when `labctl up` did not set one:
#: about a 10 GbE link, so a 512 MB guest moves in half a second.
DEFAULT_BANDWIDTH_MIBPS = 1024.0

#: libvirt's virErrorNumber for "the CPU is incompatible with host CPU".
VIR_ERR_CPU_INCOMPATIBLE = 91

#: What libvirt migration stats a migration that does not converge keeps
#: as remaining (the guest dirties memory as fast as it is copied).
NON_CONVERGING_REMAINING = 0.1


class libvirtError(Exception):  # noqa: N801 - named as libvirt-python's
    """What libvirt-python raises; Nova records only the class name as the
    instance fault's message for exceptions that are not Nova's own."""

    def __init__(self, msg, code=VIR_ERR_CPU_INCOMPATIBLE):
        super().__init__(msg)
        self.err = (code, 0, msg)

    def get_error_code(self):
        return self.err[0]

    def get_error_message(self):
        return self.err[2]


def _read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# -- CPU traits, as _get_cpu_traits() / _get_cpu_feature_traits() -----------

def _extra_flag_names(conf):
    # _prepare_cpu_flag() keeps '-flag' as a feature with policy 'disable';
    # _get_cpu_feature_traits() then unions the names of all of them.
    return {f.lower().lstrip('+-') for f in conf.libvirt.cpu_model_extra_flags}


def cpu_feature_names(conf, host_features, model_features):
    """The CPU features a host reports as traits, like
    ``_get_cpu_feature_traits()``: host-model and host-passthrough (or no
    cpu_mode under kvm) use the host CPU's features; custom uses each
    configured model's own features; ``none`` uses qemu64's; all of them
    plus the names in cpu_model_extra_flags.

    ``model_features(name)`` returns a named model's features (libvirt's
    baselineCPU with VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES).
    """
    mode = conf.libvirt.cpu_mode or 'host-model'
    if mode in ('host-model', 'host-passthrough'):
        return set(host_features) | _extra_flag_names(conf)
    if mode == 'none':
        return set(model_features('qemu64'))
    features = set()
    for model in conf.libvirt.cpu_models:
        features |= set(model_features(model))
    return features | _extra_flag_names(conf)


def cpu_traits(conf, host_features, model_features, hyperthreading=True):
    """{trait: bool} as ``_get_cpu_traits()``: the HW_CPU_X86_* traits of
    CPU_TRAITS_MAPPING (True where the feature is there, False to be
    removed), HW_CPU_HYPERTHREADING, HW_ARCH_X86_64 and the emulation
    arch trait of a KVM x86_64 host."""
    traits = libvirt_utils.cpu_features_to_traits(
        cpu_feature_names(conf, host_features, model_features))
    traits[os_traits.HW_CPU_HYPERTHREADING] = hyperthreading
    traits['HW_ARCH_X86_64'] = True
    traits['COMPUTE_ARCH_X86_64'] = True
    _valid, invalid = os_traits.check_traits(traits)
    for name in invalid:
        del traits[name]
    return traits


def update_provider_traits(provider_tree, nodename, traits):
    """The end of the libvirt driver's update_provider_tree()."""
    add = [t for t in traits if traits[t]]
    provider_tree.add_traits(nodename, *add)
    provider_tree.remove_traits(nodename, *(set(traits) - set(add)))


# -- the custom model for a flavor, as _get_guest_cpu_model_config() -------

def custom_cpu_model(models, flavor, model_features):
    """The model a custom-mode guest gets.

    The first configured model, unless the flavor requires CPU traits
    (``trait:HW_CPU_X86_*=required`` extra specs, via
    ``get_flags_by_flavor_specs``): then the first model whose OWN
    features have them all (``_match_cpu_model_by_flags``), else
    InvalidCPUInfo.  cpu_model_extra_flags do not count, and neither do
    traits the image requires (Nova builds the RequestSpec from the
    flavor alone here).
    """
    model = models[0] if models else None
    if flavor is None:
        return model
    flags = libvirt_utils.get_flags_by_flavor_specs(flavor)
    if not flags:
        return model
    for candidate in models:
        if flags.issubset(set(model_features(candidate))):
            return candidate
    msg = (f'No CPU model match traits, models: {models}, required '
           f'flags: {flags}')
    raise exception.InvalidCPUInfo(msg)


def unknown_model_error(model):
    """InvalidCPUInfo of ``_get_cpu_model_mapping()``."""
    return exception.InvalidCPUInfo(
        "Configured CPU model: %(model)s is not correct, or your host CPU "
        "arch does not support this model. Please correct your config and "
        "try again." % {'model': model})


def check_guest_can_start(live_cpu, compare):
    """libvirt refuses to start a custom-mode guest whose CPU the host
    cannot provide (virDomainCreateWithFlags: VIR_ERR_CPU_INCOMPATIBLE).

    Nova's start-up check (``_check_cpu_compatibility``) keeps this from
    happening unless ``[workarounds] skip_cpu_compare_at_startup`` skipped
    it, or the host's CPU changed under a configured model.
    ``compare(model, vendor, features)`` is the lab host's comparison.
    """
    if (live_cpu or {}).get('mode') != 'custom':
        return
    result, missing = compare(live_cpu.get('model'), live_cpu.get('vendor'),
                              live_cpu.get('features') or [])
    if result != 'incompatible':
        return
    raise libvirtError(
        'the CPU is incompatible with host CPU: Host CPU does not provide '
        'required features: %s' % ', '.join(missing))


# -- how guests go down ------------------------------------------------------

class PowerLedger:
    """Each guest's power history, kept beside the libvirt domains."""

    def __init__(self, state_dir):
        self.dir = os.path.join(state_dir, 'guests')

    def _path(self, uuid, ext):
        return os.path.join(self.dir, '%s.%s' % (uuid, ext))

    def get(self, uuid):
        data = _read_json(self._path(uuid, 'json'), {}) or {}
        data.setdefault('power_cuts', 0)
        data.setdefault('clean_shutdowns', 0)
        data.setdefault('last_down', None)
        return data

    def record(self, uuid, how):
        """``how``: 'clean-shutdown' or 'power-cut'."""
        data = self.get(uuid)
        key = 'power_cuts' if how == 'power-cut' else 'clean_shutdowns'
        data[key] += 1
        data['last_down'] = how
        data['last_down_at'] = time.time()
        _write_json(self._path(uuid, 'json'), data)

    def ignores_acpi(self, instance):
        """Does the guest OS ignore ACPI power-button events?  The
        ``labctl guest-acpi`` switch, else image property
        ``lab_ignores_acpi`` (system metadata ``image_lab_ignores_acpi``).
        """
        try:
            with open(self._path(instance.uuid, 'acpi')) as f:
                return f.read().strip() == 'ignore'
        except OSError:
            pass
        try:
            meta = instance.system_metadata or {}
        except Exception:  # not loaded: as for an image without it
            meta = {}
        value = str(meta.get('image_lab_ignores_acpi', '')).lower()
        return value in ('true', 'yes', '1', 'on')


# -- live migration, as _live_migration_monitor() sees it --------------------

def migration_bandwidth(state_dir, conf):
    """MiB/s for a live migration: the lab's network, capped by
    ``[libvirt] live_migration_bandwidth`` (0: no cap)."""
    data = _read_json(os.path.join(state_dir, 'migration.json'), {}) or {}
    try:
        bandwidth = float(data.get('bandwidth_mibps') or
                          DEFAULT_BANDWIDTH_MIBPS)
    except (TypeError, ValueError):
        bandwidth = DEFAULT_BANDWIDTH_MIBPS
    cap = conf.libvirt.live_migration_bandwidth
    if cap and cap > 0:
        bandwidth = min(bandwidth, float(cap))
    return max(bandwidth, 0.001)


class JobStats:
    """The fields of libvirt's job info that save_stats() reads."""

    disk_total = disk_processed = disk_remaining = 0

    def __init__(self, total, processed, remaining):
        self.memory_total = total
        self.memory_processed = processed
        self.memory_remaining = remaining


class MemoryCopy:
    """A live migration's memory copy: ``memory_mb`` over ``bandwidth``
    MiB/s.  A migration that does not converge keeps copying (processed
    grows past total) with a tenth of the memory always left."""

    def __init__(self, memory_mb, bandwidth_mibps, start):
        self.total = int(memory_mb) * 2 ** 20
        self.rate = bandwidth_mibps * 2 ** 20
        self.start = start

    def stats(self, now, converging=True):
        processed = int(self.rate * max(0.0, now - self.start))
        if converging:
            processed = min(processed, self.total)
            remaining = self.total - processed
        else:
            floor = int(self.total * NON_CONVERGING_REMAINING)
            remaining = max(self.total - processed, floor)
        return JobStats(self.total, processed, remaining)


def save_stats(instance, migration, stats):
    """Nova's own libvirt_migrate.save_stats(): the migration record's
    memory_* and disk_* and the instance's progress."""
    remaining = 100
    if stats.memory_total:
        remaining = round(stats.memory_remaining * 100 / stats.memory_total)
    libvirt_migrate.save_stats(instance, migration, stats, remaining)
