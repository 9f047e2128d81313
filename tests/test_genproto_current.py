"""gen/ is what protos/ (and tests/protos) produce now: generated once into a
temporary directory (under a second) and compared file by file, as
`tools/genproto.py --check` (`make lint`) does."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tools import genproto


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("genproto") / "gen"
    genproto.generate(out, quiet=True)
    return out


def test_gen_is_what_the_protos_produce_now(fresh: Path) -> None:
    assert genproto.OUT.is_dir(), "gen/ missing: make gen"
    stale = genproto.differences(fresh, genproto.OUT)
    assert not stale, f"gen/ is stale, `make gen` regenerates it: {stale}"


def test_gen_is_installed_as_the_protos_distribution() -> None:
    """Imported through the flowpilot-protos distribution (make gen installs it
    editable), not through a path file naming gen/."""
    from importlib import metadata

    import flowpilot

    assert Path(next(iter(flowpilot.__path__))) == genproto.OUT / "flowpilot"
    assert metadata.version("flowpilot-protos") == metadata.version("flowpilot-services")
    assert str(genproto.OUT) not in {str(Path(p)) for p in sys.path if p}


def test_a_stale_file_is_named(fresh: Path, tmp_path: Path) -> None:
    tree = shutil.copytree(fresh, tmp_path / "gen")
    (tree / "flowpilot" / "_comments.py").write_text("COMMENTS: dict[str, str] = {}\n")
    next(tree.rglob("settings_pb2.pyi")).unlink()
    (tree / "flowpilot" / "old_pb2.py").write_text("")
    assert genproto.differences(fresh, tree) == {
        "flowpilot/_comments.py": "differs",
        "flowpilot/old_pb2.py": "not generated",
        "flowpilot/settings/v1/settings_pb2.pyi": "missing",
    }


def test_what_making_and_installing_leaves_in_gen_is_not_compared(fresh: Path, tmp_path: Path) -> None:
    tree = shutil.copytree(fresh, tmp_path / "gen")
    (tree / ".stamp").touch()
    (tree / "flowpilot_protos.egg-info").mkdir()
    (tree / "flowpilot_protos.egg-info" / "PKG-INFO").write_text("Name: flowpilot-protos\n")
    (tree / "build" / "lib").mkdir(parents=True)
    (tree / "flowpilot" / "__pycache__").mkdir()
    (tree / "flowpilot" / "__pycache__" / "_comments.cpython-311.pyc").write_bytes(b"\0")
    assert genproto.differences(fresh, tree) == {}


def test_the_check_fails_naming_the_stale_files(
    monkeypatch: pytest.MonkeyPatch, fresh: Path, tmp_path: Path
) -> None:
    tree = shutil.copytree(fresh, tmp_path / "gen")
    (tree / "flowpilot" / "_comments.py").write_text("")
    monkeypatch.setattr(genproto, "OUT", tree)
    with pytest.raises(SystemExit, match=r"make gen.*\n  gen/flowpilot/_comments\.py: differs$"):
        genproto.main(["--check"])
