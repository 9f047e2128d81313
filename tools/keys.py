"""``make keys``: every secret docker-compose needs, written to ``.env``.

Generates the token issuer's key pair, the sessions and walks services' own
signing key pairs, a page-token secret and the two database passwords, and
writes them as compose reads them (``.env`` beside docker-compose.yml; PEM
text on one line with ``\\n`` escapes inside double quotes). The issuer's
private key is not a compose variable: it goes to
``$FLOWPILOT_DEV_DIR/compose-issuer-private.pem`` (default ``.dev/``), for
minting tokens against the compose stack. Refuses to replace an existing
``.env`` unless ``--force`` (new keys invalidate every token signed before).
For trying the suite locally; production keys come from your identity
provider and secret store.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from services.core.auth import generate_keypair
from tools.token import ROOT, dev_dir

# The services that sign tokens of their own (outbox delivery, the sweep).
SIGNING_SERVICES = ("sessions", "walks")
ISSUER = "flowpilot-identity"  # docker-compose.yml's default FLOWPILOT_JWT_ISSUER


def quoted(value: str) -> str:
    """A double-quoted .env value that compose (v1 and v2) reads back as ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def compose_env() -> tuple[dict[str, str], str]:
    """(the variables for .env, the issuer's private key PEM)."""
    issuer_private, issuer_public = generate_keypair()
    service_keys = {name: generate_keypair() for name in SIGNING_SERVICES}
    variables = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "FLOWPILOT_DB_RUNTIME_PASSWORD": secrets.token_urlsafe(24),
        "FLOWPILOT_PAGE_TOKEN_SECRETS": secrets.token_urlsafe(48),
        "FLOWPILOT_JWT_PUBLIC_KEY": issuer_public,
        "FLOWPILOT_JWT_ISSUER": ISSUER,
        **{f"FLOWPILOT_{name.upper()}_SERVICE_KEY": private for name, (private, _) in service_keys.items()},
        "FLOWPILOT_SERVICE_PUBLIC_KEYS": ";".join(
            f"{name}={public}" for name, (_, public) in service_keys.items()
        ),
    }
    return variables, issuer_private


def render(variables: dict[str, str]) -> str:
    lines = [
        "# Written by `make keys` (tools/keys.py) for docker-compose. Secrets: never commit",
        "# this file (.gitignore and .dockerignore keep it out). `make keys FORCE=1` replaces it.",
    ]
    lines += [f"{name}={quoted(value)}" for name, value in variables.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=ROOT / ".env", help="default: .env")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        raise SystemExit(f"{args.output} exists; keeping it (`make keys FORCE=1` replaces every key)")
    variables, issuer_private = compose_env()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.touch(mode=0o600)
    args.output.chmod(0o600)
    args.output.write_text(render(variables))
    issuer = dev_dir() / "compose-issuer-private.pem"
    issuer.parent.mkdir(parents=True, exist_ok=True)
    issuer.touch(mode=0o600)
    issuer.chmod(0o600)
    issuer.write_text(issuer_private)
    print(f"wrote {args.output} ({', '.join(variables)})", file=sys.stderr)
    print(f"wrote {issuer} (the issuer's private key: mints tokens for the compose stack)", file=sys.stderr)
    print(
        f"  token: .venv/bin/python -m tools.token --private-key {issuer} --issuer {ISSUER}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
