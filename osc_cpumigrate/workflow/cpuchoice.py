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

"""Choosing the transition CPU, and whether a guest can run on it.

``--cpu-model auto`` asks every source and destination host: their host-model
CPU, the libvirt CPU map of the host with the oldest libvirt, and libvirt's
own ``virsh hypervisor-cpu-compare`` on each host for the chosen candidate.
An explicit model is checked against the same CPU map.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import dataclasses
import logging
import re
from typing import Any

from osc_cpumigrate.errors import WorkflowError
from osc_cpumigrate.host import api as host_api
from osc_cpumigrate.workflow import common

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Survey:
    """The hosts' CPUs and the transition CPU with each host's verdict."""

    cpus: dict[str, host_api.HostCpu]
    cpu: Any                                   # cpu.transition.TransitionCpu
    results: dict[str, host_api.CompareResult]
    refused: tuple = ()                        # cpu.transition.Refusal
    error: str | None = None                   # no CPU accepted everywhere
    #: Why Nova skips its own CPU check at start on the source, or None.
    startup_skipped: str | None = None


def version_key(text: str | None) -> tuple[int, ...]:
    """``9.0.0`` -> (9, 0, 0); unknown sorts first (treated as oldest)."""
    return tuple(int(n) for n in re.findall(r'\d+', text or ''))


def survey(ctx: common.Context, source: str, destinations: Sequence[str],
             model: str, flags: Sequence[str]) -> Survey:
    """Gather the hosts' CPUs and choose (auto) or check (explicit) the
    transition CPU with ``virsh hypervisor-cpu-compare`` on every host."""
    from osc_cpumigrate.cpu import cpumap
    from osc_cpumigrate.cpu import transition

    names = list(dict.fromkeys([source, *destinations]))
    with contextlib.ExitStack() as stack:
        hosts = {n: stack.enter_context(ctx.host(n)) for n in names}
        cpus = {n: h.host_cpu() for n, h in hosts.items()}
        skipped = startup_check_skipped(hosts[source].nova_conf())
        oldest = min(names, key=lambda n: version_key(cpus[n].libvirt_version))
        try:
            cpu_map = cpumap.CpuMap.from_files(hosts[oldest].cpu_map())
        except cpumap.CpuMapError as exc:
            raise WorkflowError('the libvirt CPU map of %s: %s'
                                % (oldest, exc)) from None

        def compare(cpu: Any) -> dict[str, host_api.CompareResult]:
            ctx.progress('comparing %s on %s' % (cpu.describe(),
                                                 ', '.join(names)))
            return {n: h.compare_cpu(cpu.as_xml()) for n, h in hosts.items()}

        try:
            if model == 'auto':
                if flags:
                    raise WorkflowError('--cpu-flag goes with an explicit '
                                        '--cpu-model; auto chooses the flags '
                                        'itself')
                cands = transition.candidates(cpu_map, list(cpus.values()))
                choice = choose_covering(ctx, source, cands, compare)
                return Survey(cpus, choice.cpu, dict(choice.results),
                              tuple(choice.refused),
                              startup_skipped=skipped)
            cpu = transition.explicit(cpu_map, model, flags,
                                      list(cpus.values()))
        except transition.NoTransitionCpu as exc:
            return Survey(cpus, None, {}, tuple(exc.refused), str(exc),
                          startup_skipped=skipped)
        except (ValueError, cpumap.CpuMapError) as exc:
            raise WorkflowError(str(exc)) from None
        return Survey(cpus, cpu, compare(cpu), startup_skipped=skipped)


def choose(ctx: common.Context, source: str, destinations: Sequence[str],
           model: str, flags: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The (model, extra flags) ``prepare`` writes into the source's
    nova.conf, in libvirt's spelling, once libvirt accepted them on the
    source and on every destination (``hypervisor-cpu-compare --error``).

    Auto needs the destinations; an explicit model without any is proven
    on the source alone (said in a progress line).  An unknown model or
    feature, or a host that refuses the CPU, is a WorkflowError: nothing
    has been changed yet."""
    if model != 'auto' and not model.strip():
        raise WorkflowError('--cpu-model needs a model name or auto')
    if model == 'auto' and not destinations:
        raise WorkflowError(
            '--cpu-model auto (the default) chooses the transition CPU from '
            'the source and its destinations: give --destination HOST (as '
            'for migrate), or name a model with --cpu-model (the manual '
            'runbook uses kvm64)')
    found, why = proven(ctx, source, destinations, model, flags)
    if why:
        raise WorkflowError(why if found.cpu is None
                            else '%s; nothing was changed' % why)
    if not destinations:
        ctx.progress('no --destination given: the transition CPU %s is '
                     'proven on %s only' % (found.cpu.describe(), source))
    ctx.progress('transition CPU: %s (accepted by %s)' % (
        found.cpu.describe(), ', '.join(found.results)))
    return found.cpu.model, tuple(found.cpu.extra_flags)


def proven(ctx: common.Context, source: str, destinations: Sequence[str],
           model: str, flags: Sequence[str]) -> tuple[Survey, str]:
    """:func:`survey`, and why its CPU cannot serve: none found, or a host
    refused it ('' when every host accepts it)."""
    found = survey(ctx, source, destinations, model, flags)
    if found.cpu is None:
        return found, ('no transition CPU is accepted by every host: %s'
                       % found.error)
    refused = refusals(found.results)
    if refused:
        return found, ('the transition CPU %s is refused by %s'
                       % (found.cpu.describe(), refused))
    return found, ''


