"""``make token``: print a signed development token.

Signs with the dev key in ``$FLOWPILOT_DEV_DIR`` (default ``.dev/``), creating
the key pair on first use; the dev stack's services trust its public half.
Never use these keys outside development.
"""

from __future__ import annotations

import argparse
import os
import secrets
import uuid
from pathlib import Path

from services.core.auth import Role, generate_keypair, mint_token

ROOT = Path(__file__).resolve().parent.parent
DEV_ISSUER = "flowpilot-dev-identity"
DEV_AUDIENCE = "flowpilot"
# Stable ids so that tokens printed by separate commands share an account.
DEV_ACCOUNT = uuid.UUID("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0")
DEV_USER = uuid.UUID("11111111-2222-4333-8444-555555555555")


def dev_dir() -> Path:
    return Path(os.environ.get("FLOWPILOT_DEV_DIR", ROOT / ".dev"))


def dev_keys() -> tuple[Path, Path]:
    """Paths of the dev private and public key, created when missing."""
    folder = dev_dir()
    private, public = folder / "jwt-dev-private.pem", folder / "jwt-dev-public.pem"
    if not private.exists() or not public.exists():
        folder.mkdir(parents=True, exist_ok=True)
        private_pem, public_pem = generate_keypair()
        private.write_text(private_pem)
        private.chmod(0o600)
        public.write_text(public_pem)
    return private, public


def dev_service_keys(services: list[str]) -> dict[str, tuple[Path, Path]]:
    """Each service's own dev signing key pair (private, public), created when missing."""
    folder = dev_dir()
    folder.mkdir(parents=True, exist_ok=True)
    keys = {}
    for service in services:
        private, public = folder / f"service-{service}-private.pem", folder / f"service-{service}-public.pem"
        if not private.exists() or not public.exists():
            private_pem, public_pem = generate_keypair()
            private.write_text(private_pem)
            private.chmod(0o600)
            public.write_text(public_pem)
        keys[service] = (private, public)
    return keys


def dev_page_token_secret() -> str:
    """The dev stack's page-token secret, created when missing."""
    folder = dev_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "page-token-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def dev_token(
    *,
    role: Role = Role.TEAM_ADMIN,
    account: uuid.UUID = DEV_ACCOUNT,
    user: uuid.UUID = DEV_USER,
    ttl: int = 12 * 3600,
    private_key: Path | None = None,
    issuer: str = DEV_ISSUER,
    name: str | None = None,
) -> str:
    private = private_key or dev_keys()[0]
    return mint_token(
        private_key=private.read_text(),
        user_id=user,
        account_id=account,
        role=role,
        issuer=issuer,
        audience=DEV_AUDIENCE,
        ttl_seconds=ttl,
        name=name,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", default="team_admin", choices=[r.claim for r in Role])
    parser.add_argument("--account", type=uuid.UUID, default=DEV_ACCOUNT)
    parser.add_argument("--user", type=uuid.UUID, default=DEV_USER)
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="seconds")
    parser.add_argument(
        "--private-key",
        type=Path,
        help="issuer key (default: the dev key; `make keys` writes the compose one)",
    )
    parser.add_argument("--issuer", default=DEV_ISSUER, help=f"`iss` claim (default {DEV_ISSUER})")
    parser.add_argument("--name", help="the person's display name (`name` claim)")
    args = parser.parse_args()
    print(
        dev_token(
            role=Role.from_claim(args.role),
            account=args.account,
            user=args.user,
            ttl=args.ttl,
            private_key=args.private_key,
            issuer=args.issuer,
            name=args.name,
        )
    )


if __name__ == "__main__":
    main()
