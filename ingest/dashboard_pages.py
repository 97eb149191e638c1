"""The dashboard's pages: overview (rules and charts), customers, webhooks, outbound, Telegram.

Each handler gets the signed-in `View` (dashboard_auth.authenticated) and reads only the shop's
own rows: every query takes `view.tenant.id`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from aiohttp import web

from ingest import dashboard_charts as charts
from ingest import dashboard_html as ui
from ingest import dashboard_queries as q
from ingest.context import POOL
from ingest.dashboard_auth import authenticated
from ingest.dashboard_html import BASE, View, definitions, e, table
from ingest.read_api import customer_view, identity
from kopilka.directory import subscriptions as subs
from schemas.events import EVENT_TYPES

LEDGER_ROWS = 100


@authenticated
async def overview(request: web.Request, view: View) -> web.Response:
    t, tenant, pool = view.t, view.tenant, request.app[POOL]
    rules = tenant.rules
    levels = (
        "<ul>"
        + "".join(
            "<li>"
            + e(
                t(
                    "rules.level_row",
                    name=lv.name,
                    spend=_num(lv.min_lifetime_spend),
                    percent=_num(lv.bonus_percent),
                )
            )
            + "</li>"
            for lv in rules.levels
        )
        + "</ul>"
        if rules.levels
        else e(t("rules.no_levels"))
    )
    facts = [
        (t("overview.shop"), e(tenant.name)),
        (t("rules.base_percent"), e(_num(rules.base_percent)) + "%"),
        (t("rules.levels"), levels),
        (t("rules.referral_percent"), e(_num(rules.referral_percent)) + "%"),
        (t("rules.referral_mode"), e(t(f"rules.referral_mode.{rules.referral_mode}"))),
        (t("rules.bonus_ttl_days"), e(rules.bonus_ttl_days)),
        (t("rules.hold_days"), e(rules.hold_days)),
        (t("rules.max_spend_percent"), e(_num(rules.max_spend_percent)) + "%"),
        (t("rules.rounding"), e(t(f"rules.rounding.{rules.rounding}"))),
        (t("rules.phone_region"), e(rules.phone_region)),
        (t("rules.timezone"), e(rules.timezone)),
    ]
    today = datetime.now(view.zone).date()
    series = await q.points_per_day(pool, tenant.id, rules.timezone, today)
    per_level = await q.customers_per_level(pool, tenant.id, [lv.name for lv in rules.levels])
    named = [(name or t("chart.no_level"), count) for name, count in per_level]
    body = (
        f'<section aria-labelledby="rules-h"><h2 id="rules-h">{e(t("rules.title"))}</h2>'
        f'<p class="hint">{e(t("rules.note"))}</p>{definitions(facts)}</section>'
        f'<section class="charts">'
        + charts.points_chart(
            series,
            title=t("chart.points_title"),
            awarded=t("chart.awarded"),
            spent=t("chart.spent"),
            row=lambda day, a, s: t("chart.day_value", day=day, awarded=a, spent=s),
        )
        + charts.levels_chart(
            named,
            title=t("chart.levels_title"),
            row=lambda level, count: t("chart.level_value", level=level, count=count),
        )
        + "</section>"
    )
    return ui.page(view, t("overview.title"), body, current="")


def _num(value: Decimal | int | str) -> str:
    """A number as people write it: 5 not 5.0000, 2.5 not 2.5000."""
    text = format(Decimal(str(value)).normalize(), "f")
    return text


@authenticated
async def customers(request: web.Request, view: View) -> web.Response:
    t = view.t
    query = request.query.get("q", "").strip()
    form = f"""<form method="get" action="{BASE}/customers" role="search" class="card">
<label for="q">{e(t("customers.query"))}</label>
<div class="row"><input id="q" name="q" type="search" value="{e(query)}" required
 autocomplete="off" inputmode="email" spellcheck="false">
