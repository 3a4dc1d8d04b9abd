"""Local PostgreSQL + TimescaleDB: a private cluster on its own loopback port.

TimescaleDB comes from Debian: the binary `postgresql-NN-timescaledb` where the
running release has it, otherwise Debian's source package `timescaledb` from
the trixie suite (private apt sources list, nothing added to the system's),
built with cmake against the local `pg_config` (Apache-licensed edition).
PostgreSQL refuses to run as root, so under root the cluster belongs to the
`postgres` system user.

The cluster's bootstrap superuser is the admin role (MIMETIC_PG_ADMIN_USER, password
in $MIMETIC_HOME/secrets/pg-admin-password); the owner role and the service logins
are made by `mimetic.db.admin` on every start, which also converts older clusters
whose owner was the superuser. Data, logs and sockets are readable by their owner
only (0700 directories, 0600 files).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mimetic.config import PRIVATE_DIR_MODE, Settings, private_dirs
from mimetic.db.admin import prepare_database, secret_file
from mimetic.stack.procs import StackError, pid_alive, port_open, run, wait_until

TRIXIE_SOURCES = (
    "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    "http://deb.debian.org/debian trixie main\n"
)


@dataclass(frozen=True)
class PgPaths:
    bin: Path
    data: Path
    sock: Path
    log_file: Path
    password_file: Path
    admin_password_file: Path

    @classmethod
    def of(cls, s: Settings) -> "PgPaths":
        return cls(
            bin=pg_bin(s),
            data=s.data_dir / "pg",
            sock=s.run_dir / "pg",
            log_file=s.run_dir / "pg" / "postgres.log",
            password_file=s.secrets_dir / "pg-password",
            admin_password_file=s.secrets_dir / "pg-admin-password",
        )


def pg_bin(s: Settings) -> Path:
    if s.pg_bin is not None:
        return s.pg_bin
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise StackError("no PostgreSQL server found: apt-get install postgresql (or set MIMETIC_PG_BIN)")
    return found[-1]


def major_version(s: Settings) -> str:
    return pg_bin(s).parent.name


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL will not run as root: hand the command to the postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def stack_dir_mode() -> int:
    """Mode of home, run/ and data/: 0700, but 0711 under root, where the `postgres` user
    must pass through them (to its own data/pg and run/pg) without listing them."""
    return 0o711 if os.geteuid() == 0 else PRIVATE_DIR_MODE


def _chown_owner(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


# --- TimescaleDB installation ------------------------------------------------


def _pg_config(s: Settings, flag: str) -> str:
    return run([str(pg_bin(s) / "pg_config"), flag], "pg_config").stdout.strip()


def timescaledb_installed(s: Settings) -> bool:
    pkglib = Path(_pg_config(s, "--pkglibdir"))
    share = Path(_pg_config(s, "--sharedir"))
    return (pkglib / "timescaledb.so").exists() and (share / "extension" / "timescaledb.control").exists()


def _apt(args: list[str], what: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", *args], what, env=env)


def _apt_has_candidate(package: str) -> bool:
    proc = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    m = re.search(r"Candidate:\s*(\S+)", proc.stdout)
    return bool(m and m.group(1) != "(none)")


def ensure_timescaledb(s: Settings) -> str:
    """Install TimescaleDB for the local PostgreSQL if it is missing."""
    if timescaledb_installed(s):
        return "timescaledb: installed"
    if os.geteuid() != 0:
        raise StackError(
            "TimescaleDB is not installed for this PostgreSQL and installing it needs root: "
            "run `sudo mimetic stack up` once (or install postgresql-NN-timescaledb)"
        )
    major = major_version(s)
    print("timescaledb: not installed; apt-get update ...", flush=True)
    _apt(["update", "-qq"], "apt-get update")
    binary = f"postgresql-{major}-timescaledb"
    if _apt_has_candidate(binary):
        print(f"timescaledb: installing Debian package {binary} ...", flush=True)
        _apt(["install", "-y", "-qq", binary], f"apt-get install {binary}")
    else:
        _build_timescaledb_from_debian_source(s, major)
    if not timescaledb_installed(s):
        raise StackError("timescaledb: installation finished but the extension files are missing")
    return "timescaledb: installed now"


def _build_timescaledb_from_debian_source(s: Settings, major: str) -> None:
    print(f"timescaledb: no binary package for PostgreSQL {major} here; building Debian's "
          "source package (trixie) ...", flush=True)
    _apt(["install", "-y", "-qq", f"postgresql-server-dev-{major}", "cmake", "gcc", "make",
          "libssl-dev", "xz-utils", "dpkg-dev"], "apt-get install build dependencies")
    work = s.cache_dir / "timescaledb-src"
    lists = work / "apt-lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    sources = work / "sources.list"
    sources.write_text(TRIXIE_SOURCES)
    opts = [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={lists}",
    ]
    _apt([*opts, "update", "-qq"], "apt-get update (private trixie deb-src list)")
    dl = work / "download"
    shutil.rmtree(dl, ignore_errors=True)
    dl.mkdir()
    run(["apt-get", *opts, "source", "--download-only", "timescaledb"],
        "apt-get source --download-only timescaledb", cwd=dl)
    orig = sorted(dl.glob("timescaledb_*.orig.tar.*"))
    if not orig:
        raise StackError(f"timescaledb: no orig tarball downloaded into {dl}")
    build_root = work / "build"
    shutil.rmtree(build_root, ignore_errors=True)
    build_root.mkdir()
    run(["tar", "xf", str(orig[-1]), "-C", str(build_root)], "unpack timescaledb source")
    src = next(p for p in build_root.iterdir() if p.is_dir())
    print(f"timescaledb: building {src.name} (Apache edition) ...", flush=True)
    run(["./bootstrap", "-DAPACHE_ONLY=1", "-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF",
         "-DWARNINGS_AS_ERRORS=OFF", f"-DPG_CONFIG={pg_bin(s) / 'pg_config'}"],
        "timescaledb bootstrap (cmake)", cwd=src)
    run(["make", "-j", str(os.cpu_count() or 2)], "timescaledb make", cwd=src / "build")
    run(["make", "install"], "timescaledb make install", cwd=src / "build")


# --- cluster lifecycle -------------------------------------------------------


def _server_conf(s: Settings, p: PgPaths) -> str:
    return "\n".join(
        [
            "# generated by `mimetic stack up`; edit mimetic/stack/postgres.py instead",
            f"listen_addresses = '{s.pg_host}'",
            f"port = {s.pg_port}",
            f"unix_socket_directories = '{p.sock}'",
            "shared_preload_libraries = 'timescaledb'",
            "timescaledb.telemetry_level = off",
            "max_connections = 200",
            "shared_buffers = 256MB",
            "work_mem = 16MB",
            "maintenance_work_mem = 128MB",
            "max_locks_per_transaction = 256",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
            "log_min_messages = warning",
            "log_line_prefix = '%m [%p] %u@%d '",
            # durability is part of the product's promise: keep fsync and synchronous commit on
            "fsync = on",
            "synchronous_commit = on",
            *_tls_conf(s, p),
            "",
        ]
    )


def _tls_conf(s: Settings, p: PgPaths) -> list[str]:
    """ssl = on with the configured server certificate (copied into the data directory, owned by the
    server, key mode 0600 as PostgreSQL requires), else ssl = off."""
    if s.pg_server_tls_cert is None or s.pg_server_tls_key is None:
        return ["ssl = off"]
    for src, name, mode in ((s.pg_server_tls_cert, "server.crt", 0o644), (s.pg_server_tls_key, "server.key", 0o600)):
        dst = p.data / name
        dst.unlink(missing_ok=True)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Path(src).read_bytes())
        _chown_owner(dst)
    return ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'",
            "ssl_min_protocol_version = 'TLSv1.2'"]


def init_cluster(s: Settings, p: PgPaths) -> bool:
    """initdb once; returns True when a new cluster was created."""
    if (p.data / "PG_VERSION").exists():
        return False
    for d in (s.home, s.data_dir, s.run_dir):
        private_dirs(d, stack_dir_mode())
    secret_file(p.password_file)
    admin_password = s.pg_admin_password or secret_file(p.admin_password_file)
    for d in (p.data, p.sock):
        d.mkdir(mode=0o700, exist_ok=True)
        _chown_owner(d)
        os.chmod(d, 0o700)
    fd = os.open(p.sock / "initdb.pw", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(admin_password + "\n")
    pwfile = p.sock / "initdb.pw"
    _chown_owner(pwfile)
    try:
        run(
            _as_owner([str(p.bin / "initdb"), "-D", str(p.data), "-U", s.pg_admin_user, f"--pwfile={pwfile}",
                       "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                       "--locale=C.UTF-8"]),
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    conf = p.data / "mimetic.conf"
    conf.write_text(_server_conf(s, p))
    _chown_owner(conf)
    with open(p.data / "postgresql.conf", "a") as fh:
        fh.write("\ninclude 'mimetic.conf'\n")
    return True


def running_pid(p: PgPaths) -> int | None:
    try:
        pid = int((p.data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def _can_connect(s: Settings) -> bool:
    """The server accepts connections (pg_isready: no login needed)."""
    proc = subprocess.run([str(pg_bin(s) / "pg_isready"), "-q", "-h", s.pg_host, "-p", str(s.pg_port),
                           "-t", "3"], capture_output=True)
    return proc.returncode == 0


def restrict_files(p: PgPaths) -> None:
    """Data directory, socket/log directory and log: the server's user only."""
    for d in (p.data, p.sock):
        if d.exists():
            os.chmod(d, 0o700)
    if p.log_file.exists():
        os.chmod(p.log_file, 0o600)


