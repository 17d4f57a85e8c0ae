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

"""Pure nova.conf logic: read the CPU options, apply/undo the transition
settings, mask secrets, diff.

Nothing here touches SSH or the file system, so every rule that protects an
operator's nova.conf is unit-testable on sample files.

Editing is line-based on purpose: configupdater (``strict=False``, so repeated
options and sections are accepted) parses the file and tells us where every
section, option and comment lies; we then replace only the lines of the CPU
options and insert our own.  Every other byte of the file is kept as it was,
including comments, blank lines, repeated options, odd spacing, CRLF line ends
and bytes that are not UTF-8 (decoded with ``surrogateescape``).
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import datetime
import difflib
import hashlib
import re

from osc_cpumigrate.types import CpuSettings

SECTION = 'libvirt'
CPU_MODE = 'cpu_mode'
CPU_MODELS = 'cpu_models'
CPU_MODEL_DEPRECATED = 'cpu_model'
CPU_EXTRA_FLAGS = 'cpu_model_extra_flags'
CPU_OPTIONS = (CPU_MODE, CPU_MODELS, CPU_MODEL_DEPRECATED, CPU_EXTRA_FLAGS)

BACKUP_SUFFIX = '.cpumigrate-'
MARKER_PREFIX = '# cpumigrate: transition CPU set '
_MARKER_RE = re.compile(
    r'^#\s*cpumigrate: transition CPU set '
    r'(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)'
    r' by osc-cpumigrate(?: for (?P<dest>[^\s;]+))?;'
    r' original saved as (?P<backup>.+?)'
    r'(?: \(sha256 (?P<sha>[0-9a-f]{64})\))?\s*$'
)

#: Below the marker: each original CPU option line, as it was.
ORIGINAL_PREFIX = '# cpumigrate: original line: '
#: Below the marker when the original set no CPU option.
ORIGINAL_NONE = '# cpumigrate: the original sets no CPU option'

# CPU model and flag names as libvirt/QEMU spell them; anything else (spaces,
# newlines, '=') could corrupt nova.conf, so it is refused before editing.
_MODEL_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*')
_FLAG_RE = re.compile(r'[+-]?[A-Za-z0-9][A-Za-z0-9_.-]*')
# Host names as Nova's service records hold them (the marker lists the
# destinations prepare was given, comma-separated, with no space or ';').
_HOST_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.@:-]*')

SECRET_WORDS = ('password', 'secret', 'token', 'key')
MASK = '***'
# user:password@ in URLs, also after ',' for multi-host transport_url values.
# The password runs to the last '@' of its host segment, as oslo.messaging
# and SQLAlchemy read it.
# The password may hold '/', ',' or '@': it ends at the '@' after which a
# host part ends the URL, its path, or the next "user:" of a multi-host URL.
_URL_PASSWORD_RE = re.compile(
    r'(?P<pre>(?:://|,)[^\s:@/,]*:)(?P<pw>\S*?)(?P<at>@)'
    r'(?=[^\s@,/]*(?:[/?#\s"\']|$|,[^\s:@/,]*:\S*@|,[^\s@]*(?:[/\s]|$)))')
#: Options whose values are ``name:value`` pairs (oslo.cache's
#: ``backend_argument``): the value of a secret name is masked.
PAIR_OPTIONS = ('backend_argument',)
_OPTION_LINE_RE = re.compile(
    r'(?P<lead>[#;][ \t#;]*)?(?P<key>[^\s=:#;\[][^=:]*?)(?P<sep>[ \t]*[=:][ '
    r'\t]*)(?P<value>.*)'
)


class NovaConfError(ValueError):
    """The text cannot be parsed or safely edited (message has no secrets)."""


@dataclasses.dataclass(frozen=True)
class Marker:
    """What cpumigrate's marker comment records about a transition."""

    changed_at: datetime.datetime
    backup: str
    backup_sha256: str | None = None   # of the original, as written
    #: The destinations prepare was given (pin checks each server's
    #: migration to them when it is given none).
    destinations: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Block:
    """One parsed piece of the file with its line span [start, end)."""

    section: str | None      # None: before the first section header
    kind: str                # header | option | comment | space
    key: str | None
    value: str | None
    start: int
    end: int


