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

"""known_hosts read as OpenSSH reads it (the pure parts)."""

import base64
import hashlib
import hmac
import shutil
import subprocess

import pytest

from osc_cpumigrate.host import knownhosts


def test_patterns_wildcards_negation_and_brackets():
    m = knownhosts.matches
    assert m(['[10.0.0.1]:2222'], '[10.0.0.1]:2222')
    assert not m(['[10.0.0.1]:2222'], '1')          # '[' is literal
    assert m(['*.mgmt.example.net'], 'CMP1.mgmt.example.net')
    assert m(['cmp?'], 'cmp1') and not m(['cmp?'], 'cmp10')
    assert not m(['*.example.net', '!bad.example.net'], 'bad.example.net')
    assert m(['*.example.net', '!bad.example.net'], 'good.example.net')


def test_hashed_names():
    salt = b'0123456789abcdefghij'
    digest = hmac.new(salt, b'cmp1', hashlib.sha1).digest()
    pattern = '|1|%s|%s' % (base64.b64encode(salt).decode(),
                            base64.b64encode(digest).decode())
    assert knownhosts.matches([pattern], 'cmp1')
    assert not knownhosts.matches([pattern], 'cmp2')
    assert not knownhosts.matches(['|1|garbage'], 'cmp1')


def test_parse_skips_bad_lines(caplog):
    key = base64.b64encode(b'\x00\x00\x00\x0bssh-ed25519').decode()
    entries = knownhosts.parse(
        '# comment\n\njust-one-field\n'
        'h ssh-ed25519 ***\n'
        '@nonsense h ssh-ed25519 %s\n'
        '@revoked * ssh-ed25519 %s\n'
        'a,b ssh-ed25519 %s comment words\n' % (key, key, key), 'kh')
    assert [(e.marker, e.patterns, e.where) for e in entries] == [
        ('revoked', ('*',), 'kh:6'), (None, ('a', 'b'), 'kh:7')]
    assert 'kh:3: malformed' in caplog.text
    assert 'kh:4: key is not valid base64' in caplog.text
    assert 'kh:5: unknown marker @nonsense' in caplog.text


def test_load_ignores_missing_files(tmp_path):
    assert knownhosts.load([str(tmp_path / 'nope')]) == []


@pytest.mark.skipif(not shutil.which('ssh-keygen'), reason='no ssh-keygen')
def test_certificate_checks(tmp_path):
    def keygen(*args):
        subprocess.run(['ssh-keygen', '-q', *args], check=True,
                       capture_output=True)

    keygen('-t', 'ed25519', '-N', '', '-f', str(tmp_path / 'ca'))
    keygen('-t', 'ed25519', '-N', '', '-f', str(tmp_path / 'host'))
    keygen('-s', str(tmp_path / 'ca'), '-I', 'hv1', '-h', '-n', 'hv1',
           '-V', '20200101:20300101', str(tmp_path / 'host.pub'))
    blob = base64.b64decode(
        (tmp_path / 'host-cert.pub').read_text().split()[1])
    cert = knownhosts.parse_certificate(blob)
    assert cert.principals == ('hv1',) and cert.key_id == 'hv1'
    now = 1700000000
    assert knownhosts.check_certificate(cert, 'hv1', now) is None
    assert 'is for hv1, not hv2' in knownhosts.check_certificate(
        cert, 'hv2', now)
    assert 'not valid now' in knownhosts.check_certificate(
        cert, 'hv1', 2000000000)
    tampered = knownhosts.Certificate(**dict(
        cert.__dict__, signed=cert.signed.replace(b'hv1', b'hv9')))
    assert 'bad signature' in knownhosts.check_certificate(
        tampered, 'hv1', now)
    # a user certificate is no host certificate
    keygen('-s', str(tmp_path / 'ca'), '-I', 'ops', '-n', 'hv1',
           str(tmp_path / 'host.pub'))
    user = knownhosts.parse_certificate(base64.b64decode(
        (tmp_path / 'host-cert.pub').read_text().split()[1]))
    assert 'not a host certificate' in knownhosts.check_certificate(
        user, 'hv1', now)
    with pytest.raises(ValueError):
        knownhosts.parse_certificate(b'\x00\x00\x00\x03abc')