def refusals(results: dict[str, host_api.CompareResult]) -> str:
    """``amd-1 (Host CPU does not provide required features: hle, rtm)``
    for every host that refused, or '' when all accepted."""
    return '; '.join('%s (%s)' % (name, result.message or result.result)
                     for name, result in results.items()
                     if not result.compatible)


def live_cpu_judge(hosts: Mapping[str, host_api.Host]
                   ) -> Callable[[host_api.GuestCpu], str]:
    """What makes a server *pinned*: libvirt on every destination accepts
    its domain's live ``<cpu>`` (``virsh dumpxml``), which is what the
    live migration's own checks will see.  Returns ``refused(guest)``: ''
    when every destination accepts it, else who refused and why (the
    features libvirt names).  ``hosts``: the caller's SSH sessions to the
    destinations, by name (the gate asks the same ones).  Servers of one
    host mostly share one ``<cpu>``: each is compared once per host."""
    known: dict[str, str] = {}

    def refused(guest: host_api.GuestCpu) -> str:
        if not guest.xml:
            return 'its domain has no <cpu> to compare'
        if guest.xml not in known:
            known[guest.xml] = refusals({n: h.compare_cpu(guest.xml)
                                         for n, h in hosts.items()})
        return known[guest.xml]

    return refused


def startup_check_skipped(conf: host_api.ConfState) -> str | None:
    """Why nova-compute would start with a transition CPU its host cannot
    run, or None.

    At start Nova compares ``cpu_models`` + ``cpu_model_extra_flags`` with
    the host (``_check_cpu_compatibility``) unless ``[workarounds]
    skip_cpu_compare_at_startup`` is set; and ``_compare_cpu`` returns at
    once unless ``[libvirt] virt_type`` is ``kvm``.  Then libvirt's
    ``hypervisor-cpu-compare``, run by cpumigrate before the write, is the
    only guard: a bad CPU would show only when a server starts."""
    if conf.skip_cpu_compare_at_startup:
        return '[workarounds] skip_cpu_compare_at_startup = True'
    if (conf.virt_type or 'kvm') != 'kvm':
        return ('[libvirt] virt_type = %s (Nova compares CPUs under kvm '
                'only)' % conf.virt_type)
    return None


def floor_guard(ctx: common.Context,
                features: frozenset[str] | None = None) -> Callable[
        [Any, host_api.CpuSettings, host_api.Host], str | None]:
    """For pin: why a server must not get the transition CPU, or None.

    The floor comes from the server's metadata key or its image; the
    transition CPU's features from the host's own CPU map (read once, and
    only when some server has a floor), unless the caller knows them."""
    from osc_cpumigrate.cpu import cpumap
    from osc_cpumigrate.cpu import floors
    from osc_cpumigrate.cpu import transition

    known: dict[str, frozenset[str]] = {}

    def refusal(server: Any, settings: host_api.CpuSettings,
              host: host_api.Host) -> str | None:
        try:
            floor = floors.guest_floor(ctx.cloud.image_properties(server),
                                       server.metadata or {})
        except floors.InvalidFloor as exc:
            return 'invalid %s: %s' % (floors.METADATA_KEY, exc)
        if floor is None:
            return None
        if features is not None:
            known.setdefault(host.name, features)
        if host.name not in known:
            try:
                cpu_map = cpumap.CpuMap.from_files(host.cpu_map())
                known[host.name] = transition.explicit(
                    cpu_map, settings.model or '', settings.extra_flags
                ).features
            except (ValueError, cpumap.CpuMapError) as exc:
                return ('cannot tell whether the transition CPU meets its '
                        'floor (%s): %s' % (floor.describe(), exc))
        ok, missing = floors.satisfied(floor, known[host.name])
        if ok:
            return None
        return ('its guest needs %s; the transition CPU %s lacks %s '
                '(--ignore-guest-floor overrides)'
                % (floor.describe(), settings.describe(),
                   ' '.join(sorted(missing))))

    return refusal


def choose_covering(ctx: common.Context, source: str, cands: Sequence[Any],
                    compare: Callable[[Any], Any]) -> Any:
    """``transition.choose``, preferring candidates whose model's own
    features serve the required CPU traits of every ACTIVE server of the
    source (Nova leaves a server whose traits the model lacks in ERROR at
    its next start); the best-ranked accepted candidate otherwise.  Says
    which servers the chosen CPU does not cover (pin refuses them)."""
    from osc_cpumigrate.cloud import flavor_specs
    from osc_cpumigrate.cpu import traits
    from osc_cpumigrate.cpu import transition

    needs = {s.name or s.id: traits.required_traits(flavor_specs(s))
             for s in ctx.cloud.servers_on_host(source)
             if s.status == 'ACTIVE'}
    needs = {name: wanted for name, wanted in needs.items() if wanted}

    def uncovered(cpu: Any) -> list[str]:
        return [n for n, t in needs.items()
                if traits.unserved(t, cpu.model_features)]

    covering = [c for c in cands if not uncovered(c)]
    choice = None
    if needs and covering and len(covering) < len(cands):
        with contextlib.suppress(transition.NoTransitionCpu):
            choice = transition.choose(covering, compare)
    choice = choice or transition.choose(cands, compare)
    left = uncovered(choice.cpu)
    if left:
        ctx.progress('the transition CPU %s does not serve the required CPU '
                     'traits of %s (pin refuses them)'
                     % (choice.cpu.model, ', '.join(sorted(left))))
    return choice
