# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The logic of ``dms_dkim``: DKIM keys in DMS's OpenDKIM and Rspamd layouts.

OpenDKIM (what ``setup config dkim`` writes, copied to ``/etc/opendkim`` when
the container is created):

* ``opendkim/keys/<domain>/<selector>.private``: the private key, PEM (PKCS#8);
* ``opendkim/keys/<domain>/<selector>.txt``: the zone-file snippet, laid out
  as ``opendkim-genkey`` lays it out;
* ``opendkim/KeyTable``: ``<sel>._domainkey.<dom> <dom>:<sel>:/etc/opendkim/keys/<dom>/<sel>.private``;
* ``opendkim/SigningTable``: ``*@<dom> <sel>._domainkey.<dom>`` (a refile table);
* ``opendkim/TrustedHosts``: ``127.0.0.1`` and ``localhost`` when missing.

Rspamd (what DMS's ``rspamd-dkim`` writes; Rspamd reads the keys from the
volume itself and DMS's change detector reloads it):

* ``rspamd/dkim/<rsa-<bits>|ed25519>-<sel>-<dom>.private.txt``: RSA keys as
  PEM, Ed25519 keys as base64 of the 64-byte secret key (what ``rspamadm
  dkim_keygen`` writes, readable by every Rspamd version);
* ``….public.txt`` (the zone-file snippet as ``rspamadm`` prints it) and
  ``….public.dns.txt`` (its quoted strings joined, as DMS derives it);
* ``rspamd/override.d/dkim_signing.conf``: one entry per managed domain in its
  ``domain { … }`` block, edited in place (see :class:`SigningConf`).

Keys are generated in-process with ``cryptography``.  In check mode no key is
generated: the files a new key would go to are reported with placeholders.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import traceback

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
# The Rspamd UCL reader lives in _ucl (shared with dms_config); these names stay importable from here.
from ansible_collections.dms.mailserver.plugins.module_utils._ucl import (  # noqa: F401 pylint: disable=unused-import
    DEFAULT_SIGNING_CONF, SigningConf, UclError, ucl_items, ucl_tokens,
)

CRYPTOGRAPHY_IMPORT_ERROR = None
try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
except ImportError:
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

KEY_TYPES = ('rsa', 'ed25519')
RSA_SIZES = (1024, 2048, 4096)
DEFAULT_RSA_SIZE = 2048
BACKENDS = ('opendkim', 'rspamd')
REGENERATE = ('never', 'fail', 'always')

# Where DMS mounts the config volume, and where it copies the OpenDKIM files.
CONTAINER_CONFIG_DIR = '/tmp/docker-mailserver'
CONTAINER_OPENDKIM_DIR = '/etc/opendkim'

OPENDKIM_KEYS = 'opendkim/keys'
RSPAMD_DKIM = 'rspamd/dkim'
RSPAMD_SIGNING_CONF = 'rspamd/override.d/dkim_signing.conf'
RSPAMD_SUFFIXES = ('.private.txt', '.public.txt', '.public.dns.txt')

TXT_CHUNK = 255                # the longest character-string a DNS TXT record holds
_GENKEY_CHUNK = 250            # opendkim-genkey splits the base64 key every 250 characters
_RSPAMADM_CHUNK = 253          # rspamadm dkim_keygen splits it every 253

PLACEHOLDER_P = '<new key: generated when not in check mode>'
TRUSTED_HOSTS_DEFAULT = '127.0.0.1\nlocalhost\n'
OPENDKIM_TRUSTED_HOSTS = 'opendkim/TrustedHosts'


class KeyFileError(v.ValidationError):
    """An existing key file that cannot be used. The message names the file, never its content."""


# -- keys ------------------------------------------------------------------------


class KeyInfo:
    """A private key and what DKIM publishes of it."""

    def __init__(self, key):
        self.key = key
        if isinstance(key, rsa.RSAPrivateKey):
            self.type = 'rsa'
            self.size = key.key_size
            public = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self.type = 'ed25519'
            self.size = None
            public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            raise KeyFileError('unsupported key algorithm %s: DKIM keys are RSA or Ed25519' % type(key).__name__)
        self.p = base64.b64encode(public).decode('ascii')
        self.fingerprint = 'SHA256:' + base64.b64encode(hashlib.sha256(public).digest()).decode('ascii').rstrip('=')

    def describe(self):
        return 'RSA %d-bit' % self.size if self.type == 'rsa' else 'Ed25519'

    def matches(self, key_type, key_size):
        return self.type == key_type and (key_type != 'rsa' or self.size == key_size)


def describe_request(key_type, key_size):
    return 'RSA %d-bit' % key_size if key_type == 'rsa' else 'Ed25519'


def generate_key(key_type, key_size):
    if key_type == 'rsa':
        return KeyInfo(rsa.generate_private_key(public_exponent=65537, key_size=key_size))
    return KeyInfo(ed25519.Ed25519PrivateKey.generate())


def pem_pkcs8(info):
    """PEM PKCS#8, what current ``opendkim-genkey`` writes; OpenDKIM 2.11 reads RSA and Ed25519 keys in it."""
    return info.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode('ascii')


def rspamd_private_text(info):
    """What ``rspamadm dkim_keygen`` writes: PEM for RSA, base64 of seed + public key for Ed25519 (no newline)."""
    if info.type == 'rsa':
        return pem_pkcs8(info)
    seed = info.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())
    public = info.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed + public).decode('ascii')


