"""The copilot grounded in the account's own knowledge, over real channels:
similar resolved sessions (full-text search, this account only) and matching
library templates (the library service, with the caller's token) in the
model's context and cited on the reply; a library that is down costs the
templates, never the reply."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from flowpilot.library.v1 import library_pb2, library_pb2_grpc
from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core.ai import make_ai
from services.core.ai.offline import OfflineBackend
from services.core.auth import Role
from tests.sessions.helpers import Caller, sessions_with
from tests.support import Keys, RunDatabase


def send(caller: Caller, session: pb.Session, text: str) -> Any:
    return caller.call(
        "SendMessage", pb.SendMessageRequest(parent=session.name, message=pb.Message(text=text))
    )


async def resolved(caller: Caller, title: str, problem: str, summary: str) -> pb.Session:
    """A resolved session of ``caller``'s account with an accepted fix."""
    s = await caller.session(title=title, problem=problem)
    fix = await caller.call("SuggestFix", pb.SuggestFixRequest(parent=s.name))
    await caller.call("AcceptFix", pb.AcceptFixRequest(name=fix.name))
    await caller.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary=summary))
    return s


async def template(library: grpc.aio.Channel, caller: Caller, name: str, description: str) -> Any:
    return await library_pb2_grpc.LibraryServiceStub(library).CreateScriptTemplate(
        library_pb2.CreateScriptTemplateRequest(
            script_template=library_pb2.ScriptTemplate(
                display_name=name,
                description=description,
                language=library_pb2.LANGUAGE_POWERSHELL,
                body="Get-NetAdapter | Restart-NetAdapter",
            )
        ),
        metadata=caller.as_role(Role.TEAM_ADMIN).md,
    )


async def test_a_reply_cites_the_accounts_similar_resolved_sessions_and_templates(
    sessions_channel: grpc.aio.Channel, library_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    word = f"zq{uuid.uuid4().hex[:8]}"  # a word only this test's resources have
    earlier = await resolved(
        me,
        f"Fortinet {word} tunnel drops hourly",
        f"The {word} tunnel disconnects every hour for remote staff.",
        "Raised the IKE lifetime; stable since.",
    )
    unrelated = await resolved(me, "Printer offline", "The printer spooler stops.", "Spooler restarted")
    still_open = await me.session(title=f"{word} tunnel drops too", problem="Same symptoms, not fixed yet.")
    stranger = Caller(sessions_channel, keys)
    theirs = await resolved(stranger, f"{word} tunnel drops", f"{word} tunnel drops hourly.", "Fixed it.")
    tool = await template(
        library_channel, me, f"Reset {word} adapter", f"Restarts the {word} network adapter."
    )
    await template(library_channel, stranger, f"Their {word} script", f"Also about {word}.")

    s = await me.session(title="Remote staff disconnected", problem="Users lose the office connection.")
    answer = await send(me, s, f"The {word} tunnel dropped again at 10:00, what now?")
    reply = answer.reply
    cited = [(c.name, c.title) for c in reply.citations]
    assert cited == [(earlier.name, earlier.title), (tool.name, tool.display_name)]
    for name in (earlier.name, tool.name):
        assert f"[{name}]" in reply.text  # the offline copilot cites them in its text too
    for name in (unrelated.name, still_open.name, theirs.name, s.name):
        assert name not in reply.text
    assert not answer.message.citations

    listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=s.name))
    assert [c.name for c in listed.messages[1].citations] == [earlier.name, tool.name]

    # Nothing of the account's knowledge matches: nothing cited.
    other = await me.session(title="Keyboard", problem="Keys stick.")
    assert not (await send(me, other, "Which keyboard driver?")).reply.citations


async def test_a_library_that_is_down_costs_the_templates_not_the_reply(
    database: RunDatabase,
    keys: Keys,
    service_keys: dict[str, Keys],
    settings_address: str,
) -> None:
    ai = make_ai(backend=OfflineBackend())
    async with (
        sessions_with(
            ai,
            database=database,
            keys=keys,
            service_keys=service_keys,
            settings_address=settings_address,
            library_address="127.0.0.1:1",  # nothing listens
        ) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        me = Caller(channel, keys)
        word = f"zq{uuid.uuid4().hex[:8]}"
        earlier = await resolved(me, f"{word} mailbox full", f"The {word} mailbox is full.", "Archived")
        s = await me.session()
        reply = (await send(me, s, f"Is the {word} mailbox full again?")).reply
        assert [c.name for c in reply.citations] == [earlier.name]
        assert not reply.partial
