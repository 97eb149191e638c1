"""What a normalised request leaves besides its commands: its line in the audit trail
(`webhooks.audit`, or `webhooks.dead` when nothing of it could be applied) and the outcome of
each item refused, for whoever waits on the request (`Prefer: wait`)."""

from __future__ import annotations

from kopilka.core.ids import derived_id
from schemas.messages import AuditRecord, Outcome, RawEnvelope


def dead_letter(env: RawEnvelope, code: str, field: str | None, reason: str) -> AuditRecord:
    return AuditRecord(
        event_id=env.event_id,
        tenant_id=env.tenant_id,
        received_at=env.received_at,
        status="dead",
        code=code,
        field=field,
        reason=reason,
        content_type=env.content_type,
        body_bytes=len(env.raw_body()),
    )


def accepted(env: RawEnvelope, commands: int, refused: int) -> AuditRecord:
    """The audit trail's line for a request normalised into commands (and item refusals)."""
    return AuditRecord(
        event_id=env.event_id,
        tenant_id=env.tenant_id,
        received_at=env.received_at,
        status="accepted",
        http_status=202,
        code="accepted",
        reason=f"{commands} command(s), {refused} refused",
        content_type=env.content_type,
        body_bytes=len(env.raw_body()),
    )


def refusal(env: RawEnvelope, item: int, code: str, reason: str) -> Outcome:
    return Outcome(
        request_id=env.event_id,
        command_id=derived_id(env.event_id, item),
        item=item,
        status="rejected",
        reason=f"{code}: {reason}",
    )
