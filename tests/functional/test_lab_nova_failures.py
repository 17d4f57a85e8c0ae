"""The lab fails where Nova 34 fails (tests/lab/nova_virt/labfailures.py).

Each test shows one failure of a real cloud, as Nova's own code paths
produce it: CPU traits in Placement and the scheduling they drive, a
custom CPU model that lacks a feature the flavor requires, a model nova-
compute was told not to check, how guests go down, and how long a live
migration takes.  Every test puts back what it changed (nova.conf, the
migration bandwidth) and deletes its servers.
"""

import contextlib
import json
import time

import pytest

from tests.functional.labclient import OPENSTACK
from tests.functional.labclient import osc
from tests.functional.labclient import restart_compute
from tests.functional.labclient import run
from tests.functional.labclient import sdk
from tests.functional.labclient import ssh
from tests.functional.labclient import wait_settled

pytestmark = pytest.mark.lab

CONF = '/etc/nova/nova.conf'
MiB = 2 ** 20


@pytest.fixture
def servers(lab_env):
    """Server ids a test creates; deleted when it ends."""
    ids = []
    yield ids
    for sid in ids:
        run(lab_env, [OPENSTACK, 'server', 'delete', '--wait', sid],
            ok=False)


@pytest.fixture
def flavors(lab_env):
    """make(name, **extra_specs) -> flavor id; deleted when the test ends."""
    made = []

    def make(name, **specs):
        args = ['flavor', 'create', '--ram', '512', '--disk', '1',
                '--vcpus', '1']
        for key, value in specs.items():
            args += ['--property', '%s=%s' % (key, value)]
        made.append(osc(lab_env, *args, name)['id'])
        return made[-1]
    yield make
    for fid in made:
        run(lab_env, [OPENSTACK, 'flavor', 'delete', fid], ok=False)


def create(env, ids, name, flavor, *, host=None, image='cirros', count=1):
    args = ['server', 'create', '--flavor', flavor, '--image', image,
            '--no-network']
    if host:
        args += ['--availability-zone', 'nova:%s' % host]
    if count > 1:
        args += ['--min', str(count), '--max', str(count)]
    osc(env, *args, name)
    found = [s['ID'] for s in osc(env, 'server', 'list', '--name',
                                  '^%s(-[0-9]+)?$' % name)]
    ids.extend(found)
    return [wait_settled(env, sid) for sid in found]


def act(env, *args):
    """An ``openstack`` command without output (stop, start, reboot)."""
    return run(env, [OPENSTACK, *args])


def labctl(env, *args):
    return run(env, [env['LABCTL'], *args]).stdout


def guests(env, host=None):
    out = labctl(env, 'guests', *(['--host', host] if host else []))
    return {g['uuid']: g for g in map(json.loads, out.splitlines())}


def domains(env, host):
    """Every libvirt domain on a host (`virsh list --all --uuid`)."""
    out = ssh(env, host, 'sudo -n virsh list --all --uuid').stdout
    return set(out.split())


def action_error(env, sid, action):
    """The details of the failed compute event of a server's last action."""
    for ev in osc(env, 'server', 'event', 'list', sid):
        if ev['Action'] == action:
            shown = osc(env, '--os-compute-api-version', '2.84', 'server',
                        'event', 'show', sid, ev['Request ID'])
            return [e for e in shown['events'] if e['result'] == 'Error']
    return []


@contextlib.contextmanager
def nova_conf(env, host, libvirt, workarounds=''):
    """Lines added under [libvirt] (and [workarounds]) of the host's
    nova.conf with nova-compute restarted; put back afterwards."""
    script = "s/^\\[libvirt\\]$/[libvirt]\\n%s/" % libvirt.replace(
        '\n', '\\n')
    if workarounds:
        script += "; s/^\\[api\\]$/[workarounds]\\n%s\\n\\n[api]/" % (
            workarounds.replace('\n', '\\n'))
    ssh(env, host, "sudo -n cp -p %s %s.lab4 && sudo -n sed -i '%s' %s"
        % (CONF, CONF, script, CONF))
    try:
        restart_compute(env, host)
        yield
    finally:
        ssh(env, host, 'sudo -n mv -f %s.lab4 %s' % (CONF, CONF))
        restart_compute(env, host)


def placement_traits(env):
    """{hypervisor: set of HW_CPU_X86_* traits of its resource provider}"""
    conn = sdk(env)
    out = {}
    for hyp in conn.compute.hypervisors():
        resp = conn.placement.get('/resource_providers/%s/traits' % hyp.id,
                                  microversion='1.6')
        out[hyp.name] = {t for t in resp.json()['traits']
                         if t.startswith('HW_CPU_X86_')}
    return out


