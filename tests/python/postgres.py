"""A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries, `initdb` and
`pg_ctl` run as the `postgres` user (when the tests run as root) in a temporary folder, on a
free loopback port. Missing binaries fail the test with what to install."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time


def _bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path:
        return path
    raise RuntimeError(f"{name} not found: install Debian's `postgresql` package (CI's .ci/run does)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """Started by the constructor; `url` names the `pier` database; `stop()` removes it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pier-pg-")
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        data = os.path.join(self.dir, "data")
        self._run([_bin("initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        self._run([_bin("pg_ctl"), "-D", data, "-l", os.path.join(self.dir, "log"), "-w", "-t", "60",
                   "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off", "start"])
        self.data = data
        self._run([_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "pier"])
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/pier"

    def connection(self):
        """psql's arguments for the `pier` database."""
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "pier"]

    def _run(self, cmd):
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}")

    def stop(self):
        try:
            self._run([_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class RowLock:
    """Holds a row of a table locked (`SELECT ... FOR UPDATE` in an open transaction of its
    own `psql`) until `release()`: writers of that row wait meanwhile, and readers do not, so
    several servers can be made to read a record and then all write it at once."""

    def __init__(self, pg, table, name):
        self.pg = pg
        self.proc = subprocess.Popen(
            [_bin("psql"), *pg.connection(), "-q", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write(f"BEGIN;\nSELECT name FROM {table} WHERE name = '{name}' FOR UPDATE;\n"
                              "\\echo locked\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.strip() == "locked":
                return
        raise RuntimeError(f"psql could not lock {table}/{name}: {self.proc.stderr.read()}")

    def waiting_writers(self, statement_prefix):
        """How many sessions wait on a lock in a statement that starts with the prefix."""
        done = subprocess.run(
            [_bin("psql"), *self.pg.connection(), "-At", "-c",
             "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
             f"AND query LIKE '{statement_prefix}%'"],
            capture_output=True, text=True, timeout=30, check=True)
        return int(done.stdout.strip())

    def release(self):
        self.proc.communicate("COMMIT;\n", timeout=30)


def wait_for(predicate, timeout, what):
    """Polls `predicate` every 20 ms until it is true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout} s")
