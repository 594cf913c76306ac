"""The live answer's registry join (serving/data_sources.py) and the store's person lookup."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.exc import OperationalError

from features.contract import canonical_from_typed
from features.registries import (
    JOINED_FIELDS,
    RegistryConfig,
    card_dates,
    extract_digest,
    join_registries,
    validate_extract,
)
from features.vectors import columns_from_records
from serving import data_sources
from serving.data_sources import join_live, lead_sources, pin_of
from serving.registry_store import PERSON_INDEX, RegistryStore
from serving.schemas import EXAMPLE_RECORD

CONFIG = RegistryConfig.load()


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def put(store: RegistryStore, kind: str, on: dt.date, **columns: list[str]) -> int:
    """Import an extract; its snapshot id."""
    rows = validate_extract(pd.DataFrame(columns), CONFIG.department(kind), on)
    done = store.import_extract(kind, on, rows, extract_digest(rows), f"{kind}.csv", "v")
    return done.snapshot.id


def columns_of(*records: dict[str, Any]) -> dict[str, np.ndarray]:
    return columns_from_records([canonical_from_typed({**EXAMPLE_RECORD, **r}) for r in records])


def seed(store: RegistryStore) -> dict[str, int]:
    """低保 holds a (since 2020) and b (ended 2021); 残联 holds c; 退役军人 holds a."""
    on = dt.date(2025, 6, 30)
    return {
        "dibao": put(
            store,
            "dibao",
            on,
            person_key=[key("a"), key("b")],
            status=["active", "ended"],
            valid_from=["2020-01-01", "2019-01-01"],
            valid_to=["", "2021-12-31"],
        ),
        "disability": put(
            store,
            "disability",
            on,
            person_key=[key("c")],
            status=["active"],
            valid_from=["2018-01-01"],
            disability_category=["physical"],
            disability_level=["3"],
            certificate=["true"],
        ),
        "veteran_family": put(
            store,
            "veteran_family",
            on,
            person_key=[key("a")],
            status=["active"],
            valid_from=["2010-01-01"],
        ),
    }


def field(found: Any, name: str) -> Any:
    return next(f for f in found.fields if f.field == name)


def test_a_keyed_record_is_joined_and_the_card_is_shown_beside(store: RegistryStore) -> None:
    ids = seed(store)
    columns = columns_of(
        {
            "person_key": key("a"),
            "low_income_status": "none",
            "disability_certificate": True,
            "registry_flags": ["serious_illness"],
        }
    )
    live = join_live(columns, store, CONFIG)
    found = live.sources[0]
    assert found.status == "joined" and found.read_on == dt.date(2025, 12, 31)
    low = field(found, "low_income_status")
    assert (low.card, low.registry, low.used, low.conflict) == ("none", "dibao", "dibao", True)
    assert [(s.department, s.snapshot_id, s.snapshot_date) for s in low.sources] == [
        ("dibao", ids["dibao"], dt.date(2025, 6, 30))
    ]
    assert low.sources[0].department_zh == "最低生活保障（低保）"
    assert low.sources[0].authority_zh == "民政部门" and low.sources[0].holds_person
    cert = field(found, "disability_certificate")  # 残联 does not hold a: no certificate
    assert (cert.card, cert.registry, cert.used, cert.conflict) == (True, False, False, True)
    assert not cert.sources[0].holds_person
    flags = field(found, "registry_flags")  # 医保 not imported: the card's flag stands
    assert flags.card == ["serious_illness"] and flags.registry == ["veteran_family"]
    assert flags.used == ["serious_illness", "veteran_family"] and flags.conflict  # 退役军人
    both = join_live(
        columns_of(
            {"person_key": key("a"), "registry_flags": ["serious_illness", "veteran_family"]}
        ),
        store,
        CONFIG,
    )
    assert not field(both.sources[0], "registry_flags").conflict  # 医保 says nothing
    assert {s.department for s in found.snapshots} == set(ids)
    # the model reads the joined values
    assert live.columns["low_income_status"][0] == "dibao"
    assert live.columns["disability_certificate"][0] == 0.0
    assert live.columns["registry_flags"][0] == "serious_illness|veteran_family"
    assert columns["low_income_status"][0] == "none"  # the caller's columns are left alone


def test_live_and_screening_read_a_card_alike(store: RegistryStore) -> None:
    """A live answer reads a card as ``aidrec screen --as-of <its decision date>`` does."""
    seed(store)
    records = [
        {"person_key": key(name), "disability_certificate": cert, "low_income_status": low}
        for name, cert, low in (("a", None, None), ("b", True, "dibao"), ("c", False, "none"))
    ]
    columns = columns_of(*records)
    live = join_live(columns, store, CONFIG)
    decision = dt.date(EXAMPLE_RECORD["decision_year"], 12, 31)
    view = store.as_of(decision)  # what the screening reads: whole snapshots
    cards = pd.DataFrame({name: columns[name] for name in ("person_key", *JOINED_FIELDS)})
    dates = card_dates(columns["decision_year"], decision)
    screened = join_registries(cards, view.rows, view.snapshot_dates, dates, CONFIG)
    for name in JOINED_FIELDS:
        assert list(live.columns[name]) == screened[name].tolist(), name
    assert list(live.columns["low_income_status"]) == ["dibao", "dibao", "none"]
    assert list(live.columns["disability_certificate"]) == [0.0, 0.0, 1.0]
    assert [s.status for s in live.sources] == ["joined"] * 3


def test_no_person_key_reads_nothing() -> None:
    class Untouchable:
        def persons(self, *_: Any, **__: Any) -> Any:
            raise AssertionError("no query without a person key")

    columns = columns_of({"person_key": None})
    live = join_live(columns, Untouchable(), CONFIG)  # type: ignore[arg-type]
    assert live.sources[0].status == "no_person_key" and live.sources[0].fields == []
    assert live.columns is not columns and all(
        live.columns[n] is columns[n] for n in columns
    )  # nothing copied


def test_no_snapshot_on_the_decision_date(store: RegistryStore) -> None:
    seed(store)  # extracts of 2025: nothing was known at the end of 2024
    live = join_live(columns_of({"person_key": key("a"), "decision_year": 2024}), store, CONFIG)
    found = live.sources[0]
    assert found.status == "no_registries" and found.read_on == dt.date(2024, 12, 31)
    assert live.columns["low_income_status"][0] == EXAMPLE_RECORD["low_income_status"]


def test_the_decision_date_picks_the_snapshot_and_a_pin_reads_the_old_one(
    store: RegistryStore,
) -> None:
    old = put(
        store,
        "dibao",
        dt.date(2024, 6, 30),
        person_key=[key("a")],
        status=["active"],
        valid_from=["2020-01-01"],
    )
    new = put(
        store,
        "dibao",
        dt.date(2025, 6, 30),
        person_key=[key("a")],
        status=["ended"],
        valid_from=["2020-01-01"],
    )
    columns = columns_of(
        {"person_key": key("a"), "decision_year": 2024, "low_income_status": "none"},
        {"person_key": key("a"), "decision_year": 2025, "low_income_status": "none"},
    )
    live = join_live(columns, store, CONFIG)
    assert [s.snapshots[0].snapshot_id for s in live.sources] == [old, new]
    assert list(live.columns["low_income_status"]) == ["dibao", "none"]
    pinned = join_live(columns, store, CONFIG, [(old,), (old,)])
    assert [s.snapshots[0].snapshot_id for s in pinned.sources] == [old, old]
    assert list(pinned.columns["low_income_status"]) == ["dibao", "dibao"]
    assert pin_of(live.sources[1].model_dump(mode="json")) == (new,)
    corrected = put(  # a corrected extract of the same date replaces the first
        store,
        "dibao",
        dt.date(2025, 6, 30),
        person_key=[key("a")],
        status=["active"],
        valid_from=["2020-01-01"],
    )
    again = join_live(columns, store, CONFIG)
    assert [s.snapshots[0].snapshot_id for s in again.sources] == [old, corrected]
    assert store.current(dt.date(2025, 12, 31))["dibao"].id == corrected  # as the screening


def test_an_unreadable_store_answers_from_the_card(caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def persons(self, *_: Any, **__: Any) -> Any:
            raise OperationalError("SELECT", {}, Exception("connection refused"))

    columns = columns_of({"person_key": key("a")})
    with caplog.at_level(logging.ERROR, logger=data_sources.__name__):
        live = join_live(columns, Down(), CONFIG)  # type: ignore[arg-type]
    assert live.sources[0].status == "unavailable"
    assert "cannot be read" in caplog.text
    assert live.columns["low_income_status"][0] == columns["low_income_status"][0]
    assert join_live(columns, None, CONFIG).sources[0].status == "unavailable"
    assert pin_of(live.sources[0].model_dump(mode="json")) is None


def test_persons_is_one_indexed_query(store: RegistryStore) -> None:
    ids = seed(store)
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(args[2])

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        view = store.persons([key("a"), key("zz")], dt.date(2025, 12, 31))
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert len(statements) == 1
    assert {k: s.id for k, s in view.snapshots.items()} == ids
    assert view.rows["dibao"]["person_key"].tolist() == [key("a")]
    assert view.rows["disability"].empty  # listed, but it does not hold a
    names = {i["name"] for i in inspect(store.engine).get_indexes("registry_rows")}
    assert PERSON_INDEX.name in names


def test_the_index_is_added_to_a_store_made_before_it(store: RegistryStore) -> None:
    seed(store)
    with store.engine.begin() as connection:
        connection.execute(text(f"DROP INDEX {PERSON_INDEX.name}"))
    url = store.engine.url.render_as_string(hide_password=False)
    again = RegistryStore.open(url)
    try:
        names = {i["name"] for i in inspect(again.engine).get_indexes("registry_rows")}
        assert PERSON_INDEX.name in names
        assert again.persons([key("a")], dt.date(2025, 12, 31)).rows["dibao"].shape[0] == 1
        assert sum(s.rows for s in again.snapshots()) == 4  # nothing lost
    finally:
        again.close()


def test_a_live_lead_names_its_registries_the_card_and_the_conflicts(
    store: RegistryStore,
) -> None:
    seed(store)
    record = {
        "person_key": key("a"),
        "low_income_status": "none",
        "disability_certificate": True,
        "registry_flags": ["serious_illness"],
    }
    live = join_live(columns_of(record), store, CONFIG)
    answer = {"data_sources": live.sources[0].model_dump(mode="json"), "created_at": "x"}
    found = lead_sources(record, answer)
    held = [(s["department"], s["field"]) for s in found if "snapshot_id" in s]
    assert held == [("dibao", "low_income_status"), ("veteran_family", "registry_flags")]
    assert all(s["snapshot"] == "2025-06-30" for s in found if "snapshot_id" in s)
    conflicts = {s["field"]: (s["card"], s["registry"]) for s in found if s.get("conflict")}
    assert conflicts == {
        "low_income_status": ("none", "dibao"),
        "disability_certificate": (True, False),
        "registry_flags": (["serious_illness"], ["veteran_family"]),
    }
    unjoined = lead_sources(record, {"data_sources": None, "created_at": "2025-03-01T10:00"})
    assert {s["field"] for s in unjoined} == set(JOINED_FIELDS)
    assert {s["department"] for s in unjoined} == {"case_system"}
    # the card's date is the Beijing date of the answer, as the pages show its time
    late = lead_sources(record, {"data_sources": None, "created_at": "2025-03-01T17:30:00+00:00"})
    assert {s["snapshot"] for s in late} == {"2025-03-02"}


def test_the_example_case_borrows_a_person_the_registries_cover(store: RegistryStore) -> None:
    """`aidrec serve`'s first example scores a person the imported registries cover."""
    from aidrec.settings import Settings
    from serving.cli import example_person_key

    settings = Settings(registry_url=store.engine.url.render_as_string(hide_password=False))
    assert example_person_key(settings) is None  # no registry imported: no key
    seed(store)
    person = example_person_key(settings)
    assert person == key("c")  # 残联 first: c holds a certificate
    found = join_live(columns_of({"person_key": person}), store, CONFIG).sources[0]
    assert found.status == data_sources.JOINED
    assert field(found, "disability_certificate").registry is True


def test_the_example_case_borrows_no_one_a_registry_lists_as_no_longer_covered(
    store: RegistryStore,
) -> None:
    from aidrec.settings import Settings
    from serving.cli import example_person_key

    put(
        store,
        "dibao",
        dt.date(2025, 6, 30),
        person_key=[key("b"), key("a")],
        status=["ended", "active"],
        valid_from=["2019-01-01", "2020-01-01"],
        valid_to=["2021-12-31", ""],
    )
    settings = Settings(registry_url=store.engine.url.render_as_string(hide_password=False))
    assert example_person_key(settings) == key("a")