def load_private_key(text, relpath):
    """Read a private key file (PEM, or Rspamd's base64 forms). Raises KeyFileError naming the file."""
    data = text.strip()
    try:
        if data.startswith('-----BEGIN'):
            key = serialization.load_pem_private_key(data.encode('ascii', 'replace'), password=None)
        else:
            try:
                raw = base64.b64decode(''.join(data.split()), validate=True)
            except ValueError:
                raise KeyFileError('%s: is neither a PEM private key nor base64 key data' % relpath)
            if len(raw) == 32:
                key = ed25519.Ed25519PrivateKey.from_private_bytes(raw)
            elif len(raw) == 64:
                key = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
                public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                if public != raw[32:]:
                    raise KeyFileError('%s: the Ed25519 key data is inconsistent (its public half does not belong '
                                       'to its seed)' % relpath)
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except KeyFileError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # cryptography's messages describe the format problem, never the key material.
        raise KeyFileError('%s: cannot be read as a private key (%s)' % (relpath, (str(exc).splitlines() or [''])[0][:200]))
    try:
        return KeyInfo(key)
    except KeyFileError as exc:
        raise KeyFileError('%s: %s' % (relpath, exc))


def _describe_file(text, relpath):
    """The diff text of an existing private key file, even one that cannot be read."""
    try:
        return key_diff_text(load_private_key(text, relpath))
    except KeyFileError:
        return '# private key (not shown): not readable as a key\n'


def key_diff_text(info, new=False):
    """What a diff shows for a private key file: its kind and public fingerprint, never the key."""
    if info is None:
        return '# private key (not shown): a new key, generated when not in check mode\n' if new else ''
    return '# private key (not shown): %s, public key %s\n' % (info.describe(), info.fingerprint)


# -- DNS record text ---------------------------------------------------------------


def record_value(key_type, p):
    """The TXT record's value, one string: ``v=DKIM1; k=rsa; p=…``."""
    return 'v=DKIM1; k=%s; p=%s' % (key_type, p)


def split_chunks(value, size=TXT_CHUNK):
    return [value[i:i + size] for i in range(0, len(value), size)]


def rdata(chunks):
    """The record data in zone-file form: the chunks quoted, separated by a space."""
    return ' '.join('"%s"' % chunk for chunk in chunks)


