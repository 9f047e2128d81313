"""The account's own knowledge for the copilot (retrieval before it answers):
similar resolved sessions, found by PostgreSQL full-text search here, and
matching script templates, found by the library service's own search.

- **Words.** What is searched for is the engineer's message, then the
  session's title and problem: words of three or more letters or digits,
  lower-cased, without common English and chat words, at most
  :data:`MAX_TERMS`. A resolved session matches any of them (ranked by
  ``ts_rank_cd``); the library's query requires every term it is given, so it
  is asked once per word for the first :data:`LIBRARY_TERMS` words, in
  parallel, and a template found by more words ranks higher.
- **Tenancy.** The sessions search runs in the RPC's tenant transaction (RLS);
  the library is called with the caller's own token, so it answers with the
  caller's account's templates only.
- **Never in the way.** The library is called outside any transaction, with a
  short deadline; a library that is down, slow or refusing leaves the reply
  without templates, never fails it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import grpc
from flowpilot.library.v1 import library_pb2, library_pb2_grpc

from services.core.ai import Reference
from services.core.clients import forwarded
from services.sessions.rows import SimilarSession

log = logging.getLogger(__name__)

MAX_SESSIONS = 3
MAX_TEMPLATES = 2
MAX_TERMS = 12
LIBRARY_TERMS = 3
_WORD = re.compile(r"[a-z0-9]{3,40}")
_STOP_WORDS = """about after again also and any are because been before being but can cannot check could did does
    doing done for from had has have how into its just keep keeps last let like make more most need next
    not now off once only other our out over please same should since some still than that the their them
    then there these they this those through too try tried under until use used user users very was
    were what when where which while who why will with without would yes you your"""
_STOP = frozenset(_STOP_WORDS.split())


def terms(*texts: str) -> list[str]:
    """The words to search for, in order of first appearance."""
    found: list[str] = []
    for text in texts:
        for word in _WORD.findall(text.lower()):
            if word not in _STOP and not word.isdigit() and word not in found:
                found.append(word)
                if len(found) == MAX_TERMS:
                    return found
    return found


def session_reference(row: SimilarSession) -> Reference:
    parts = [f"resolved on {row.ticket_ref}.", f"Problem: {row.problem[:400]}"]
    if row.fix_title:
        parts.append(
            f"Accepted fix: {row.fix_title}"
            + (f" ({'; '.join(row.fix_steps)[:400]})" if row.fix_steps else "")
        )
    if row.resolution_summary:
        parts.append(f"Resolution: {row.resolution_summary[:300]}")
    return Reference(name=f"sessions/{row.id}", title=row.title, text=" ".join(parts))


def template_reference(template: library_pb2.ScriptTemplate) -> Reference:
    language = library_pb2.Language.Name(template.language).removeprefix("LANGUAGE_").lower()
    text = f"script template ({language}), used {template.usage_count} time(s). {template.description[:400]}"
    return Reference(name=template.name, title=template.display_name, text=text.strip())


class Library:
    """Matching script templates from the library service, for the caller."""

    def __init__(
        self, stub: library_pb2_grpc.LibraryServiceAsyncStub | None, *, timeout_seconds: float = 2.0
    ):
        self._stub = stub
        self._timeout = timeout_seconds

    async def templates(self, words: Sequence[str]) -> list[Reference]:
        if self._stub is None or not words:
            return []
        pages = await asyncio.gather(*(self._search(word) for word in words[:LIBRARY_TERMS]))
        score: dict[str, tuple[int, int]] = {}
        found: dict[str, library_pb2.ScriptTemplate] = {}
        for page in pages:
            for rank, template in enumerate(page):
                hits, best = score.get(template.name, (0, rank))
                score[template.name] = (hits + 1, min(best, rank))
                found.setdefault(template.name, template)
        best_first = sorted(found, key=lambda name: (-score[name][0], score[name][1]))
        return [template_reference(found[name]) for name in best_first[:MAX_TEMPLATES]]

    async def _search(self, word: str) -> list[library_pb2.ScriptTemplate]:
        assert self._stub is not None
        try:
            response = await self._stub.ListScriptTemplates(
                library_pb2.ListScriptTemplatesRequest(query=word, page_size=MAX_TEMPLATES),
                metadata=forwarded(),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "library search failed; the copilot answers without templates",
                extra={"fields": {"code": exc.code().name}},
            )
            return []
        return list(response.script_templates)
