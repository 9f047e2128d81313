"""Generates the Python protobuf/gRPC package from ``protos/`` into ``gen/``.

One script, one output package (``flowpilot``), with ``.pyi`` stubs for mypy.
The googleapis protos (``google/api``, ``google/rpc``) are not generated: they
come, compiled, from the ``googleapis-common-protos`` wheel, which also ships
their ``.proto`` sources used here as include path. ``--third-party DIR``
additionally copies those sources into DIR so that ``buf`` can resolve them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# Protos only the tests use (the gateway's conformance service); compiled
# into the same package tree when present (not in deployment images).
TEST_PROTOS = ROOT / "tests" / "protos"
OUT = ROOT / "gen"
GOOGLEAPIS_DIRS = ("google/api", "google/rpc", "google/type")


def _googleapis_root() -> Path:
    import google.api  # the googleapis-common-protos wheel

    return Path(next(iter(google.api.__path__))).parent.parent


def _wkt_root() -> Path:
    return Path(str(resources.files("grpc_tools") / "_proto"))


def generate(out: Path = OUT) -> None:
    from grpc_tools import protoc

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    bindir = Path(sys.executable).parent  # mypy-protobuf's plugins live beside python
    roots = [PROTOS, *([TEST_PROTOS] if TEST_PROTOS.is_dir() else [])]
    sources = sorted(str(p.relative_to(root)) for root in roots for p in root.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        *(f"-I{root}" for root in roots),
        f"-I{_googleapis_root()}",
        f"-I{_wkt_root()}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Regular packages, so that mypy and importlib see them without magic.
    for folder in (p for p in out.rglob("*") if p.is_dir()):
        (folder / "__init__.py").touch()
    (out / "flowpilot" / "py.typed").touch()


def copy_third_party(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    root = _googleapis_root()
    for sub in GOOGLEAPIS_DIRS:
        for proto in (root / sub).glob("*.proto"):
            target = dest / sub / proto.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(proto, target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--third-party", type=Path, help="copy googleapis protos here for buf")
    args = parser.parse_args(argv)
    generate()
    if args.third_party:
        copy_third_party(args.third_party)
    print(f"generated {sum(1 for _ in OUT.rglob('*_pb2.py'))} modules into {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