def opendkim_txt(selector, domain, key_type, p):
    """The ``<selector>.txt`` snippet in ``opendkim-genkey``'s layout (without its ``h=`` tag)."""
    pieces = [p[i:i + _GENKEY_CHUNK] for i in range(0, len(p), _GENKEY_CHUNK)] or ['']
    return ('%s._domainkey\tIN\tTXT\t( "v=DKIM1; k=%s; "\n\t  "p=' % (selector, key_type)
            + '"\n\t  "'.join(pieces)
            + '" )  ; ----- DKIM key %s for %s\n' % (selector, domain))


def rspamd_public_txt(selector, key_type, p):
    """The ``….public.txt`` snippet in ``rspamadm dkim_keygen``'s layout."""
    if len(p) < _RSPAMADM_CHUNK:
        return '%s._domainkey IN TXT ( "v=DKIM1; k=%s;" \n\t"p=%s" ) ;\n' % (selector, key_type, p)
    parts = [p[i:i + _RSPAMADM_CHUNK] for i in range(0, len(p), _RSPAMADM_CHUNK)]
    out = '%s._domainkey IN TXT ( "v=DKIM1; k=%s; "\n' % (selector, key_type)
    out += '\t"p=%s"\n' % parts[0]
    for part in parts[1:]:
        out += '\t"%s"\n' % part
    return out + ') ; \n'


def rspamd_public_dns_txt(public_txt):
    """``….public.dns.txt`` as DMS derives it: per line the text from its first to its last double quote,
    quotes and line breaks removed, then one newline."""
    out = []
    for line in public_txt.split('\n'):
        first, last = line.find('"'), line.rfind('"')
        if first != -1 and last > first:
            out.append(line[first:last + 1].replace('"', ''))
    return ''.join(out) + '\n'


def txt_public_key(text):
    """The ``p=`` value of a zone-file snippet or record text (its quoted strings joined), or None."""
    if not text:
        return None
    strings = re.findall(r'"([^"]*)"', text)
    joined = ''.join(strings) if strings else text
    for tag in joined.split(';'):
        name, sep, value = tag.partition('=')
        if sep and name.strip() == 'p':
            return ''.join(value.split())
    return None


# -- options ------------------------------------------------------------------------


