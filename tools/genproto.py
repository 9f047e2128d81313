"""Generates the Python protobuf/gRPC package from ``protos/`` into ``gen/``.

One script, one output package (``flowpilot``), with ``.pyi`` stubs for mypy.
The googleapis protos (``google/api``, ``google/rpc``) are not generated: they
come, compiled, from the ``googleapis-common-protos`` wheel, which also ships
their ``.proto`` sources used here as include path. ``--third-party DIR``
additionally copies those sources into DIR so that ``buf`` can resolve them.

``gen/`` is a distribution of its own, ``flowpilot-protos`` (a
``pyproject.toml`` is written beside the packages): the image's builder stage
makes a wheel of it with ``--no-stubs`` (no mypy-protobuf there), and the
runtime stage installs that wheel. ``make gen`` installs it into the dev venv
in editable mode (``pip install --no-deps -e gen``), so a regeneration is seen
at once. In the dev tree it also holds ``conformance``, compiled from
``tests/protos`` (absent from the image's build context, so never in the wheel).

``--check`` writes nothing: it generates into a temporary directory and
compares that with ``gen/`` (``make lint`` and ``tests/test_genproto_current.py``
run it), naming every file that is stale, missing or no longer generated.

The protos' comments are kept too: protoc writes a descriptor set with source
info, and ``flowpilot/_comments.py`` maps full names (services, methods,
messages, fields, enums, and enum values as ``pkg.Enum.VALUE``) to their
leading comment (or trailing, when there is none). It is part of the
package, so the wheel ships it; the gateway's OpenAPI reads it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from tools.requirements import distribution, requirements

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# Protos only the tests use (the gateway's conformance service); compiled
# into the same package tree when present (not in deployment images).
TEST_PROTOS = ROOT / "tests" / "protos"
OUT = ROOT / "gen"
GOOGLEAPIS_DIRS = ("google/api", "google/rpc", "google/type")
# What the generated modules import, pinned as the project pins them.
PROTOS_DEPENDENCIES = ("protobuf", "grpcio", "googleapis-common-protos")


def _googleapis_root() -> Path:
    import google.api  # the googleapis-common-protos wheel

    return Path(next(iter(google.api.__path__))).parent.parent


def _wkt_root() -> Path:
    return Path(str(resources.files("grpc_tools") / "_proto"))


def generate(out: Path = OUT, *, stubs: bool = True, quiet: bool = False) -> None:
    from grpc_tools import protoc

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    bindir = Path(sys.executable).parent  # mypy-protobuf's plugins live beside python
    roots = [PROTOS, *([TEST_PROTOS] if TEST_PROTOS.is_dir() else [])]
    sources = sorted(str(p.relative_to(root)) for root in roots for p in root.rglob("*.proto"))
    options = "quiet:" if quiet else ""  # mypy-protobuf's "Writing mypy to …" lines
    mypy = [
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={options}{out}",
        f"--mypy_grpc_out={options}{out}",
    ]
    descriptor_set = Path(tempfile.mkdtemp()) / "descriptors.binpb"
    args = [
        "grpc_tools.protoc",
        "--include_source_info",
        f"--descriptor_set_out={descriptor_set}",
        *(f"-I{root}" for root in roots),
        f"-I{_googleapis_root()}",
        f"-I{_wkt_root()}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *(mypy if stubs else []),
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    write_comments(descriptor_set, out / "flowpilot" / "_comments.py")
    shutil.rmtree(descriptor_set.parent)
    # Regular packages, so that mypy and importlib see them without magic.
    for folder in (p for p in out.rglob("*") if p.is_dir()):
        (folder / "__init__.py").touch()
    (out / "flowpilot" / "py.typed").touch()
    write_distribution(out)


def _symbols(file: Any) -> dict[tuple[int, ...], str]:
    """Source-info paths of a FileDescriptorProto's declarations → full names."""
    names: dict[tuple[int, ...], str] = {}
    prefix = f"{file.package}." if file.package else ""

    def enums(path: tuple[int, ...], scope: str, items: Any) -> None:
        for i, enum in enumerate(items):
            names[(*path, i)] = scope + enum.name
            for j, value in enumerate(enum.value):
                names[(*path, i, 2, j)] = f"{scope}{enum.name}.{value.name}"

    def messages(path: tuple[int, ...], scope: str, items: Any) -> None:
        for i, message in enumerate(items):
            full = scope + message.name
            names[(*path, i)] = full
            for j, field in enumerate(message.field):
                names[(*path, i, 2, j)] = f"{full}.{field.name}"
            messages((*path, i, 3), full + ".", message.nested_type)
            enums((*path, i, 4), full + ".", message.enum_type)

    messages((4,), prefix, file.message_type)
    enums((5,), prefix, file.enum_type)
    for i, service in enumerate(file.service):
        names[(6, i)] = prefix + service.name
        for j, method in enumerate(service.method):
            names[(6, i, 2, j)] = f"{prefix}{service.name}.{method.name}"
    return names


