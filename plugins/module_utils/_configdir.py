# -*- coding: utf-8 -*-
# Copyright (c) dms.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to the dms.mailserver collection: may change at any time.
"""The DMS config directory: what lives where, and one locked, atomic way to change it.

:class:`ConfigDir` is used as a context manager by every state module::

    with ConfigDir(path, lock_timeout=30, backup=False, check_mode=False) as cfg:
        accounts = cfg.table('accounts')
        ...edit tables / stage files...
        result = cfg.commit()      # writes (or, in check mode, only reports)

* An advisory ``flock`` on ``<config_dir>/.dms-mailserver.lock`` is held from
  before the first read until after the last write, so concurrent runs against
  one config dir serialise and never lose an update.  The lock dies with its
  process, so a killed run leaves no stale lock; the (empty) lock file stays.
  Processes forked while it is held (password hashing workers) close their
  copy of the lock at once, so the lock never outlives the module process.
* Every write goes to a temp file created 0600 in the target's directory, is
  flushed and fsynced, gets its final owner and mode, and is renamed over the
  target: a reader sees the old or the new file, never a mix.  Temp files a
  killed run left behind (``.<name>.*.dms-tmp``, in the config dir or up to
  three directory levels below it) are removed by the next run that locks.
* ``backup=True`` keeps the previous version of every file it replaces.
* Files that resolve (through symlinks) outside the config dir are refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile
import time
import weakref

from ansible_collections.dms.mailserver.plugins.module_utils._table import (
    Table, parse_colon, parse_pipe, parse_regexp, parse_whitespace,
)

LOCK_NAME = '.dms-mailserver.lock'
TMP_SUFFIX = '.dms-tmp'
# How deep below config_dir modules write files (opendkim/keys/<domain>/<selector>.private), and so how deep
# the temp files of a killed run can be.
TMP_CLEAN_DEPTH = 3
DEFAULT_CONFIG_DIR = '/opt/docker-mailserver/docker-data/dms/config'


class FileSpec:
    """One file of the config volume: name, default mode, parser, masking, reload behaviour."""

    def __init__(self, relpath, mode=0o644, parser=None, fold_case=True, mask=None,
                 force_mode=False, hot_reload=True):
        self.relpath = relpath
        self.mode = mode
        self.parser = parser
        self.fold_case = fold_case
        self.mask = mask              # name of a masker in MASKERS, or None
        self.force_mode = force_mode  # always (re)apply ``mode``, even to an existing file
        self.hot_reload = hot_reload  # DMS's change detector applies it without a restart


# The files of the DMS config volume this collection manages.
FILES = {
    'accounts': FileSpec('postfix-accounts.cf', 0o600, parse_pipe, mask='hash'),
    'masters': FileSpec('dovecot-masters.cf', 0o600, parse_pipe, mask='hash'),
    'quotas': FileSpec('dovecot-quotas.cf', 0o644, parse_colon),
    'virtual': FileSpec('postfix-virtual.cf', 0o644, parse_whitespace),
    'regexp': FileSpec('postfix-regexp.cf', 0o644, parse_regexp, fold_case=False),
    'send_access': FileSpec('postfix-send-access.cf', 0o644, parse_whitespace, hot_reload=False),
    'receive_access': FileSpec('postfix-receive-access.cf', 0o644, parse_whitespace, hot_reload=False),
    'relaymap': FileSpec('postfix-relaymap.cf', 0o644, parse_whitespace),
    'sasl': FileSpec('postfix-sasl-password.cf', 0o600, parse_whitespace, mask='sasl', force_mode=True),
    'opendkim_keytable': FileSpec('opendkim/KeyTable', 0o644, parse_whitespace, hot_reload=False),
    'opendkim_signingtable': FileSpec('opendkim/SigningTable', 0o644, parse_whitespace, hot_reload=False),
    'opendkim_trustedhosts': FileSpec('opendkim/TrustedHosts', 0o644, parse_whitespace, hot_reload=False),
}


# Every ConfigDir of this process that holds its lock.
_LOCKED = weakref.WeakSet()


def _drop_inherited_locks():
    """In a forked child: close the inherited lock file descriptors.

    A ``flock`` belongs to the open file, which stays open while any process
    has a descriptor of it: a hashing worker forked under the lock would keep
    it locked after the module process was killed.  The child never uses the
    lock, so it lets go of its copy (closing a copy does not unlock the parent).
    """
    for cfg in list(_LOCKED):
        if cfg._lock_fd is not None:
            try:
                os.close(cfg._lock_fd)
            except OSError:
                pass
            cfg._lock_fd = None
    _LOCKED.clear()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class ConfigDirError(Exception):
    """A failure the module reports with ``fail_json(msg=...)``; nothing has been written."""


# -- masking secrets for diffs -------------------------------------------------

_HASH_RE = re.compile(r'(\{[A-Za-z0-9._-]+\})?(\$[0-9a-z]+\$[^\s|:]+)|\{[A-Za-z0-9._-]+\}[^\s|:]+')


class Masker:
    """Replaces secrets with numbered placeholders: equal secrets, equal placeholder.

    So a diff still shows *that* a hash or password changed, and never what it is.
    """

    def __init__(self):
        self._tokens = {}

    def token(self, secret: str, label: str) -> str:
        if secret not in self._tokens:
            self._tokens[secret] = len(self._tokens) + 1
        return '<%s #%d masked>' % (label, self._tokens[secret])

    def _hash_field(self, field: str) -> str:
        match = re.match(r'^\{([A-Za-z0-9._-]+)\}', field)
        scheme = '{%s}' % match.group(1) if match else ''
        return scheme + self.token(field, 'hash')

    def hash_text(self, text: str) -> str:
        out = []
        for line in text.split('\n'):
            stripped = line.strip()
            if stripped and not stripped.startswith('#') and '|' in line:
                parts = line.split('|')
                if parts[1]:
                    parts[1] = self._hash_field(parts[1])
                line = '|'.join(parts)
            else:
                # Anything else that looks like a password hash (comments, odd lines) is masked too.
                line = _HASH_RE.sub(lambda m: self._hash_field(m.group(0)), line)
            out.append(line)
        return '\n'.join(out)

    def sasl_text(self, text: str) -> str:
        out = []
        for line in text.split('\n'):
            stripped = line.strip()
            if stripped and not stripped.startswith('#'):
                parts = re.split(r'(\s+)', stripped, maxsplit=1)
                if len(parts) == 3 and parts[2]:
                    cred = parts[2]
                    if ':' in cred:
                        user, secret = cred.split(':', 1)
                        cred = '%s:%s' % (user, self.token(secret, 'password'))
                    else:
                        cred = self.token(cred, 'password')
                    line = parts[0] + parts[1] + cred
            out.append(line)
        return '\n'.join(out)

    def apply(self, kind, text: str) -> str:
        if kind == 'hash':
            return self.hash_text(text)
        if kind == 'sasl':
            return self.sasl_text(text)
        return text


# -- the transaction -----------------------------------------------------------


class _Staged:
    __slots__ = ('relpath', 'before', 'after', 'mode', 'force_mode', 'mask', 'diff_before', 'diff_after', 'owner')

    def __init__(self, relpath, before, after, mode, force_mode, mask, diff_before=None, diff_after=None,
                 owner=None):
        self.relpath = relpath
        self.before = before          # str or None (absent)
        self.after = after            # str or None (remove)
        self.mode = mode
        self.force_mode = force_mode
        self.mask = mask
        self.diff_before = diff_before
        self.diff_after = diff_after
        self.owner = owner            # (uid, gid) to give the written file (None in either = default)


def _read_text(path):
    with open(path, 'rb') as handle:
        return handle.read().decode('utf-8', 'surrogateescape')


class ConfigDir:
    """A locked view of one DMS config directory (see the module docstring)."""

    def __init__(self, path, lock_timeout=30, backup=False, check_mode=False, backup_func=None):
        if not path or not os.path.isabs(path):
            raise ConfigDirError('config_dir: %r must be an absolute path' % (path,))
        self.path = os.path.normpath(path)
        self.lock_timeout = lock_timeout
        self.backup = backup
        self.check_mode = check_mode
        self._backup_func = backup_func
        self._lock_fd = None
        self._tables = {}
        self._staged = {}
        self._texts = {}
        self._cleaned_dirs = set()
        self._created_dirs = []
        self.exists = os.path.isdir(self.path)
        if os.path.exists(self.path) and not self.exists:
            raise ConfigDirError('config_dir: %r exists but is not a directory' % self.path)

    # context management

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()
        return False

    def lock(self):
        if not self.exists:
            if self.check_mode:
                return  # nothing to read, nothing will be written
            try:
                os.makedirs(self.path, 0o755)
            except OSError as exc:
                raise ConfigDirError('config_dir: cannot create %r: %s' % (self.path, exc.strerror))
            self.exists = True
        lock_path = os.path.join(self.path, LOCK_NAME)
        if self.check_mode:
            # Check mode writes nothing, not even a lock file: lock only if one is there.
            if not os.path.exists(lock_path):
                return
            flags, mode = os.O_RDONLY, fcntl.LOCK_SH
        else:
            flags, mode = os.O_RDWR | os.O_CREAT, fcntl.LOCK_EX
        try:
            fd = os.open(lock_path, flags | getattr(os, 'O_CLOEXEC', 0), 0o600)
        except OSError as exc:
            raise ConfigDirError('config_dir: cannot open the lock file %r: %s' % (lock_path, exc.strerror))
        deadline = time.monotonic() + max(0, self.lock_timeout)
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ConfigDirError(
                        'lock_timeout: could not lock %r within %s seconds: another run is changing this '
                        'config dir; try again or raise lock_timeout' % (lock_path, self.lock_timeout))
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        self._lock_fd = fd
        _LOCKED.add(self)
        if not self.check_mode:
            self._clean_stale_temp_files()

    def unlock(self):
        _LOCKED.discard(self)
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _clean_stale_temp_files(self):
        """Remove the temp files of killed runs from config_dir and the directories below it where modules
        write (TMP_CLEAN_DEPTH levels; symlinked directories are not followed).  Called under the exclusive
        lock, when no other run can have a temp file in the making."""
        root = os.path.realpath(self.path)
        for dirpath, dirnames, dummy in os.walk(root, onerror=lambda exc: None):
            depth = 0 if dirpath == root else os.path.relpath(dirpath, root).count(os.sep) + 1
            if depth >= TMP_CLEAN_DEPTH:
                dirnames[:] = []
            self._clean_temp_files(dirpath)
            self._cleaned_dirs.add(dirpath)

    @staticmethod
    def _clean_temp_files(directory):
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if name.startswith('.') and name.endswith(TMP_SUFFIX):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass

    # paths

    def abspath(self, relpath):
        return os.path.join(self.path, relpath)

    def _resolve(self, relpath):
        """The real path to read and write for ``relpath``; refuses anything outside config_dir."""
        path = self.abspath(relpath)
        real_root = os.path.realpath(self.path)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise ConfigDirError('%s: %r resolves to %r, outside config_dir %r; refusing to follow the link'
                                 % (relpath, path, real, self.path))
        return real

    # reading

    def read(self, relpath):
        """The current text of a file (None when absent), as read under the lock."""
        if relpath in self._texts:
            return self._texts[relpath]
        text = None
        if self.exists:
            real = self._resolve(relpath)
            if os.path.isdir(real):
                raise ConfigDirError('%s: %r is a directory, expected a file' % (relpath, real))
            try:
                text = _read_text(real)
            except FileNotFoundError:
                text = None
            except OSError as exc:
                raise ConfigDirError('%s: cannot read %r: %s' % (relpath, real, exc.strerror))
        self._texts[relpath] = text
        return text

    def table(self, name):
        """The :class:`Table` of a managed file (see FILES), read once per run."""
        if name not in self._tables:
            spec = FILES[name]
            self._tables[name] = Table(self.read(spec.relpath) or '', spec.parser, spec.fold_case)
        return self._tables[name]

    # staging

    def stage(self, relpath, text, mode=0o644, force_mode=False, mask=None, diff_before=None, diff_after=None,
              owner=None):
        """Set the desired content of a file (None = remove it). Returns True if that is a change.

        ``owner`` is an optional ``(uid, gid)`` for the written file (either may
        be None); by default an existing file keeps its owner and a new one
        gets the owner of config_dir.  Owners are only set when running as root.
        """
        before = self.read(relpath)
        if before == text:
            self._staged.pop(relpath, None)
            return False
        self._staged[relpath] = _Staged(relpath, before, text, mode, force_mode, mask, diff_before, diff_after,
                                        owner)
        return True

    def _stage_tables(self):
        for name, table in self._tables.items():
            spec = FILES[name]
            if not table.changed:
                continue
            text = table.render()
            before = self.read(spec.relpath)
            if before is None and not text:
                continue  # never create an empty file just because a table was touched
            self.stage(spec.relpath, text, spec.mode, spec.force_mode, spec.mask)

    def mode_fix_needed(self, relpath, mode):
        """True when an existing file's mode differs from a forced mode (e.g. the SASL file's 0600)."""
        if not self.exists:
            return False
        try:
            st = os.stat(self._resolve(relpath))
        except FileNotFoundError:
            return False
        return stat.S_IMODE(st.st_mode) != mode

    def owner_fix_needed(self, relpath, owner):
        """True when an existing file's (uid, gid) differs from ``owner`` (None in either = any)."""
        if not self.exists:
            return False
        try:
            st = os.stat(self._resolve(relpath))
        except FileNotFoundError:
            return False
        uid, gid = owner
        return (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid)

    def changed_files(self):
        self._stage_tables()
        return sorted(self._staged)

    # diff

    def diff(self):
        """Ansible diff list for everything staged, secrets masked."""
        self._stage_tables()
        masker = Masker()
        diffs = []
        for relpath in sorted(self._staged):
            st = self._staged[relpath]
            before = st.diff_before if st.diff_before is not None else (st.before or '')
            after = st.diff_after if st.diff_after is not None else (st.after or '')
            diffs.append({
                'before_header': relpath if st.before is not None else '%s (absent)' % relpath,
                'after_header': relpath if st.after is not None else '%s (absent)' % relpath,
                'before': masker.apply(st.mask, before),
                'after': masker.apply(st.mask, after),
            })
        return diffs

    # writing

    def commit(self, extra_mode_fixes=(), extra_owner_fixes=()):
        """Write everything staged (unless check mode). Returns (changed_relpaths, backup_files).

        ``extra_mode_fixes`` / ``extra_owner_fixes`` are ``(relpath, mode)`` /
        ``(relpath, (uid, gid))`` pairs for existing files whose content stays
        but whose mode / owner must be corrected (owners only as root).

        All new contents are first written to temp files; only when every one
        of them is complete (a full disk fails here) are backups taken and the
        temp files renamed over their targets.
        """
        self._stage_tables()
        changed = sorted(self._staged)
        backups = []
        mode_fixes = [rp for rp, mode in extra_mode_fixes if self.mode_fix_needed(rp, mode)]
        owner_fixes = [rp for rp, owner in extra_owner_fixes
                       if rp not in self._staged and self.owner_fix_needed(rp, owner)]
        if self.check_mode:
            return sorted(set(changed) | set(mode_fixes) | set(owner_fixes)), backups
        prepared = []
        # Files DMS's change detector watches are renamed last: when it sees one change, the other files of the
        # run (a user's Sieve script that the account rebuild copies, for example) are already in place.
        watched = set(spec.relpath for spec in FILES.values() if spec.hot_reload)
        try:
            for relpath in sorted(changed, key=lambda rp: (rp in watched, rp)):
                staged = self._staged[relpath]
                real = self._resolve(relpath)
                tmp = None
                if staged.after is not None:
                    tmp = self._write_temp(real, staged.after, staged.mode, staged.force_mode, staged.owner)
                prepared.append((real, tmp))
            if self.backup:
                for real, dummy in prepared:
                    if os.path.isfile(real):
                        backups.append(self._backup(real))
        except (OSError, ConfigDirError) as exc:
            for dummy, tmp in prepared:
                if tmp:
                    _unlink_quietly(tmp)
            for path in backups:
                _unlink_quietly(path)
            for path in reversed(self._created_dirs):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            self._created_dirs = []
            if isinstance(exc, ConfigDirError):
                raise
            raise ConfigDirError('writing the config dir failed (%s); every file is unchanged'
                                 % (exc.strerror or exc))
        directories = set()
        for real, tmp in prepared:
            if tmp is None:
                if os.path.lexists(real):
                    os.unlink(real)
            else:
                os.rename(tmp, real)
            directories.add(os.path.dirname(real))
        for directory in directories:
            _fsync_dir(directory)
        for relpath, mode in extra_mode_fixes:
            if relpath in mode_fixes:
                os.chmod(self._resolve(relpath), mode)
        for relpath, (uid, gid) in extra_owner_fixes:
            if relpath in owner_fixes and os.geteuid() == 0:
                os.chown(self._resolve(relpath), -1 if uid is None else uid, -1 if gid is None else gid)
        return sorted(set(changed) | set(mode_fixes) | set(owner_fixes)), backups

    def _backup(self, real):
        """A copy of ``real`` named ``<file>.<pid>.<timestamp>~`` (Ansible's backup naming), with its mode,
        times and owner.

        The copy is made in a temp file and renamed to its name when complete, so a full disk or a kill never
        leaves a partial copy under a backup's name (and the next run removes the temp file).  Raises OSError.
        """
        if self._backup_func is not None:
            return self._backup_func(real)
        dest = '%s.%s.%s~' % (real, os.getpid(), time.strftime('%Y-%m-%d@%H:%M:%S'))
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(real), suffix=TMP_SUFFIX,
                                   dir=os.path.dirname(real))
        try:
            with os.fdopen(fd, 'wb') as handle:
                with open(real, 'rb') as source:
                    shutil.copyfileobj(source, handle)
                handle.flush()
                os.fsync(handle.fileno())
            shutil.copystat(real, tmp)
            if os.geteuid() == 0:
                st = os.stat(real)
                os.chown(tmp, st.st_uid, st.st_gid)
            os.rename(tmp, dest)
        except OSError:
            _unlink_quietly(tmp)
            raise
        return dest

    def _write_temp(self, real, text, mode, force_mode, owner=None):
        """A complete, fsynced temp file beside ``real`` with the final owner and mode."""
        directory = os.path.dirname(real)
        if not os.path.isdir(directory):
            self._make_dirs(directory)
        if directory not in self._cleaned_dirs:
            # Leftovers of a killed run; ours of this commit are created after this.
            self._clean_temp_files(directory)
            self._cleaned_dirs.add(directory)
        try:
            st = os.stat(real)
            if not force_mode:
                mode = stat.S_IMODE(st.st_mode)
            uid, gid = st.st_uid, st.st_gid
        except FileNotFoundError:
            st_dir = os.stat(self.path)
            uid, gid = st_dir.st_uid, st_dir.st_gid
        if owner is not None:
            uid = uid if owner[0] is None else owner[0]
            gid = gid if owner[1] is None else owner[1]
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(real), suffix=TMP_SUFFIX, dir=directory)
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(text.encode('utf-8', 'surrogateescape'))
                handle.flush()
                os.fsync(handle.fileno())
            if os.geteuid() == 0:
                os.chown(tmp, uid, gid)
            os.chmod(tmp, mode)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise ConfigDirError('%s: writing failed (%s); every file is unchanged'
                                 % (real, exc.strerror or exc))
        return tmp

    def _make_dirs(self, directory):
        """Create ``directory`` and its missing parents (0755, owned like config_dir when root), remembering
        them so that a commit that fails removes them again."""
        missing = []
        path = directory
        while not os.path.isdir(path) and os.path.dirname(path) != path:
            missing.append(path)
            path = os.path.dirname(path)
        for path in reversed(missing):
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                continue
            self._created_dirs.append(path)
            self._chown_like_root(path)

    def _chown_like_root(self, directory):
        if os.geteuid() == 0:
            st = os.stat(self.path)
            os.chown(directory, st.st_uid, st.st_gid)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
