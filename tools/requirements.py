"""Prints pinned requirements from ``pyproject.toml``, one per line, for pip.

``python tools/requirements.py`` prints the runtime dependencies;
``python tools/requirements.py codegen`` an extra's (``runtime`` names the
runtime ones); ``--only NAME ...`` keeps just those distributions. The image
installs its dependencies from this before any source is copied, so that a
code change does not reinstall them and the image cannot drift from
``pyproject.toml``. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def distribution(requirement: str) -> str:
    """The normalized distribution name of a requirement (``SQLAlchemy[asyncio]==2`` → ``sqlalchemy``)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def requirements(groups: list[str], only: list[str] | None = None, pyproject: Path = PYPROJECT) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    self_name = distribution(project["name"])
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: list[str] = []
    for group in groups or ["runtime"]:
        if group == "runtime":
            found += project["dependencies"]
        elif group in extras:
            # An extra that names the project itself (``flowpilot-services[codegen]``) is followed.
            for requirement in extras[group]:
                if distribution(requirement) == self_name:
                    inner = re.search(r"\[([^]]+)\]", requirement)
                    found += requirements(
                        [g.strip() for g in inner.group(1).split(",")] if inner else [], None, pyproject
                    )
                else:
                    found.append(requirement)
        else:
            raise SystemExit(f"no such group in {pyproject.name}: {group!r}")
    if only is not None:
        wanted = {distribution(name) for name in only}
        missing = wanted - {distribution(r) for r in found}
        if missing:
            raise SystemExit(f"not in {', '.join(groups)}: {', '.join(sorted(missing))}")
        found = [r for r in found if distribution(r) in wanted]
    return list(dict.fromkeys(found))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("groups", nargs="*", help="`runtime` (the default) or extras")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="keep only these distributions")
    args = parser.parse_args(argv)
    sys.stdout.write("".join(f"{line}\n" for line in requirements(args.groups, args.only)))


if __name__ == "__main__":
    main()
