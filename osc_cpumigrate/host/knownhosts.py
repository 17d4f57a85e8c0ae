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

"""known_hosts as OpenSSH reads it, and the host key decision.

paramiko's own known_hosts reader knows neither ``@cert-authority`` nor
``@revoked``, matches no wildcard patterns, and raises ``InvalidHostKey``
out of a connect on one malformed line.  Operators' files have all of
these (a fleet signed by an SSH CA has one ``@cert-authority`` line and no
host keys at all), so cpumigrate reads the files itself and decides as
OpenSSH's ``sshconnect.c`` does:

1. a key (or the CA that signed its certificate) listed ``@revoked`` for
   the host is refused;
2. a host certificate signed by a CA that known_hosts trusts for the host
   (``@cert-authority``) is accepted when it is valid: signature, host
   type, principal, validity period; an invalid one is refused; a
   certificate from a CA not trusted there falls back to the plain key;
3. a plain key listed for the host is accepted; a different key listed for
   it means the key changed and is refused;
4. otherwise the key is unknown.

Malformed lines are logged and skipped, never fatal.  Pure functions of
the files' text and the key paramiko received; no I/O besides reading the
files.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from collections.abc import Sequence
import dataclasses
import hashlib
import hmac
import logging
import re
import time
from typing import Any

LOG = logging.getLogger(__name__)

CERT_SUFFIX = '-cert-v01@openssh.com'
SSH2_CERT_TYPE_HOST = 2


@dataclasses.dataclass(frozen=True)
class Entry:
    """One usable known_hosts line."""

    marker: str | None          # None, 'cert-authority' or 'revoked'
    patterns: tuple[str, ...]
    keytype: str
    blob: bytes
    where: str                  # file:line, for messages

    def matches(self, name: str) -> bool:
        return matches(self.patterns, name)


class Refused(Exception):
    """The host key is not trusted; ``kind`` is unknown, changed, revoked
    or cert, the message says why in a few words."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse(text: str, where: str) -> list[Entry]:
    """The usable entries of one known_hosts file; bad lines are skipped."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        fields = line.split()
        marker = None
        if fields[0].startswith('@'):
            marker = fields.pop(0)[1:]
            if marker not in ('cert-authority', 'revoked'):
                LOG.warning('%s:%d: unknown marker @%s, line ignored',
                            where, number, marker)
                continue
        if len(fields) < 3:
            LOG.warning('%s:%d: malformed known_hosts line ignored',
                        where, number)
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            LOG.warning('%s:%d: key is not valid base64, line ignored',
                        where, number)
            continue
        entries.append(Entry(marker, tuple(fields[0].split(',')), fields[1],
                             blob, '%s:%d' % (where, number)))
    return entries


def load(paths: Iterable[str]) -> list[Entry]:
    """Entries of every readable file, in order; unreadable ones logged."""
    entries: list[Entry] = []
    for path in paths:
        try:
            with open(path, encoding='utf-8', errors='replace') as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            LOG.warning('ignoring unreadable known_hosts %s: %s', path, exc)
            continue
        entries += parse(text, path)
    return entries


def host_name(host: str, port: int) -> str:
    """The name known_hosts lists a host under (``[host]:port`` off 22)."""
    return host if port == 22 else '[%s]:%d' % (host, port)


def _hashed(pattern: str, name: str) -> bool:
    try:
        _, _, salt, digest = pattern.split('|', 3)
        mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1)
        return hmac.compare_digest(mac.digest(), base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


def _glob(name: str, pattern: str) -> bool:
    """OpenSSH's match_pattern: ``*`` and ``?`` only (``[`` is literal,
    as in ``[host]:port``)."""
    regex = ''.join('.*' if c == '*' else '.' if c == '?' else re.escape(c)
                    for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def matches(patterns: Sequence[str], name: str) -> bool:
    """OpenSSH's match_hostname: a negated match (``!pat``) vetoes."""
    name = name.lower()
    found = False
    for pattern in patterns:
        if pattern.startswith('|1|'):
            found = found or _hashed(pattern, name)
            continue
        negated = pattern.startswith('!')
        pattern = pattern[1:] if negated else pattern
        if _glob(name, pattern.lower()):
            if negated:
                return False
            found = True
    return found


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The fields of an OpenSSH certificate that the decision needs."""

    cert_type: int
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    signature_key: bytes
    signed: bytes
    signature: bytes


# public key fields that follow the nonce, per certificate type
_KEY_FIELDS = {
    'ssh-ed25519': ('string',),
    'ssh-rsa': ('mpint', 'mpint'),
    'rsa-sha2-256': ('mpint', 'mpint'),
    'rsa-sha2-512': ('mpint', 'mpint'),
    'ecdsa-sha2-nistp256': ('string', 'string'),
    'ecdsa-sha2-nistp384': ('string', 'string'),
    'ecdsa-sha2-nistp521': ('string', 'string'),
}


def parse_certificate(blob: bytes) -> Certificate:
    """Parse an OpenSSH certificate (PROTOCOL.certkeys); ValueError if it
    is not one."""
    from paramiko.message import Message

    msg = Message(blob)
    try:
        cert_type_name = msg.get_text()
        base = cert_type_name[:-len(CERT_SUFFIX)]
        if not cert_type_name.endswith(CERT_SUFFIX) or base not in _KEY_FIELDS:
            raise ValueError('not a supported certificate: %s'
                             % cert_type_name)
        msg.get_string()                            # nonce
        for kind in _KEY_FIELDS[base]:
            msg.get_mpint() if kind == 'mpint' else msg.get_string()
        msg.get_int64()                             # serial
        cert_type = msg.get_int()
        key_id = msg.get_text()
        packed = Message(msg.get_string())
        principals = []
        while packed.get_remainder():
            principals.append(packed.get_text())
        valid_after = msg.get_int64()
        valid_before = msg.get_int64()
        msg.get_string()                            # critical options
        msg.get_string()                            # extensions
        msg.get_string()                            # reserved
        signature_key = msg.get_string()
        signed = msg.get_so_far()
        signature = msg.get_string()
    except ValueError:
        raise
    except Exception as exc:   # noqa: BLE001 - a short or garbled blob
        raise ValueError('malformed certificate: %s' % exc) from exc
    return Certificate(cert_type, key_id, tuple(principals), valid_after,
                       valid_before, signature_key, signed, signature)


def _signature_valid(cert: Certificate) -> bool:
    from paramiko.message import Message
    from paramiko.pkey import PKey

    try:
        keytype = Message(cert.signature_key).get_text()
        ca_key = PKey.from_type_string(keytype, cert.signature_key)
        return bool(ca_key.verify_ssh_sig(cert.signed,
                                          Message(cert.signature)))
    except Exception as exc:   # noqa: BLE001 - any failure means invalid
        LOG.debug('certificate signature check failed: %s', exc)
        return False


def check_certificate(cert: Certificate, host: str,
                      now: float | None = None) -> str | None:
    """Why a host certificate (from a trusted CA) is not valid, or None."""
    now = time.time() if now is None else now
    if cert.cert_type != SSH2_CERT_TYPE_HOST:
        return 'certificate %r is not a host certificate' % cert.key_id
    if cert.principals and host.lower() not in (
            p.lower() for p in cert.principals):
        return ('certificate %r is for %s, not %s'
                % (cert.key_id, ', '.join(cert.principals), host))
    if not cert.valid_after <= now < cert.valid_before:
        return 'certificate %r is not valid now' % cert.key_id
    if not _signature_valid(cert):
        return 'certificate %r has a bad signature' % cert.key_id
    return None


def _certificate_of(key: Any) -> bytes | None:
    blob = getattr(key, 'public_blob', None)
    if blob is not None and str(blob.key_type).endswith(CERT_SUFFIX):
        return blob.key_blob
    return None


def verify(entries: Sequence[Entry], name: str, host: str, key: Any,
           now: float | None = None) -> str:
    """Decide on ``key`` (a paramiko PKey, maybe carrying a certificate)
    presented by ``host`` (known_hosts ``name``).  Returns how it was
    trusted ('key' or 'certificate'); raises :class:`Refused`."""
    plain = key.asbytes()
    mine = [e for e in entries if e.matches(name)]
    cert_blob = _certificate_of(key)
    cert = None
    if cert_blob is not None:
        try:
            cert = parse_certificate(cert_blob)
        except ValueError as exc:
            raise Refused('cert', str(exc)) from exc
    for entry in mine:
        if entry.marker == 'revoked' and entry.blob in (
                plain, cert.signature_key if cert else None):
            raise Refused('revoked', 'the key is marked @revoked in %s'
                          % entry.where)
    cas = [e for e in mine if e.marker == 'cert-authority']
    if cert is not None and any(e.blob == cert.signature_key for e in cas):
        problem = check_certificate(cert, host, now)
        if problem:
            raise Refused('cert', problem)
        return 'certificate'
    known = [e for e in mine if e.marker is None]
    if any(e.blob == plain for e in known):
        return 'key'
    if known:
        raise Refused('changed', 'known_hosts has another key for it (%s)'
                      % known[0].where)
    if cas:
        raise Refused('cert', 'known_hosts trusts an SSH CA for it (%s), '
                      'but its host key is not signed by that CA'
                      % cas[0].where)
    raise Refused('unknown', 'its host key is not in known_hosts')


def preferred_keytype(entries: Sequence[Entry], name: str) -> str | None:
    """The host key type to ask for first, as OpenSSH orders them: a
    certificate when a CA is trusted for the host, else the type known_hosts
    lists for it."""
    mine = [e for e in entries if e.matches(name)]
    if any(e.marker == 'cert-authority' for e in mine):
        return 'ssh-ed25519' + CERT_SUFFIX
    for entry in mine:
        if entry.marker is None:
            return entry.keytype
    return None
