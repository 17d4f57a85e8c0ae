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

"""nova.conf edits on real-world samples: only the intended lines change."""

import datetime
import pathlib

import pytest

from osc_cpumigrate.host import novaconf
from osc_cpumigrate.types import CpuSettings

FIXTURES = pathlib.Path(__file__).parents[2] / 'fixtures' / 'novaconf'
SAMPLES = sorted(p.name for p in FIXTURES.glob('*.conf'))
WHEN = datetime.datetime(2026, 11, 27, 10, 0, 0, tzinfo=datetime.timezone.utc)
SECRETS = (
    'secretrabbit',
    'Sup3rS3cret',
    's3rv1ce-pa55',
    'dont-show-me',
    'pl4cement',
    'bae3516cc1c0eb18b05440eba8012a4a880a2ee04d584a9c1579445e675b12defdc716ec',
    'Kq9xT2pLm',
    'Rk2vN8wQz',
    'mEt4dAtAsEcReT',
    'Xn7bV3cLp',
    'Pq4mZ7yHs',
    'h4ck%40me',
    'NOVA_PASS',
    'PLACEMENT_PASS',
    'S3cr3t-Rabbit',
)
CPU_LINE_PREFIXES = (
    'cpu_mode',
    'cpu_models',
    'cpu_model',
    'cpu_model_extra_flags',
)


def load(name: str) -> str:
    return novaconf.decode((FIXTURES / name).read_bytes())


def apply(text, model='Westmere', flags=('+pcid', '+ssse3'), backup=None):
    backup = backup or novaconf.backup_path('/etc/nova/nova.conf', WHEN)
    return novaconf.apply_transition(text, model, flags, WHEN, backup)


@pytest.mark.parametrize('name', SAMPLES)
def test_apply_sets_exactly_the_transition_settings(name):
    text = load(name)
    new = apply(text)
    assert novaconf.read_settings(new) == CpuSettings(
        'custom', ('Westmere',), ('+pcid', '+ssse3')
    )
    marker = novaconf.find_marker(new)
    assert marker == novaconf.Marker(
        WHEN,
        '/etc/nova/nova.conf.cpumigrate-20261127T100000Z',
        novaconf.sha256(text),
    )
    assert novaconf.find_marker(text) is None


def without_cpu_lines(text: str) -> list[str]:
    """The file's lines minus [libvirt] CPU options (with continuations)
    and markers."""
    lines = novaconf.split_lines(text)
    drop = set()
    for blk in novaconf._parse(text):
        if (
            blk.section == 'libvirt'
            and blk.kind == 'option'
            and blk.key in CPU_LINE_PREFIXES
        ):
            drop.update(range(blk.start, blk.end))
    return [line for i, line in enumerate(lines)
            if i not in drop and not line.startswith('# cpumigrate: ')]


def settings_text(text: str) -> str:
    """The file without cpumigrate's comments (which keep the original
    CPU lines for a restore without the backup)."""
    return ''.join(line for line in novaconf.split_lines(text)
                   if not line.startswith('# cpumigrate: '))


@pytest.mark.parametrize('name', SAMPLES)
def test_only_cpu_lines_change(name):
    text = load(name)
    new = apply(text)
    before, after = without_cpu_lines(text), without_cpu_lines(new)
    if '[libvirt]' not in text:
        # the only other addition: a blank line and the new section header
        assert after[len(before):] == ['\n', '[libvirt]\n']
        after = after[:len(before)]
    assert before == after
    new_lines = novaconf.split_lines(new)
    index = [
        i
        for i, line in enumerate(new_lines)
        if line.startswith(novaconf.MARKER_PREFIX)
    ]
    assert len(index) == 1
    # the marker sits directly above the options it explains
    below = [line for line in new_lines[index[0] + 1:]
             if not line.startswith('# cpumigrate: ')]
    block = [line.rstrip('\r\n') for line in below[:3]]
    assert block == ['cpu_mode = custom', 'cpu_models = Westmere',
                     'cpu_model_extra_flags = +pcid, +ssse3']
    # and the diff shows nothing but that
    diff = novaconf.unified_diff('/etc/nova/nova.conf', text, new)
    changed = [line for line in diff.splitlines()
               if line[:1] in '+-' and not line.startswith(('+++', '---'))]
    for line in changed:
        body = line[1:].strip()
        assert (
            body.split('=')[0].strip() in CPU_LINE_PREFIXES
            or body.startswith('# cpumigrate')
            or body in ('', '[libvirt]')
            or line[1:2] in ' \t'
        ), line


