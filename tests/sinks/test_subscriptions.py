from __future__ import annotations

import pytest

from kopilka.directory.subscriptions import InvalidConfig, check_url, event_types, wants


def test_event_types_are_normalised_and_star_means_all():
    assert event_types("bonus_spent, bonus_awarded,bonus_awarded") == [
        "bonus_awarded",
        "bonus_spent",
    ]
    assert event_types("*") == [] and event_types(None) == [] and event_types([]) == []
    with pytest.raises(InvalidConfig) as err:
        event_types(["Bonus Awarded"])
    assert err.value.field == "event_types"


def test_wants_matches_types_and_empty_means_every_type():
    assert wants((), "whatever_comes_next")
    assert wants(("bonus_awarded",), "bonus_awarded")
    assert not wants(("bonus_awarded",), "bonus_spent")


@pytest.mark.parametrize(
    "url", ["", "ftp://shop.example/x", "shop.example/hook", "https://user:pw@shop.example/x", 5]
)
def test_bad_callback_urls_are_refused_with_the_field(url):
    with pytest.raises(InvalidConfig) as err:
        check_url(url)
    assert err.value.field == "url"


def test_good_callback_url():
    assert check_url(" https://shop.example/hooks/kopilka ") == "https://shop.example/hooks/kopilka"