def test_avx2_flavor_ends_in_error_after_hard_reboot_under_kvm64(
        lab_env, servers, flavors):
    """_match_cpu_model_by_flags: the flavor needs AVX2, kvm64 lacks it
    (an extra flag avx2 does not count).  Hard reboot destroys the
    domain, then fails: ERROR.  Power-on fails the same way, but Nova's
    start_instance leaves the server SHUTOFF with a failed action."""
    avx2 = flavors('lab-avx2', **{'trait:HW_CPU_X86_AVX2': 'required'})
    running = create(lab_env, servers, 'nf-avx2-running', avx2,
                     host='intel-1')[0]['id']
    stopped = create(lab_env, servers, 'nf-avx2-stopped', avx2,
                     host='intel-1')[0]['id']
    act(lab_env, 'server', 'stop', stopped)
    assert wait_settled(lab_env, stopped)['status'] == 'SHUTOFF'
    with nova_conf(lab_env, 'intel-1', 'cpu_mode = custom\n'
                   'cpu_models = kvm64\ncpu_model_extra_flags = avx2'):
        run(lab_env, [OPENSTACK, 'server', 'reboot', '--hard', running],
            ok=False)
        shown = wait_settled(lab_env, running)
        assert shown['status'] == 'ERROR'
        assert shown['fault']['message'] == (
            "No CPU model match traits, models: ['kvm64'], required "
            "flags: {'avx2'}")
        assert running not in domains(lab_env, 'intel-1')
        assert running not in guests(lab_env)

        act(lab_env, 'server', 'start', stopped)
        assert wait_settled(lab_env, stopped)['status'] == 'SHUTOFF'
        errors = action_error(lab_env, stopped, 'start')
        assert [e['event'] for e in errors] == ['compute_start_instance']
        assert 'No CPU model match traits' in errors[0]['details']
        assert stopped not in domains(lab_env, 'intel-1')
    # host-model again: the guest starts, its history kept the power cut
    act(lab_env, 'server', 'reboot', '--hard', running)
    assert wait_settled(lab_env, running)['status'] == 'ACTIVE'
    assert guests(lab_env, 'intel-1')[running]['power_cuts'] == 1


def test_cpu_traits_schedule_flavors_to_one_vendor(lab_env, servers,
                                                   flavors):
    """Hosts report their CPU's HW_CPU_X86_* traits as the libvirt driver
    does; a flavor requiring one only Intel (or only AMD) has lands
    there, even when asked for another host."""
    traits = placement_traits(lab_env)
    intel = {h for h in traits if h.startswith('intel')}
    amd = {h for h in traits if h.startswith('amd')}
    assert all('HW_CPU_X86_AVX2' in traits[h] for h in intel | amd)
    assert {h for h in traits if 'HW_CPU_X86_AVX512F' in traits[h]} == intel
    assert {h for h in traits if 'HW_CPU_X86_SSE4A' in traits[h]} == amd

    sse4a = flavors('lab-sse4a', **{'trait:HW_CPU_X86_SSE4A': 'required'})
    avx512 = flavors('lab-avx512', **{'trait:HW_CPU_X86_AVX512F':
                                      'required'})
    on_amd = create(lab_env, servers, 'nf-sse4a', sse4a, count=2)
    on_intel = create(lab_env, servers, 'nf-avx512', avx512, count=2)
    assert {s['status'] for s in on_amd + on_intel} == {'ACTIVE'}
    assert {s['OS-EXT-SRV-ATTR:host'] for s in on_amd} <= amd
    assert {s['OS-EXT-SRV-ATTR:host'] for s in on_intel} <= intel
    refused = create(lab_env, servers, 'nf-avx512-amd', avx512,
                     host='amd-1')[0]
    assert refused['status'] == 'ERROR'
    assert 'No valid host' in refused['fault']['message']


def test_skip_cpu_compare_at_startup_lets_guests_fail_to_start(
        lab_env, servers):
    """With the start-up check skipped, nova-compute runs with a model its
    host cannot provide; libvirt then refuses to start guests on it."""
    sid = create(lab_env, servers, 'nf-skip', 'm1.small',
                 host='amd-2')[0]['id']
    with nova_conf(lab_env, 'amd-2',
                   'cpu_mode = custom\ncpu_models = Skylake-Server-IBRS',
                   workarounds='skip_cpu_compare_at_startup = True'):
        services = osc(lab_env, 'compute', 'service', 'list', '--service',
                       'nova-compute', '--host', 'amd-2')
        assert [s['State'] for s in services] == ['up']
        run(lab_env, [OPENSTACK, 'server', 'reboot', '--hard', sid],
            ok=False)
        shown = wait_settled(lab_env, sid)
        assert shown['status'] == 'ERROR'
        assert shown['fault']['message'] == 'libvirtError'
        assert ('the CPU is incompatible with host CPU: Host CPU does not '
                'provide required features: avx512') in \
            shown['fault']['details']
        assert sid not in domains(lab_env, 'amd-2')