def normalize(params):
    """Validate the module's options; return (entries, warnings). Raises ValidationError."""
    warnings = []
    if params.get('domains') is not None:
        if not params['domains']:
            raise v.ValidationError('domains: must list at least one domain')
        raw = [('domains[%d]' % index, value) for index, value in enumerate(params['domains'])]
    else:
        raw = [('domain', params.get('domain'))]

    state = params['state']
    key_type = params.get('key_type')
    key_size = params.get('key_size')
    if state == 'absent':
        for name in ('key_type', 'key_size', 'key_owner', 'key_group'):
            if params.get(name) is not None:
                raise v.ValidationError('%s: has no meaning with state=absent (the key of the selector is removed '
                                        'whatever its type)' % name)
    key_type = key_type or 'rsa'
    if key_type == 'ed25519':
        if key_size is not None:
            raise v.ValidationError('key_size: %r has no meaning with key_type=ed25519 (Ed25519 keys have one '
                                    'size); leave key_size out' % (key_size,))
    else:
        if key_size is None:
            key_size = DEFAULT_RSA_SIZE
        if key_size not in RSA_SIZES:
            raise v.ValidationError('key_size: %r is not a supported RSA key size: use 1024, 2048 or 4096'
                                    % (key_size,))
    backend = params['backend']
    if backend == 'opendkim' and (params.get('key_owner') is not None or params.get('key_group') is not None):
        raise v.ValidationError('key_owner: only applies to backend=rspamd; DMS gives the OpenDKIM keys to its '
                                'opendkim user itself when the container is created')
    for name in ('key_owner', 'key_group'):
        value = params.get(name)
        if value is not None and value < 0:
            raise v.ValidationError('%s: %r must be a numeric id of 0 or more' % (name, value))
    selector = v.selector(params['selector'], 'selector')
    if selector != params['selector']:
        warnings.append("selector: '%s' has uppercase letters and was normalised to '%s'"
                        % (params['selector'], selector))
    if key_type == 'ed25519' and backend == 'opendkim' and state == 'present':
        warnings.append(
            'key_type=ed25519 with backend=opendkim: OpenDKIM signs every key with the one SignatureAlgorithm of '
            'its opendkim.conf, and DMS ships "SignatureAlgorithm rsa-sha256", with which OpenDKIM fails to sign '
            '(mail is deferred with "451 4.7.0 resource unavailable"). Use it only with an opendkim.conf that sets '
            '"SignatureAlgorithm ed25519-sha256" (then every OpenDKIM key must be Ed25519), or use backend=rspamd, '
            'which signs RSA and Ed25519 keys side by side.')

    entries = []
    seen = {}
    for field, value in raw:
        if value is None:
            raise v.ValidationError('%s: a domain is required' % field)
        domain = v.domain(value, field)
        if domain != value:
            warnings.append("%s: '%s' was normalised to '%s'" % (field, value, domain))
        if domain in seen:
            raise v.ValidationError('%s: %r is listed twice (also at %s)' % (field, domain, seen[domain]))
        seen[domain] = field
        name = '%s._domainkey.%s' % (selector, domain)
        if len(name) > 253:
            raise v.ValidationError('%s: the record name %r is longer than 253 characters' % (field, name))
        entries.append(dict(domain=domain, field=field, selector=selector, name=name))
    options = dict(key_type=key_type, key_size=key_size if key_type == 'rsa' else None, backend=backend,
                   regenerate=params['regenerate'], state=state, selector=selector,
                   key_owner=params.get('key_owner'), key_group=params.get('key_group'))
    return entries, options, warnings


# -- the plan -----------------------------------------------------------------------


class _Run:
    """What one run collects: results, warnings, owner and mode fixes."""

    def __init__(self, cfg, options, generate):
        self.cfg = cfg
        self.options = options
        self.generate = generate
        self.records = []
        self.created, self.rotated, self.updated, self.removed = [], [], [], []
        self.warnings = []
        self.mode_fixes = []
        self.owner_fixes = []


def _decide(run, entry, existing, relpath):
    """'create', 'rotate' or 'keep' for an entry whose current key is ``existing`` (KeyInfo, or None)."""
    opts = run.options
    if existing is None:
        # An unreadable key file that regenerate=always replaces is a rotation, not a creation.
        return 'rotate' if relpath and run.cfg.read(relpath) is not None else 'create'
    if opts['regenerate'] == 'always':
        return 'rotate'
    if existing.matches(opts['key_type'], opts['key_size']):
        return 'keep'
    wanted = describe_request(opts['key_type'], opts['key_size'])
    if opts['regenerate'] == 'fail':
        raise v.ValidationError(
            '%s: the existing key %s is %s, not the %s that key_type/key_size ask for; regenerate=fail refuses '
            'to continue (regenerate=always replaces it, regenerate=never keeps it)'
            % (entry['field'], relpath, existing.describe(), wanted))
    run.warnings.append('%s: kept the existing %s key %s although %s was asked for (regenerate=never); '
                        'regenerate=always replaces it' % (entry['field'], existing.describe(), relpath, wanted))
    return 'keep'


def _read_key(run, entry, relpath):
    text = run.cfg.read(relpath)
    if text is None:
        return None
    try:
        return load_private_key(text, relpath)
    except KeyFileError as exc:
        if run.options['regenerate'] == 'always':
            return None  # replaced anyway
        raise v.ValidationError('%s: %s; regenerate=always replaces it' % (entry['field'], exc))