def start(s: Settings) -> str:
    p = PgPaths.of(s)
    created = init_cluster(s, p)
    # the generated settings follow the current configuration on every start
    conf = p.data / "mimetic.conf"
    conf.write_text(_server_conf(s, p))
    conf.chmod(0o600)
    _chown_owner(conf)
    private_dirs(p.sock.parent, stack_dir_mode())
    p.sock.mkdir(mode=0o700, exist_ok=True)
    _chown_owner(p.sock)
    pid = running_pid(p)
    if pid is not None:
        wait_until(lambda: _can_connect(s), 60, "the running PostgreSQL to accept connections")
        msg = f"postgres: already running (pid {pid})"
    else:
        if port_open(s.pg_host, s.pg_port):
            raise StackError(
                f"postgres: {s.pg_host}:{s.pg_port} is taken by a server this stack did not start; "
                "stop it or set MIMETIC_PG_PORT to a free port"
            )
        if not p.log_file.exists():
            p.log_file.touch(mode=0o600)
        _chown_owner(p.log_file)
        restrict_files(p)
        run(_as_owner([str(p.bin / "pg_ctl"), "-D", str(p.data), "-l", str(p.log_file), "-w", "-t", "90",
                       "start"]), f"pg_ctl start (see {p.log_file})")
        wait_until(lambda: _can_connect(s), 60, f"PostgreSQL on {s.pg_host}:{s.pg_port}")
        msg = f"postgres: started (pid {running_pid(p)}) on {s.pg_host}:{s.pg_port}"
    restrict_files(p)
    prepare_database(s)
    return msg + (" [new cluster]" if created else "")


