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

"""gate: will Nova accept a server's migration to a destination?

Asked before anyone is restarted: ``check`` reports it, ``pin`` refuses to
restart a server no destination would take (a reboot for nothing is
customer impact for nothing), ``migrate`` sends each server only to a
destination that takes it, ``plan`` books only such destinations.  One
place for the rules, so the verbs cannot disagree:

* the CPU the server will have (pin: the transition CPU; migrate: its live
  ``<cpu>``) is accepted by ``virsh hypervisor-cpu-compare`` on the
  destination, and the domain's machine type is offered by its QEMU
  (libvirt refuses the incoming domain otherwise);
* what Nova's scheduler still applies to a live migration with a host
  (microversion 2.30, no force): the availability zone the server is
  pinned to, server group policies (hard ones refuse, soft ones warn),
  required and forbidden traits (flavor and image) against the
  destination's Placement traits, dedicated CPUs (PCPU) and vGPUs free in
  its provider tree, and its NUMA cells;
* what Nova's API and conductor refuse outright: accelerators (Cyborg
  device profiles, accelerator ports), memory encryption (SEV), PCI
  devices requested by flavor alias (only ``live_migratable`` aliases
  move, and the alias is controller configuration this tool cannot read).

Direct-passthrough (SR-IOV) ports move only when the destination has a
free device on the port's physical network, which no API shows: a warning.

Also here: :func:`trait_problem`, the custom-mode rule that a server's
required CPU traits be served by the configured model's own features
(Nova otherwise puts the server in ERROR on its next start).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from collections.abc import Sequence
import contextlib
import dataclasses
import logging
from typing import Any

from osc_cpumigrate.cloud import flavor_needs
from osc_cpumigrate.cloud import flavor_specs
from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common

LOG = logging.getLogger(__name__)

HARD_POLICIES = ('affinity', 'anti-affinity')
SOFT_POLICIES = ('soft-affinity', 'soft-anti-affinity')
#: vnic types Nova refuses to live-migrate (block_port_accelerators).
REFUSED_VNIC_TYPES = ('accelerator-direct', 'accelerator-direct-physical')
#: vnic types that need a free device on the destination (PCI requests).
PASSTHROUGH_VNIC_TYPES = ('direct', 'direct-physical', 'macvtap', 'vdpa',
                          'remote-managed', 'virtio-forwarder')


# -- server groups ----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Group:
    name: str
    policy: str
    members: tuple[str, ...]
    #: anti-affinity's ``max_server_per_host`` rule (microversion 2.64).
    max_per_host: int = 1

    @property
    def hard(self) -> bool:
        return self.policy in HARD_POLICIES


def server_groups(ctx: common.Context) -> dict[str, Group]:
    """Server ID -> its server group (hard and soft policies)."""
    found = {}
    for group in ctx.cloud.server_groups():
        policy = group.policy or (group.policies or [''])[0]
        if policy not in HARD_POLICIES + SOFT_POLICIES:
            continue
        rules = group.rules if isinstance(group.rules, dict) else {}
        try:
            most = max(1, int(rules.get('max_server_per_host') or 1))
        except (TypeError, ValueError):
            most = 1
        value = Group(group.name or group.id, policy,
                      tuple(group.member_ids or ()), most)
        for member in value.members:
            found[member] = value
    return found


def member_hosts(ctx: common.Context, groups: dict[str, Group],
                 known: Iterable[Any] = ()) -> dict[str, str]:
    """Where each group member is: from ``known`` servers, else one GET
    per member (a deleted one is left out)."""
    placed = {s.id: s.compute_host for s in known if s.id in groups}
    for sid in {m for g in groups.values() for m in g.members}:
        if sid not in placed:
            try:
                placed[sid] = ctx.cloud.get_server(sid).compute_host
            except common.RECOVERABLE:
                continue
    return placed


def group_problem(group: Group, server_id: str, placed: dict[str, str],
                  destination: str) -> str | None:
    """Why ``group``'s policy keeps the server off ``destination``:
    anti-affinity, another member is there; affinity, members are
    elsewhere (Nova's ServerGroupAffinityFilter passes only the hosts of
    the group's members).  Soft policies give the same text: a warning."""
    others = collections.Counter(placed[m] for m in group.members
                                 if m != server_id and m in placed)
    if group.policy.endswith('anti-affinity'):
        if others[destination] >= group.max_per_host:
            if group.max_per_host == 1:
                return ('%s group %s: another member is on %s'
                        % (group.policy, group.name, destination))
            return ('%s group %s: %d other members on %s already'
                    % (group.policy, group.name, others[destination],
                       destination))
        return None
    # the moving member's own host counts as one of the group's hosts
    together = set(others) | ({placed[server_id]} if server_id in placed
                             else set())
    if together and destination not in together:
        return ('%s group %s: its members are on %s, and Nova moves a '
                'member only to a host of the group'
                % (group.policy, group.name, ', '.join(sorted(together))))
    return None


# -- required CPU traits against a custom model ------------------------------

def trait_problem(server: Any, models: dict[str, frozenset[str]]) \
        -> str | None:
    """Why Nova would fail to start the server in custom mode with these
    ``cpu_models`` (name -> the model's own features), or None: its
    flavor requires CPU traits that no model's own features serve (Nova
    takes the first model that serves them all; extra flags do not
    count, and neither does the image: Nova builds this request from the
    flavor alone)."""
    from osc_cpumigrate.cpu import traits

    required = traits.required_traits(flavor_specs(server))
    gaps = [traits.unserved(required, feats) for feats in models.values()]
    if not gaps or not all(gaps):
        return None
    missing = min(gaps, key=len)
    return ('its flavor requires %s, which the CPU model %s does not have '
            'itself (extra flags do not count): Nova would fail its next '
            'start with "No CPU model match traits" and leave it in ERROR'
            % (traits.describe(missing), ', '.join(models)))


def read_cpu_map(host: host_api.Host) -> Any:
    """The host's libvirt CPU map (cpu.cpumap.CpuMap)."""
    from osc_cpumigrate.cpu import cpumap

    try:
        return cpumap.CpuMap.from_files(host.cpu_map())
    except cpumap.CpuMapError as exc:
        raise WorkflowError('the libvirt CPU map of %s: %s'
                            % (host.name, exc)) from None


def configured_models(settings: host_api.CpuSettings,
                      cpu_map: Any) -> dict[str, frozenset[str]]:
    """The custom models of ``settings`` -> their own features in the
    CPU map (names matched case-insensitively, as Nova does); {} when the
    mode is not custom."""
    if settings.mode != 'custom':
        return {}
    found = {}
    for name in settings.models:
        folded = [n for n in cpu_map.model_names()
                  if n.lower() == name.lower()]
        if folded:
            found[folded[0]] = cpu_map.model(folded[0]).features
    return found


# -- what a server needs wherever it goes ------------------------------------

def wants(ctx: common.Context, server: Any) -> dict[str, str]:
    """The flavor's extra specs, then the image's properties, as Nova
    merges them for scheduling (image ``hw_*`` as ``hw:*``)."""
    merged = {k.replace('hw_', 'hw:', 1) if k.startswith('hw_') else k: v
              for k, v in ctx.cloud.image_properties(server).items()}
    merged.update(flavor_specs(server))
    return merged


def intrinsic(ctx: common.Context, server: Any,
              specs: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) that no destination changes."""
    problems, warnings = [], []
    if specs.get('accel:device_profile'):
        problems.append('its flavor asks for accelerators (%s): Nova does '
                        'not live-migrate them'
                        % specs['accel:device_profile'])
    if specs.get('hw:mem_encryption', '').lower() in ('true', 'yes', '1'):
        problems.append('memory encryption (SEV): Nova does not '
                        'live-migrate it')
    if specs.get('pci_passthrough:alias'):
        problems.append('PCI devices by flavor alias (%s): Nova moves them '
                        'only for live_migratable aliases with a free device '
                        'on the destination, which cpumigrate cannot verify; '
                        'move it by hand' % specs['pci_passthrough:alias'])
    for port_id, vnic in ports(ctx, server, warnings):
        if vnic in REFUSED_VNIC_TYPES:
            problems.append('port %s is %s: Nova does not live-migrate '
                            'accelerator ports' % (port_id, vnic))
        elif vnic in PASSTHROUGH_VNIC_TYPES:
            warnings.append('port %s is %s: the destination needs a free '
                            'device for it on the port\'s physical network'
                            % (port_id, vnic))
    return problems, warnings


def ports(ctx: common.Context, server: Any,
          warnings: list[str]) -> list[tuple[str, str]]:
    """(port ID, vnic type) of the server's ports; none without
    addresses (no Neutron call then)."""
    if not server.addresses:
        return []
    try:
        found = ctx.cloud.server_ports(server)
    except common.RECOVERABLE as exc:
        warnings.append('cannot list its ports: %s' % common.reason(exc))
        return []
    out = []
    for port in found:
        if hasattr(port, 'binding_vnic_type'):      # openstacksdk's Port
            out.append((port.id, port.binding_vnic_type))
        else:
            out.append((port.get('id'), port.get('binding:vnic_type')))
    return [(pid, vnic or 'normal') for pid, vnic in out]


# -- one destination ---------------------------------------------------------

class Target:
    """What the gate knows of one destination, read once and lazily."""

    def __init__(self, ctx: common.Context, host: host_api.Host) -> None:
        self.ctx, self.host, self.name = ctx, host, host.name
        self.zone = getattr(ctx.cloud.compute_service(host.name),
                            'availability_zone', None)
        self.cpu = host.host_cpu()
        self._compared: dict[str, host_api.CompareResult] = {}
        self._traits: frozenset[str] | None = None
        self._free: dict[str, float] = {}

    def compare(self, cpu_xml: str) -> host_api.CompareResult:
        if cpu_xml not in self._compared:
            self._compared[cpu_xml] = self.host.compare_cpu(cpu_xml)
        return self._compared[cpu_xml]

    def traits(self) -> frozenset[str]:
        if self._traits is None:
            self._traits = self.ctx.cloud.provider_traits(self.name)
        return self._traits

    def free(self, resource_class: str) -> float:
        if resource_class not in self._free:
            self._free[resource_class] = self.ctx.cloud.tree_free(
                self.name, resource_class)
        return self._free[resource_class]


def cpu_problems(target: Target, cpu_xml: str | None,
                 machine: str | None) -> list[str]:
    problems = []
    if cpu_xml:
        result = target.compare(cpu_xml)
        if not result.compatible:
            problems.append('its CPU is refused by libvirt on %s: %s' % (
                target.name, result.message or result.result))
    if machine and target.cpu.machines and (
            machine not in target.cpu.machines):
        problems.append('its machine type %s is not offered by the QEMU of '
                        '%s' % (machine, target.name))
    return problems


def zone_rule(server: Any, target: Target) -> tuple[str | None, str | None]:
    """(problem, warning): the availability zone."""
    pinned = getattr(server, 'pinned_availability_zone', None)
    current = getattr(server, 'availability_zone', None)
    if not target.zone:
        return None, None
    if pinned and pinned != target.zone:
        return ('it is pinned to availability zone %s, %s is in %s'
                % (pinned, target.name, target.zone)), None
    if not pinned and current and current != target.zone:
        return None, ('it is in availability zone %s, %s in %s: Nova '
                      'refuses if it was booted into its zone'
                      % (current, target.name, target.zone))
    return None, None


def resource_problems(server: Any, specs: dict[str, str],
                      target: Target) -> list[str]:
    """Dedicated CPUs, vGPUs, NUMA cells, required/forbidden traits."""
    from osc_cpumigrate.cpu import traits

    problems = []
    vcpus = flavor_needs(server)[0]
    if specs.get('hw:cpu_policy') == 'dedicated' and (
            target.free('PCPU') < vcpus):
        problems.append('it has %d dedicated CPUs, %s has %d PCPU free'
                        % (vcpus, target.name, target.free('PCPU')))
    vgpus = sum(int(v) for k, v in specs.items() if k.startswith(
        'resources') and k.endswith(':VGPU') and v.isdigit())
    if vgpus and target.free('VGPU') < vgpus:
        problems.append('it has %d vGPU, %s has %d free' % (
            vgpus, target.name, target.free('VGPU')))
    nodes = specs.get('hw:numa_nodes', '')
    cells = target.cpu.numa_cells
    if nodes.isdigit() and cells is not None and int(nodes) > cells:
        problems.append('its NUMA topology has %s nodes, %s has %d'
                        % (nodes, target.name, cells))
    required = traits.required_traits(specs)
    forbidden = traits.forbidden_traits(specs)
    if required or forbidden:
        have = target.traits()
        if required - have:
            problems.append('%s lacks the traits it requires: %s' % (
                target.name, ', '.join(sorted(required - have))))
        if forbidden & have:
            problems.append('%s has traits it forbids: %s' % (
                target.name, ', '.join(sorted(forbidden & have))))
    return problems


# -- the gate ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Verdict:
    """Which destinations take a server, why the others do not."""

    accepting: tuple[str, ...]
    refusals: tuple[tuple[str, str], ...]     # (destination, why)
    warnings: tuple[str, ...] = ()

    def reason(self) -> str:
        """One line: why no destination takes it."""
        if not self.refusals:
            return 'no destination to migrate it to'
        by_dest: dict[str, list[str]] = {}
        for dest, why in self.refusals:
            by_dest.setdefault(dest, []).append(why)
        return 'no destination would accept its migration: ' + '; '.join(
            '%s: %s' % (d, ', '.join(w)) if d else ', '.join(w)
            for d, w in by_dest.items())


class Gate:
    """The destinations' facts and the server groups, gathered once per
    run; :meth:`verdict` per server."""

    def __init__(self, ctx: common.Context, targets: Sequence[Target],
                 groups: dict[str, Group],
                 placed: dict[str, str]) -> None:
        self.ctx, self.targets = ctx, list(targets)
        self.groups, self.placed = groups, placed

    @classmethod
    def open(cls, ctx: common.Context, stack: contextlib.ExitStack,
             destinations: Sequence[str], known: Sequence[Any] = ()) -> Gate:
        """SSH sessions to the destinations (closed with ``stack``)."""
        return cls.of(ctx, [stack.enter_context(ctx.host(d))
                            for d in dict.fromkeys(destinations)], known)

    @classmethod
    def of(cls, ctx: common.Context, hosts: Sequence[host_api.Host],
           known: Sequence[Any] = ()) -> Gate:
        """The gate over SSH sessions the caller already holds."""
        groups = server_groups(ctx)
        return cls(ctx, [Target(ctx, h) for h in hosts], groups,
                   member_hosts(ctx, groups, known))

    def verdict(self, server: Any, *, cpu_xml: str | None,
                machine: str | None, live: bool = True) -> Verdict:
        """Every rule for every destination (a cold migration, of a
        stopped server, skips what only a live one cannot carry)."""
        specs = wants(self.ctx, server)
        problems, warnings = intrinsic(self.ctx, server, specs) if live \
            else ([], [])
        if problems:
            return Verdict((), tuple(('', p) for p in problems),
                           tuple(warnings))
        accepting, refusals = [], []
        for target in self.targets:
            why, warned = self._one(server, specs, target, cpu_xml, machine)
            warnings += warned
            refusals += [(target.name, w) for w in why]
            if not why:
                accepting.append(target.name)
        return Verdict(tuple(accepting), tuple(refusals),
                       tuple(dict.fromkeys(warnings)))

    def _one(self, server: Any, specs: dict[str, str], target: Target,
             cpu_xml: str | None,
             machine: str | None) -> tuple[list[str], list[str]]:
        why = cpu_problems(target, cpu_xml, machine)
        problem, warning = zone_rule(server, target)
        why += [problem] if problem else []
        warned = [warning] if warning else []
        group = self.groups.get(server.id)
        if group is not None:
            text = group_problem(group, server.id, self.placed, target.name)
            if text and group.hard:
                why.append(text)
            elif text:
                warned.append(text)
        why += resource_problems(server, specs, target)
        return why, warned

