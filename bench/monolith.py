"""The peer a user would otherwise pick: a small FastAPI + SQLAlchemy (async
ORM) monolith doing the same reads and writes on the same tables, with the
same duties (verify the bearer JWT, set the tenant per transaction, return
JSON). Idiomatic: declarative models, a session per request, Pydantic
responses. ``python -m bench.monolith PORT`` with FLOWPILOT_DATABASE_URL and
FLOWPILOT_JWT_PUBLIC_KEY / _ISSUER / _AUDIENCE in the environment.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import jwt
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import DateTime, Integer, String, Text, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AiSession(Base):
    __tablename__ = "ai_sessions"
    __table_args__ = {"schema": "sessions"}
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    ticket_ref: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    problem: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    state_version: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SessionFact(Base):
    __tablename__ = "session_facts"
    __table_args__ = {"schema": "sessions"}
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20))
    created_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SessionOut(BaseModel):
    id: uuid.UUID
    ticket_ref: str
    title: str
    problem: str
    status: str
    state_version: int
    create_time: datetime


class FactOut(BaseModel):
    id: uuid.UUID
    text: str
    source: str
    create_time: datetime


class FactIn(BaseModel):
    text: str


engine = create_async_engine(
    os.environ["FLOWPILOT_DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://"), pool_size=10
)
Sessions = async_sessionmaker(engine, expire_on_commit=False)
KEY = open(os.environ["FLOWPILOT_JWT_PUBLIC_KEY"]).read()  # noqa: SIM115
app = FastAPI()


def claims(authorization: Annotated[str, Header()]) -> dict[str, str]:
    try:
        return jwt.decode(
            authorization.removeprefix("Bearer "), KEY, algorithms=["EdDSA"],
            audience=os.environ["FLOWPILOT_JWT_AUDIENCE"], issuer=os.environ["FLOWPILOT_JWT_ISSUER"],
        )  # fmt: skip
    except jwt.PyJWTError as exc:
        raise HTTPException(401) from exc


async def tenant(user: Annotated[dict[str, str], Depends(claims)]) -> AsyncIterator[AsyncSession]:
    async with Sessions() as session, session.begin():
        await session.execute(
            text("SELECT set_config('app.current_account_id', :a, true)"), {"a": user["account_id"]}
        )
        yield session


Db = Annotated[AsyncSession, Depends(tenant)]


@app.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(session_id: uuid.UUID, db: Db) -> AiSession:
    row = (await db.execute(select(AiSession).where(AiSession.id == session_id))).scalar_one_or_none()
    if row is None:
        raise HTTPException(404)
    return row


@app.get("/sessions/{session_id}/facts", response_model=list[FactOut])
async def list_facts(session_id: uuid.UUID, db: Db) -> list[SessionFact]:
    query = (
        select(SessionFact)
        .where(SessionFact.session_id == session_id)
        .order_by(SessionFact.create_time, SessionFact.id)
        .limit(50)
    )
    return list((await db.execute(query)).scalars())


@app.post("/sessions/{session_id}/facts", response_model=FactOut, status_code=201)
async def create_fact(
    session_id: uuid.UUID, body: FactIn, db: Db, user: Annotated[dict[str, str], Depends(claims)]
) -> SessionFact:
    session = (
        await db.execute(select(AiSession).where(AiSession.id == session_id).with_for_update())
    ).scalar_one_or_none()
    if session is None:
        raise HTTPException(404)
    fact = SessionFact(
        account_id=uuid.UUID(user["account_id"]), id=uuid.uuid4(), session_id=session_id, text=body.text,
        source="user", created_by=uuid.UUID(user["sub"]), create_time=datetime.now().astimezone(),
    )  # fmt: skip
    db.add(fact)
    session.state_version += 1
    await db.flush()
    return fact


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
