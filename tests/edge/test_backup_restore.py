"""The users.db backup and restore of the Kubernetes manifests, run for real.

The backup CronJob's own script, taken from ``kubectl kustomize k8s-manifests/overlays/local``,
runs with sh and Debian's sqlite3 as the job's user (10001) against the data folder of two running
user-service processes sharing one users.db (the two replicas on one node, as in Kubernetes),
bind-mounted read-only as the job mounts it (a mount namespace of its own: ``unshare --mount``),
while registrations through both keep writing to that database. The restore Job's own
script (k8s-manifests/base/user-service-restore-job.yaml, the procedure of docs/deploy.md
"Backups") then restores that backup, from a read-only mount of the backup folder:

* into a new data folder: a second user-service started on it lets every user registered before
  the backup log in through auth-service, knows none registered after it, takes new
  registrations, and its database passes ``PRAGMA integrity_check``;
* over the live folder while a user-service still runs on it: refused, nothing touched;
* over that folder once both have stopped, the backup named by BACKUP_FILE (the documented
  procedure: scale to zero, restore, scale back): the replaced database is set aside whole, and
  a user-service started on the folder serves the backup's users.

The database is first grown to ~150,000 users (rows written beside the running service) so the
copy takes long enough for registrations to land while it runs; the test checks they did.

Lives in the edge suite for its harness: real processes from the build folder. Needs root (a
mount namespace and bind mounts), util-linux's ``unshare`` and ``setpriv``, ``sqlite3``, and
kubectl with Kustomize 5 (on PATH, or the one scripts/validate-deploy.sh installs).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, json_request, reachable_directory, refused_url

JOB_UID = 10001
RESTORE_JOB = REPO / "k8s-manifests" / "base" / "user-service-restore-job.yaml"
SEED_USERS = 150_000
BEFORE_USERS = 20
WRITERS = 3

# Runs a job script as Kubernetes would mount its volumes: each "SOURCE=TARGET[:ro]" argument is
# bind-mounted (read-only when asked) in a mount namespace of its own, then the script runs as
# the job's user. A read-only mount that can be written fails the run (exit 97): the test would
# otherwise prove nothing about read-only access.
MOUNT_AND_RUN = r"""
set -eu
uid="$1"; script="$2"; shift 2
for spec in "$@"; do
  source="${spec%%=*}"; rest="${spec#*=}"; target="${rest%:ro}"
  mount --bind "$source" "$target"
  if [ "$rest" != "$target" ]; then
    mount -o remount,ro,bind "$target"
    if touch "$target/.write-probe" 2>/dev/null; then
      echo "$target is writable after a read-only remount" >&2
      exit 97
    fi
  fi
