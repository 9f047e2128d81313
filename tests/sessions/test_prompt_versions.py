"""Every AI task reads the account's prompts from the settings service and
records the version of the task's prompt it used: on the copilot's reply, on
the note preview and on the revision posted from it. The shared servers run
the offline backend, which sends no model anything; the version is recorded
all the same (tests/core/ai checks what the Anthropic backend sends)."""

from __future__ import annotations

import grpc
from flowpilot.sessions.v1 import sessions_pb2 as pb
from flowpilot.settings.v1 import settings_pb2, settings_pb2_grpc

from services.core.auth import Role
from tests.sessions.helpers import Caller
from tests.support import Keys


async def _override(settings_channel: grpc.aio.Channel, keys: Keys, me: Caller, slug: str) -> int:
    admin = keys.metadata(account_id=me.account, role=Role.TEAM_ADMIN)
    prompt = await settings_pb2_grpc.SettingsServiceStub(settings_channel).UpdatePrompt(
        settings_pb2.UpdatePromptRequest(
            prompt=settings_pb2.Prompt(
                name=f"prompts/{slug}", text=f"The account's own {slug} in {{format}}."
            )
        ),
        metadata=admin,
    )
    return prompt.version


async def test_note_revisions_and_replies_record_the_prompt_version_they_used(
    sessions_channel: grpc.aio.Channel, settings_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()
    await me.call("PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-1"))
    reply = (
        await me.call("SendMessage", pb.SendMessageRequest(parent=s.name, message=pb.Message(text="Next?")))
    ).reply
    assert reply.prompt_version == 1  # the shipped default

    note_version = await _override(settings_channel, keys, me, "task.note")
    chat_version = await _override(settings_channel, keys, me, "task.chat")
    assert note_version == chat_version == 2
    await me.call("ResolveSession", pb.ResolveSessionRequest(name=s.name, summary="Replaced the router"))
    await me.call("PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="CW-NOTE-2"))
    history = await me.call("ListNoteRevisions", pb.ListNoteRevisionsRequest(parent=s.name))
    assert [(r.revision, r.prompt_version) for r in history.note_revisions] == [(1, 1), (2, note_version)]
    assert all(r.HasField("prompt_version") for r in history.note_revisions)

    other = await me.session()
    reply = (
        await me.call(
            "SendMessage", pb.SendMessageRequest(parent=other.name, message=pb.Message(text="Next?"))
        )
    ).reply
    assert reply.prompt_version == chat_version
    listed = await me.call("ListMessages", pb.ListMessagesRequest(parent=other.name))
    assert [m.prompt_version for m in listed.messages if m.role == pb.MESSAGE_ROLE_ASSISTANT] == [
        chat_version
    ]
    # Another account still uses the defaults.
    stranger = Caller(sessions_channel, keys)
    theirs = await stranger.session()
    await stranger.call(
        "PostEscalationPackage", pb.PostEscalationPackageRequest(name=theirs.name, external_id="CW-ESC-1")
    )
    [revision] = (
        await stranger.call("ListNoteRevisions", pb.ListNoteRevisionsRequest(parent=theirs.name))
    ).note_revisions
    assert revision.prompt_version == 1


async def test_an_override_makes_the_next_preview_of_the_same_state_anew(
    sessions_channel: grpc.aio.Channel, settings_channel: grpc.aio.Channel, keys: Keys
) -> None:
    me = Caller(sessions_channel, keys)
    s = await me.session()
    first = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    again = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert again.cached
    version = await _override(settings_channel, keys, me, "task.note")
    fresh = await me.call("PreviewResolutionNote", pb.PreviewResolutionNoteRequest(name=s.name))
    assert not fresh.cached and fresh.state_version == first.state_version
    posted = await me.call("PostResolutionNote", pb.PostResolutionNoteRequest(name=s.name, external_id="N-1"))
    [revision] = (
        await me.call("ListNoteRevisions", pb.ListNoteRevisionsRequest(parent=s.name))
    ).note_revisions
    assert revision.prompt_version == version and posted.resolution_note.revision == 1
