"""The DuckDB boundary (featurelite.db): every DuckDB error becomes a StoreError raised
from it, never the bare root class and never a raw DuckDB exception; whether a failed
transaction committed is said where it is known."""

from __future__ import annotations

import duckdb
import pytest

import featurelite as fl
from featurelite import db


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)").fetchall()
    yield connection
    connection.close()


def test_a_failed_statement_is_a_store_error_from_the_duckdb_error(con):
    with pytest.raises(fl.StoreError) as info:
        db.run(con, "SELECT * FROM missing")
    assert type(info.value) is fl.StoreError and isinstance(info.value.__cause__, duckdb.CatalogException)
    with pytest.raises(fl.StoreError) as info:
        db.fetch_arrow(con, "SELECT nope FROM t")
    assert type(info.value) is fl.StoreError and isinstance(info.value.__cause__, duckdb.BinderException)


def test_translating_says_what_failed_and_is_never_the_root_class(con):
    with (
        pytest.raises(fl.StoreError, match=r"^counting the rows failed: Catalog Error") as info,
        db.translating("counting the rows", view="v"),
    ):
        db.run(con, "SELECT count(*) FROM missing")
    assert type(info.value) is fl.StoreError and info.value.view == "v" and info.value.committed is None
    assert isinstance(info.value.__cause__, duckdb.CatalogException)
    with pytest.raises(fl.StoreError, match=r"^reading failed: Parser Error"), db.translating("reading"):
        con.execute("SELEC 1")  # a raw DuckDB call inside is translated too
    with pytest.raises(fl.InputError), db.translating("anything"):
        raise fl.InputError("featurelite errors pass through unchanged")


def test_a_failed_transaction_says_nothing_was_committed(con):
    with pytest.raises(fl.StoreError) as info, db.translating("adding rows"), db.transaction(con):
        db.run(con, "INSERT INTO t VALUES (1)")
        db.run(con, "INSERT INTO t VALUES (1)")  # a duplicate key: the transaction rolls back
    assert info.value.committed is False and "Constraint Error" in str(info.value)
    assert db.run(con, "SELECT count(*) FROM t") == [(0,)]
    with db.transaction(con) as outcome:
        db.run(con, "INSERT INTO t VALUES (2)")
    assert outcome.committed is True


def test_a_commit_that_fails_says_nothing_was_written(con):
    # A conflict found only at COMMIT: another connection committed the same key first.
    other = con.cursor()
    with (
        pytest.raises(fl.StoreError, match="commit failed, nothing was written") as info,
        db.transaction(con) as outcome,
    ):
        db.run(con, "INSERT INTO t VALUES (3)")
        other.execute("INSERT INTO t VALUES (3)").fetchall()
    assert info.value.committed is False and outcome.committed is False
    assert isinstance(info.value.__cause__, duckdb.Error)
    assert db.run(con, "SELECT count(*) FROM t WHERE x = 3") == [(1,)]