@pytest.mark.parametrize('name', SAMPLES)
def test_apply_is_deterministic_for_later_verification(name):
    """restore_original recomputes the edit from the backup and compares."""
    text = load(name)
    new = apply(text)
    settings = novaconf.read_settings(new)
    marker = novaconf.find_marker(new)
    again = novaconf.apply_transition(
        text,
        settings.model,
        settings.extra_flags,
        marker.changed_at,
        marker.backup,
    )
    assert novaconf.sha256(again) == novaconf.sha256(new)
    edited = new.replace('[DEFAULT]', '[DEFAULT]\n# someone was here', 1)
    assert novaconf.sha256(edited) != novaconf.sha256(again)


@pytest.mark.parametrize('name', SAMPLES)
def test_bytes_round_trip(name):
    data = (FIXTURES / name).read_bytes()
    assert novaconf.encode(novaconf.decode(data)) == data
    new = novaconf.encode(apply(novaconf.decode(data)))
    # re-applying the same settings on the original gives the same bytes
    assert novaconf.encode(apply(novaconf.decode(data))) == new


def test_repeated_options_survive():
    text = load('kolla.conf')
    new = apply(text)
    for line in (
        'device_spec = {"vendor_id": "10de", "product_id": "1eb8"}\n',
        'device_spec = {"vendor_id": "10de", "product_id": "20b0"}\n',
        'passthrough_whitelist = '
        '{"vendor_id": "8086", "product_id": "154c"}\n',
        'passthrough_whitelist = '
        '{"vendor_id": "8086", "product_id": "10ed"}\n',
        '# Pinned by the operators for the Skylake fleet, see CHG-4711\n',
    ):
        assert new.count(line) == 1
    assert 'Skylake-Server-IBRS' not in settings_text(new)
    assert 'ssbd' not in settings_text(new)


def test_original_settings_read_like_oslo_config():
    assert novaconf.read_settings(load('kolla.conf')) == CpuSettings(
        'custom', ('Skylake-Server-IBRS',), ('pcid', 'ssbd'))
    assert novaconf.read_settings(
        load('deprecated_cpu_model.conf')
    ) == CpuSettings('custom', ('Haswell-noTSX-IBRS',), ())
    # repeated [libvirt]: the last cpu_mode wins; continuation lines are
    # list items
    assert novaconf.read_settings(load('extra_flags.conf')) == CpuSettings(
        'host-passthrough', (), ('pdpe1gb', 'pcid'))
    assert novaconf.read_settings(load('no_libvirt.conf')) == CpuSettings()
    text = '[libvirt]\ncpu_model = A\ncpu_models = B,C\n'
    assert novaconf.read_settings(text).models == ('B', 'C')


def test_deprecated_cpu_model_is_replaced_not_duplicated():
    new = apply(load('deprecated_cpu_model.conf'), flags=())
    lines = [line.split('=')[0].strip() for line in novaconf.split_lines(new)]
    assert 'cpu_model' not in lines
    assert lines.count('cpu_models') == 1
    assert lines.count('cpu_mode') == 1
    assert 'cpu_model_extra_flags' not in lines
    # the file had no final newline: the rest is untouched
    assert new.endswith('[vnc]\nenabled = true')


def test_missing_libvirt_section_is_created():
    text = load('no_libvirt.conf')
    new = apply(text)
    assert new.startswith(text)
    tail = new[len(text):]
    assert tail.startswith('\n[libvirt]\n# cpumigrate: transition CPU set ')
    assert tail.endswith('cpu_mode = custom\ncpu_models = Westmere\n'
                         'cpu_model_extra_flags = +pcid, +ssse3\n')


def test_missing_libvirt_without_final_newline():
    new = apply('[DEFAULT]\ndebug = true', flags=())
    assert new.startswith('[DEFAULT]\ndebug = true\n\n[libvirt]\n# cpumigrate')


def test_options_appended_after_last_libvirt_option():
    new = apply(
        '[libvirt]\nvirt_type = kvm\n\n\n[vnc]\nenabled = true\n', flags=()
    )
    assert new.split('# cpumigrate')[0] == '[libvirt]\nvirt_type = kvm\n'
    assert '\ncpu_models = Westmere\n\n\n[vnc]\n' in new


def test_empty_libvirt_section():
    new = apply('[libvirt]\n[vnc]\n', flags=())
    assert new.startswith('[libvirt]\n# cpumigrate')
    assert new.endswith('cpu_models = Westmere\n[vnc]\n')


