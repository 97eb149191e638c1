"""A shop under load: a bounded, mixed stream of webhooks over real HTTP, retried like a shop.

`Shop.run()` sends at most `rate` new actions per second until told to stop, over a fixed
number of lanes (connections). Each lane plays one customer at a time through a short script
(maybe a registration, with or without a referrer; purchases; maybe a spend; maybe a refund),
one action after the other, so a customer's actions reach the broker in the order they were
accepted. Every attempt is recorded. An action is retried with the very same body (same orderId,
same refundId) until it is answered 202 or `give_up_at` passes: 429, 503, any 5xx, 409 and
connection errors are "try again later", as a shop's retry loop treats them; any other 4xx is a
refusal the valid bodies sent here must never get, and is recorded as such.

OrderIds, refundIds and emails carry the run id, so nothing one run sends collides with another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp

RETRY_LATER = {408, 409, 425, 429, 500, 502, 503, 504}
_CENT = Decimal("0.01")


@dataclass
class Action:
    """One logical request of the shop, and what became of each attempt to send it."""

    n: int
    kind: str  # register | purchase | spend | refund
    email: str
    body: str  # the exact bytes sent, every attempt
    order_id: str | None = None
    attempts: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, status)
    event_id: str | None = None
    accepted_at: float | None = None
    refused: str | None = None  # a 4xx the shop cannot retry: status and body
    gave_up: bool = False

    @property
    def accepted(self) -> bool:
        return self.event_id is not None


def _body(action: str, **payload) -> str:
    return json.dumps({"action": action, "payload": payload}, separators=(",", ":"))


def _money(value: Decimal) -> str:
    return format(value.quantize(_CENT), "f")


class Scripts:
    """Customer scripts: deterministic for a seed, unique ids per run."""

    def __init__(self, run_id: str, seed: int, referrers: list[str]) -> None:
        self.run_id, self.rng, self.referrers = run_id, random.Random(seed), referrers
        self.customers = 0
        self.orders = 0

    def _order(self, tag: str) -> str:
        self.orders += 1
        return f"{self.run_id}-{tag}{self.orders}"

    def next_customer(self) -> tuple[str, list[tuple[str, str, str | None]]]:
        """(email, [(kind, body, order_id), ...]) for a new customer."""
        rng = self.rng
        self.customers += 1
        email = f"{self.run_id}-c{self.customers}@faults.example"
        steps: list[tuple[str, str, str | None]] = []
        roll = rng.random()
        if roll < 0.3 and self.referrers:
            referrer = rng.choice(self.referrers)
            steps.append(
                ("register", _body("register_user", email=email, referrerEmail=referrer), None)
            )
        elif roll < 0.45:
            steps.append(("register", _body("register_user", email=email, name="Faults"), None))
        purchases: list[tuple[str, Decimal]] = []
        for _ in range(rng.randint(1, 3)):
            order = self._order("P")
            amount = Decimal(rng.randint(20_000, 400_000)) / 100
            purchases.append((order, amount))
            body = _body(
                "purchase", email=email, orderId=order, amount=_money(amount), description="faults"
            )
            steps.append(("purchase", body, order))
        spend_order = None
        if rng.random() < 0.5:
            spend_order = self._order("S")
            points = rng.randint(1, 160)
            payload = {"email": email, "orderId": spend_order, "points": points}
            if rng.random() < 0.7:
                payload["orderAmount"] = _money(Decimal(points + rng.randint(0, 900)))
            steps.append(("spend", _body("spend_bonuses", **payload), spend_order))
        if rng.random() < 0.4:
            order, amount = rng.choice(purchases)
            payload = {"orderId": order, "refundId": self._order("R")}
            if rng.random() < 0.5:
                payload["amount"] = _money(amount / 2)
            steps.append(("refund", _body("refund", **payload), order))
        if spend_order is not None and rng.random() < 0.3:
            body = _body("refund", orderId=spend_order, refundId=self._order("R"))
            steps.append(("refund", body, spend_order))
        return email, steps


class Shop:
    """The load generator. `actions` holds every action started, in start order."""

    def __init__(
        self,
        base_url: str,
        secret: str,
        scripts: Scripts,
        *,
        rate: float,
        lanes: int = 24,
        retry_delay_s: float = 1.0,
    ) -> None:
        self.url = f"{base_url}/api/webhook/{secret}"
        self.scripts, self.rate, self.lanes = scripts, rate, lanes
        self.retry_delay_s = retry_delay_s
        self.actions: list[Action] = []
        self.give_up_at = float("inf")
        self.first_sent: float | None = None
        self._stop_new = asyncio.Event()
        self._tickets: asyncio.Queue[None] = asyncio.Queue(maxsize=1)

    async def run(self, stop: asyncio.Event, give_up_after_s: float) -> None:
        """Send until `stop` is set, then finish the actions already started (retrying each
        until `give_up_after_s` after that)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            ticker = asyncio.create_task(self._tick())
            lanes = [asyncio.create_task(self._lane(session)) for _ in range(self.lanes)]
            try:
                await stop.wait()
                self.give_up_at = time.monotonic() + give_up_after_s
                self._stop_new.set()
                await asyncio.gather(*lanes)
            finally:
                ticker.cancel()
                for lane in lanes:
                    lane.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker

    async def send_one(self, kind: str, body: str, email: str, order_id=None) -> Action:
        """One action outside the load (setup), retried like the rest."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            action = self._start(kind, body, email, order_id)
            await self._deliver(session, action)
            return action

    async def _tick(self) -> None:
        """One ticket every 1/rate s; a ticket nobody takes is dropped (bounded load)."""
        while True:
            with contextlib.suppress(asyncio.QueueFull):
                self._tickets.put_nowait(None)
            await asyncio.sleep(1 / self.rate)

    async def _lane(self, session: aiohttp.ClientSession) -> None:
        while not self._stop_new.is_set():
            email, steps = self.scripts.next_customer()
            for kind, body, order_id in steps:
                if not await self._ticket():
                    return
                action = self._start(kind, body, email, order_id)
                await self._deliver(session, action)
                if not action.accepted:  # the rest of this customer's script depends on it
                    break

    async def _ticket(self) -> bool:
        stop = asyncio.create_task(self._stop_new.wait())
        get = asyncio.create_task(self._tickets.get())
        done, _ = await asyncio.wait({stop, get}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if get in done:
            return True
        get.cancel()
        return False

    def _start(self, kind: str, body: str, email: str, order_id: str | None) -> Action:
        action = Action(len(self.actions), kind, email, body, order_id)
        self.actions.append(action)
        if self.first_sent is None:
            self.first_sent = time.monotonic()
        return action

    async def _deliver(self, session: aiohttp.ClientSession, action: Action) -> None:
        headers = {"Content-Type": "application/json"}
        while True:
            status, answer, retry_after = await self._post(session, action.body, headers)
            now = time.monotonic()
            action.attempts.append((now, status))
            if status == "202":
                action.event_id, action.accepted_at = answer["event_id"], now
                return
            if status.isdigit() and int(status) not in RETRY_LATER:
                action.refused = f"{status} {json.dumps(answer)[:300]}"
                return
            if now >= self.give_up_at:
                action.gave_up = True
                return
            delay = min(retry_after or self.retry_delay_s, self.retry_delay_s)
            await asyncio.sleep(delay * random.uniform(0.7, 1.3))

    async def _post(self, session, body: str, headers) -> tuple[str, dict | None, float | None]:
        try:
            async with session.post(self.url, data=body.encode(), headers=headers) as resp:
                text = await resp.text(errors="replace")
                retry_after = resp.headers.get("Retry-After")
                try:
                    answer = json.loads(text)
                except ValueError:
                    answer = {"not_json": text[:200]}
                return (
                    str(resp.status),
                    answer,
                    float(retry_after) if retry_after and retry_after.isdigit() else None,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__, None, None

    # ------------------------------------------------------------------ summaries
    def statuses(self) -> Counter:
        """How many attempts ended with each status."""
        return Counter(status for a in self.actions for _, status in a.attempts)

    def accepted(self) -> list[Action]:
        return [a for a in self.actions if a.accepted]