done
if [ "$uid" = 0 ]; then exec sh "$script"; fi
exec setpriv --reuid "$uid" --regid "$uid" --clear-groups sh "$script"
"""


def kubectl() -> str:
    for candidate in (shutil.which("kubectl"), str(Path(os.environ.get("VENV_DIR", REPO / ".venv-deploy")) / "kubectl" / "bin" / "kubectl")):
        if candidate and os.access(candidate, os.X_OK):
            version = subprocess.run([candidate, "version", "--client"], capture_output=True, text=True)
            if "Kustomize Version: v5" in version.stdout:
                return candidate
    pytest.fail("no kubectl with Kustomize 5 (on PATH or in .venv-deploy/kubectl: run scripts/validate-deploy.sh)", pytrace=False)


def job_container(job: dict) -> tuple[dict, dict]:
    spec = job["spec"]["jobTemplate"]["spec"] if job["kind"] == "CronJob" else job["spec"]
    pod = spec["template"]["spec"]
    return pod, pod["containers"][0]


def mount_for(pod: dict, container: dict, path: str) -> dict:
    """The volume mount of `container` that holds `path` (the deepest one)."""
    mounts = [m for m in container["volumeMounts"] if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, f"nothing of {container['name']} is mounted at {path}"
    return max(mounts, key=lambda m: len(m["mountPath"]))


class JobScript:
    """A job's shell script and environment, with its volume paths mapped to local folders."""

    def __init__(self, job: dict, work: Path, name: str):
        self.pod, self.container = job_container(job)
        self.env = {e["name"]: e.get("value", "") for e in self.container.get("env", [])}
        self.path = work / f"{name}.sh"
        self.path.write_text("\n".join(self.container["args"]))
        self.work = work

    def mount(self, variable: str) -> dict:
        return mount_for(self.pod, self.container, self.env[variable])

    def run(self, mounts: dict[str, tuple[Path, Path]], *, uid: int = JOB_UID, extra_env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """mounts: job variable → (local source folder, local mount point); the variable's value
        is rewritten to the same path under the mount point, read-only where the job's is."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        specs = []
        for variable, (source, target) in mounts.items():
            mount = self.mount(variable)
            relative = os.path.relpath(self.env[variable], mount["mountPath"])
            env[variable] = str(target / relative) if relative != "." else str(target)
            specs.append(f"{source}={target}" + (":ro" if mount.get("readOnly") else ""))
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_AND_RUN, "job",
                               str(uid), str(self.path), *specs], env=env, capture_output=True, text=True, timeout=timeout)


def usernames(db_path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in db.execute("SELECT username FROM users")}
    finally:
        db.close()


def integrity(db_path: Path) -> str:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def register(port: int, username: str) -> int:
    resp = json_request(port, "POST", "/api/users", {"username": username, "email": f"{username}@example.com",
                                                      "password": f"{username} password"}, timeout=20)
    return resp.status


def login(port: int, username: str, password: str | None = None) -> int:
    resp = json_request(port, "POST", "/api/auth/login",
                        {"username": username, "password": password or f"{username} password"}, timeout=20)
    return resp.status


@pytest.fixture
def work():
    if os.geteuid() != 0:
        pytest.fail("needs root: the backup is run through a read-only bind mount in a mount namespace", pytrace=False)
    for tool in ("unshare", "setpriv", "sqlite3", "mount"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed", pytrace=False)
    # Readable by the jobs' user all the way down.
    yield from reachable_directory("titanium-backup-")


def test_backup_of_a_live_database_through_a_read_only_mount_restores(fn_procs, work):
    rendered = subprocess.run([kubectl(), "kustomize", str(REPO / "k8s-manifests" / "overlays" / "local")],
                              capture_output=True, text=True, check=True).stdout
    crons = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "CronJob"]
    assert len(crons) == 1, f"expected the backup CronJob in the local overlay, found {len(crons)}"
    backup_job = JobScript(crons[0], work, "backup")
    restore_job = JobScript(yaml.safe_load(RESTORE_JOB.read_text()), work, "restore")
    assert backup_job.mount("DB_PATH").get("readOnly") is True, "the backup CronJob should mount users.db's volume read-only"
    assert restore_job.mount("BACKUP_DIR").get("readOnly") is True, "the restore Job should mount the backups read-only"
    assert "user-service-restore-job.yaml" in (REPO / "docs" / "deploy.md").read_text(), \
        "docs/deploy.md should give the restore procedure this test runs"

    folders = {name: work / name for name in ("data-a", "data-b", "traces-a", "traces-b", "traces-c", "traces-d", "backups", "mnt-data", "mnt-backups")}
    for folder in folders.values():
        folder.mkdir()
        folder.chmod(0o755)
    for name in ("backups", "data-b"):  # the jobs' volumes belong to their user (fsGroup)
        os.chown(folders[name], JOB_UID, JOB_UID)

    redis = f"redis://127.0.0.1:{fn_procs.start_redis()}"

    def user_service(data: str, traces: str, label: str):
        # TRACE_DB_PATH off the data folder, as in Kubernetes (one trace store per pod).
        return fn_procs.start("user-service", {
            "DATA_DIR": str(folders[data]), "USER_DB_PATH": str(folders[data] / "users.db"),
            "TRACE_DB_PATH": str(folders[traces] / "traces.db"), "REDIS_URL": redis, "BCRYPT_COST": "4",
            "JWKS_URL": refused_url(), "SHUTDOWN_DELAY_SECONDS": "0",
        }, label=label)

    replicas = [user_service("data-a", "traces-a", "users-live-1"), user_service("data-a", "traces-c", "users-live-2")]
    live_db = folders["data-a"] / "users.db"

    # A database of realistic size, so the copy takes a while: rows written beside the service.
    seed = sqlite3.connect(live_db, timeout=30)
    with seed:
        seed.executemany("INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                         ((f"seed{i}", f"seed{i}@example.com", "$2b$10$" + "x" * 53, 1_700_000_000) for i in range(SEED_USERS)))
    seed.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seed.close()

    before = [f"before{i}" for i in range(BEFORE_USERS)]
    for name in before:
        assert register(replicas[0].port, name) == 201, f"register {name}"

    # Registrations in a loop while the backup runs: (username, started, finished, status).
    done: list[tuple[str, float, float, int | str]] = []
    stop = threading.Event()

    def writer(number: int) -> None:
        n = 0
        while not stop.is_set():
            name = f"w{number}x{n}"
            started = time.monotonic()
            try:
                status: int | str = register(replicas[(number + n) % 2].port, name)
            except (OSError, AssertionError) as error:
                status = f"{type(error).__name__}: {error}"
            done.append((name, started, time.monotonic(), status))
            n += 1

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(done) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(done) >= 20, f"registrations are not flowing: {done[:5]}"
        backup_started = time.monotonic()
        backup = backup_job.run({"DB_PATH": (folders["data-a"], folders["mnt-data"]),
                                 "BACKUP_DIR": (folders["backups"], folders["backups"])})
        backup_ended = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert backup.returncode == 0, f"backup script failed ({backup.returncode}):\n{backup.stdout}\n{backup.stderr}"
    assert "backup written" in backup.stdout, backup.stdout
    failed = [d for d in done if d[3] != 201]
    assert not failed, f"registrations failed while the backup ran: {failed[:5]}"
    during = [d for d in done if backup_started < d[2] < backup_ended]
    assert during, (f"no registration finished during the backup ({backup_ended - backup_started:.3f} s): "
                    "it did not run against a database being written")
    copies = sorted(p.name for p in folders["backups"].iterdir())
    assert len(copies) == 1 and copies[0].startswith("users.db.20"), f"backup folder holds {copies}"
    copy = folders["backups"] / copies[0]
    assert integrity(copy) == "ok"
    in_copy = usernames(copy)
    finished_before = {d[0] for d in done if d[2] < backup_started}
    started_after = {d[0] for d in done if d[1] > backup_ended}
    assert set(before) | finished_before <= in_copy, \
        f"users registered before the backup are missing from it: {sorted((set(before) | finished_before) - in_copy)[:10]}"
    assert started_after and not started_after & in_copy, "users registered after the backup are in it (or none were)"
    assert sum(1 for name in in_copy if name.startswith("seed")) == SEED_USERS

    # Restore into a new folder, with the restore Job's script, from the read-only backups.
    restore = restore_job.run({"DB_PATH": (folders["data-b"], folders["mnt-data"]),
                               "BACKUP_DIR": (folders["backups"], folders["mnt-backups"])})
    assert restore.returncode == 0, f"restore script failed ({restore.returncode}):\n{restore.stdout}\n{restore.stderr}"
    restored_db = folders["data-b"] / "users.db"
    assert sorted(p.name for p in folders["data-b"].iterdir()) == ["users.db"], "only the restored users.db, no -wal or -shm"
    assert restored_db.stat().st_uid == JOB_UID

    restored = user_service("data-b", "traces-b", "users-restored")
    auth = fn_procs.start("auth-service", {"USER_SERVICE_URL": restored.url}, label="auth-restored")
    for name in before + sorted(finished_before)[:20]:
        assert login(auth.port, name) == 200, f"{name}, registered before the backup, cannot log in after the restore"
    assert login(auth.port, before[0], "not the password") == 401
    late = sorted(started_after)[0]
    assert login(auth.port, late) == 401, f"{late} was registered after the backup but is known after the restore"
    assert register(restored.port, "after-restore") == 201
    assert login(auth.port, "after-restore") == 200
    assert integrity(restored_db) == "ok"

    # Over the live folder while user-service runs on it: refused, and nothing is touched.
    live_files = {p.name: p.stat().st_ino for p in folders["data-a"].iterdir()}
    refused = restore_job.run({"DB_PATH": (folders["data-a"], folders["mnt-data"]),
                               "BACKUP_DIR": (folders["backups"], folders["mnt-backups"])}, uid=0)
    assert refused.returncode != 0 and "scale user-service to zero" in refused.stderr, \
        f"a restore over a database in use should be refused:\n{refused.stdout}\n{refused.stderr}"
    assert {p.name: p.stat().st_ino for p in folders["data-a"].iterdir()} == live_files
    assert register(replicas[1].port, "still-live") == 201

    # The documented procedure: the service stopped (scaled to zero), restore over its folder.
    for replica in replicas:
        replica.signal(15)
    for replica in replicas:
        assert replica.wait_exit(30) is not None, f"{replica.label} did not stop on SIGTERM"
    over = restore_job.run({"DB_PATH": (folders["data-a"], folders["mnt-data"]),
                            "BACKUP_DIR": (folders["backups"], folders["mnt-backups"])}, uid=0,
                           extra_env={"BACKUP_FILE": str(folders["mnt-backups"] / copy.name)})
    assert over.returncode == 0, f"restore over a stopped service's folder failed:\n{over.stdout}\n{over.stderr}"
    assert f"from {folders['mnt-backups'] / copy.name}" in over.stdout, over.stdout
    names = sorted(p.name for p in folders["data-a"].iterdir())
    # The old database is set aside with whatever -wal or -shm lay beside it (a -shm stays when a
    # stopped process left one: the script's exclusive-mode check never maps it, so never deletes
    # it); nothing stale lies beside the restored users.db.
    aside = [n for n in names if n.startswith("users.db.replaced-")]
    replaced = {n.removesuffix("-wal").removesuffix("-shm") for n in aside}
    assert len(replaced) == 1 and replaced <= set(aside) and "users.db" in names, names
    assert "users.db-wal" not in names and "users.db-shm" not in names, names
    assert {"still-live", late} <= usernames(folders["data-a"] / replaced.pop()), "the replaced database lost rows"
    back = user_service("data-a", "traces-d", "users-back")
    auth_back = fn_procs.start("auth-service", {"USER_SERVICE_URL": back.url}, label="auth-back")
    assert login(auth_back.port, before[-1]) == 200
    assert login(auth_back.port, "still-live") == 401
    assert integrity(folders["data-a"] / "users.db") == "ok"