def _new_key(run):
    opts = run.options
    if run.cfg.check_mode:
        return None
    return run.generate(opts['key_type'], opts['key_size'])


def dns_record(domain, selector, info, backend, action, private_file, key_type=None, key_size=None):
    """One item of the ``records`` that ``dms_dkim`` (and ``dms_info``) return for a key.

    ``info`` is the key's :class:`KeyInfo`, or None for a key not generated yet (check mode), in which case
    ``key_type``/``key_size`` say what it will be.
    """
    if info is None:
        value, chunks, fingerprint = None, [], None
    else:
        value = record_value(info.type, info.p)
        chunks = split_chunks(value)
        fingerprint = info.fingerprint
        key_type, key_size = info.type, info.size
    return dict(
        domain=domain, selector=selector, name='%s._domainkey.%s' % (selector, domain), type='TXT',
        value=value, chunks=chunks, rdata=rdata(chunks) if chunks else None,
        key_type=key_type, key_size=key_size, fingerprint=fingerprint,
        backend=backend, action=action, private_key_file=private_file,
    )


def _record(run, entry, info, action, backend, private_file):
    opts = run.options
    run.records.append(dns_record(entry['domain'], entry['selector'], info, backend, action, private_file,
                                  opts['key_type'], opts['key_size']))
    if action == 'create':
        run.created.append(entry['domain'])
    elif action == 'rotate':
        run.rotated.append(entry['domain'])


# OpenDKIM


def opendkim_paths(domain, selector):
    base = '%s/%s/%s' % (OPENDKIM_KEYS, domain, selector)
    return base + '.private', base + '.txt'


def keytable_line(domain, selector):
    return '%s._domainkey.%s %s:%s:%s/keys/%s/%s.private' % (
        selector, domain, domain, selector, CONTAINER_OPENDKIM_DIR, domain, selector)


def signingtable_line(domain, selector):
    return '*@%s %s._domainkey.%s' % (domain, selector, domain)


def _set_line(table, key, line):
    """Set a table line unless a single line with the same meaning (white space aside) is there."""
    current = table.get_all(key)
    _key, value = line.split(' ', 1)
    if len(current) == 1 and current[0].value.split() == value.split():
        return False
    return table.set(key, line)


def _plan_opendkim(run, entry):
    cfg = run.cfg
    domain, selector = entry['domain'], entry['selector']
    private_rel, txt_rel = opendkim_paths(domain, selector)
    keytable = cfg.table('opendkim_keytable')
    signing = cfg.table('opendkim_signingtable')
    key_name = entry['name']
    touched = False

    if run.options['state'] == 'absent':
        existing_text = cfg.read(private_rel)
        if existing_text is not None:
            touched |= cfg.stage(private_rel, None, diff_before=_describe_file(existing_text, private_rel),
                                 diff_after='')
        if cfg.read(txt_rel) is not None:
            touched |= cfg.stage(txt_rel, None)
        touched |= keytable.remove(key_name)
        for item in list(signing.entries()):
            if item.value.split()[:1] and item.value.split()[0].lower() == key_name:
                touched |= signing.remove_entry(item)
        if touched:
            run.removed.append(domain)
        return

    existing = _read_key(run, entry, private_rel)
    action = _decide(run, entry, existing, private_rel)
    if action == 'keep':
        info = existing
        if os.path.exists(cfg.abspath(private_rel)):
            run.mode_fixes.append((private_rel, 0o600))
    else:
        info = _new_key(run)
        text = pem_pkcs8(info) if info is not None else PLACEHOLDER_P + '\n'
        cfg.stage(private_rel, text, mode=0o600, force_mode=True,
                  diff_before=key_diff_text(existing), diff_after=key_diff_text(info, new=True))
    # The zone-file snippet: kept when it already publishes this key.
    current_txt = cfg.read(txt_rel)
    p = info.p if info is not None else PLACEHOLDER_P
    if action != 'keep' or txt_public_key(current_txt) != p:
        touched |= cfg.stage(txt_rel, opendkim_txt(selector, domain, info.type if info else run.options['key_type'],
                                                   p), mode=0o644)
    touched |= _set_line(keytable, key_name, keytable_line(domain, selector))
    touched |= _set_line(signing, '*@%s' % domain, signingtable_line(domain, selector))
    trusted = cfg.read(OPENDKIM_TRUSTED_HOSTS)
    if trusted is None or not trusted.strip():
        touched |= cfg.stage(OPENDKIM_TRUSTED_HOSTS, TRUSTED_HOSTS_DEFAULT, mode=0o644)
    if action == 'keep' and touched:
        run.updated.append(domain)
    _record(run, entry, info, action, 'opendkim', private_rel)


