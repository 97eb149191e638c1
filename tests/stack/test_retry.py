"""The error taxonomy: what is retried and what is the data's fault."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, RecordTooLargeError

from kopilka.core.retry import is_transient, until_done


def _pg(sqlstate: str) -> asyncpg.PostgresError:
    """The exception asyncpg raises for this SQLSTATE (its own class for the code)."""
    return asyncpg.PostgresError.new({"C": sqlstate, "M": f"test {sqlstate}", "S": "ERROR"})


@pytest.mark.parametrize(
    "sqlstate",
    [
        "08006",
        "08001",
        "40001",
        "40P01",
        "53300",
        "53100",
        "57P01",
        "57P03",
        "57014",
        "55P03",
        "25006",
    ],
)
def test_transient_sqlstates_are_retried(sqlstate):
    assert is_transient(_pg(sqlstate))


@pytest.mark.parametrize("sqlstate", ["23505", "23514", "22P05", "22001", "42P01", "22003"])
def test_data_errors_are_permanent(sqlstate):
    assert not is_transient(_pg(sqlstate))


def test_connection_loss_and_timeouts_are_transient():
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert is_transient(asyncpg.InterfaceError("connection is closed"))
    assert is_transient(KafkaConnectionError())
    assert is_transient(
        asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation")
    )


def test_bugs_and_refused_records_are_permanent():
    assert not is_transient(ValueError("bad"))
    assert not is_transient(RecordTooLargeError())


async def test_until_done_retries_transient_then_succeeds():
    calls = []

    async def step():
        calls.append(1)
        if len(calls) < 3:
            raise _pg("40001")
        return "ok"

    assert await until_done(step, "t", first_delay_s=0.001) == "ok"
    assert len(calls) == 3


async def test_until_done_raises_permanent_at_once():
    calls = []

    async def step():
        calls.append(1)
        raise _pg("23505")

    with pytest.raises(asyncpg.PostgresError):
        await until_done(step, "t", first_delay_s=0.001)
    assert len(calls) == 1
