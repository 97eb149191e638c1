"""The dashboard's languages: complete catalogues, Russian by default, English on request, and
the pieces of HTML every page is built from (escaping, charts)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from aiohttp.test_utils import make_mocked_request

from ingest import dashboard_charts as charts
from ingest import dashboard_i18n as i18n
from ingest.dashboard_html import e, table


def test_both_catalogues_have_the_same_keys_and_placeholders():
    ru, en = i18n.CATALOGUES["ru"], i18n.CATALOGUES["en"]
    assert set(ru) == set(en)
    for key in ru:
        assert i18n.placeholders(ru[key]) == i18n.placeholders(en[key]), key
        assert ru[key].strip() and en[key].strip(), key


def test_every_key_the_code_uses_is_in_the_catalogue():
    import pathlib
    import re

    used = set()
    for path in pathlib.Path(i18n.__file__).parent.glob("dashboard*.py"):
        used |= set(re.findall(r'\bt\(\s*"([a-z_]+\.[a-z_.]+)"', path.read_text()))
        used |= set(re.findall(r"\bt\(\s*'([a-z_]+\.[a-z_.]+)'", path.read_text()))
    assert used, "the pattern found no key: it no longer matches the code"
    assert used <= set(i18n.CATALOGUES["ru"]), used - set(i18n.CATALOGUES["ru"])


def test_russian_is_the_default_english_is_asked_for_and_remembered():
    assert i18n.chosen(make_mocked_request("GET", "/dashboard")) == ("ru", False)
    assert i18n.chosen(make_mocked_request("GET", "/dashboard?lang=en")) == ("en", True)
    remembered = make_mocked_request("GET", "/dashboard", headers={"Cookie": "kopilka_lang=en"})
    assert i18n.chosen(remembered) == ("en", False)
    unknown = make_mocked_request(
        "GET", "/dashboard?lang=xx", headers={"Cookie": "kopilka_lang=zz"}
    )
    assert i18n.chosen(unknown) == ("ru", False)


def test_translator_fills_fields_and_refuses_unknown_keys():
    t = i18n.translator("en")
    assert t("sign_in.too_many", seconds=7) == "Too many failed attempts. Try again in 7 s."
    assert i18n.translator("ru")("nav.sign_out") == "Выйти"
    with pytest.raises(KeyError):
        t("no.such.key")


def test_data_is_escaped_in_text_and_attributes():
    assert e('<script>"x"</script>') == "&lt;script&gt;&quot;x&quot;&lt;/script&gt;"
    assert e(None) == ""
    html = table('Cap "<i>"', ["<b>"], [[e("<img src=x onerror=1>")]], id='a"b')
    assert "<img" not in html and "<i>" not in html and "<b>" not in html
    assert 'id="a&quot;b"' in html and 'data-label="&lt;b&gt;"' in html


def test_nice_maximum_of_a_chart_axis():
    assert [charts._nice_max(v) for v in (0, 1, 3, 7, 10, 11, 250, 5001)] == [
        1,
        1,
        5,
        10,
        10,
        20,
        500,
        10000,
    ]


def test_points_chart_draws_two_bars_a_day_scaled_to_the_axis():
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(3)]
    series = [(days[0], 250, 0), (days[1], 0, 100), (days[2], 500, 500)]
    svg = charts.points_chart(
        series, title="Points", awarded="A", spent="S", row=lambda d, a, s: f"{d}: {a}/{s}"
    )
    assert svg.count("<rect") == 6
    assert 'class="awarded"' in svg and 'class="spent"' in svg
    assert "<title>2026-11-02: 0/100</title>" in svg
    assert ">500</text>" in svg  # the axis top is the largest value, rounded up nicely
    assert 'height="0.0"' in svg  # a zero is a zero-height bar, not a missing one
    assert "<details>" in svg and "<td" in svg  # the same numbers as a table


def test_levels_chart_escapes_level_names():
    svg = charts.levels_chart(
        [("без уровня", 3), ("<Gold>", 1)], title="Levels", row=lambda n, c: f"{n}: {c}"
    )
    assert "<Gold>" not in svg and "&lt;Gold&gt;" in svg
    assert svg.count("<rect") == 2