def test_existing_extra_flags_and_second_section_replaced():
    new = apply(load('extra_flags.conf'), flags=('+pcid',))
    assert 'pdpe1gb' not in settings_text(new)
    assert 'host-passthrough' not in settings_text(new)
    assert 'host-model' not in settings_text(new)
    assert (
        '# second [libvirt] section, oslo.config merges it with the first\n'
        in new
    )
    assert novaconf.read_settings(new).extra_flags == ('+pcid',)


def test_crlf_and_non_utf8_bytes_kept():
    data = (FIXTURES / 'crlf_latin1.conf').read_bytes()
    new = novaconf.encode(apply(novaconf.decode(data)))
    assert b'# caf\xe9 latin-1 comment\r\n' in new
    assert b'cpu_mode = custom\r\ncpu_models = Westmere\r\n' in new
    assert b'\n' not in new.replace(b'\r\n', b'')


@pytest.mark.parametrize(
    'model,flags',
    [
        ('West mere', ()),
        ('Westmere\ncpu_mode', ()),
        ('', ()),
        ('Westmere', ('+pcid\n',)),
        ('Westmere', ('a=b',)),
    ],
)
def test_bad_names_refused(model, flags):
    with pytest.raises(novaconf.NovaConfError):
        novaconf.apply_transition('[libvirt]\n', model, flags, WHEN, '/b')


def test_marker_with_odd_backup_path():
    path = '/srv/it\'s a "dir"/nova.conf.cpumigrate-20261127T100000Z'
    new = apply('[libvirt]\n', backup=path)
    assert novaconf.find_marker(new).backup == path


def test_marker_records_the_destinations():
    """pin reads the destinations prepare was given from the marker; a
    marker written before they were recorded reads as none."""
    new = novaconf.apply_transition('[libvirt]\n', 'kvm64', (), WHEN, '/b',
                                    ('amd-1', 'amd-2.example.org'))
    assert ' by osc-cpumigrate for amd-1,amd-2.example.org; original ' in new
    marker = novaconf.find_marker(new)
    assert (marker.backup, marker.destinations) == (
        '/b', ('amd-1', 'amd-2.example.org'))
    assert marker.backup_sha256 == novaconf.sha256('[libvirt]\n')
    assert novaconf.find_marker(apply('[libvirt]\n')).destinations == ()


@pytest.mark.parametrize('name', ['amd 1', 'amd-1;x', '', 'a\nb', ',amd'])
def test_bad_destination_names_refused(name):
    with pytest.raises(novaconf.NovaConfError, match='destination host'):
        novaconf.apply_transition('[libvirt]\n', 'kvm64', (), WHEN, '/b',
                                  (name,))


def test_marker_only_counts_in_libvirt():
    line = novaconf.marker_line(WHEN, '/b')
    assert novaconf.find_marker('[DEFAULT]\n%s\n' % line) is None
    assert novaconf.find_marker('[libvirt]\n%s\n' % line).backup == '/b'


def test_invalid_ini_is_refused_without_leaking_values():
    with pytest.raises(novaconf.NovaConfError) as err:
        novaconf.read_settings('password = hunter2\n[DEFAULT]\n')
    assert 'hunter2' not in str(err.value)


@pytest.mark.parametrize('name', SAMPLES)
def test_masking_hides_every_secret(name):
    text = load(name)
    masked = novaconf.mask_text(text)
    diff = novaconf.unified_diff('/etc/nova/nova.conf', text, apply(text))
    full_diff = novaconf.unified_diff('/etc/nova/nova.conf', text, '')
    for secret in SECRETS:
        assert secret not in masked
        assert secret not in diff
        assert secret not in full_diff
    assert len(novaconf.split_lines(masked)) == len(novaconf.split_lines(text))


def test_mask_rules():
    text = (
        '[x]\nadmin_password = a\nSECRET_thing=b\nmemcache_secret_key: c\n'
        'auth_token = d\n  continued-secret\nkeymap = en-us\n'
        'connection = mysql+pymysql://nova:p%40ss@db/nova\n'
        'transport_url = rabbit://u1:p1@h1:5672,u2:p2@h2:5672/vhost\n'
        'url = http://host:8080/path\nempty_password =\n# password = '
        'commented\n'
    )
    masked = novaconf.mask_text(text)
    assert masked == (
        '[x]\nadmin_password = ***\nSECRET_thing=***\nmemcache_secret_key: '
        '***\n'
        'auth_token = ***\n  ***\nkeymap = ***\n'
        'connection = mysql+pymysql://nova:***@db/nova\n'
        'transport_url = rabbit://u1:***@h1:5672,u2:***@h2:5672/vhost\n'
        'url = http://host:8080/path\nempty_password =\n'
        '# password = ***\n'
    )