def stop(s: Settings) -> str:
    p = PgPaths.of(s)
    pid = running_pid(p)
    if pid is None:
        return "postgres: not running"
    run(_as_owner([str(p.bin / "pg_ctl"), "-D", str(p.data), "-m", "fast", "-w", "-t", "60", "stop"]),
        "pg_ctl stop")
    wait_until(lambda: not pid_alive(pid), 30, f"postgres pid {pid} to exit")
    return f"postgres: stopped (pid {pid})"


def status(s: Settings) -> dict:
    p = PgPaths.of(s)
    pid = running_pid(p)
    info = {
        "service": "postgres",
        "version": None,
        "timescaledb": None,
        "address": f"{s.pg_host}:{s.pg_port}",
        "pid": pid,
        "healthy": False,
    }
    if pid is None:
        return info
    try:
        import psycopg

        with psycopg.connect(s.db_dsn(), connect_timeout=3) as conn:
            info["version"] = conn.execute("show server_version").fetchone()[0]
            row = conn.execute(
                "select coalesce((select extversion from pg_extension where extname = 'timescaledb'),"
                " (select default_version || ' (available, not created)' from pg_available_extensions"
                "  where name = 'timescaledb'))"
            ).fetchone()
            info["timescaledb"] = row[0]
            info["healthy"] = row[0] is not None
    except Exception as exc:  # report, don't crash `status`
        info["error"] = str(exc).splitlines()[0]
    return info


def wipe(s: Settings) -> None:
    shutil.rmtree(PgPaths.of(s).data, ignore_errors=True)
