# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash safety: module processes killed with SIGKILL while they write.

How the kills land "during writes" (docs/reliability.md): each module runs in its own process through
module_driver.py, which runs the module's unchanged main() and reports on a pipe when ConfigDir.commit starts
(``C``), creates its first temp file (``W``), makes its first rename (``R``) and ends (``E``).  The config dir
holds files of megabytes (comment blocks: cheap to parse, but written and fsynced), so a commit takes measurable
time.  Calibration runs measure, per module, when the first temp file appears and when the commit ends; each trial
waits for ``C``, sleeps a random time between those two points and sends SIGKILL.  The state found after the kill
shows where the process died (temp files present = while writing them; some files new and others old = between
renames), and those counts are asserted and printed.  Deterministic trials add a kill before each single rename,
so every "some files renamed, the rest not" state is seen at least once.
"""
from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from reltest import note, temp_files, tree, write_files

from ansible_collections.dms.mailserver.plugins.module_utils._configdir import ConfigDir, ConfigDirError

DRIVER = str(Path(__file__).resolve().parent / 'module_driver.py')
RANDOM_TRIALS_PER_MODULE = 15
# At least this many of the random kills must land mid-commit; trials stop at the cap.
RANDOM_MID_COMMIT = 20
RANDOM_TRIALS_CAP = 200
BULK = 2000
_rng = random.Random()


def _fake_hash(rng):
    chars = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
    return '{SHA512-CRYPT}$6$%s$%s' % (''.join(rng.choice(chars) for dummy in range(16)),
                                       ''.join(rng.choice(chars) for dummy in range(86)))


def _rsa_pem(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _padding(label, size):
    """A block of comment lines of about ``size`` bytes: cheap to parse, but it has to be written."""
    line = '# %s %s\n' % (label, 'x' * 1000)
    return line * (size // len(line))


def _old_state(root):
    """A config dir with big files (comment blocks of megabytes), so that writing them takes measurable time,
    while parsing and planning stay quick."""
    rng = random.Random(9)
    hashes = [_fake_hash(rng) for dummy in range(64)]
    mb = 1 << 20
    files = {
        'postfix-accounts.cf': _padding('accounts', 3 * mb) + ''.join(
            'user%d@bulk.example.com|%s\n' % (i, hashes[i % 64]) for i in range(BULK)),
        'dovecot-quotas.cf': _padding('quotas', 2 * mb) + ''.join(
            'user%d@bulk.example.com:%dM\n' % (i, i % 900 + 1) for i in range(BULK)),
        'postfix-send-access.cf': _padding('send', mb) + ''.join(
            'user%d@bulk.example.com \t\t REJECT\n' % i for i in range(0, BULK, 10)),
        'postfix-receive-access.cf': _padding('receive', mb) + ''.join(
            'user%d@bulk.example.com \t\t REJECT\n' % i for i in range(5, BULK, 10)),
        'postfix-virtual.cf': _padding('aliases', 3 * mb) + ''.join(
            'alias%d@bulk.example.com user%d@bulk.example.com,user%d@bulk.example.com\n' % (i, i, i + 1)
            for i in range(BULK)),
        'postfix-regexp.cf': _padding('regexp', 2 * mb) + ''.join(
            '/^re%d-.*@bulk\\.example\\.com$/ user%d@bulk.example.com\n' % (i, i) for i in range(20)),
        'postfix-relaymap.cf': _padding('relays', 2 * mb) + ''.join(
            '@d%d.bulk.example.net [relay%d.example.net]:587\n' % (i, i % 50) for i in range(BULK)),
        'postfix-sasl-password.cf': _padding('credentials', 2 * mb) + ''.join(
            '@d%d.bulk.example.net user%d:Pw-%d-secret\n' % (i, i, i) for i in range(BULK)),
        'opendkim/KeyTable': _padding('keys', 2 * mb) + ''.join(
            'mail._domainkey.k%d.example.org k%d.example.org:mail:/etc/opendkim/keys/k%d.example.org/mail.private\n'
            % (i, i, i) for i in range(BULK)),
        'opendkim/SigningTable': _padding('signing', 2 * mb) + ''.join(
            '*@k%d.example.org mail._domainkey.k%d.example.org\n' % (i, i) for i in range(BULK)),
        'opendkim/TrustedHosts': '127.0.0.1\nlocalhost\n',
    }
    write_files(root, files)
    os.chmod(root / 'postfix-accounts.cf', 0o600)
    os.chmod(root / 'postfix-sasl-password.cf', 0o600)
    return rng


SCENARIOS = {
    'dms_account': lambda rng: dict(accounts=[
        dict(address='user1@bulk.example.com', password_hash=_fake_hash(rng), quota='5G', restrict=['send']),
        dict(address='new1@crash.example.com', password_hash=_fake_hash(rng), quota='1G',
             restrict=['send', 'receive']),
        dict(address='new2@crash.example.com', password_hash=_fake_hash(rng), quota='2G', restrict=['receive']),
    ]),
    'dms_alias': lambda rng: dict(aliases=[
        dict(alias='alias1@bulk.example.com', recipients=['new1@crash.example.com']),
        dict(alias='team@crash.example.com', recipients=['new1@crash.example.com', 'new2@crash.example.com']),
        dict(alias='/^crash-.*@crash\\.example\\.com$/', type='regexp', recipients=['new1@crash.example.com']),
    ]),
    'dms_relay': lambda rng: dict(relays=[
        dict(domain='d1.bulk.example.net', host='new.relay.example.net', port=2525, username='nu',
             password='New-relay-pw'),
        dict(domain='crash.example.com', host='smtp.crash.example.com', port=587, username='cu',
             password='Crash-relay-pw'),
    ]),
    'dms_dkim': lambda rng: dict(domains=['k1.example.org', 'crash.example.com'], regenerate='always'),
}


class Driver:
    """One run of a module in module_driver.py, with the pipe it reports on.

    Its output goes to files, not pipes: waiting for a killed driver must not wait for children that inherited
    its output.
    """

    def __init__(self, module, args_file, env=None):
        self.read_fd, write_fd = os.pipe()
        full_env = dict(os.environ, DMS_CRASH_SIGNAL_FD=str(write_fd))
        full_env.update(env or {})
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        # Niced, so that on a busy machine the test (which must react to the driver's reports in time) gets the
        # CPU first; the driver's behaviour does not change, only its pace.
        self.proc = subprocess.Popen([sys.executable, DRIVER, module, str(args_file)], stdout=self._out,
                                     stderr=self._err, pass_fds=(write_fd,), env=full_env)
        os.setpriority(os.PRIO_PROCESS, self.proc.pid, 10)
        os.close(write_fd)
        self.events = []

    def wait_for(self, code, timeout=60):
        """Read events until ``code`` arrives (True) or the pipe closes (False)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, 'the driver did not report %r in %s s (events %r)' % (code, timeout, self.events)
            ready, dummy, dummy = select.select([self.read_fd], [], [], left)
            if not ready:
                continue
            data = os.read(self.read_fd, 1)
            if not data:
                return False
            self.events.append((data, time.monotonic()))
            if data == code:
                return True

    def children(self):
        """Pids of the driver's child processes (hashing workers), read before it is killed."""
        pids = []
        for tid in os.listdir('/proc/%d/task' % self.proc.pid):
            try:
                with open('/proc/%d/task/%s/children' % (self.proc.pid, tid)) as handle:
                    pids.extend(int(p) for p in handle.read().split())
            except OSError:
                pass
        return pids

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self):
        """Wait for the driver process itself; returns its (stdout, stderr)."""
        self.proc.wait(timeout=120)
        os.close(self.read_fd)
        out = []
        for handle in (self._out, self._err):
            handle.seek(0)
            out.append(handle.read().decode('utf-8', 'replace'))
            handle.close()
        return tuple(out)


