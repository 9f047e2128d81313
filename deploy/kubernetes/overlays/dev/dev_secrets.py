"""The Secrets the dev overlay needs, with fresh keys, as a manifest on stdout.

    .venv/bin/python deploy/kubernetes/overlays/dev/dev_secrets.py | kubectl apply -f -

Generates the token issuer's key pair, the sessions and walks services' own
signing key pairs, a page-token secret, the service logins' password and the
in-cluster PostgreSQL's superuser password, and prints them as the Secrets
the manifests name (a JSON ``List``, which kubectl reads as YAML). Nothing is
written to the repository: the issuer's private key goes to
``$FLOWPILOT_DEV_DIR/kubernetes-issuer-private.pem`` (default ``.dev/``) for
minting tokens. For a dev cluster only; production Secrets come from your
secret store (README "Kubernetes").
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import sys

from services.core.auth import generate_keypair
from tools.token import dev_dir

NAMESPACE = "flowpilot-dev"  # overlays/dev/kustomization.yaml


def secret(name: str, data: dict[str, str], namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "flowpilot"},
        },
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def dev_secrets(namespace: str) -> tuple[list[dict[str, object]], str]:
    """(the Secrets, the issuer's private key PEM)."""
    issuer_private, issuer_public = generate_keypair()
    sessions_private, sessions_public = generate_keypair()
    walks_private, walks_public = generate_keypair()
    postgres_password = secrets.token_urlsafe(24)
    items = [
        secret(
            "flowpilot-public-keys",
            {"issuer.pem": issuer_public, "sessions.pem": sessions_public, "walks.pem": walks_public},
            namespace,
        ),
        secret("flowpilot-keys", {"sessions.pem": sessions_private, "walks.pem": walks_private}, namespace),
        secret(
            "flowpilot-secrets",
            {
                "page-token-secrets": secrets.token_urlsafe(48),
                "db-runtime-password": secrets.token_urlsafe(24),
            },
            namespace,
        ),
        secret(
            "flowpilot-database-admin",
            {"url": f"postgresql://postgres:{postgres_password}@flowpilot-postgres:5432/flowpilot"},
            namespace,
        ),
        secret("flowpilot-postgres", {"password": postgres_password}, namespace),
    ]
    return items, issuer_private


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--namespace", default=NAMESPACE, help=f"default: {NAMESPACE}")
    args = parser.parse_args(argv)
    items, issuer_private = dev_secrets(args.namespace)
    issuer = dev_dir() / "kubernetes-issuer-private.pem"
    issuer.parent.mkdir(parents=True, exist_ok=True)
    issuer.touch(mode=0o600)
    issuer.chmod(0o600)
    issuer.write_text(issuer_private)
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout, indent=2)
    print()
    print(f"wrote {issuer} (mints tokens for this cluster:", file=sys.stderr)
    print(
        f"  .venv/bin/python -m tools.token --private-key {issuer} --issuer flowpilot-identity)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
