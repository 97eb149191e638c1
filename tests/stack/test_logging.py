"""kopilka.core.logging: one JSON configuration; DEBUG traces our requests, not the libraries."""

from __future__ import annotations

import logging
import logging.config

from kopilka.core.logging import dict_config


def _levels(level: str) -> dict[str, int]:
    logging.config.dictConfig(dict_config(level))
    try:
        names = ("aiokafka", "faust.transport", "asyncpg", "streams.normalize", "ingest.webhooks")
        return {name: logging.getLogger(name).getEffectiveLevel() for name in names}
    finally:
        logging.config.dictConfig(dict_config("INFO"))


def test_debug_keeps_the_libraries_at_info():
    levels = _levels("DEBUG")
    assert levels["streams.normalize"] == levels["ingest.webhooks"] == logging.DEBUG
    assert levels["aiokafka"] == levels["faust.transport"] == levels["asyncpg"] == logging.INFO


def test_a_quieter_level_quiets_the_libraries_too():
    assert set(_levels("WARNING").values()) == {logging.WARNING}
