"""The service fixtures (tests/services.py) and CI's service start (scripts/start-services).

The rule under test: a test needing PostgreSQL or Redis that cannot reach it FAILS under
``CI=true`` and SKIPS with a visible reason elsewhere — checked in a separate pytest run whose
services point at a closed port.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import redis

from tests.conftest import free_port
from tests.services import (
    DATABASE_PREFIX,
    PostgresServer,
    delete_keys,
    run_async,
    with_database,
)

ROOT = Path(__file__).resolve().parents[1]

PROBE = '''
def test_needs_postgres(postgres_dsn):
    pass


def test_needs_redis(redis_url):
    pass
'''


def _probe_run(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    """pytest on two tests that need the services, both pointed at a port nothing listens on."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    closed = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src"),
                                            env.get("PYTHONPATH", "")]),
               WEBCHAT_TEST_POSTGRES=f"postgresql://postgres@127.0.0.1:{closed}/test",
               WEBCHAT_TEST_REDIS=f"redis://127.0.0.1:{closed}/0")
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "tests.services",
         "-p", "no:cacheprovider", "test_probe.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_without_ci_an_unreachable_service_skips_with_the_reason(tmp_path: Path) -> None:
    run = _probe_run(tmp_path, ci=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "2 skipped" in out, out
    assert "PostgreSQL not reachable at postgresql://postgres@127.0.0.1:" in out, out
    assert "start it with: pg_ctlcluster --skip-systemctl-redirect" in out, out
    assert "Redis not reachable at redis://127.0.0.1:" in out, out
    assert "start it with: redis-server --daemonize yes" in out, out


def test_under_ci_an_unreachable_service_fails(tmp_path: Path) -> None:
    run = _probe_run(tmp_path, ci=True)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "2 errors" in out and "skipped" not in out, out
    assert "PostgreSQL not reachable at" in out and "Redis not reachable at" in out, out
    assert "CI=true: a test needing PostgreSQL fails, never skips" in out, out


# ---- the fixtures against the real services -------------------------------------------------


async def _tables(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [row["tablename"] for row in rows]
    finally:
        await conn.close()


async def _databases(admin_dsn: str) -> set[str]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return {row["datname"] for row in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()


async def _drop_while_connected(postgres: PostgresServer, dsn: str) -> None:
    lingering = await asyncpg.connect(dsn)  # a pool a test forgot to close
    try:
        await asyncio.to_thread(postgres.drop_database, dsn)
    finally:
        await lingering.close()


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def test_postgres_dsn_is_an_empty_database_of_its_own(postgres_dsn: str,
                                                      postgres: PostgresServer) -> None:
    name = postgres_dsn.rsplit("/", 1)[1]
    assert name.startswith(f"{DATABASE_PREFIX}{os.getpid()}_")
    assert run_async(_tables(postgres_dsn)) == []
    run_async(_execute(postgres_dsn, "CREATE TABLE mine (id int)"))
    assert run_async(_tables(postgres_dsn)) == ["mine"]
    assert name in run_async(_databases(postgres.admin_dsn))


def test_databases_are_dropped_even_with_someone_connected(postgres: PostgresServer) -> None:
    dsn = postgres.create_database()
    name = dsn.rsplit("/", 1)[1]
    run_async(_drop_while_connected(postgres, dsn))
    assert name not in run_async(_databases(postgres.admin_dsn))


def test_a_database_cloned_from_a_template_has_its_tables(postgres: PostgresServer) -> None:
    with postgres.database() as template:
        run_async(_execute(template, "CREATE TABLE migrated (id int)"))
        with postgres.database(template=template.rsplit("/", 1)[1]) as clone:
            assert run_async(_tables(clone)) == ["migrated"]


def test_sweep_drops_only_databases_whose_run_is_gone(postgres: PostgresServer) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    left = f"{DATABASE_PREFIX}{finished.pid}_deadbeef"  # what a killed run leaves
    run_async(_execute(postgres.admin_dsn, f'CREATE DATABASE "{left}"'))
    ours = postgres.create_database()
    try:
        postgres.sweep()  # (a test run starting meanwhile may sweep it first: same outcome)
        names = run_async(_databases(postgres.admin_dsn))
        assert left not in names
        assert ours.rsplit("/", 1)[1] in names
    finally:
        postgres.drop_database(ours)
        postgres.drop_database(with_database(postgres.admin_dsn, left))


async def test_run_async_works_inside_a_running_loop_and_leaves_it_alone() -> None:
    async def answer() -> int:
        return 42

    loop = asyncio.get_running_loop()
    assert run_async(answer()) == 42  # asyncio.run here would refuse: a loop is running
    assert asyncio.get_running_loop() is loop
    assert asyncio.get_event_loop() is loop


def test_redis_prefix_is_unique_and_its_keys_are_deleted(redis_url: str,
                                                         redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    other = redis_prefix.replace("webchat-t-", "webchat-t-other-")
    try:
        assert redis_prefix.startswith("webchat-t-") and redis_prefix.endswith(":")
        client.set(f"{redis_prefix}a", "1")
        client.set(f"{redis_prefix}b:c", "2")
        client.set(f"{other}a", "3")
        assert delete_keys(redis_url, redis_prefix) == 2
        assert client.exists(f"{redis_prefix}a", f"{redis_prefix}b:c") == 0
        assert client.get(f"{other}a") == b"3"
    finally:
        client.delete(f"{other}a")
        client.close()


def test_a_prefix_with_glob_characters_deletes_only_its_own_keys(redis_url: str,
                                                                 redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    starred = f"{redis_prefix}*:"
    try:
        client.set(f"{starred}x", "1")
        client.set(f"{redis_prefix}plain", "2")
        assert delete_keys(redis_url, starred) == 1
        assert client.get(f"{redis_prefix}plain") == b"2"
    finally:
        client.close()


# ---- scripts/start-services -----------------------------------------------------------------

FAKE = '''#!/usr/bin/env bash
# A stand-in for {name}: records its arguments; its readiness is a file the test controls.
echo "{name} $*" >> "$FAKE_DIR/calls"
{body}
'''


def _fakes(tmp_path: Path, *, starts: bool) -> tuple[Path, dict[str, str]]:
    """pg_isready, pg_ctlcluster, redis-cli and redis-server stand-ins: the services are down;
    the start commands bring them up when ``starts``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    up = "touch \"$FAKE_DIR/$1.up\"" if starts else "true"
    bodies = {
        "pg_isready": '[ -e "$FAKE_DIR/postgres.up" ]',
        "pg_ctlcluster": up.replace("$1", "postgres"),
        "redis-cli": '[ -e "$FAKE_DIR/redis.up" ] && echo PONG',
        "redis-server": up.replace("$1", "redis"),
    }
    for name, body in bodies.items():
        path = bin_dir / name
        path.write_text(FAKE.format(name=name, body=body))
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "FAKE_DIR": str(tmp_path), "WEBCHAT_SERVICES_WAIT_S": "2"}
    return tmp_path / "calls", env


def test_start_services_starts_both_with_the_documented_commands(tmp_path: Path) -> None:
    calls, env = _fakes(tmp_path, starts=True)
    run = subprocess.run(["bash", str(ROOT / "scripts/start-services")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert "starting PostgreSQL" in run.stdout and "starting Redis" in run.stdout
    lines = calls.read_text().splitlines()
    versions = " ".join(sorted(os.listdir("/etc/postgresql"))) \
        if os.path.isdir("/etc/postgresql") else ""
    assert f"pg_ctlcluster --skip-systemctl-redirect {versions} main start" in lines
    assert ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save  '
            '--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log') in lines
    assert "pg_isready -q -h 127.0.0.1 -p 5432" in lines
    assert "redis-cli -h 127.0.0.1 ping" in lines


def test_start_services_leaves_running_services_alone(tmp_path: Path) -> None:
    calls, env = _fakes(tmp_path, starts=True)
    (tmp_path / "postgres.up").touch()
    (tmp_path / "redis.up").touch()
    run = subprocess.run(["bash", str(ROOT / "scripts/start-services")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    names = {line.split()[0] for line in calls.read_text().splitlines()}
    assert names == {"pg_isready", "redis-cli"}


def test_start_services_gives_up_on_a_service_that_never_answers(tmp_path: Path) -> None:
    _, env = _fakes(tmp_path, starts=False)
    run = subprocess.run(["bash", str(ROOT / "scripts/start-services")], env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert "PostgreSQL is not ready after 2 s" in run.stderr

