"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a temp folder, a free port on 127.0.0.1,
a generated password (scram-sha-256), a socket folder of its own; ``stop()`` shuts it down and deletes it.

As root (CI), initdb and postgres refuse to run: they run as the ``postgres`` system user (Debian's package
creates it). The binaries come from ``/usr/lib/postgresql/<N>/bin`` (Debian) or PATH; when there are none, a
clear error says to run scripts/setup.sh (which apt-installs ``postgresql``)."""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PostgresMissing(RuntimeError):
    pass


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresMissing("PostgreSQL server binaries (initdb, pg_ctl) not found: run `bash scripts/setup.sh` "
                          "(it installs Debian's postgresql package) or `apt-get install postgresql`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    user = "alwb"

    def __init__(self):
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="alwb-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.sock.mkdir()
        self.password = secrets.token_urlsafe(18)
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresMissing("running as root, but there is no 'postgres' user to run the server as: "
                                      "run `bash scripts/setup.sh` (apt-get install postgresql creates it)") from exc
            os.chmod(self.root, 0o755)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chown(self.sock, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=scram-sha-256",
                   f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-sync"])
        pwfile.unlink()
        self.start()

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _run(self, cmd: list[str]) -> None:
        out = subprocess.run(self._as + cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.sock} -c max_connections=200 -c shared_buffers=32MB"
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                   "-t", "120", "start"])

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, dbname: str = "postgres", *, password: bool = False, schema: str | None = None) -> str:
        auth = f"{self.user}:{self.password}" if password else self.user
        url = f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"
        if schema:
            url += f"?options=-csearch_path%3D{schema}"
        return url

    def admin(self):
        import psycopg
        return psycopg.connect(self.url(password=True), autocommit=True)

    def new_schema(self) -> str:
        name = "t_" + secrets.token_hex(6)
        with self.admin() as c:
            c.execute(f"CREATE SCHEMA {name}")
        return name

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

