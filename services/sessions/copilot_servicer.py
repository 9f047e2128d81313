"""gRPC surface of the copilot conversation (decode, call :mod:`copilot` and
:mod:`usage`, encode), mixed into the sessions servicer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from flowpilot.sessions.v1 import sessions_pb2 as pb

from services.core import validation
from services.core.ai import Proposed, TextDelta
from services.core.auth import current_principal
from services.core.rpc import created
from services.sessions import convert, rpcs
from services.sessions.copilot import Copilot
from services.sessions.resources import session_id
from services.sessions.rpcs import Context
from services.sessions.usage import Usage


class CopilotMethods:
    """SendMessage, StreamMessage, ListMessages, Apply/DismissProposal and
    GetAiUsage; the servicer provides the domain objects."""

    _copilot: Copilot
    _usage: Usage

    async def SendMessage(self, request: pb.SendMessageRequest, context: Context) -> pb.SendMessageResponse:
        sid = session_id(request.parent, field="parent")
        text = convert.message_text(request)
        sent, reply = await self._copilot.send(current_principal(), sid, text)
        created(convert.message(reply).name)
        return pb.SendMessageResponse(message=convert.message(sent), reply=convert.message(reply))

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: Context
    ) -> pb.ListMessagesResponse:
        sid = session_id(request.parent, field="parent")
        newest_first = convert.newest_first(request)
        paging = rpcs.paging(request, {"messages": str(sid), "newest_first": newest_first})
        rows = await self._copilot.page(
            rpcs.account(), sid, newest_first=newest_first, after=paging.after, limit=paging.fetch
        )
        messages = convert.within_budget([convert.message(r) for r in rows[: paging.limit]], paging.limit)
        token = paging.token_after(rows, len(messages), key=rpcs.by_create_time)
        return pb.ListMessagesResponse(messages=messages, next_page_token=token)

    async def ApplyProposal(self, request: pb.ApplyProposalRequest, context: Context) -> pb.Proposal:
        return convert.proposal(await self._copilot.apply(current_principal(), request.name))

    async def DismissProposal(self, request: pb.DismissProposalRequest, context: Context) -> pb.Proposal:
        return convert.proposal(await self._copilot.dismiss(current_principal(), request.name))

    async def StreamMessage(
        self, request: pb.StreamMessageRequest, context: Context
    ) -> AsyncIterator[pb.StreamMessageResponse]:
        sid = session_id(request.parent, field="parent")
        text = validation.nonblank(request.message.text, "message.text")
        async for event in self._copilot.stream(current_principal(), sid, text):
            if isinstance(event, TextDelta):
                yield pb.StreamMessageResponse(text_delta=event.text)
            elif isinstance(event, Proposed):
                yield pb.StreamMessageResponse(proposal=convert.proposal_draft(event.proposal))
            else:
                sent, reply = event
                yield pb.StreamMessageResponse(message=convert.message(sent), reply=convert.message(reply))

    async def GetAiUsage(self, request: pb.GetAiUsageRequest, context: Context) -> pb.AiUsage:
        return convert.ai_usage(*await self._usage.get(rpcs.account(), request.name))
