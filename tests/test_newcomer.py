"""What a newcomer meets first: `make help`, progress lines during the long
silent steps, and grpcurl where the README and the `make run` banner say it is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from migrations.roles import RoleNames
from tests.support import ROOT
from tools import devstack

MAKEFILE = ROOT / "Makefile"


def make(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def phony_targets() -> list[str]:
    line = next(line for line in MAKEFILE.read_text().splitlines() if line.startswith(".PHONY:"))
    return line.split(":", 1)[1].split()


def test_make_help_describes_every_target_and_is_the_default() -> None:
    listed = make()  # no target: help, never a long-running command
    assert listed == make("help")
    for target in phony_targets():
        assert re.search(rf"^  {re.escape(target)} +\S", listed, re.MULTILINE), f"{target} not in make help"
    assert ".venv/bin" in listed and "export PATH=" in listed


def test_makefile_documents_the_token_variables_it_reads() -> None:
    text = MAKEFILE.read_text()
    assert "USER_ID=uuid" in text and "[USER=" not in text


def test_dependency_install_announces_itself_first() -> None:
    # -n: print the commands of a forced reinstall without running them.
    planned = make("-n", "-W", "pyproject.toml", ".venv/.installed-stamp").splitlines()
    install = next(i for i, line in enumerate(planned) if "pip install" in line and ".[dev]" in line)
    assert any(line.startswith("echo") and "==>" in line for line in planned[:install]), planned


def test_embedded_database_start_is_announced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import pgserver

    class Announced(Exception):
        pass

    def get_server(*args: object, **kwargs: object) -> None:
        assert "==> starting the embedded PostgreSQL" in capsys.readouterr().out
        raise Announced

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("FLOWPILOT_DEV_DIR", str(tmp_path))
    monkeypatch.setattr(pgserver, "get_server", get_server)
    with pytest.raises(Announced):
        devstack.start_database()


def test_external_database_is_named_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://admin:s3cret@db.example:5432/postgres")
    url, embedded = devstack.start_database()
    out = capsys.readouterr().out
    assert embedded is None and url.endswith("/postgres")
    assert "==> using the PostgreSQL server of DATABASE_URL" in out and "s3cret" not in out


def test_migration_is_announced(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    async def migrate(*args: object, **kwargs: object) -> None:
        assert "==> migrating" in capsys.readouterr().out

    monkeypatch.setattr(devstack, "migrate", migrate)
    devstack.migrate_database("postgresql://x@127.0.0.1/db", RoleNames("fpx"), None)


def test_banner_says_where_grpcurl_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWPILOT_DEV_DIR", str(tmp_path))
    settings = next(p for p in devstack.PROCESSES if p.name == "settings")
    devstack.banner([(settings, "127.0.0.1:50053")], embedded=True)
    out = capsys.readouterr().out
    exported = re.search(r'export PATH="([^"]+):\$PATH"', out)
    assert exported, out
    assert shutil.which("grpcurl", path=exported.group(1)), f"no grpcurl in {exported.group(1)}"
    assert Path(exported.group(1)) == Path(sys.executable).parent
    assert out.index("export PATH=") < out.index("grpcurl -plaintext")


def test_readme_puts_grpcurl_on_the_path_before_using_it() -> None:
    readme = (ROOT / "README.md").read_text()
    first_call = readme.index("grpcurl -plaintext")
    assert 0 <= readme.find('export PATH="$PWD/.venv/bin:$PATH"') < first_call
    assert "-emit-defaults" in readme
