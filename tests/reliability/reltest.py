# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the reliability suite: tree snapshots, well-formedness checks with the collection's parsers and
Debian's tools, and a sampler of other processes' command lines."""
from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import threading
from pathlib import Path

from ansible_collections.dms.mailserver.plugins.module_utils import _validate as v
from ansible_collections.dms.mailserver.plugins.module_utils._configdir import FILES, LOCK_NAME, TMP_SUFFIX
from ansible_collections.dms.mailserver.plugins.module_utils._hashing import check_hash
from ansible_collections.dms.mailserver.plugins.module_utils._table import Table, is_comment_or_blank, split_lines

# Lines the tests add to the terminal summary (see conftest.py).
STATS = []


def note(line):
    STATS.append(line)


DRIVER = str(Path(__file__).resolve().parent / 'module_driver.py')


def run_module(module, args, check=False):
    """Run a module's main() in a fresh Python process, as Ansible would on the managed host; returns
    (rc, result dict).  Much faster than a playbook, for property tests with many examples."""
    import json
    import sys
    import tempfile
    with tempfile.NamedTemporaryFile('w', suffix='.json') as handle:
        payload = dict(args)
        if check:
            payload['_ansible_check_mode'] = True
        json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
        handle.flush()
        proc = subprocess.run([sys.executable, DRIVER, module, handle.name], capture_output=True, text=True,
                              check=False)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError('%s printed no JSON: %s %s' % (module, proc.stdout, proc.stderr))
    return proc.returncode, result


def task(module, title=None, **args):
    """A playbook task calling dms.mailserver.<module>, named ``title`` (not ``name``: modules have a name option)."""
    return {'name': title or module, 'dms.mailserver.%s' % module: args}


# -- the state of a directory --------------------------------------------------


def tree(root):
    """{relative path: description} of everything under root, directories and symlinks included.

    Files are described by size, sha256 and mode, so two equal trees are byte-identical; symlinks by their
    target (never followed).  The lock file is left out: the first run that locks creates it, empty, and it stays.
    """
    out = {}
    root = str(root)
    if not os.path.isdir(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel == LOCK_NAME:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = 'symlink -> %s' % os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = 'dir %04o' % stat.S_IMODE(st.st_mode)
            else:
                with open(path, 'rb') as handle:
                    data = handle.read()
                out[rel] = 'file %d %s %04o' % (len(data), hashlib.sha256(data).hexdigest(), stat.S_IMODE(st.st_mode))
    return dict(sorted(out.items()))


def temp_files(root):
    """Temp files a run left anywhere under root (``.<name>.*.dms-tmp``)."""
    out = []
    for dirpath, dummy, filenames in os.walk(str(root)):
        out.extend(os.path.relpath(os.path.join(dirpath, n), str(root)) for n in filenames if n.endswith(TMP_SUFFIX))
    return sorted(out)


def write_files(root, files):
    """Create files {relpath: text or bytes} under root."""
    for rel, content in files.items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)


# -- well-formedness -------------------------------------------------------------

_RELAY_VALUE = re.compile(r'^\[([^\]]+)\]:([0-9]+)$')


def _run(cmd, stdin=None):
    # With no input, stdin is /dev/null: postmap -s otherwise lingers for a second or two on an open stdin.
    if stdin is None:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)


class _Settled:
    """A copy of a table file with an mtime an hour old: Postfix waits (re-reading it for a second or two) while
    a table file's mtime is in the last seconds, as if it were still being written."""

    def __init__(self, path):
        self.path = str(path)

    def __enter__(self):
        import shutil
        import tempfile
        import time
        self._dir = tempfile.mkdtemp(prefix='postmap-')
        copy = os.path.join(self._dir, os.path.basename(self.path))
        shutil.copyfile(self.path, copy)
        past = time.time() - 3600
        os.utime(copy, (past, past))
        return copy

    def __exit__(self, *exc):
        import shutil
        shutil.rmtree(self._dir)
        return False


def postmap_dump(path):
    """Debian's Postfix reading a table as DMS configures it (texthash): {key: value}, and its warnings."""
    with _Settled(path) as copy:
        proc = _run(['postmap', '-s', 'texthash:%s' % copy])
    assert proc.returncode == 0, 'postmap -s texthash:%s failed: %s' % (path, proc.stderr)
    out = {}
    for line in proc.stdout.splitlines():
        key, dummy, value = line.partition('\t')
        out[key] = value
    return out, proc.stderr


def postmap_queries(table, keys):
    """postmap -q for many keys in one process: {key: value} of the keys found."""
    keys = list(keys)
    if not keys:
        return {}
    kind, path = table.split(':', 1)
    with _Settled(path) as copy:
        proc = _run(['postmap', '-q', '-', '%s:%s' % (kind, copy)], stdin=''.join(k + '\n' for k in keys))
    assert proc.returncode in (0, 1), 'postmap -q - %s failed: %s' % (table, proc.stderr)
    out = {}
    for line in proc.stdout.splitlines():
        key, dummy, value = line.partition('\t')
        out[key] = value
    return out


