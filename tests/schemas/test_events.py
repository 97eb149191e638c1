"""The public event contract: checked-in JSON Schemas match the models, and events satisfy them."""

from __future__ import annotations

import json

import pytest

from schemas.events import EVENT_TYPES, json_schema, parse_event, schema_path


@pytest.mark.parametrize("model", EVENT_TYPES.values(), ids=EVENT_TYPES.keys())
def test_checked_in_schema_matches_the_model(model):
    path = schema_path(model)
    assert path.exists(), f"run `kopilka schemas write` to create {path.name}"
    assert json.loads(path.read_text()) == json_schema(model), (
        f"{path.name} drifted from {model.__name__}: run `kopilka schemas write` and review"
    )


def test_an_event_round_trips_through_its_wire_form():
    raw = (
        b'{"event_id":"e1","type":"bonus_awarded","version":1,"tenant_id":"t1",'
        b'"customer":{"id":"c1","email":"a@example.com","phone":null},'
        b'"occurred_at":"2026-01-01T00:00:00Z","seq":1,"order_id":"O-1","amount":"24450.50",'
        b'"points":1222,"balance_after":1222,"lifetime_spend":"24450.50","percent":"5",'
        b'"available_at":"2026-01-01T00:00:00Z","expires_at":"2027-01-01T00:00:00Z"}'
    )
    event = parse_event(raw)
    assert parse_event(event.to_bytes()) == event
    assert event.key == b"t1:c1"


def test_unknown_event_types_are_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        parse_event(b'{"type": "bonus_teleported"}')
