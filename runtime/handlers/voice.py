"""`/aios voice`: the brand-voice notes the content agent is given, for the person who asked."""

from __future__ import annotations

from collections.abc import Sequence

from runtime.handlers.base import Collaborators, HandlerBase
from runtime.messagebus import Message
from runtime.messages import ShowVoice
from runtime.mrkdwn import quote
from storage.brand_voice import MAX_NOTES, BrandVoice
from storage.ids import format_id

NOTE_QUOTE_MAX = 500
ADD = "`/aios remember --kind brand_voice <note>`"


class Voice(HandlerBase):
    def __init__(self, collaborators: Collaborators) -> None:
        super().__init__(collaborators)
        self.voice = BrandVoice(self.units, self.clock)

    async def show(self, command: ShowVoice) -> Sequence[Message]:
        notes = await self.voice.notes(command.team, limit=MAX_NOTES + 1)
        if not notes:
            said = (
                "The team has no brand-voice notes yet, so the content agent writes in its default voice "
                f"(plain, warm, specific; no hype). Add one with {ADD}."
            )
            await self._whisper(command.channel, command.user, said)
            return []
        lines = ["*Brand voice* — the notes the content agent writes by, newest first"]
        lines += [
            f"• `{format_id('M', note.id)}` ({note.created_at:%Y-%m-%d}) {quote(note.text, NOTE_QUOTE_MAX)}"
            for note in notes[:MAX_NOTES]
        ]
        if len(notes) > MAX_NOTES:
            lines.append(f"…and older ones, which the agent is not given: it reads the newest {MAX_NOTES}.")
        lines.append(f"Add one with {ADD}; drop one with `/aios forget M-…`.")
        await self._whisper(command.channel, command.user, "\n".join(lines))
        return []