def test_guests_count_power_cuts_and_clean_shutdowns(lab_env, servers):
    """Stop is an ACPI shutdown; hard reboot destroys the domain; a guest
    that ignores ACPI is cut off after the image's os_shutdown_timeout."""
    sid = create(lab_env, servers, 'nf-power', 'm1.small',
                 host='intel-2')[0]['id']
    assert guests(lab_env, 'intel-2')[sid]['power_cuts'] == 0

    act(lab_env, 'server', 'stop', sid)
    assert wait_settled(lab_env, sid)['status'] == 'SHUTOFF'
    row = guests(lab_env, 'intel-2')[sid]
    assert (row['state'], row['clean_shutdowns'], row['power_cuts'],
            row['last_down']) == ('shut off', 1, 0, 'clean-shutdown')
    act(lab_env, 'server', 'start', sid)
    assert wait_settled(lab_env, sid)['status'] == 'ACTIVE'
    act(lab_env, 'server', 'reboot', '--hard', sid)
    assert wait_settled(lab_env, sid)['status'] == 'ACTIVE'
    row = guests(lab_env, 'intel-2')[sid]
    assert (row['state'], row['clean_shutdowns'], row['power_cuts'],
            row['last_down']) == ('running', 1, 1, 'power-cut')
    assert row['host'] == 'intel-2' and row['cpu_model']

    deaf = create(lab_env, servers, 'nf-noacpi', 'm1.small',
                  host='intel-2', image='noacpi')[0]['id']
    began = time.monotonic()
    act(lab_env, 'server', 'stop', deaf)
    assert wait_settled(lab_env, deaf)['status'] == 'SHUTOFF'
    assert time.monotonic() - began >= 5   # the image's os_shutdown_timeout
    row = guests(lab_env, 'intel-2')[deaf]
    assert (row['clean_shutdowns'], row['power_cuts']) == (0, 1)

    # the switch overrides the image: this guest now obeys ACPI
    labctl(lab_env, 'guest-acpi', deaf, 'obey')
    act(lab_env, 'server', 'start', deaf)
    assert wait_settled(lab_env, deaf)['status'] == 'ACTIVE'
    act(lab_env, 'server', 'stop', deaf)
    assert wait_settled(lab_env, deaf)['status'] == 'SHUTOFF'
    row = guests(lab_env, 'intel-2')[deaf]
    assert (row['clean_shutdowns'], row['power_cuts'], row['acpi']) == (
        1, 1, 'obey')


def test_live_migration_takes_memory_over_bandwidth(lab_env, servers):
    """512 MiB at 80 MiB/s: 6.4 s of copying, with libvirt's memory stats
    saved to the migration record every live_migration_monitor_interval
    (5 s), as Nova's _live_migration_monitor does (none at the end)."""
    sid = create(lab_env, servers, 'nf-lm', 'm1.small',
                 host='intel-1')[0]['id']
    labctl(lab_env, 'up', '--migration-bandwidth', '80')
    try:
        conn = sdk(lab_env)
        began = time.monotonic()
        conn.compute.live_migrate_server(sid, host='intel-2',
                                         block_migration='auto')
        samples = []
        while time.monotonic() - began < 60:
            for mig in conn.compute.server_migrations(sid):
                if mig.status == 'running' and mig.memory_total_bytes:
                    sample = (mig.memory_total_bytes,
                              mig.memory_processed_bytes,
                              mig.memory_remaining_bytes)
                    if sample not in samples:
                        samples.append(sample)
            server = conn.compute.get_server(sid)
            if server.status == 'ACTIVE' and not server.task_state:
                break
            time.sleep(0.3)
        took = time.monotonic() - began
    finally:
        labctl(lab_env, 'up', '--migration-bandwidth', '1024')
    assert server.compute_host == 'intel-2'
    assert 512 / 80 <= took <= 512 / 80 + 10
    assert len(samples) >= 2, samples
    assert all(total == 512 * MiB and done + left == total
               for total, done, left in samples)
    processed = [done for _total, done, _left in samples]
    assert processed == sorted(processed) and processed[-1] > 300 * MiB
    assert samples[-1][2] > 0