def test_backup_path_is_utc():
    cet = datetime.timezone(datetime.timedelta(hours=1))
    when = datetime.datetime(2026, 11, 27, 11, 0, 0, 123, tzinfo=cet)
    assert novaconf.backup_path('/etc/nova/nova.conf', when) == \
        '/etc/nova/nova.conf.cpumigrate-20261127T100000Z'


def test_oslo_config_reading_quotes_and_group_case():
    text = ('[LIBVIRT]\ncpu_mode = "host-passthrough"\n'
            "[libvirt]\ncpu_models = 'Haswell, Broadwell'\n")
    settings = novaconf.read_settings(text)
    assert settings == CpuSettings(
        'host-passthrough', ('Haswell', 'Broadwell'), ()
    )
    new = apply(text)
    # both spellings of the group lose their CPU lines; nothing else moves
    assert novaconf.read_settings(new) == CpuSettings(
        'custom', ('Westmere',), ('+pcid', '+ssse3')
    )
    assert '[LIBVIRT]' in new
    assert 'host-passthrough' not in settings_text(new)


def test_url_password_with_at_sign_is_masked_whole():
    masked = novaconf.mask_text(
        'transport_url = rabbit://nova:ab@cd@ctl:5672,nova:x@y@ctl2:5672/')
    assert 'ab@cd' not in masked and 'cd@ctl' not in masked
    assert 'x@y' not in masked
    assert 'ctl:5672' in masked and 'ctl2:5672' in masked


def test_a_changed_backup_does_not_look_like_ours():
    text = load('devstack.conf')
    new = apply(text)
    changed = text.replace(
        '[libvirt]', '[libvirt]\ncpu_mode = host-passthrough', 1
    )
    assert apply(changed) != new  # the marker carries the original's sha256


@pytest.mark.parametrize('name', SAMPLES)
def test_marker_keeps_the_original_lines_for_a_restore(name):
    """A deleted backup leaves the host recoverable: the marker's lines
    give back the original settings, the rest of the file byte for byte."""
    text = load(name)
    new = apply(text)
    restored = novaconf.restore_from_marker(new)
    assert novaconf.read_settings(restored) == novaconf.read_settings(text)
    assert novaconf.find_marker(restored) is None
    assert without_cpu_lines(restored) == without_cpu_lines(new)
    if novaconf.sha256(restored) != novaconf.sha256(text):
        # only where the original CPU lines were spread apart
        assert name in ('extra_flags.conf', 'no_libvirt.conf'), name


def test_restore_from_marker_is_exact_for_one_block():
    text = '[DEFAULT]\ndebug = True\n[libvirt]\ncpu_mode = host-model\n' \
           'virt_type = kvm\n'
    new = apply(text)
    assert novaconf.marker_original(new) == ['cpu_mode = host-model']
    assert novaconf.restore_from_marker(new) == text
    assert novaconf.marker_original(apply('[libvirt]\nx = 1\n')) == []


def test_restore_from_marker_needs_the_lines():
    old_style = ('[libvirt]\n%s\ncpu_mode = custom\ncpu_models = kvm64\n'
                 % novaconf.marker_line(WHEN, '/b'))
    assert novaconf.marker_original(old_style) is None
    with pytest.raises(novaconf.NovaConfError, match='no original CPU'):
        novaconf.restore_from_marker(old_style)


@pytest.mark.parametrize('text,expected', [
    ('[DEFAULT]\nhost = a\n', 1),                         # Nova's default
    ('[DEFAULT]\nmax_concurrent_live_migrations = 3\n', 3),
    ('[DEFAULT]\nmax_concurrent_live_migrations = 2\n'
     '[DEFAULT]\nmax_concurrent_live_migrations = 0\n', 0),  # last wins
    ('[compute]\nmax_concurrent_live_migrations = 4\n', 1),  # not there
    ('[DEFAULT]\nmax_concurrent_live_migrations = many\n', 1),
])
def test_max_live_migrations(text, expected):
    assert novaconf.max_live_migrations(text) == expected


@pytest.mark.parametrize('text, expected', [
    ('[libvirt]\ncpu_mode = custom\n', (None, False)),
    ('[libvirt]\nvirt_type = qemu\n[workarounds]\n'
     'skip_cpu_compare_at_startup = True\n', ('qemu', True)),
    ('[workarounds]\nskip_cpu_compare_at_startup = yes\n'
     'skip_cpu_compare_at_startup = false\n', (None, False)),
])
def test_cpu_check_options(text, expected):
    found = novaconf.cpu_check_options(text)
    assert (found['virt_type'], found['skip_cpu_compare_at_startup']) == (
        expected)
