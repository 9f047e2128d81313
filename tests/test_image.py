"""The image without a container engine: the Dockerfile's steps, replayed.

No container engine runs in CI, so the Dockerfile is read and its steps are
performed here: each stage gets a fresh virtualenv (its ``python`` and
``pip``) and a directory standing for its filesystem; ``COPY`` takes files
from a build context made with the rules of ``.dockerignore`` (or from an
earlier stage), ``RUN`` runs the command as written in the stage's working
directory. Then the runtime stage migrates a fresh database with
``python -m migrations`` and serves its ``CMD`` until gRPC health says
SERVING and a real call succeeds. A drift between the Dockerfile,
pyproject.toml and the code (a dependency missing at runtime, a codegen step
that needs a dev tool, a file the context leaves out) fails here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from migrations.roles import RoleNames, drop_roles
from services.core.auth import Role
from services.core.config import to_asyncpg_url
from tests.support import AUDIENCE, ISSUER, PAGE_TOKEN_SECRET, ROOT, Keys, admin_server_url, free_port

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# Commands that change the system rather than the stage's files: checked, not run.
SYSTEM_COMMANDS = ("groupadd", "useradd")


# --- .dockerignore, as Docker reads it ------------------------------------


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    source: str
    exception: bool


def _translate(pattern: str) -> re.Pattern[str]:
    """Docker's patterns: Go's filepath.Match plus ``**`` for any number of directories."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignore_rules(path: Path = DOCKERIGNORE) -> list[Rule]:
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append(Rule(_translate(pattern), pattern, exception))
    return rules


