"""What a handset's keyword does: STOP opts out, START opts back in, HELP gets help.

Matching follows `privacy.keywords.match` (the whole message, normalised). The
opt-out is committed before the confirmation reply goes out, and the reply is
the one message an opted-out number may still get.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import Config, StopScope, TenantConfig
from gateway.domain import InboundOutcome, Notice
from privacy.keywords import DEFAULT_KEYWORDS, KeywordKind, KeywordSet, match
from privacy.registry import ConsentEvent, ConsentRegistry, EventKind, Source


class KeywordResponder:
    def __init__(
        self, config: Config, registry: ConsentRegistry, clock: Callable[[], float]
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._keywords: dict[str, KeywordSet] = {
            t.id: DEFAULT_KEYWORDS.extended(
                stop=t.keywords.stop, start=t.keywords.start, help=t.keywords.help
            )
            for t in config.tenants
        }

    async def respond(self, tenant: TenantConfig, notice: Notice) -> InboundOutcome:
        keyword = match(notice.body, self._keywords[tenant.id])
        if keyword is None:
            return InboundOutcome()
        if keyword is KeywordKind.HELP:
            return InboundOutcome(keyword.value, _reply(tenant.replies.help, notice))
        kind, reply = (
            (EventKind.OPTED_OUT, tenant.replies.stop)
            if keyword is KeywordKind.STOP
            else (EventKind.OPT_OUT_LIFTED, tenant.replies.start)
        )
        event = ConsentEvent(
            tenant=tenant.id,
            subject=self._registry.subject(tenant.id, notice.handset),
            kind=kind,
            source=Source.KEYWORD,
            at=self._clock(),
            evidence=f"mo:{notice.message_id}",
            sender=notice.address if tenant.stop_scope is StopScope.SENDER else None,
        )
        await self._registry.record([event], actor="handset")
        return InboundOutcome(keyword.value, _reply(reply, notice))


def _reply(template: str, notice: Notice) -> str | None:
    return template.format(sender=notice.address) if template else None