# Rspamd


def rspamd_base(key_type, key_size, selector, domain):
    prefix = 'rsa-%d' % key_size if key_type == 'rsa' else 'ed25519'
    return '%s/%s-%s-%s' % (RSPAMD_DKIM, prefix, selector, domain)


def container_path(relpath):
    return '%s/%s' % (CONTAINER_CONFIG_DIR, relpath)


def _rspamd_candidates(cfg, selector, domain):
    """Existing ``rspamd/dkim/<type>[-<bits>]-<sel>-<dom>.private.txt`` files of this selector and domain."""
    directory = cfg.abspath(RSPAMD_DKIM)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    pattern = re.compile(r'^(rsa-[0-9]+|ed25519)-%s-%s\.private\.txt$' % (re.escape(selector), re.escape(domain)),
                         re.I)
    return ['%s/%s' % (RSPAMD_DKIM, name[:-len('.private.txt')]) for name in names if pattern.match(name)]


def _rspamd_owner(run, base):
    """The (uid, gid) for newly written Rspamd files: the options, else the owner of rspamd/dkim."""
    opts = run.options
    if opts['key_owner'] is not None or opts['key_group'] is not None:
        return (opts['key_owner'], opts['key_group'])
    try:
        st = os.stat(run.cfg.abspath(RSPAMD_DKIM))
    except OSError:
        return None
    return (st.st_uid, st.st_gid)


def _check_rspamd_readable(run, entry, private_rel, owner):
    """Warn when Rspamd (user _rspamd in the container) will likely be unable to read the key."""
    uid, mode = None, 0o600
    try:
        st = os.stat(run.cfg.abspath(private_rel))
        uid, mode = st.st_uid, stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    if owner is not None and owner[0] is not None:
        uid = owner[0]
    if uid is None:
        try:
            uid = os.stat(run.cfg.path).st_uid
        except OSError:
            uid = os.geteuid()
    if uid == 0 and not mode & 0o044:
        run.warnings.append(
            '%s: the Rspamd key %s is (or will be) owned by root with mode %04o, and Rspamd runs as _rspamd '
            'inside the container: set key_owner/key_group to the ids of _rspamd (docker exec <container> '
            'id _rspamd), or give %s to that user once so new keys inherit its owner'
            % (entry['field'], private_rel, mode, RSPAMD_DKIM))