def doveadm_verifies(stored, password):
    """Debian's Dovecot: does the stored {SCHEME} hash verify the password? (test passwords only)"""
    return _run(['doveadm', 'pw', '-t', stored, '-p', password]).returncode == 0


def parse_file(path, spec):
    """The file through the collection's own Table: the entries in order, asserting every data line parses."""
    data = Path(path).read_bytes()
    assert b'\r' not in data and b'\x00' not in data, '%s: CR or NUL byte in a written file' % path
    text = data.decode('utf-8')
    assert text == '' or text.endswith('\n'), '%s: no final newline' % path
    table = Table(text, spec.parser, spec.fold_case)
    data_lines = [line for line in split_lines(text) if not is_comment_or_blank(line)]
    entries = table.entries()
    assert len(entries) == len(data_lines), '%s: lines the parser does not understand: %r' % (
        path, [line for line in data_lines if line not in [e.raw for e in entries]])
    for entry in entries:
        # Postfix reads a line that starts with white space as the continuation of the line before.
        assert not entry.raw[:1].isspace(), '%s: a data line starts with white space: %r' % (path, entry.raw)
    return entries


def check_config_dir(cfg, passwords=None):
    """Assert every managed table under cfg is well-formed, by the collection's parsers and validators and by
    Debian's postmap (texthash tables) and doveadm (hashes of the accounts in ``passwords``).

    Returns {file name: {key: value}} as the collection reads them.
    """
    cfg = Path(cfg)
    out = {}
    for name, spec in FILES.items():
        path = cfg / spec.relpath
        if not path.exists():
            continue
        entries = parse_file(path, spec)
        table = {}
        for entry in entries:
            assert entry.key.lower() not in table, '%s: duplicate key %r' % (spec.relpath, entry.key)
            table[entry.key.lower() if spec.fold_case else entry.key] = entry.value
        out[name] = table
        if name in ('accounts', 'masters'):
            for key, value in table.items():
                v.address(key, spec.relpath)
                check_hash(value.split('|')[0], '%s (%s)' % (spec.relpath, key))
        elif name == 'quotas':
            for key, value in table.items():
                v.address(key, spec.relpath)
                v.quota(value, spec.relpath)
        elif name == 'virtual':
            for key, value in table.items():
                if '@' not in key:
                    continue  # a local alias (``root``), written by hand
                v.catchall_or_address(key, spec.relpath)
                for recipient in value.split(','):
                    v.address(recipient, spec.relpath)
        elif name in ('send_access', 'receive_access'):
            for key, value in table.items():
                v.address(key, spec.relpath)
                assert value.strip() == 'REJECT', (spec.relpath, key, value)
        elif name == 'relaymap':
            for key, value in table.items():
                assert key.startswith('@'), (spec.relpath, key)
                v.domain(key[1:], spec.relpath)
                match = _RELAY_VALUE.match(value.strip())
                assert value.strip() == '' or match, (spec.relpath, key, value)
                if match:
                    v.host(match.group(1), spec.relpath)
                    v.port(int(match.group(2)), spec.relpath)
        elif name == 'sasl':
            for key, value in table.items():
                assert key.startswith('@') or _RELAY_VALUE.match(key), (spec.relpath, key)
                assert ':' in value, (spec.relpath, key)
        if name in ('virtual', 'relaymap', 'sasl', 'send_access', 'receive_access'):
            # Postfix reads exactly what the collection reads.
            dumped, warnings = postmap_dump(path)
            assert not warnings.strip(), '%s: postmap warns: %s' % (spec.relpath, warnings)
            mine = dict((k.lower(), val.strip()) for k, val in table.items() if val.strip())
            assert dumped == mine, '%s: Postfix reads %r, the collection %r' % (spec.relpath, dumped, mine)
    for address, password in (passwords or {}).items():
        stored = out.get('accounts', {}).get(address)
        assert stored is not None, 'account %s is missing' % address
        assert doveadm_verifies(stored.split('|')[0], password), 'doveadm: the hash of %s does not verify' % address
    return out


# -- watching other processes ------------------------------------------------------


class ProcSampler:
    """Reads /proc/*/cmdline (and /proc/*/environ of ansible and python processes) in a thread, as often as it
    can, until stopped. ``seen`` holds every distinct command line, ``environs`` every distinct environment."""

    def __init__(self):
        self.seen = set()
        self.environs = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._me = str(os.getpid())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

    def _loop(self):
        while not self._stop.is_set():
            self.sample()

    def sample(self):
        self.rounds += 1
        try:
            pids = [p for p in os.listdir('/proc') if p.isdigit() and p != self._me]
        except OSError:
            return
        for pid in pids:
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                    cmdline = handle.read()
            except OSError:
                continue
            if not cmdline:
                continue
            text = cmdline.replace(b'\0', b' ').decode('utf-8', 'replace')
            self.seen.add(text)
            if 'ansible' in text or 'python' in text or 'AnsiballZ' in text:
                try:
                    with open('/proc/%s/environ' % pid, 'rb') as handle:
                        self.environs.add(handle.read().replace(b'\0', b'\n').decode('utf-8', 'replace'))
                except OSError:
                    pass
