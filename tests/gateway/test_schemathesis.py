"""Property-based run of schemathesis against /openapi.json with the real
services behind the gateway: no 5xx, no response outside the schema."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from services.core.auth import Role
from tests.support import Keys

pytestmark = pytest.mark.slow  # `make test-fast` skips it


async def test_openapi_document_is_valid(gateway_url: str) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=gateway_url) as client:
        document = (await client.get("/openapi.json")).json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert "/v1/sessions/{session}/facts/{fact}:undelete" in document["paths"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_schemathesis_finds_no_server_errors(gateway_url: str, keys: Keys, tmp_path: Path) -> None:
    token = keys.token(account_id=uuid.uuid4(), role=Role.TEAM_ADMIN, ttl_seconds=1800)
    schemathesis = Path(sys.executable).parent / "schemathesis"
    process = await asyncio.create_subprocess_exec(
        str(schemathesis), "run", f"{gateway_url}/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", "not_a_server_error,response_schema_conformance",
        "--max-examples", "15",
        "--generation-deterministic",
        "--phases", "examples,fuzzing",
        "--request-timeout", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    text = out.decode()
    assert process.returncode == 0, text[-6000:]
    # Every operation of the document was exercised.
    import httpx

    async with httpx.AsyncClient(base_url=gateway_url) as client:
        document = (await client.get("/openapi.json")).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    tested = re.search(r"Tested:\s*(\d+)", text)
    assert tested is not None and int(tested.group(1)) == operations, text[-3000:]