<button type="submit">{e(t("customers.search"))}</button></div></form>"""
    panel, status = "", 200
    if query:
        panel, status = await _customer_panel(request, view, query)
    if request.query.get("partial") == "panel":  # the live refresh asks for the panel alone
        return web.Response(
            text=panel, status=status, content_type="text/html", headers=ui.SECURITY_HEADERS
        )
    types = " ".join(EVENT_TYPES)  # the live script listens to each (SSE named events)
    body = form + (
        f'<div id="customer-panel" data-event-types="{e(types)}"'
        f' data-events="{BASE}/events">{panel}</div>'
    )
    return ui.page(view, t("customers.title"), body, current="/customers", status=status, live=True)


async def _customer_panel(request: web.Request, view: View, query: str) -> tuple[str, int]:
    t, tenant, pool = view.t, view.tenant, request.app[POOL]
    email, phone = (query, None) if "@" in query else (None, query)
    try:
        kind, value = identity(email, phone, tenant.phone_region)
    except ValueError as exc:
        return f'<p class="error" role="alert">{e(t("customers.invalid", reason=exc))}</p>', 422
    found = await customer_view(pool, tenant, kind, value, LEDGER_ROWS)
    if found is None:
        return f'<p class="error" role="alert">{e(t("customers.not_found"))}</p>', 404
    c, bal, level = found["customer"], found["balance"], found["level"]
    ref = await q.referrer(pool, tenant.id, c["referrer_id"])
    referrer = (
        e(" · ".join(str(x) for x in (ref["name"], ref["email"], ref["phone"]) if x))
        if ref
        else e(t("customers.no_referrer"))
    )
    profile = definitions(
        [
            (t("customers.name"), e(c["name"] or t("common.none"))),
            (t("customers.email"), e(c["email"] or t("common.none"))),
            (t("customers.phone"), e(c["phone"] or t("common.none"))),
            (t("customers.since"), e(view.when(c["created_at"]))),
            (t("customers.referral_code"), f"<code>{e(c['referral_code'] or '—')}</code>"),
            (t("customers.referrer"), referrer),
        ]
    )
    balance = definitions(
        [
            (t("balance.total"), f'<strong id="balance-total">{bal["total"]}</strong>'),
            (t("balance.active"), f'<span id="balance-active">{bal["active"]}</span>'),
            (t("balance.pending"), f'<span id="balance-pending">{bal["pending"]}</span>'),
            (t("balance.expiring"), f'<span id="balance-expiring">{bal["expiring_30d"]}</span>'),
            (t("balance.next_expiry"), e(view.when(bal["next_expiry"]))),
        ]
    )
    nxt = level["next"]
    if nxt:
        reached = Decimal(level["lifetime_spend"])
        goal = Decimal(nxt["min_lifetime_spend"])
        done = int(min(reached / goal, 1) * 100) if goal else 100
        progress = (
            f'<label for="level-progress">'
            f"{e(t('level.next', name=nxt['name'], left=_num(nxt['spend_to_reach'])))}</label>"
            f'<progress id="level-progress" max="100" value="{done}">{done}%</progress>'
        )
    elif tenant.rules.levels:
        progress = f"<p>{e(t('level.top'))}</p>"
    else:
        progress = f"<p>{e(t('rules.no_levels'))}</p>"
    level_html = (
        definitions(
            [
                (t("level.title"), e(level["name"] or t("level.none"))),
                (t("level.percent"), e(_num(level["percent"])) + "%"),
                (t("level.lifetime"), e(_num(level["lifetime_spend"]))),
            ]
        )
        + progress
    )
    rows = [_ledger_row(view, entry) for entry in found["ledger"]]
    ledger = (
        table(
            t("ledger.title"),
            [
                t(k)
                for k in (
                    "ledger.when",
                    "ledger.type",
                    "ledger.order",
                    "ledger.delta",
                    "ledger.balance",
                    "ledger.reason",
                )
            ],
            rows,
            id="ledger",
        )
        if rows
        else f"<p>{e(t('ledger.empty'))}</p>"
    )
    return (
        f'<section id="customer" data-customer-id="{e(c["id"])}" aria-labelledby="customer-h">'
        f'<h2 id="customer-h">{e(t("customers.profile"))}: {e(c["email"] or c["phone"])}</h2>'
        f'<div class="cards"><div class="card">{profile}</div>'
        f'<div class="card"><h3>{e(t("balance.title"))}</h3>{balance}</div>'
        f'<div class="card"><h3>{e(t("level.title"))}</h3>{level_html}</div></div>'
        f'<p class="hint live-note" hidden>{e(t("ledger.live"))}</p>'
        f"{ledger}</section>",
        200,
    )


def _ledger_row(view: View, entry: dict) -> list[str]:
    t = view.t
    kind = entry["type"]
    try:
        label = t(f"event.{kind}")
    except KeyError:  # a type added later: shown as it is named
        label = kind
    delta = int(entry["delta"] or 0)
    css = "plus" if delta > 0 else "minus" if delta < 0 else ""
    return [
        f'<time datetime="{e(entry["occurred_at"])}" data-event="{e(entry["event_id"])}">'
        f"{e(view.when(entry['occurred_at']))}</time>",
        e(label),
        e(entry["order_id"] or t("common.none")),
        f'<span class="{css}">{delta:+d}</span>' if delta else "0",
        e(entry["balance_after"]),
        e(entry["reason"] or ""),
    ]


@authenticated
async def webhooks(request: web.Request, view: View) -> web.Response:
    t = view.t
    status = request.query.get("status") or None
    if status not in (None, *q.AUDIT_STATUSES):
        status = None
    rows = await q.recent_webhooks(request.app[POOL], view.tenant.id, status)
    options = "".join(
        f'<option value="{s}"{" selected" if s == status else ""}>{e(t(f"status.{s}"))}</option>'
        for s in q.AUDIT_STATUSES
    )
    form = (
        f'<form method="get" action="{BASE}/webhooks" class="row">'
        f'<label for="status">{e(t("webhooks.filter"))}</label>'
        f'<select id="status" name="status"><option value="">{e(t("webhooks.filter.all"))}'
        f"</option>{options}</select>"
        f'<button type="submit">{e(t("customers.search"))}</button></form>'
    )
    body = f'<p class="hint">{e(t("webhooks.intro"))}</p>{form}'
    if rows:
        body += table(
            t("webhooks.title"),
            [
                t(k)
                for k in (
                    "webhooks.received",
                    "webhooks.status",
                    "webhooks.http",
                    "webhooks.code",
                    "webhooks.field",
                    "webhooks.reason",
                    "webhooks.size",
                )
            ],
            [
                [
                    e(view.when(r["received_at"])),
                    f'<span class="status {e(r["status"])}">{e(t("status." + r["status"]))}</span>',
                    e(r["http_status"] or ""),
                    e(r["code"] or ""),
                    f"<code>{e(r['field'])}</code>" if r["field"] else "",
                    e(r["reason"] or ""),
                    e(r["body_bytes"] if r["body_bytes"] is not None else ""),
                ]
                for r in rows
            ],
            id="webhooks",
        )
    else:
        body += f"<p>{e(t('webhooks.empty'))}</p>"
    return ui.page(view, t("webhooks.title"), body, current="/webhooks")


@authenticated
async def telegram(request: web.Request, view: View) -> web.Response:
    t = view.t
    chats = await subs.list_chats(request.app[POOL], view.tenant.id)

    def state(chat: dict) -> str:
        if chat["blocked_at"]:
            return t("telegram.blocked", reason=chat["blocked_reason"] or "")
        return t("telegram.active") if chat["enabled"] else t("telegram.off")

    body = (
        table(
            t("telegram.title"),
            [t("telegram.chat"), t("telegram.events"), t("telegram.state")],
            [
                [
                    f"<code>{e(c['chat_id'])}</code>",
                    e(ui.event_types_text(view, c["event_types"])),
                    e(state(c)),
                ]
                for c in chats
            ],
            id="telegram",
        )
        if chats
        else f"<p>{e(t('telegram.empty'))}</p>"
    )
    return ui.page(view, t("telegram.title"), body, current="/telegram")