def ignored(relative: str, rules: list[Rule]) -> bool:
    """Docker: the last rule matching the path or one of its parent directories decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for rule in rules:
        if any(rule.pattern.match(c) for c in candidates):
            excluded = not rule.exception
    return excluded


def build_context(source: Path, dest: Path, rules: list[Rule]) -> list[str]:
    """Copies what Docker would send as the build context; returns the relative paths."""
    exceptions = [r.source for r in rules if r.exception]
    copied = []
    for folder, dirs, files in os.walk(source):
        base = Path(folder).relative_to(source)
        keep = []
        for name in dirs:
            relative = (base / name).as_posix()
            # An excluded folder is entered only if an exception could re-include something in it.
            if not ignored(relative, rules) or any(
                e.startswith(relative + "/") or e.startswith("*") for e in exceptions
            ):
                keep.append(name)
        dirs[:] = keep
        for name in files:
            relative = (base / name).as_posix()
            if not ignored(relative, rules):
                target = dest / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, target)
                copied.append(relative)
    return sorted(copied)


# --- the Dockerfile, replayed ----------------------------------------------


@dataclass
class Stage:
    name: str
    image: str
    root: Path  # stands for the stage's filesystem
    venv: Path
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    cmd: list[str] = field(default_factory=list)
    system_runs: list[str] = field(default_factory=list)

    def path(self, container_path: str) -> Path:
        absolute = container_path if container_path.startswith("/") else f"{self.workdir}/{container_path}"
        return self.root / os.path.normpath(absolute).lstrip("/")

    def environment(self) -> dict[str, str]:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DATABASE_URL")
            and not k.startswith("FLOWPILOT_")
        }
        mapped = {
            k: ":".join(str(self.path(part)) for part in v.split(":"))
            if v.startswith("/") and k != "PATH"
            else v
            for k, v in self.env.items()
        }
        return {**inherited, **mapped, "PATH": f"{self.venv / 'bin'}:{os.environ['PATH']}"}


def instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def parse_env(rest: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(rest))


def copy_into(sources: list[Path], dest: Path, into_folder: bool) -> None:
    for source in sources:
        assert source.exists(), f"COPY source missing: {source}"
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            target = dest / source.name if into_folder else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def replay(dockerfile: Path, context: Path, work: Path, log: list[str]) -> list[Stage]:
    stages: list[Stage] = []
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            index = len(stages)
            venv = work / f"venv-{index}"
            # Python 3.11's venv comes with pip and setuptools, as the python image does.
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            stages.append(Stage(name, words[0], work / f"stage-{index}", venv))
            continue
        stage = stages[-1]
        if keyword == "WORKDIR":
            stage.workdir = os.path.normpath(os.path.join(stage.workdir, rest))
            stage.path(".").mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            stage.env.update(parse_env(rest))
        elif keyword == "COPY":
            words = shlex.split(rest)
            origin = None
            while words[0].startswith("--"):
                flag, _, value = words.pop(0).partition("=")
                assert flag == "--from", f"COPY flag not replayed: {flag}"
                origin = next(s for s in stages if s.name == value)
            *sources, dest = words
            paths = [origin.path(s) if origin else context / s for s in sources]
            copy_into(paths, stage.path(dest), into_folder=dest.endswith("/") or len(paths) > 1)
        elif keyword == "RUN":
            if rest.split()[0] in SYSTEM_COMMANDS:
                stage.system_runs.append(rest)
                continue
            absolute = re.findall(r"(?<![\w.$-])/[\w.-]+", rest)
            assert not absolute, f"RUN uses absolute paths {absolute}: keep them relative to WORKDIR"
            started = time.monotonic()
            done = subprocess.run(
                ["/bin/sh", "-c", rest],
                cwd=stage.path("."),
                env=stage.environment(),
                capture_output=True,
                text=True,
                timeout=900,
            )
            log.append(f"{time.monotonic() - started:6.1f}s  [{stage.name}] RUN {rest}")
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        elif keyword == "USER":
            stage.user = rest
        elif keyword == "CMD":
            stage.cmd = json.loads(rest)
        elif keyword in ("EXPOSE", "LABEL", "ARG"):
            pass
        else:
            raise AssertionError(f"{keyword} is not replayed by this test: teach it")
    return stages


# --- checks ---------------------------------------------------------------


def test_build_context_is_an_allow_list(tmp_path: Path) -> None:
    rules = ignore_rules()
    for private in (
        ".venv/bin/python",
        ".dev/jwt-dev-private.pem",
        ".dev/pgdata/PG_VERSION",
        ".env",
        ".git/config",
        "tools/node/node_modules/.bin/buf",
        "tools/devstack.py",
        "gen/flowpilot/__init__.py",
        "build/pgtest/PG_VERSION",
        "tests/support.py",
        "services/__pycache__/x.pyc",
    ):
        assert ignored(private, rules), private
    copied = build_context(ROOT, tmp_path, rules)
    tops = {c.split("/")[0] for c in copied}
    assert tops <= {
        "pyproject.toml",
        "alembic.ini",
        "protos",
        "migrations",
        "services",
        "gateway",
        "tools",
    }, tops
    assert not [c for c in copied if c.endswith(".pem") or "node_modules" in c or c.startswith(".")]
    # Everything the Dockerfile copies from the context is in it.
    for keyword, rest in instructions():
        if keyword == "COPY" and "--from" not in rest:
            for source in shlex.split(rest)[:-1]:
                assert (tmp_path / source).exists(), f"the context lacks {source}"
    size = sum((tmp_path / c).stat().st_size for c in copied)
    assert size < 5 * 1024 * 1024, f"build context of {size} bytes"


def test_image_runs_as_a_numeric_non_root_user() -> None:
    steps = instructions()
    froms = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert len(froms) >= 2 and steps[froms[0]][1].endswith(" AS builder"), "a builder stage, then the runtime"
    users = [rest for keyword, rest in steps[froms[-1] :] if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit()), users[-1]
    runs = " ".join(rest for keyword, rest in steps[froms[-1] :] if keyword == "RUN")
    assert f"--uid {uid}" in runs, "the numeric user exists in the image (useradd --uid)"


def build_image(tmp_path: Path) -> list[Stage]:
    context = tmp_path / "context"
    copied = build_context(ROOT, context, ignore_rules())
    log: list[str] = []
    started = time.monotonic()
    stages = replay(DOCKERFILE, context, tmp_path, log)
    size = sum((context / c).stat().st_size for c in copied)
    print(
        f"context {len(copied)} files, {size / 1024:.0f} KiB; replayed in {time.monotonic() - started:.0f}s"
    )
    print("\n".join(log))
    return stages


def probe(stage: Stage) -> dict[str, object]:
    modules = ["grpc_tools", "pgserver", "mypy_protobuf", "pytest", "flowpilot.settings.v1.settings_pb2_grpc"]
    code = (
        "import importlib.util as u, importlib.metadata as m, json, sys; "
        "print(json.dumps({n: u.find_spec(n) is not None for n in sys.argv[1:]}"
        " | {'protos': m.version('flowpilot-protos')}))"
    )
    done = subprocess.run(
        [str(stage.venv / "bin" / "python"), "-c", code, *modules],
        cwd="/",
        env=stage.environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, object] = json.loads(done.stdout)
    return found


@pytest.mark.slow
async def test_dockerfile_replayed_builds_a_working_service(tmp_path: Path) -> None:
    stages = await asyncio.to_thread(build_image, tmp_path)
    builder, runtime = stages[0], stages[-1]
    assert len(stages) == 2 and builder.name == "builder"
    # The image's Python is this Python's minor version (the replay runs on it).
    assert runtime.image.startswith(f"python:{sys.version_info.major}.{sys.version_info.minor}")
    assert any("--uid" in run for run in runtime.system_runs)
    found = await asyncio.to_thread(probe, runtime)
    # Runtime dependencies and the generated package; no codegen, dev or test tools.
    assert found == {
        "grpc_tools": False,
        "pgserver": False,
        "mypy_protobuf": False,
        "pytest": False,
        "flowpilot.settings.v1.settings_pb2_grpc": True,
        "protos": found["protos"],
    }, found
    # The runtime filesystem holds the source it runs and nothing of the toolchain.
    assert {p.name for p in runtime.path(".").iterdir()} == {
        "alembic.ini",
        "migrations",
        "services",
        "gateway",
    }
    await _migrate_and_serve(runtime, str(runtime.venv / "bin" / "python"))


async def _migrate_and_serve(runtime: Stage, python: str) -> None:
    server_url = to_asyncpg_url(admin_server_url())
    suffix = secrets.token_hex(4)
    name, prefix = f"flowpilot_image_{suffix}", f"fpi{suffix}"
    server = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with server.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(server_url).set(database=name)
    try:
        env = runtime.environment() | {
            "FLOWPILOT_ADMIN_DATABASE_URL": db_url.set(drivername="postgresql").render_as_string(
                hide_password=False
            ),
            "FLOWPILOT_DB_ROLE_PREFIX": prefix,
        }
        # The compose `migrate` job: the image's own migrations.
        migrated = await asyncio.to_thread(
            subprocess.run,
            [python, "-m", "migrations"],
            cwd=runtime.path("."),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        await _serve(runtime, db_url.set(username=RoleNames(prefix).runtime("settings"), password=None))
    finally:
        async with server.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await drop_roles(conn, RoleNames(prefix))
        await server.dispose()


async def _serve(runtime: Stage, database_url: URL) -> None:
    keys = Keys.generate()
    port = free_port()
    env = runtime.environment() | {
        "FLOWPILOT_PORT": str(port),
        "FLOWPILOT_DATABASE_URL": database_url.render_as_string(hide_password=False),
        "FLOWPILOT_JWT_PUBLIC_KEY": keys.public_pem,
        "FLOWPILOT_JWT_ISSUER": ISSUER,
        "FLOWPILOT_JWT_AUDIENCE": AUDIENCE,
        "FLOWPILOT_PAGE_TOKEN_SECRETS": PAGE_TOKEN_SECRET,
    }
    command = [str(runtime.venv / "bin" / c) if c == "python" else c for c in runtime.cmd]
    assert command[1:] == ["-m", "services.settings"], runtime.cmd
    # The CMD runs from a neutral directory: PYTHONPATH (ENV) finds the source.
    log_path = runtime.root.parent / "service.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(*command, cwd="/", env=env, stdout=log, stderr=log)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "not SERVING after 60 s"
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.2)
            token = keys.token(account_id=uuid.uuid4(), role=Role.VIEWER)
            setting = await settings_pb2_grpc.SettingsServiceStub(channel).GetSetting(
                settings_pb2.GetSettingRequest(name="settings/ai.model_tier"),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=10,
            )
            assert setting.name == "settings/ai.model_tier"
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0, log_path.read_text()[-3000:]