def _args_file(path, module, cfg, args, **extra):
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': dict(args, config_dir=str(cfg), **extra)}))
    return path


def _complete_run(module, args_file, env=None):
    driver = Driver(module, args_file, env)
    out, err = driver.finish()
    assert driver.proc.returncode == 0, 'module run failed: %s %s' % (out, err)
    return json.loads(out)


def _classify(state, old, new, temps):
    """Where the killed process was: before, writing (temp files, nothing renamed), renaming (some new), after."""
    changed = [rel for rel in set(old) | set(new) if old.get(rel) != new.get(rel) and _is_file(old, new, rel)]
    renamed = [rel for rel in changed if state.get(rel) == new.get(rel)]
    if not renamed:
        return 'writing' if temps else 'before'
    if len(renamed) < len(changed):
        return 'renaming'
    return 'renaming' if temps else 'after'


def _is_file(old, new, rel):
    return (old.get(rel) or new.get(rel)).startswith('file')


def _assert_each_file_old_or_new(state, old, new, where):
    for rel in sorted(set(state) | set(old) | set(new)):
        assert state.get(rel) in (old.get(rel), new.get(rel)), (
            '%s: %s is neither the old nor the new version: %r (old %r, new %r)'
            % (where, rel, state.get(rel), old.get(rel), new.get(rel)))


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """The old config dir, each scenario's args, and the new version each produces (from a calibration run)."""
    base = tmp_path_factory.mktemp('crash')
    old_dir = base / 'old'
    old_dir.mkdir()
    rng = _old_state(old_dir)
    key = _rsa_pem(base / 'fixed-key.pem')
    (old_dir / 'opendkim/keys/k1.example.org').mkdir(parents=True)
    old_key = _rsa_pem(old_dir / 'opendkim/keys/k1.example.org/mail.private')
    os.chmod(old_key, 0o600)
    env = {'DMS_CRASH_DKIM_KEY': str(key)}
    old = tree(old_dir)
    out = {'base': base, 'old_dir': old_dir, 'old': old, 'env': env, 'modules': {}}
    for module, make_args in SCENARIOS.items():
        args = make_args(rng)
        durations, new = [], None
        for attempt in range(3):
            cfg = base / ('calibrate-%s-%d' % (module, attempt))
            shutil.copytree(old_dir, cfg, symlinks=True)
            args_file = _args_file(base / ('%s-%d.json' % (module, attempt)), module, cfg, args)
            driver = Driver(module, args_file, env)
            assert driver.wait_for(b'E')
            stdout, stderr = driver.finish()
            assert driver.proc.returncode == 0, stderr
            assert json.loads(stdout)['changed'] is True
            at = dict(driver.events)
            durations.append((at[b'W'] - at[b'C'], at[b'R'] - at[b'C'], at[b'E'] - at[b'C']))
            state = tree(cfg)
            assert new is None or state == new, 'the scenario %s is not deterministic' % module
            new = state
            shutil.rmtree(cfg)
        changed = sorted(rel for rel in set(old) | set(new) if old.get(rel) != new.get(rel))
        # Seconds from the start of the commit to its first temp file, its first rename, its end.
        phases = tuple(statistics.median(d[i] for d in durations) for i in range(3))
        out['modules'][module] = {'args': args, 'new': new, 'phases': phases, 'changed': changed}
    return out