def comments(descriptor_set: bytes) -> dict[str, str]:
    """Full name → comment, from a serialized FileDescriptorSet with source info."""
    from google.protobuf import descriptor_pb2

    out: dict[str, str] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        names = _symbols(file)
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            text = location.leading_comments or location.trailing_comments
            if name and text.strip():
                lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
                out[name] = "\n".join(lines).strip()
    return out


def write_comments(descriptor_set: Path, target: Path) -> None:
    found = comments(descriptor_set.read_bytes())
    body = "".join(f"    {name!r}: {text!r},\n" for name, text in sorted(found.items()))
    target.write_text(
        '"""The protos\' comments by full name (written by tools/genproto.py)."""\n\n'
        f"COMMENTS: dict[str, str] = {{\n{body}}}\n"
    )


def write_distribution(out: Path) -> None:
    """Makes ``out`` the ``flowpilot-protos`` distribution (same version as the project)."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    pins = [r for r in requirements(["runtime"]) if distribution(r) in PROTOS_DEPENDENCIES]
    # Every top-level package generated: flowpilot, and conformance when tests/protos was there.
    packages = sorted(p.name for p in out.iterdir() if (p / "__init__.py").is_file())
    include = [pattern for name in packages for pattern in (name, f"{name}.*")]
    (out / "pyproject.toml").write_text(
        "# Written by tools/genproto.py; gen/ is never committed.\n"
        "[build-system]\n"
        'requires = ["setuptools>=68"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        'name = "flowpilot-protos"\n'
        f'version = "{version}"\n'
        'description = "FlowPilot\'s generated protobuf and gRPC modules (tools/genproto.py)."\n'
        'requires-python = ">=3.11"\n'
        f"dependencies = [{', '.join(f'{pin!r}' for pin in pins)}]\n\n"
        "[tool.setuptools.packages.find]\n"
        f"include = [{', '.join(f'{pattern!r}' for pattern in include)}]\n\n"
        "[tool.setuptools.package-data]\n"
        '"*" = ["py.typed", "*.pyi"]\n'
    )


def copy_third_party(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    root = _googleapis_root()
    for sub in GOOGLEAPIS_DIRS:
        for proto in (root / sub).glob("*.proto"):
            target = dest / sub / proto.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(proto, target)


def _is_ignored(relative: Path) -> bool:
    """What is in ``gen/`` without being generated: the Makefile's stamp,
    what installing and building it leaves there, and bytecode."""
    parts = relative.parts
    return (
        relative == Path(".stamp")
        or parts[0] == "build"
        or any(part == "__pycache__" or part.endswith(".egg-info") for part in parts)
        or relative.suffix == ".pyc"
    )


def _files(tree: Path) -> set[Path]:
    if not tree.is_dir():
        return set()
    found = (p.relative_to(tree) for p in tree.rglob("*") if p.is_file())
    return {p for p in found if not _is_ignored(p)}


def differences(expected: Path, actual: Path) -> dict[str, str]:
    """Files of ``actual`` that are not as in the fresh tree ``expected``:
    relative path → ``"differs"``, ``"missing"`` or ``"not generated"``."""
    wanted, present = _files(expected), _files(actual)
    found = {str(p): "missing" for p in wanted - present}
    found |= {str(p): "not generated" for p in present - wanted}
    found |= {
        str(p): "differs"
        for p in wanted & present
        if (expected / p).read_bytes() != (actual / p).read_bytes()
    }
    return dict(sorted(found.items()))


def stale(out: Path = OUT, *, stubs: bool = True) -> dict[str, str]:
    """What in ``out`` differs from what ``protos/`` produce now (see `differences`)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "gen"
        generate(fresh, stubs=stubs, quiet=True)
        return differences(fresh, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--third-party", type=Path, help="copy googleapis protos here for buf")
    parser.add_argument("--no-stubs", action="store_true", help="no .pyi stubs (needs no mypy-protobuf)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if gen/ is not what protos/ produce now"
    )
    args = parser.parse_args(argv)
    if args.check:
        found = stale(OUT, stubs=not args.no_stubs)
        if found:
            listed = "".join(f"\n  gen/{path}: {reason}" for path, reason in found.items())
            raise SystemExit(f"gen/ is stale (`make gen` regenerates it):{listed}")
        print("gen/ is current: what protos/ produce now", file=sys.stderr)
        return
    generate(stubs=not args.no_stubs)
    if args.third_party:
        copy_third_party(args.third_party)
    print(f"generated {sum(1 for _ in OUT.rglob('*_pb2.py'))} modules into {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
