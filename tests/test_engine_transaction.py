"""`geoloc.db.engine.transaction`: the one way a library function takes an optional connection."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geoloc.db.engine import transaction


def _values(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT x FROM t_tx ORDER BY x")).scalars())


@pytest.fixture
def table(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t_tx (x int)"))
    return engine


def test_without_a_connection_it_commits_its_own_transaction(table):
    with transaction() as conn:
        conn.execute(sa.text("INSERT INTO t_tx VALUES (1)"))
    assert _values(table) == [1]


def test_without_a_connection_an_error_stores_nothing(table):
    with pytest.raises(RuntimeError), transaction() as conn:
        conn.execute(sa.text("INSERT INTO t_tx VALUES (2)"))
        raise RuntimeError("half way")
    assert _values(table) == []


def test_with_a_connection_the_callers_transaction_decides(table):
    with table.connect() as outer:
        outer.begin()
        with transaction(outer) as conn:
            assert conn is outer
            conn.execute(sa.text("INSERT INTO t_tx VALUES (3)"))
        assert _values(table) == []  # not committed by transaction()
        outer.rollback()
    assert _values(table) == []
    with table.begin() as outer:
        with transaction(outer) as conn:
            conn.execute(sa.text("INSERT INTO t_tx VALUES (4)"))
    assert _values(table) == [4]