# --------------------------------------------------------------------- text

def decode(data: bytes) -> str:
    """Bytes -> text that encodes back to the very same bytes."""
    return data.decode('utf-8', errors='surrogateescape')


def encode(text: str) -> bytes:
    return text.encode('utf-8', errors='surrogateescape')


def sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = encode(data)
    return hashlib.sha256(data).hexdigest()


def split_lines(text: str) -> list[str]:
    """Split on '\\n' only, keeping line ends (as configupdater reads)."""
    return re.findall(r'[^\n]*\n|[^\n]+$', text)


# ------------------------------------------------------------------ parsing

def _parse(text: str) -> list[_Block]:
    """Parse with configupdater and map every block to its line span.

    Raises NovaConfError if configupdater refuses the text or if its blocks do
    not account for every line (then editing by line numbers would be unsafe).
    """
    import configparser

    from configupdater import ConfigUpdater
    from configupdater.block import Comment
    from configupdater.block import Space
    from configupdater.option import Option
    from configupdater.section import Section

    updater = ConfigUpdater(strict=False)
    try:
        updater.read_string(text)
    except (configparser.Error, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NovaConfError(
            'not a valid INI file (%s)' % mask_text(first)
        ) from exc

    def nlines(block) -> int:
        lines = getattr(block, 'lines', None)
        if lines is None:
            lines = block._lines
        return len(lines)

    blocks: list[_Block] = []
    pos = 0

    def add(section, kind, key, value, count):
        nonlocal pos
        blocks.append(_Block(section, kind, key, value, pos, pos + count))
        pos += count

    for top in updater.iter_blocks():
        if isinstance(top, Section):
            # oslo.config lower-cases group names (all but DEFAULT)
            name = top.name if top.name == 'DEFAULT' else top.name.lower()
            add(name, 'header', None, None, nlines(top))
            for blk in top.iter_blocks():
                if isinstance(blk, Option):
                    add(name, 'option', blk.raw_key, blk.value, nlines(blk))
                elif isinstance(blk, Comment):
                    add(name, 'comment', None, None, nlines(blk))
                elif isinstance(blk, Space):
                    add(name, 'space', None, None, nlines(blk))
                else:  # pragma: no cover - configupdater has no other kinds
                    add(name, 'comment', None, None, nlines(blk))
        else:
            kind = 'space' if isinstance(top, Space) else 'comment'
            add(None, kind, None, None, nlines(top))
    lines = split_lines(text)
    if pos != len(lines) or str(updater) != text:
        raise NovaConfError('cannot map the file line by line for a safe edit')
    return blocks


def _unquote(value: str) -> str:
    """oslo.config drops one pair of matching quotes around a value."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
        return value[1:-1]
    return value


def _split_list(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    value = _unquote(value)
    return tuple(
        v.strip() for v in value.replace('\n', ',').split(',') if v.strip()
    )


def read_settings(text: str) -> CpuSettings:
    """The CPU options oslo.config would see in ``[libvirt]``.

    Like oslo.config: the last occurrence wins (repeated sections are merged)
    and ``cpu_models`` wins over its deprecated name ``cpu_model``.
    """
    values: dict[str, str | None] = {}
    for blk in _parse(text):
        if (
            blk.section == SECTION
            and blk.kind == 'option'
            and blk.key in CPU_OPTIONS
        ):
            values[blk.key] = blk.value
    mode = _unquote(values.get(CPU_MODE) or '') or None
    if CPU_MODELS in values:
        models = _split_list(values[CPU_MODELS])
    else:
        models = _split_list(values.get(CPU_MODEL_DEPRECATED))
    flags = _split_list(values.get(CPU_EXTRA_FLAGS))
    return CpuSettings(mode=mode, models=models, extra_flags=flags)


def read_option(text: str, section: str, key: str) -> str | None:
    """One option's value as oslo.config reads it (the last occurrence
    wins, one pair of quotes dropped), or None when unset."""
    value = None
    for blk in _parse(text):
        if blk.section == section and blk.kind == 'option' and (
                blk.key == key):
            value = _unquote(blk.value or '')
    return value


def max_live_migrations(text: str) -> int:
    """``[DEFAULT] max_concurrent_live_migrations`` (Nova's default 1;
    0: Nova's "unlimited").  A value nova-compute would refuse to start
    with counts as the default, the safe side."""
    value = read_option(text, 'DEFAULT', 'max_concurrent_live_migrations')
    try:
        found = int(value) if value is not None else 1
    except ValueError:
        return 1
    return found if found >= 0 else 1


def cpu_check_options(text: str) -> dict:
    """What decides whether nova-compute compares its CPU settings with
    the host at start: ``virt_type`` and ``skip_cpu_compare_at_startup``
    (a boolean as oslo.config reads one), as ConfState fields."""
    skip = read_option(text, 'workarounds', 'skip_cpu_compare_at_startup')
    return {
        'virt_type': read_option(text, SECTION, 'virt_type') or None,
        'skip_cpu_compare_at_startup': (skip or '').strip().lower() in (
            '1', 't', 'true', 'on', 'y', 'yes'),
    }


def find_marker(text: str) -> Marker | None:
    """cpumigrate's transition marker in ``[libvirt]``, if the file has one."""
    lines = split_lines(text)
    for blk in _parse(text):
        if blk.section != SECTION or blk.kind != 'comment':
            continue
        for line in lines[blk.start:blk.end]:
            match = _MARKER_RE.match(line.strip())
            if match:
                at = datetime.datetime.strptime(
                    match['at'], '%Y-%m-%dT%H:%M:%SZ'
                )
                return Marker(
                    at.replace(tzinfo=datetime.timezone.utc),
                    match['backup'],
                    match['sha'],
                    tuple(match['dest'].split(',')) if match['dest'] else (),
                )
    return None


# ------------------------------------------------------------------ editing

def utc_now() -> datetime.datetime:
    """Now, UTC, whole seconds (the marker and backup name keep seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _utc(when: datetime.datetime) -> datetime.datetime:
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).replace(microsecond=0)


def backup_path(conf_path: str, when: datetime.datetime,
                unique: str = '') -> str:
    """``<nova.conf>.cpumigrate-<UTC timestamp>[-<unique>]``, next to the
    original (``unique``: a per-run token, so two runs in one second never
    pick one name)."""
    return (conf_path + BACKUP_SUFFIX + _utc(when).strftime('%Y%m%dT%H%M%SZ')
            + ('-' + unique if unique else ''))


def marker_line(when: datetime.datetime, backup: str,
                backup_sha256: str | None = None,
                destinations: Sequence[str] = ()) -> str:
    """The marker comment; with the original's sha256, so a backup that was
    changed afterwards is never restored as if it were the original; and
    the destinations prepare was given, for pin."""
    if '\n' in backup or '\r' in backup:
        raise NovaConfError('backup path must be one line')
    check_destinations(destinations)
    return '%s%s by osc-cpumigrate%s; original saved as %s%s' % (
        MARKER_PREFIX, _utc(when).strftime('%Y-%m-%dT%H:%M:%SZ'),
        ' for ' + ','.join(destinations) if destinations else '', backup,
        ' (sha256 %s)' % backup_sha256 if backup_sha256 else '')


def check_destinations(destinations: Sequence[str]) -> None:
    """Refuse host names that could break the marker comment."""
    for name in destinations:
        if not _HOST_RE.fullmatch(name or ''):
            raise NovaConfError('invalid destination host name %r' % name)


def check_model_and_flags(model: str, flags: Sequence[str]) -> None:
    """Refuse names that could break nova.conf's syntax."""
    if not _MODEL_RE.fullmatch(model or ''):
        raise NovaConfError('invalid CPU model name %r' % model)
    for flag in flags:
        if not _FLAG_RE.fullmatch(flag):
            raise NovaConfError('invalid CPU flag %r' % flag)


def transition_settings(model: str, flags: Sequence[str] = ()) -> CpuSettings:
    """The settings :func:`apply_transition` writes."""
    return CpuSettings(
        mode='custom', models=(model,), extra_flags=tuple(flags)
    )


def apply_transition(text: str, model: str, flags: Sequence[str],
                     when: datetime.datetime, backup: str,
                     destinations: Sequence[str] = ()) -> str:
    """Return ``text`` with the transition CPU settings in ``[libvirt]``.

    Every ``cpu_mode`` / ``cpu_models`` / ``cpu_model`` (deprecated name) /
    ``cpu_model_extra_flags`` line of every ``[libvirt]`` section is removed;
    the marker comment and the new options go where the first of them was
    (or after the last option of the last ``[libvirt]``, or in a new
    ``[libvirt]`` at the end).  Deterministic: same input, same output, which
    is what lets a later process prove the file is still ours.  The marker
    records ``destinations`` (those prepare was given), for pin.
    """
    check_model_and_flags(model, flags)
    blocks = _parse(text)
    lines = split_lines(text)
    eol = '\r\n' if lines and lines[0].endswith('\r\n') else '\n'
    cpu_blocks = [
        b
        for b in blocks
        if b.section == SECTION and b.kind == 'option' and b.key in CPU_OPTIONS
    ]
    new = [marker_line(when, backup, sha256(text), destinations) + eol,
           *original_lines(lines, cpu_blocks, eol),
           '%s = custom%s' % (CPU_MODE, eol),
           '%s = %s%s' % (CPU_MODELS, model, eol)]
    if flags:
        new.append('%s = %s%s' % (CPU_EXTRA_FLAGS, ', '.join(flags), eol))

    drop = {i for b in cpu_blocks for i in range(b.start, b.end)}
    if cpu_blocks:
        insert_at = cpu_blocks[0].start
    else:
        headers = [
            b for b in blocks if b.section == SECTION and b.kind == 'header'
        ]
        if headers:
            last = headers[-1]
            section_blocks = [
                b
                for b in blocks
                if b.section == SECTION and b.start >= last.start
            ]
            # this section's blocks run until the next header
            following = [
                b
                for b in blocks
                if b.kind == 'header' and b.start > last.start
            ]
            limit = following[0].start if following else len(lines)
            options = [
                b
                for b in section_blocks
                if b.kind == 'option' and b.end <= limit
            ]
            insert_at = options[-1].end if options else last.end
        else:
            insert_at = None

    out: list[str] = []
    for index, line in enumerate(lines):
        if index == insert_at:
            out.extend(new)
        if index not in drop:
            out.append(line)
    if insert_at is not None and insert_at >= len(lines):
        if out and not out[-1].endswith('\n'):
            out[-1] += eol
        out.extend(new)
    if insert_at is None:
        if out and not out[-1].endswith('\n'):
            out[-1] += eol
        if out and out[-1].strip():
            out.append(eol)
        out.append('[%s]%s' % (SECTION, eol))
        out.extend(new)
    # an insertion right after a last line without line end
    result = ''.join(out)
    _parse(result)  # never hand back something we cannot read again
    return result


def original_lines(lines: Sequence[str], cpu_blocks: Sequence[_Block],
                   eol: str) -> list[str]:
    """The original CPU option lines as comments below the marker, so that
    a host whose backup was deleted can still be restored (or an empty
    record: the original set no CPU option)."""
    kept = [line.rstrip('\r\n') for b in cpu_blocks
            for line in lines[b.start:b.end]]
    if not kept:
        return [ORIGINAL_NONE + eol]
    return [ORIGINAL_PREFIX + line + eol for line in kept]


def marker_original(text: str) -> list[str] | None:
    """The original CPU lines the marker comment keeps ([] when the
    original set none), or None when the file has no such record (a marker
    written before the lines were kept)."""
    found: list[str] = []
    for line in split_lines(text):
        bare = line.rstrip('\r\n')
        if bare == ORIGINAL_NONE:
            return []
        if bare.startswith(ORIGINAL_PREFIX):
            found.append(bare[len(ORIGINAL_PREFIX):])
    return found or None


def restore_from_marker(text: str) -> str:
    """``text`` (a transitioned nova.conf) with the original CPU lines the
    marker keeps in place of the marker and the transition options: what
    a restore writes when the backup is gone.  The rest of the file is kept
    byte for byte; if the original's CPU lines were all in one place the
    result is the original itself (its sha256 is the marker's)."""
    kept = marker_original(text)
    if kept is None or find_marker(text) is None:
        raise NovaConfError('the marker keeps no original CPU lines')
    lines = split_lines(text)
    eol = '\r\n' if lines and lines[0].endswith('\r\n') else '\n'
    ours = {i for b in _parse(text) if b.section == SECTION
            and b.kind == 'option' and b.key in CPU_OPTIONS
            for i in range(b.start, b.end)}
    out: list[str] = []
    for index, line in enumerate(lines):
        bare = line.rstrip('\r\n')
        if _MARKER_RE.match(bare.strip()):
            out.extend(k + eol for k in kept)
        elif (index in ours or bare == ORIGINAL_NONE
              or bare.startswith(ORIGINAL_PREFIX)):
            continue
        else:
            out.append(line)
    result = ''.join(out)
    _parse(result)
    return result


# ------------------------------------------------------------------ masking

def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask_value(value: str) -> str:
    """Mask passwords inside URLs (``rabbit://user:PASS@host``)."""
    return _URL_PASSWORD_RE.sub(lambda m: m['pre'] + MASK + m['at'], value)


def mask_pair(value: str) -> str:
    """``password:s3cret`` -> ``password:***``; URL passwords masked."""
    name, sep, rest = value.partition(':')
    if sep and is_secret_name(name):
        return name + sep + MASK
    return mask_value(value)


def mask_text(text: str) -> str:
    """Mask secret option values and URL passwords, line by line.

    The number of lines never changes, so a diff of masked texts lines up
    with the real one.  Continuation lines of a secret option are masked too.
    """
    out = []
    in_secret = False
    for line in split_lines(text) if text else []:
        body = line.rstrip('\r\n')
        eol = line[len(body):]
        if body[:1] in (' ', '\t') and body.strip():
            if in_secret:
                indent = body[:len(body) - len(body.lstrip())]
                out.append(indent + MASK + eol)
            else:
                out.append(mask_value(body) + eol)
            continue
        in_secret = False
        match = _OPTION_LINE_RE.fullmatch(body)
        if match and match['key'].strip().lower() in PAIR_OPTIONS:
            out.append(body[:match.start('value')]
                       + mask_pair(match['value']) + eol)
            continue
        if match and is_secret_name(match['key']):
            # also commented-out ones: "#password = old-one" is still a secret
            in_secret = not match['lead']
            value = MASK if match['value'] else ''
            out.append(
                (match['lead'] or '')
                + match['key']
                + match['sep']
                + value
                + eol
            )
            continue
        out.append(mask_value(body) + eol)
    return ''.join(out)


def unified_diff(path: str, before: str, after: str) -> str:
    """A unified diff of two versions of a file, secrets masked."""
    diff = difflib.unified_diff(
        split_lines(mask_text(before)), split_lines(mask_text(after)),
        fromfile=path, tofile=path + ' (cpumigrate)')
    out = []
    for line in diff:
        out.append(
            line
            if line.endswith('\n')
            else line + '\n\\ No newline at end of file\n'
        )
    return ''.join(out)