def _trial(world, module, tag, kill_after=None, pause_at_rename=None):
    """One killed run; returns its classification. Checks the invariants and the recovery run."""
    base, spec = world['base'], world['modules'][module]
    cfg = base / ('trial-%s' % tag)
    shutil.copytree(world['old_dir'], cfg, symlinks=True)
    args_file = _args_file(base / ('trial-%s.json' % tag), module, cfg, spec['args'])
    env = dict(world['env'])
    if pause_at_rename is not None:
        env['DMS_CRASH_PAUSE_AT_RENAME'] = str(pause_at_rename)
    driver = Driver(module, args_file, env)
    assert driver.wait_for(b'C')
    if pause_at_rename is not None:
        assert driver.wait_for(b'P'), 'the driver did not pause before rename %d' % pause_at_rename
    else:
        time.sleep(kill_after)
    driver.kill()
    assert driver.proc.returncode in (-signal.SIGKILL, 0)

    state = tree(cfg)
    temps = temp_files(cfg)
    for rel in temps:
        # A temp file holds new content that may be secret: never readable by others.
        assert os.stat(cfg / rel).st_mode & 0o077 == 0 or not _secret(rel), '%s: %s is readable by others' % (
            tag, rel)
        del state[rel]
    _assert_each_file_old_or_new(state, world['old'], spec['new'], '%s (%s)' % (tag, module))
    where = _classify(state, world['old'], spec['new'], temps)

    # The flock died with the process: the next run gets the lock at once and cleans up after the dead one.
    started = time.monotonic()
    with ConfigDir(str(cfg), lock_timeout=2):
        waited = time.monotonic() - started
        assert temp_files(cfg) == [], '%s: locking did not remove the dead run\'s temp files' % tag
    assert waited < 1, waited
    result = _complete_run(module, args_file, world['env'])
    assert result['changed'] is (where != 'after'), (tag, where, result)
    final = tree(cfg)
    assert final == spec['new'], '%s: the run after the crash did not reach the new version' % tag
    assert temp_files(cfg) == []
    shutil.rmtree(cfg)
    return where


def _secret(rel):
    name = os.path.basename(rel)
    return any(s in name for s in ('postfix-accounts.cf', 'postfix-sasl-password.cf', '.private'))


