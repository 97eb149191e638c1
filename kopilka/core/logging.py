"""Structured logging (structlog) for every Kopilka process, through one configuration.

Our own lines come from structlog; the standard library's (Faust, aiokafka, asyncpg, aiohttp)
go through the root handler, whose formatter renders them the same way: one JSON object per
line with `event`, `level`, `logger` and `timestamp`. The Faust worker installs its logging
itself, from `dict_config()` (`streams.worker`), so its banner and its rebalance messages are
JSON too.

At DEBUG every stage logs one `request_trace` line per webhook it handles (ingress,
normalize, ledger, the Postgres sink, outbound delivery), each with the webhook's `request_id`
(the `event_id` its 202 returned), so `grep <request_id>` over the logs tells a webhook's whole
story; the libraries stay at INFO then, their DEBUG output being noise of another kind.

Secrets never reach a log line: callers log tenant ids, never webhook secrets or API keys, and
`_redact` masks any key that looks like one as a second line of defence.
"""

from __future__ import annotations

import logging
import logging.config
import sys

import structlog

# Libraries whose DEBUG lines are not about our requests: they stay at INFO under DEBUG.
_LIBRARIES = ("aiokafka", "faust", "mode", "asyncio", "aiohttp", "asyncpg", "aiogram", "urllib3")
_SECRET_KEYS = ("secret", "api_key", "password", "authorization", "token", "dsn")


def _redact(_logger, _name, event_dict):
    for key in list(event_dict):
        if any(marker in key.lower() for marker in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


def _renderer(fmt: str):
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


def stdlib_formatter(fmt: str = "json") -> logging.Formatter:
    """The standard library's log records rendered like our own lines."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
    )


def dict_config(level: str = "INFO", fmt: str = "json") -> dict:
    """`logging.config.dictConfig` form of the same setup (what Faust's worker takes)."""
    libraries = "INFO" if level.upper() == "DEBUG" else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"kopilka": {"()": stdlib_formatter, "fmt": fmt}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "kopilka",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        # aiohttp's access log duplicates our own request log line.
        "loggers": {
            **{name: {"level": libraries} for name in _LIBRARIES},
            "aiohttp.access": {"level": "WARNING"},
        },
    }


def configure(level: str = "INFO", fmt: str = "json") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(dict_config(level, fmt))
    logging.captureWarnings(True)  # a library's warning is a log line too, not stray text


def get_logger(name: str):
    return structlog.get_logger(name)