def _plan_rspamd(run, entry, conf):
    cfg = run.cfg
    opts = run.options
    domain, selector = entry['domain'], entry['selector']
    candidates = _rspamd_candidates(cfg, selector, domain)
    conf_entry = conf.get(domain)
    conf_rel = None
    if conf_entry and conf_entry[0] and conf_entry[1] == selector \
            and conf_entry[0].startswith(CONTAINER_CONFIG_DIR + '/'):
        conf_rel = conf_entry[0][len(CONTAINER_CONFIG_DIR) + 1:]

    if opts['state'] == 'absent':
        touched = False
        for base in candidates:
            for suffix in RSPAMD_SUFFIXES:
                relpath = base + suffix
                current = cfg.read(relpath)
                if current is not None:
                    diff = {}
                    if suffix == '.private.txt':
                        diff = dict(diff_before=_describe_file(current, relpath), diff_after='')
                    touched |= cfg.stage(relpath, None, **diff)
        if conf_entry is not None and conf_entry[1] == selector:
            touched |= conf.remove(domain)
        if touched:
            run.removed.append(domain)
        return

    # Which existing key is this selector's: the one the config points to, one of the requested kind, any.
    chosen = None
    if conf_rel and conf_rel.endswith('.private.txt') and conf_rel[:-len('.private.txt')] in candidates:
        chosen = conf_rel[:-len('.private.txt')]
    wanted_base = rspamd_base(opts['key_type'], opts['key_size'] or 0, selector, domain)
    if chosen is None and wanted_base in candidates:
        chosen = wanted_base
    if chosen is None and candidates:
        chosen = candidates[0]
    custom_rel = None
    if chosen is None and conf_rel and cfg.read(conf_rel) is not None:
        custom_rel = conf_rel  # a key the user configured by hand at another path: adopt it
    others = [c for c in candidates if c != chosen]
    if others:
        run.warnings.append('%s: more Rspamd keys of selector %r exist (%s); using %s'
                            % (entry['field'], selector, ', '.join(c + '.private.txt' for c in others),
                               (chosen or custom_rel) + ('.private.txt' if chosen else '')))

    existing_rel = chosen + '.private.txt' if chosen else custom_rel
    existing = _read_key(run, entry, existing_rel) if existing_rel else None
    action = _decide(run, entry, existing, existing_rel)
    owner = _rspamd_owner(run, wanted_base)
    explicit_owner = opts['key_owner'] is not None or opts['key_group'] is not None
    touched = False

    if action == 'keep':
        info = existing
        base = chosen
        private_rel = existing_rel
        if explicit_owner:
            run.owner_fixes.append((private_rel, owner))
    else:
        info = _new_key(run)
        base = wanted_base
        private_rel = base + '.private.txt'
        text = rspamd_private_text(info) if info is not None else PLACEHOLDER_P
        before_info = existing if existing_rel == private_rel else None
        file_owner = owner if (explicit_owner or cfg.read(private_rel) is None) else None
        cfg.stage(private_rel, text, mode=0o600, force_mode=True, owner=file_owner,
                  diff_before=key_diff_text(before_info), diff_after=key_diff_text(info, new=True))
        if existing_rel and existing_rel != private_rel:
            # The replaced key's files go (a new type or size means a new file name).
            old_base = chosen
            cfg.stage(existing_rel, None, diff_before=key_diff_text(existing), diff_after='')
            if old_base:
                for suffix in RSPAMD_SUFFIXES[1:]:
                    if cfg.read(old_base + suffix) is not None:
                        cfg.stage(old_base + suffix, None)

    p = info.p if info is not None else PLACEHOLDER_P
    key_type = info.type if info is not None else opts['key_type']
    if base is not None:
        public_rel, dns_rel = base + '.public.txt', base + '.public.dns.txt'
        public_text = cfg.read(public_rel)
        if action != 'keep' or txt_public_key(public_text) != p:
            public_text = rspamd_public_txt(selector, key_type, p)
        for relpath, text in ((public_rel, public_text), (dns_rel, rspamd_public_dns_txt(public_text))):
            file_owner = owner if (explicit_owner or cfg.read(relpath) is None) else None
            touched |= cfg.stage(relpath, text, mode=0o644, owner=file_owner)
            if explicit_owner and cfg.read(relpath) is not None:
                run.owner_fixes.append((relpath, owner))
    touched |= conf.set(domain, container_path(private_rel), selector)
    _check_rspamd_readable(run, entry, private_rel, owner if (explicit_owner or action != 'keep') else None)
    if action == 'keep' and touched:
        run.updated.append(domain)
    _record(run, entry, info, action, 'rspamd', private_rel)