def test_sigkill_at_random_points_of_the_commit(world):
    counts = dict((module, {}) for module in SCENARIOS)
    # The commit's phases were timed once (calibration); on a loaded machine a commit runs slower or faster than
    # then, and kills would land before or after it. Each module's window therefore follows where its kills land
    # (a kill after the commit shortens it, one before the first temp file lengthens it), and trials go on,
    # past a minimum, until enough kills have landed mid-commit (or the cap is reached and the asserts fail).
    scale = dict((module, 1.0) for module in SCENARIOS)
    order = [m for m in SCENARIOS for dummy in range(RANDOM_TRIALS_PER_MODULE)]
    _rng.shuffle(order)

    def enough():
        mid = sum(c.get('writing', 0) + c.get('renaming', 0) for c in counts.values())
        return mid >= RANDOM_MID_COMMIT and all(c.get('writing', 0) >= 3 for c in counts.values())

    n = 0
    while n < len(order) or (not enough() and n < RANDOM_TRIALS_CAP):
        module = order[n] if n < len(order) else _rng.choice(sorted(SCENARIOS))
        # A random time from the first temp file to the end of the commit: while writing, fsyncing, renaming.
        first_temp, dummy, end = world['modules'][module]['phases']
        delay = _rng.uniform(first_temp, end) * scale[module]
        where = _trial(world, module, 'random-%d' % n, kill_after=delay)
        counts[module][where] = counts[module].get(where, 0) + 1
        if where == 'after':
            scale[module] = max(0.2, scale[module] * 0.85)
        elif where == 'before':
            scale[module] = min(5.0, scale[module] * 1.15)
        n += 1
    total = dict((k, sum(c.get(k, 0) for c in counts.values())) for k in ('before', 'writing', 'renaming', 'after'))
    mid = total['writing'] + total['renaming']
    note('crash: %d SIGKILLs at random times while writing: %d died mid-commit (%d with temp files being written, '
         '%d between renames), %d before the first temp file, %d after the last rename; commit phases '
         '(first temp file / first rename / end, ms): %s'
         % (n, mid, total['writing'], total['renaming'], total['before'], total['after'],
            ', '.join('%s %s' % (m, '/'.join('%.1f' % (t * 1000) for t in world['modules'][m]['phases']))
                      for m in SCENARIOS)))
    assert n >= 50
    # Kills must really land inside the commit, or this test would prove little.
    assert mid >= RANDOM_MID_COMMIT, counts
    for module in SCENARIOS:
        assert counts[module].get('writing', 0) >= 3, (module, counts[module])


def test_sigkill_before_each_rename(world):
    """Deterministic: paused right before the k-th rename and killed, for every k of every scenario."""
    seen = 0
    for module, spec in world['modules'].items():
        files = [rel for rel in spec['changed'] if _is_file(world['old'], spec['new'], rel)]
        for k in range(1, len(files) + 1):
            where = _trial(world, module, 'rename-%s-%d' % (module, k), pause_at_rename=k)
            assert where == ('writing' if k == 1 else 'renaming'), (module, k, where)
            seen += 1
    note('crash: %d SIGKILLs right before a rename (every rename of every scenario): each file old or new, '
         'recovered' % seen)


def test_sigkill_while_hashing_leaves_no_lock_behind(tmp_path):
    """A kill while the hashing workers run: they must not keep the lock (or run on) after the module died."""
    cfg = tmp_path / 'config'
    cfg.mkdir()
    accounts = [dict(address='h%d@example.com' % i, password='Hash-pw-%d' % i, scheme='BLF-CRYPT')
                for i in range(480)]
    args_file = _args_file(tmp_path / 'hash.json', 'dms_account', cfg, {'accounts': accounts})
    driver = Driver('dms_account', args_file)
    assert driver.wait_for(b'H')
    time.sleep(0.5)
    workers = driver.children()
    assert workers, 'the hashing ran without worker processes; this test needs at least 2 CPUs'
    driver.kill()
    try:
        started = time.monotonic()
        try:
            with ConfigDir(str(cfg), lock_timeout=2):
                waited = time.monotonic() - started
        except ConfigDirError as exc:
            pytest.fail('the lock outlived the killed module (held by its orphaned hashing workers): %s' % exc)
        assert waited < 1
        deadline = time.monotonic() + 2
        alive = workers
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in workers if _running(pid)]
        assert not alive, 'hashing workers kept running after the module was killed: %r' % alive
    finally:
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    assert temp_files(cfg) == []
    assert not (cfg / 'postfix-accounts.cf').exists()
    note('crash: killed while %d hashing workers ran: lock free at once, workers gone' % len(workers))


def _running(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False
