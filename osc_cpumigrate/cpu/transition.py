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

"""Choosing the transition CPU: the richest CPU every host accepts.

libvirt cannot compute it: ``virsh cpu-baseline`` / ``hypervisor-cpu-baseline``
refuse CPUs of different vendors ("CPU vendors do not match").  So
cpumigrate does what the baseline would do, by hand, and lets libvirt judge
the result:

1. every host's guest-visible features (:func:`host_features`) are
   intersected into the *common* set;
2. each named model usable on every host whose features lie inside the
   common set is a candidate, completed with ``cpu_model_extra_flags`` for
   the common features it lacks, minus those that must never be forced on a
   guest (:func:`never_extra`);
3. candidates are ranked by features kept, then by fewest extra flags (the
   richest named model: its CPUID signature and cache/level data look most
   like real hardware), then by name;
4. :func:`choose` confirms them best-first with ``virsh
   hypervisor-cpu-compare`` on every host (the comparison Nova makes) and
   takes the first one all hosts accept.

For Skylake-SP (Skylake-Server-IBRS) and Rome (EPYC-Rome) with libvirt 9.0
the bare models share 57 features; ``kvm64`` keeps 26 of them (x86-64-v1),
``Westmere`` + 25 flags keeps all 57 (x86-64-v3).  With the host-model CPUs
real hosts report, KVM also offers ``x2apic``, ``tsc-deadline`` and
``spec-ctrl`` on Rome, so ``SandyBridge-IBRS`` + 33 flags fits and keeps 73
of 75 (all but ``invtsc`` and ``xsaves``, which libvirt 9.0 does not
migrate).

Nothing here talks to a host: the caller passes ``Host.host_cpu()`` facts
in and a callback that runs ``Host.compare_cpu()``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import re
from xml.sax.saxutils import escape
from xml.sax.saxutils import quoteattr

from osc_cpumigrate.cpu import levels
from osc_cpumigrate.cpu.cpumap import CpuMap
from osc_cpumigrate.cpu.cpumap import CpuMapError
from osc_cpumigrate.cpu.cpumap import host_features
from osc_cpumigrate.cpu.cpumap import Model
from osc_cpumigrate.types import CompareResult
from osc_cpumigrate.types import HostCpu

__all__ = [
    'NEVER_EXTRA', 'QEMU_SETS', 'LAST_RESORT_MODELS', 'EXCLUDED_MODELS',
    'MAX_TRIES',
    'TransitionCpu', 'Refusal', 'Choice', 'NoTransitionCpu',
    'common_features', 'never_extra', 'candidates', 'choose', 'explicit',
    'canonical_model', 'canonical_flag',
    'host_features', 'missing_from_message', 'CpuMapError',
]

#: Features never added as ``cpu_model_extra_flags`` by auto, even when every
#: host offers them.  Together with what the map itself marks
#: ``migratable='no'`` and the SVM/VMX sub-features (see
#: :func:`never_extra`).  Only features common to *all* hosts are ever added,
#: so vendor-specific bits that KVM emulates on both vendors (``spec-ctrl``,
#: ``ssbd``, ``amd-ssbd``, ``arch-capabilities``, ``md-clear``...) stay in:
#: they are the speculative-execution mitigations Nova's own documentation
#: tells operators to add, and dropping them would weaken the guest.
NEVER_EXTRA: Mapping[str, str] = {
    # Virtualization extensions.  A guest running nested VMs cannot be
    # live-migrated across vendors (VMX and SVM state are unrelated), and
    # vmx/svm can never be common to an Intel and an AMD host anyway.
    'vmx': 'virtualization extension (nested VMs do not migrate)',
    'svm': 'virtualization extension (nested VMs do not migrate)',
    # Host-only: the invariant TSC is a promise about one physical clock;
    # libvirt marks it migratable='no' and refuses to migrate a domain with it.
    'invtsc': 'host-only (invariant TSC of one physical host)',
    # OS-controlled bits: CPUID mirrors CR4 of the running guest kernel;
    # they are not model features and cannot be "required".
    'osxsave': 'set by the guest OS (CR4.OSXSAVE), not a CPU feature',
    'ospke': 'set by the guest OS (CR4.PKE), not a CPU feature',
    # MONITOR/MWAIT only work in a guest when the host disables exits for
    # it; KVM does not offer it by default.
    'monitor': 'MWAIT passthrough, host-specific',
    # Exposes IA32_PERF_CAPABILITIES, tied to the vPMU Nova may disable and
    # to the host's PMU version.
    'pdcm': 'tied to the host PMU (IA32_PERF_CAPABILITIES)',
    # Physical-CPU monitoring/debug/power/platform facilities KVM does not
    # virtualize for guests; listed so the capabilities fallback (hosts
    # without a host-model CPU) never picks them.
    'ds': 'debug store, not virtualized', 'dtes64': 'debug store',
    'ds_cpl': 'debug store', 'acpi': 'thermal monitor MSRs',
    'tm': 'thermal monitor', 'tm2': 'thermal monitor', 'pbe': 'power',
    'est': 'SpeedStep', 'smx': 'TXT (GETSEC)', 'xtpr': 'platform',
    'dca': 'platform', 'intel-pt': 'processor trace, host PMU',
    'intel-pt-lip': 'processor trace', 'arch-lbr': 'host LBR',
    'cmt': 'cache monitoring, host resource', 'mbm_total': 'host resource',
    'mbm_local': 'host resource', 'ibs': 'AMD instruction sampling',
    'sgx': 'enclave memory is host-bound', 'sgx1': 'SGX', 'sgx2': 'SGX',
    'sgxlc': 'SGX', 'sgx-exinfo': 'SGX', 'sgx-debug': 'SGX',
    'sgx-mode64': 'SGX', 'sgx-provisionkey': 'SGX', 'sgx-tokenkey': 'SGX',
    'sgx-kss': 'SGX', 'pconfig': 'memory encryption keys, host-bound',
}

#: Features QEMU turns on by itself for every named model under KVM
#: (``hypervisor``, and ``x2apic`` through its KVM defaults): the guest has
#: them whatever nova.conf says, and ``virsh dumpxml`` lists them once it
#: runs.  Auto counts them as kept but does not write them as extra flags:
#: nova.conf and the XML libvirt proves then say only what Nova asks for.
QEMU_SETS: frozenset[str] = frozenset({'hypervisor', 'x2apic'})

#: The runbook's models, kept as last-resort candidates even when they hold
#: a feature outside the common set (qemu64 lists ``svm``; that feature is
#: then disabled with ``-svm``).
LAST_RESORT_MODELS: tuple[str, ...] = ('kvm64', 'qemu64')

#: Models auto never proposes: QEMU models that only RHEL's QEMU ships; a
#: cloud mixing distributions cannot count on them and they are never richer
#: than Westmere.  ``--cpu-model`` can still name them.
EXCLUDED_MODELS: frozenset[str] = frozenset({'cpu64-rhel5', 'cpu64-rhel6'})

#: Candidates :func:`choose` confirms at most (each try is one SSH command
#: per host).
MAX_TRIES = 10

_MISSING_RE = re.compile(
    r'does not provide required features?:\s*([^\n;]+)', re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class TransitionCpu:
    """A custom CPU: nova.conf ``cpu_models=model`` and
    ``cpu_model_extra_flags=extra_flags``.

    ``extra_flags`` are in nova.conf form: ``pcid`` enables, ``-pcid``
    disables.  ``features`` is what the guest gets per the libvirt map,
    ``common`` the features all hosts share (the yardstick), ``level`` the
    x86-64 level of ``features``.
    """

    model: str
    extra_flags: tuple[str, ...]
    features: frozenset[str]
    common: frozenset[str]
    level: int
    vendor: str | None = None           # the model's vendor in the map
    model_features: frozenset[str] = frozenset()
    last_resort: bool = False
    notes: tuple[str, ...] = ()

    @property
    def kept(self) -> int:
        """How many of the common features the guest keeps."""
        return len(self.features & self.common)

    @property
    def dropped(self) -> frozenset[str]:
        """Common features the guest does not get."""
        return self.common - self.features

    @property
    def enabled_flags(self) -> tuple[str, ...]:
        return tuple(f for f in self.extra_flags if not f.startswith('-'))

    @property
    def disabled_flags(self) -> tuple[str, ...]:
        return tuple(f[1:] for f in self.extra_flags if f.startswith('-'))

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """Identity: what nova.conf would say."""
        return (self.model, tuple(sorted(self.extra_flags)))

    def rank(self) -> tuple:
        """Sort key, best first (see the module docstring)."""
        return (self.last_resort, -self.kept, -self.level,
                len(self.extra_flags), -len(self.model_features), self.model)

    def as_xml(self) -> str:
        """The ``<cpu>`` Nova gives the guest, for ``virsh
        hypervisor-cpu-compare``.

        No ``<vendor>``: a named model's vendor is not enforced under KVM
        (QEMU shows the host's), and an explicit one would make libvirt
        refuse the other vendor's hosts outright.
        """
        lines = ["<cpu mode='custom' match='exact'>",
                 f"  <model fallback='forbid'>{escape(self.model)}</model>"]
        for flag in self.extra_flags:
            policy, name = (('disable', flag[1:]) if flag.startswith('-')
                            else ('require', flag.lstrip('+')))
            lines.append(f'  <feature policy={quoteattr(policy)} '
                         f'name={quoteattr(name)}/>')
        lines.append('</cpu>')
        return '\n'.join(lines) + '\n'

    def describe(self) -> str:
        """One line for a table cell, e.g. ``Westmere +25 flags: keeps 57
        of 57 common features, x86-64-v3``."""
        parts = [self.model]
        if self.enabled_flags:
            parts.append(f'+{len(self.enabled_flags)} flags')
        if self.disabled_flags:
            parts.append('-' + ',-'.join(self.disabled_flags))
        return (f"{' '.join(parts)}: keeps {self.kept} of "
                f'{len(self.common)} common features, '
                f'{levels.level_name(self.level)}')

    def without(self, features: Iterable[str]) -> TransitionCpu | None:
        """This CPU without the extra flags in ``features``; None when its
        model itself needs one of them (the model is then unusable)."""
        drop = frozenset(features)
        if drop & (self.model_features - frozenset(self.disabled_flags)):
            return None
        flags = tuple(f for f in self.extra_flags
                      if f.startswith('-') or f.lstrip('+') not in drop)
        if flags == self.extra_flags:
            return self
        feats = self.features - drop
        return dataclasses.replace(self, extra_flags=flags, features=feats,
                                   level=levels.x86_64_level(feats))


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A host's ``hypervisor-cpu-compare`` refusing a candidate."""

    cpu: TransitionCpu
    host: str
    message: str

    def describe(self) -> str:
        return f'{self.host} refused {self.cpu.model}: {self.message}'


@dataclasses.dataclass(frozen=True)
class Choice:
    """The CPU every host accepted, and what was refused on the way."""

    cpu: TransitionCpu
    results: Mapping[str, CompareResult]
    refused: tuple[Refusal, ...] = ()
    tried: tuple[TransitionCpu, ...] = ()


class NoTransitionCpu(Exception):
    """No candidate is accepted by every host; the message says who
    refused what."""

    def __init__(self, message: str, refused: Sequence[Refusal] = (),
                 tried: Sequence[TransitionCpu] = ()) -> None:
        super().__init__(message)
        self.refused = tuple(refused)
        self.tried = tuple(tried)


def _x86(hosts: Sequence[HostCpu]) -> None:
    if not hosts:
        raise ValueError('no hosts given')
    for h in hosts:
        if h.arch not in ('x86_64', 'i686'):
            raise ValueError(f'host CPU architecture {h.arch!r} is not x86; '
                             'cpumigrate only handles x86 hosts')


def common_features(cpu_map: CpuMap, hosts: Sequence[HostCpu]) \
        -> frozenset[str]:
    """Features a guest can get on every one of ``hosts``."""
    _x86(hosts)
    sets = [host_features(cpu_map, h) for h in hosts]
    return frozenset.intersection(*sets)


def never_extra(cpu_map: CpuMap) -> frozenset[str]:
    """Everything auto must not add as an extra flag: :data:`NEVER_EXTRA`,
    the map's ``migratable='no'`` features (``invtsc``; ``xsaves`` in
    libvirt 9.0) and SVM/VMX sub-features."""
    return (frozenset(NEVER_EXTRA) | cpu_map.non_migratable()
            | cpu_map.virtualization_features())


def _usable(name: str, model_feats: frozenset[str], host: HostCpu,
            feats: frozenset[str]) -> bool:
    if host.usable_models:
        return name in host.usable_models
    return model_feats <= feats


def _build(cpu_map: CpuMap, name: str, common: frozenset[str],
           safe: frozenset[str], virt: frozenset[str],
           *, last_resort: bool = False) -> TransitionCpu:
    model = cpu_map.model(name)
    # Features of the model no host shares are switched off; SVM/VMX
    # sub-features are left alone (QEMU drops them without vmx/svm).
    disable = sorted(model.features - common - virt)
    enable = sorted(safe - model.features - QEMU_SETS)
    return _transition(model, enable, disable, common,
                       last_resort=last_resort)


def _transition(
    model: Model,
    enable: Sequence[str],
    disable: Sequence[str],
    common: frozenset[str] | None,
    **extra: object,
) -> TransitionCpu:
    """A model plus ``enable`` flags minus ``disable`` ones; ``common``
    None means the CPU's own features (nothing to compare with)."""
    feats = ((model.features | frozenset(enable) | QEMU_SETS)
             - frozenset(disable))
    return TransitionCpu(
        model=model.name,
        extra_flags=tuple(enable) + tuple('-' + f for f in disable),
        features=feats,
        common=feats if common is None else common,
        level=levels.x86_64_level(feats),
        vendor=model.vendor,
        model_features=model.features,
        **extra,
    )


def candidates(cpu_map: CpuMap, hosts: Sequence[HostCpu]) \
        -> list[TransitionCpu]:
    """Transition CPUs for ``hosts``, best first.

    A model is a candidate when it is usable on every host
    (``HostCpu.usable_models``, from domcapabilities; a host that reports
    none is judged by features) and its features, SVM/VMX sub-features
    aside, are all common.  32-bit models and :data:`EXCLUDED_MODELS` are
    left out.  :data:`LAST_RESORT_MODELS` are added at the end when usable
    everywhere even if they hold a non-common feature.
    """
    _x86(hosts)
    per_host = [host_features(cpu_map, h) for h in hosts]
    common = frozenset.intersection(*per_host)
    virt = cpu_map.virtualization_features()
    safe = common - never_extra(cpu_map)
    out = []
    for name in cpu_map.model_names():
        if name in EXCLUDED_MODELS:
            continue
        model = cpu_map.model(name)
        core = model.features - virt
        if levels.x86_64_level(core) < 1:
            continue        # 32-bit model: odd signature, tiny CPUID levels
        if not all(_usable(name, core, h, f)
                   for h, f in zip(hosts, per_host, strict=True)):
            continue
        if core <= common:
            out.append(_build(cpu_map, name, common, safe, virt))
        elif name in LAST_RESORT_MODELS:
            out.append(_build(cpu_map, name, common, safe, virt,
                              last_resort=True))
    out.sort(key=TransitionCpu.rank)
    return out


def missing_from_message(message: str) -> frozenset[str]:
    """Feature names in libvirt's "Host CPU does not provide required
    features: a, b" (empty when the message is something else)."""
    m = _MISSING_RE.search(message or '')
    if not m:
        return frozenset()
    names = (n.strip().strip('.').strip() for n in m.group(1).split(','))
    return frozenset(n for n in names if n and ' ' not in n)


def choose(cands: Sequence[TransitionCpu],
           compare: Callable[[TransitionCpu], Mapping[str, CompareResult]],
           max_tries: int = MAX_TRIES) -> Choice:
    """Confirm candidates best-first; return the first every host accepts.

    ``compare(cpu)`` runs ``Host.compare_cpu(cpu.as_xml())`` on every source
    and destination host and returns host name -> result.  When a host
    refuses because it lacks some extra flags (libvirt names them), the same
    model is retried without them and they are dropped from the candidates
    that follow, before falling to the next model; candidates whose model
    itself needs a refused feature are skipped.  At most ``max_tries``
    comparisons are made.  Raises :class:`NoTransitionCpu` when none is
    accepted; exceptions of ``compare`` (HostError) propagate.
    """
    queue = list(cands)
    if not queue:
        raise NoTransitionCpu('no CPU model is usable on every host')
    dropped: set[str] = set()
    seen: set[tuple[str, tuple[str, ...]]] = set()
    refused: list[Refusal] = []
    tried: list[TransitionCpu] = []
    while queue and len(tried) < max_tries:
        cpu = queue.pop(0)
        if cpu.key in seen:
            continue
        seen.add(cpu.key)
        results = dict(compare(cpu))
        if not results:
            raise ValueError('compare() returned no result: no host to '
                             'confirm the transition CPU on')
        tried.append(cpu)
        bad = {h: r for h, r in results.items() if not r.compatible}
        if not bad:
            return Choice(cpu=cpu, results=results, refused=tuple(refused),
                          tried=tuple(tried))
        missing: set[str] = set()
        for host in sorted(bad):
            res = bad[host]
            refused.append(Refusal(cpu, host, res.message or res.result))
            missing |= missing_from_message(res.message)
        new = missing - dropped
        if new:
            dropped |= new
            pending = [cpu] + queue
            queue = []
            for c in pending:
                c2 = c.without(dropped)
                if c2 is not None and c2.key not in seen:
                    queue.append(c2)
            queue.sort(key=TransitionCpu.rank)
    raise NoTransitionCpu(_no_cpu_message(refused, tried, bool(queue)),
                          refused, tried)


def _no_cpu_message(refused: Sequence[Refusal],
                    tried: Sequence[TransitionCpu], more: bool) -> str:
    head = (f'no transition CPU is accepted by every host '
            f'(tried {len(tried)}'
            + (', more candidates left untried' if more else '') + ')')
    by_cpu: dict[str, list[str]] = {}
    for r in refused:
        label = r.cpu.model + (f' +{len(r.cpu.enabled_flags)} flags'
                               if r.cpu.enabled_flags else '')
        by_cpu.setdefault(label, []).append(f'{r.host}: {r.message}')
    body = '; '.join(f"{label} refused by {', '.join(msgs)}"
                     for label, msgs in by_cpu.items())
    msg = f'{head}: {body}' if body else head
    if not any(c.model == 'kvm64' for c in tried):
        msg += '; --cpu-model kvm64 is the runbook\'s choice'
    return msg


def canonical_model(cpu_map: CpuMap, model: str) -> str:
    """``model`` as libvirt's CPU map spells it (``KVM64`` -> ``kvm64``).

    Nova maps ``cpu_models`` case-insensitively onto the host's model names
    (``_get_cpu_model_mapping``) and libvirt then wants its own spelling;
    writing that spelling keeps the tool's own comparisons simple.  Raises
    ValueError for a model the map does not have."""
    name = (model or '').strip()
    if cpu_map.has_model(name):
        return name
    folded = [n for n in cpu_map.model_names() if n.lower() == name.lower()]
    if len(folded) != 1:
        raise ValueError(
            f"unknown CPU model {model!r}: not in the hosts' libvirt CPU "
            'map (models: ' + ', '.join(cpu_map.model_names()) + ')')
    return folded[0]


def canonical_flag(cpu_map: CpuMap, flag: str) -> str:
    """A feature in libvirt's spelling, whatever case or QEMU spelling it
    was given in (``SSE4_2``, ``SSE4.2``, ``sse4-2`` -> ``sse4.2``).

    Nova lowercases ``cpu_model_extra_flags``; libvirt knows QEMU's
    spellings as ``<alias>`` of its own names.  Raises ValueError for a
    feature the map does not have."""
    name = (flag or '').strip().lower()
    known = cpu_map.feature_names()
    for guess in (name, name.replace('_', '-'), name.replace('-', '_')):
        canon = cpu_map.canonical(guess)
        if canon in known:
            return canon
    raise ValueError(f"unknown CPU feature {flag!r}: not in the hosts' "
                     'libvirt CPU map')


def _parse_flags(cpu_map: CpuMap, flags: Iterable[str]) \
        -> tuple[list[str], list[str]]:
    enable: list[str] = []
    disable: list[str] = []
    for raw in flags:
        for item in str(raw).replace(',', ' ').split():
            sign, name = (item[0], item[1:]) if item[0] in '+-' else ('+',
                                                                      item)
            try:
                canon = canonical_flag(cpu_map, name)
            except ValueError:
                raise ValueError(
                    f'unknown CPU feature {name!r} in --cpu-flag: not in the '
                    "hosts' libvirt CPU map") from None
            (enable if sign == '+' else disable).append(canon)
    both = set(enable) & set(disable)
    if both:
        raise ValueError('CPU feature(s) both enabled and disabled: '
                         + ', '.join(sorted(both)))
    return (list(dict.fromkeys(enable)), list(dict.fromkeys(disable)))


def explicit(cpu_map: CpuMap, model: str, flags: Iterable[str] = (),
             hosts: Sequence[HostCpu] = ()) -> TransitionCpu:
    """The transition CPU of ``--cpu-model MODEL --cpu-flag F...``.

    Flags: ``pcid`` / ``+pcid`` enable, ``-pcid`` disables; QEMU spellings
    (``sse4_2``) are accepted and stored in libvirt's (``sse4.2``).  Model
    names match exactly, else case-insensitively when unambiguous.  Raises
    ValueError for an unknown model or feature.  With ``hosts`` the common
    set is computed (for kept/level reporting); without, it is the CPU's own
    features.  Flags auto would never add are accepted but noted.
    """
    name = canonical_model(cpu_map, model)
    enable, disable = _parse_flags(cpu_map, flags)
    m = cpu_map.model(name)
    common = common_features(cpu_map, hosts) if hosts else None
    avoid = never_extra(cpu_map)
    notes = tuple(f'{f}: {NEVER_EXTRA.get(f, "not migratable")}'
                  for f in enable if f in avoid)
    return _transition(m, enable, disable, common, notes=notes)