def plan(cfg, entries, options, generate=generate_key):
    """Stage the desired state of every entry in ``cfg``. Returns the result values.

    ``generate(key_type, key_size)`` makes a new :class:`KeyInfo` (tests pass their own).
    """
    if (options['key_owner'] is not None or options['key_group'] is not None) and os.geteuid() != 0:
        raise v.ValidationError('key_owner: setting the owner of files needs root on the managed host '
                                '(become: true)')
    run = _Run(cfg, options, generate)
    conf = None
    if options['backend'] == 'rspamd':
        conf = SigningConf(cfg.read(RSPAMD_SIGNING_CONF))
    for entry in entries:
        if options['backend'] == 'opendkim':
            _plan_opendkim(run, entry)
        else:
            _plan_rspamd(run, entry, conf)
    if conf is not None:
        rendered = conf.render()
        if rendered != conf.original:
            cfg.stage(RSPAMD_SIGNING_CONF, rendered, mode=0o644)
    changed = cfg.changed_files()
    # DMS applies OpenDKIM keys and tables only when the container is created; Rspamd is reloaded.
    restart_required = any(path.startswith('opendkim/') and not path.endswith('.txt') for path in changed)
    return {
        'records': run.records,
        'created': run.created,
        'rotated': run.rotated,
        'updated': run.updated,
        'removed': run.removed,
        'restart_required': restart_required,
        '_mode_fixes': run.mode_fixes,
        '_owner_fixes': run.owner_fixes,
        '_warnings': run.warnings,
    }


# -- reading (dms_info) ---------------------------------------------------------------


def _keytable_keys(cfg):
    """(domain, selector, relpath of the private key) of each ``opendkim/KeyTable`` line, in file order."""
    out = []
    prefix = CONTAINER_OPENDKIM_DIR + '/'
    for norm in cfg.table('opendkim_keytable').keys():
        entry = cfg.table('opendkim_keytable').get(norm)
        parts = entry.value.strip().split(':', 2)
        if len(parts) != 3:
            continue
        domain, selector, path = parts[0].lower(), parts[1].lower(), parts[2]
        relpath = 'opendkim/' + path[len(prefix):] if path.startswith(prefix) else None
        out.append((domain, selector, relpath))
    return out


def _rspamd_keys(cfg):
    """(domain, selector, relpath of the private key) of each entry of Rspamd's ``dkim_signing.conf``."""
    text = cfg.read(RSPAMD_SIGNING_CONF)
    if text is None:
        return []
    out = []
    for domain, path, selector in SigningConf(text).domains():
        relpath = None
        if path and path.startswith(CONTAINER_CONFIG_DIR + '/'):
            relpath = path[len(CONTAINER_CONFIG_DIR) + 1:]
        out.append((domain, (selector or '').lower(), relpath))
    return out


def read_keys(cfg):
    """The DKIM keys the config dir signs with, OpenDKIM's then Rspamd's, as ``dms_dkim`` returns them.

    Each item is :func:`dns_record` of the key with ``action: keep`` (what a ``dms_dkim`` run that keeps the
    key returns).  A key whose file is missing or cannot be read has ``value: None`` and an ``error`` naming
    the file (never its content).  Needs ``cryptography`` only when there is a key to read.
    """
    out = []
    for backend, keys in (('opendkim', _keytable_keys(cfg)), ('rspamd', _rspamd_keys(cfg))):
        for domain, selector, relpath in keys:
            info, error = None, None
            text = cfg.read(relpath) if relpath else None
            if relpath is None:
                error = 'the private key is outside the config volume; it cannot be read from config_dir'
            elif text is None:
                error = '%s: does not exist' % relpath
            else:
                try:
                    info = load_private_key(text, relpath)
                except KeyFileError as exc:
                    error = str(exc)
            record = dns_record(domain, selector, info, backend, 'keep', relpath)
            if error is not None:
                record['error'] = error
            out.append(record)
    return out
