"""The dashboard's outbound page: the shop's endpoints, their latest deliveries with every
attempt, and redelivery of dead ones — through kopilka.directory.subscriptions, like the admin
API."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ingest import dashboard_html as ui
from ingest.context import POOL
from ingest.dashboard_auth import authenticated
from ingest.dashboard_html import BASE, View, csrf_field, e, table
from kopilka.core.logging import get_logger
from kopilka.directory import subscriptions as subs
from kopilka.directory.subscriptions import InvalidConfig

log = get_logger(__name__)
DELIVERIES = 50


@authenticated
async def outbound(request: web.Request, view: View) -> web.Response:
    t, pool, tenant_id = view.t, request.app[POOL], view.tenant.id
    endpoints = await subs.list_endpoints(pool, tenant_id)
    deliveries = await subs.list_deliveries(pool, tenant_id, limit=DELIVERIES)
    attempts = await asyncio.gather(
        *(subs.attempts_of(pool, tenant_id, d["id"]) for d in deliveries)
    )
    redelivered = request.query.get("redelivered")
    if redelivered is not None:
        view.flash.append(
            t("outbound.redelivered", count=redelivered, skipped=request.query.get("skipped", 0))
        )
    urls = {ep["id"]: ep["url"] for ep in endpoints}
    body = f"<h2>{e(t('outbound.endpoints'))}</h2>" + (
        table(
            t("outbound.endpoints"),
            [t("outbound.url"), t("outbound.events"), t("outbound.state")],
            [
                [
                    f"<code>{e(ep['url'])}</code>",
                    e(ui.event_types_text(view, ep["event_types"])),
                    e(_state(view, ep)),
                ]
                for ep in endpoints
            ],
            id="endpoints",
        )
        if endpoints
        else f"<p>{e(t('outbound.no_endpoints'))}</p>"
    )
    body += f"<h2>{e(t('outbound.deliveries'))}</h2>"
    if any(d["status"] == "dead" for d in deliveries):
        body += (
            f'<form method="post" action="{BASE}/outbound/redeliver">'
            f"{csrf_field(view.session.csrf)}"
            f'<button type="submit" id="redeliver-all">{e(t("outbound.redeliver_all"))}</button>'
            "</form>"
        )
    if deliveries:
        body += table(
            t("outbound.deliveries"),
            [
                t(k)
                for k in (
                    "outbound.created",
                    "outbound.event",
                    "outbound.url",
                    "outbound.delivery_status",
                    "outbound.attempts",
                    "outbound.last",
                )
            ],
            [_delivery_row(view, d, a, urls) for d, a in zip(deliveries, attempts, strict=True)],
            id="deliveries",
        )
    else:
        body += f"<p>{e(t('outbound.no_deliveries'))}</p>"
    return ui.page(view, t("outbound.title"), body, current="/outbound")


def _state(view: View, ep: dict) -> str:
    t = view.t
    if not ep["enabled"]:
        return t("outbound.disabled", reason=ep["disabled_reason"] or "")
    if ep["failing_since"]:
        since = t("outbound.failing_since", since=view.when(ep["failing_since"]))
        return f"{t('outbound.enabled')}, {since}"
    return t("outbound.enabled")


def _delivery_row(view: View, d: dict, attempts: list[dict], urls: dict[str, str]) -> list[str]:
    t = view.t
    status = d["status"]
    tried = "".join(
        "<li>"
        + e(
            t(
                "outbound.attempt_row",
                at=view.when(a["attempted_at"]),
                outcome=a["outcome"],
                code=a["response_code"] if a["response_code"] is not None else "—",
                latency=round(a["latency_ms"]),
            )
        )
        + (f" — {e(a['error'])}" if a["error"] else "")
        + "</li>"
        for a in attempts
    )
    attempts_html = (
        f"<details><summary>{d['attempts']}</summary><ol>{tried}</ol></details>"
        if attempts
        else str(d["attempts"])
    )
    last = " ".join(str(x) for x in (d["last_status"], d["last_error"], d["dead_reason"]) if x)
    cell = f'<span class="status {e(status)}">{e(t("delivery." + status))}</span>'
    if status == "dead":
        cell += (
            f'<form method="post" action="{BASE}/outbound/redeliver" class="inline">'
            f"{csrf_field(view.session.csrf)}"
            f'<input type="hidden" name="delivery_id" value="{e(d["id"])}">'
            f'<button type="submit" class="small" data-delivery="{e(d["id"])}">'
            f"{e(t('outbound.redeliver'))}</button></form>"
        )
    return [
        e(view.when(d["created_at"])),
        e(d["event_type"]),
        f"<code>{e(urls.get(d['endpoint_id'], d['endpoint_id']))}</code>",
        cell,
        attempts_html,
        e(last),
    ]


@authenticated
async def redeliver(request: web.Request, view: View) -> web.Response:
    form = await ui.form(request)
    one = str(form.get("delivery_id", "")).strip()
    try:
        result = await subs.redeliver(
            request.app[POOL], view.tenant.id, delivery_ids=[one] if one else None
        )
    except InvalidConfig as exc:
        view.flash.append(f"{exc.field}: {exc.reason}")
        return ui.page(view, view.t("outbound.title"), "", current="/outbound", status=422)
    log.info("dashboard_redeliver", tenant_id=view.tenant.id, **result)
    return ui.redirect(
        view,
        f"{BASE}/outbound?redelivered={result['redelivered']}"
        f"&skipped={result['skipped_endpoint_disabled']}",
    )
