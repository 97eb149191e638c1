"""Russian default texts for every event type, tenant overrides, and rendering that never fails."""

from __future__ import annotations

import pytest

from schemas.telegram_text import (
    DEFAULT_TEMPLATES,
    GENERIC_TEMPLATE,
    bonuses,
    check_template,
    group,
    render,
)

BASE = {
    "event_id": "0b6f8a52-3f0e-5d7c-9a1b-2c3d4e5f6a7b",
    "version": 1,
    "tenant_id": "11111111-2222-4333-8444-555555555555",
    "customer": {"id": "c-1", "email": "anna@example.com", "phone": "+79991112233"},
    "occurred_at": "2026-11-26T12:30:00Z",
    "seq": 3,
}
EVENTS = {
    "bonus_awarded": {
        "order_id": "ORDER-123",
        "amount": "5000",
        "points": 250,
        "balance_after": 1250,
        "lifetime_spend": "25000",
        "expires_at": "2027-11-26T12:30:00Z",
    },
    "bonus_spent": {"order_id": "ORDER-124", "points": 100, "balance_after": 1150},
    "spend_rejected": {"order_id": "ORDER-125", "points": 5000, "reason": "insufficient_balance"},
    "level_changed": {"level": "Золото", "previous_level": "Серебро", "lifetime_spend": "50000"},
    "referral_awarded": {
        "order_id": "ORDER-9",
        "points": 31,
        "balance_after": 1181,
        "referee_id": "c-2",
    },
    "customer_registered": {"referral_code": "ANNA7", "referrer_id": None},
    "bonus_expired": {"points": 22, "balance_after": 1159},
    "bonus_reversed": {"order_id": "ORDER-123", "points": 250, "balance_after": 909},
    "bonus_returned": {"order_id": "ORDER-124", "points": 100, "balance_after": 1009},
}
EXPECTED = {
    "bonus_awarded": "Начислено 250 бонусов за заказ ORDER-123. Баланс: 1 250",
    "bonus_spent": "Списано 100 бонусов в оплату заказа ORDER-124. Баланс: 1 150",
    "spend_rejected": "Не удалось списать 5 000 бонусов за заказ ORDER-125: недостаточно бонусов",
    "level_changed": "Клиент anna@example.com перешёл на уровень «Золото» (был «Серебро»)",
    "referral_awarded": "Начислено 31 бонус за заказ ORDER-9 приглашённого друга. Баланс: 1 181",
    "customer_registered": "Новый участник программы лояльности: anna@example.com",
    "bonus_expired": "Сгорело 22 бонуса. Баланс: 1 159",
    "bonus_reversed": "Списано 250 бонусов из-за возврата заказа ORDER-123. Баланс: 909",
    "bonus_returned": "Возвращено 100 бонусов, потраченных на заказ ORDER-124. Баланс: 1 009",
}


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_every_event_type_has_a_readable_russian_default(kind):
    assert kind in DEFAULT_TEMPLATES
    assert render({**BASE, "type": kind, **EVENTS[kind]}) == EXPECTED[kind]


def test_numbers_are_grouped_and_the_word_agrees_with_the_number():
    assert group(1250) == "1 250" and group(1_000_000) == "1 000 000"
    assert [bonuses(n) for n in (1, 2, 5, 11, 21, 22, 112, 1001)] == [
        "1 бонус",
        "2 бонуса",
        "5 бонусов",
        "11 бонусов",
        "21 бонус",
        "22 бонуса",
        "112 бонусов",
        "1 001 бонус",
    ]


def test_a_tenant_template_overrides_the_default():
    event = {**BASE, "type": "bonus_awarded", **EVENTS["bonus_awarded"]}
    text = render(event, "+{bonuses} для {customer} (заказ {order_id} на {amount} ₽)")
    assert text == "+250 бонусов для anna@example.com (заказ ORDER-123 на 5 000 ₽)"


def test_missing_fields_fall_back_to_the_default_then_to_a_generic_line():
    awarded = {**BASE, "type": "bonus_awarded", **EVENTS["bonus_awarded"]}
    assert render(awarded, "{level} {nonsense}") == EXPECTED["bonus_awarded"]
    partial = {**BASE, "type": "bonus_awarded", "points": 5}  # no order, no balance
    assert render(partial) == GENERIC_TEMPLATE.format(
        type="bonus_awarded", customer="anna@example.com"
    )
    assert render({"type": "something_new"}).startswith("Событие «something_new»")
    assert render({}) == "Событие «unknown»"


def test_templates_cannot_reach_attributes_or_indexes():
    event = {**BASE, "type": "bonus_awarded", **EVENTS["bonus_awarded"]}
    assert render(event, "{points.__class__}") == EXPECTED["bonus_awarded"]
    assert render(event, "{customer[0]}") == EXPECTED["bonus_awarded"]
    assert "unknown field" in check_template("{points.__class__.__mro__}")
    assert "unknown field" in check_template("{secret}")
    assert "not a valid template" in check_template("{points")
    assert check_template("Бонусы: {bonuses}, баланс {balance}") is None
