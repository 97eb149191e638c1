"""Which partition a raw webhook goes to: what must stay in order together, the rest spreads.

`webhooks.raw` used to be keyed by tenant, which pinned one shop's whole normalising to one
partition and one worker. Now a request is keyed by the customer it names, so one shop's
requests spread over every partition while one customer's requests (a registration with its
referrer, the purchases that follow, a spend) stay in the order the shop sent them:

- a request naming an email or a phone: `tenant:` + a digest of the email (else the phone);
- a request naming only an order (a refund: its `ActionRequest.owner_order`): the key of the
  customer who owns the order, when the ingress can tell (`owner`: the order is claimed
  already), so the refund travels behind that customer's earlier requests (a spend sent before
  the refund is applied before it); else
  `tenant:` + a digest of the order id, and the normaliser waits a bounded while for an order
  that is still being claimed on another partition;
- a batch (many customers): `tenant:` + a digest of its event id; its items become commands keyed
  `tenant:customer` like every other command, so the ledger keeps each customer's order.

The key starts with the tenant id so tools can select a shop's records without parsing them;
the digest keeps emails and phones out of keys.
"""

from __future__ import annotations

import hashlib

from schemas.inbound import ParsedWebhook
from schemas.messages import CustomerRef


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def raw_key(
    tenant_id: str, parsed: ParsedWebhook, event_id: str, owner: CustomerRef | None = None
) -> bytes:
    email = phone = None
    request, order = parsed.request, None
    if request is not None:
        email, phone = request.names()
        order = request.owner_order()
        if email is None and phone is None and owner is not None:
            email, phone = owner.email, owner.phone  # e.g. a refund: behind the order's owner
    elif len(parsed.purchases) == 1:
        email, phone = parsed.purchases[0].email, parsed.purchases[0].phone
    if email:
        return f"{tenant_id}:{_digest('email', email)}".encode()
    if phone:
        return f"{tenant_id}:{_digest('phone', phone)}".encode()
    if order is not None:
        return by_order(tenant_id, order)
    return f"{tenant_id}:{_digest('request', event_id)}".encode()


def by_order(tenant_id: str, order_id: str) -> bytes:
    """The key of a refund whose order's owner the ingress could not tell."""
    return f"{tenant_id}:{_digest('order', order_id)}".encode()


def tenant_of(key: bytes | None) -> str:
    """The tenant id a raw record's key starts with (keys of older records are the id alone)."""
    return (key or b"").decode(errors="replace").partition(":")[0]
