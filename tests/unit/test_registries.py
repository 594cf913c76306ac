"""Department registries: validation, snapshots (SQLite and PostgreSQL), the join, 低保 lines."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aidrec.cli import app
from features import registries
from features.registries import (
    SMALL_JOIN,
    DibaoTable,
    ExtractError,
    RegistryConfig,
    card_dates,
    extract_digest,
    join_inputs,
    join_registries,
    join_registry_columns,
    validate_extract,
)
from features.synthetic import generate_history
from features.synthetic_registries import case_cards, generate_registries, registry_date
from serving.registry_store import ROW_COLUMNS, RegistryStore, RegistryStoreError

CONFIG = RegistryConfig.load()
SECRET = "s" * 40
runner = CliRunner()


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def dibao_extract(**changes: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "person_key": [key("a"), key("b"), key("c")],
            "status": ["active", "ended", "active"],
            "valid_from": ["2020-01-01", "2019-01-01", "2024-06-01"],
            "valid_to": ["", "2021-12-31", ""],
            "household_members": ["3", "", "2"],
            "monthly_benefit_yuan": ["900", "", "1200.5"],
        }
    )
    for column, values in changes.items():
        frame[column] = values
    return frame


def test_a_good_extract_becomes_canonical_rows() -> None:
    rows = validate_extract(dibao_extract(), CONFIG.department("dibao"), dt.date(2025, 1, 1))
    assert list(rows.columns) == ["person_key", "status", "valid_from", "valid_to", "attributes"]
    assert rows["valid_to"].tolist() == [None, "2021-12-31", None]
    assert json.loads(rows.loc[2, "attributes"]) == {
        "household_members": 2,
        "monthly_benefit_yuan": 1200.5,
    }


def test_every_problem_is_named_with_row_column_and_rule() -> None:
    bad = dibao_extract(
        status=["active", "unknown", "active"],
        valid_from=["2020-01-01", "2019-13-01", "2026-01-01"],
        person_key=[key("a"), "110105194912310021", key("c")],
    )
    with pytest.raises(ExtractError) as caught:
        validate_extract(bad, CONFIG.department("dibao"), dt.date(2025, 1, 1))
    found = {(p.row, p.column) for p in caught.value.problems}
    assert found == {(2, "status"), (2, "valid_from"), (2, "person_key"), (3, "valid_from")}
    assert "must be one of active, suspended, ended" in caught.value.problems[1].rule + "".join(
        p.rule for p in caught.value.problems
    )


def test_missing_and_unknown_columns_are_refused_in_the_header() -> None:
    frame = dibao_extract().drop(columns=["status"]).assign(id_number="x")
    with pytest.raises(ExtractError) as caught:
        validate_extract(frame, CONFIG.department("dibao"), dt.date(2025, 1, 1))
    assert {(p.row, p.column) for p in caught.value.problems} == {(0, "status"), (0, "id_number")}


def test_disability_attributes_are_checked() -> None:
    frame = pd.DataFrame(
        {
            "person_key": [key("a"), key("b")],
            "status": ["active", "active"],
            "valid_from": ["2020-01-01", "2020-01-01"],
            "disability_category": ["physical", "wings"],
            "disability_level": ["2", "5"],
            "certificate": ["true", "maybe"],
        }
    )
    with pytest.raises(ExtractError) as caught:
        validate_extract(frame, CONFIG.department("disability"), dt.date(2025, 1, 1))
    assert {(p.row, p.column) for p in caught.value.problems} == {
        (2, "disability_category"),
        (2, "disability_level"),
        (2, "certificate"),
    }


def _import(store: RegistryStore, frame: pd.DataFrame, on: dt.date) -> bool:
    rows = validate_extract(frame, CONFIG.department("dibao"), on)
    return store.import_extract("dibao", on, rows, extract_digest(rows), "x.csv", "v").created


def statuses(rows: pd.DataFrame) -> list[str]:
    """The statuses of a, b, c (a snapshot's rows come back in no particular order)."""
    by_person = dict(zip(rows["person_key"], rows["status"], strict=True))
    assert len(by_person) == len(rows) == 3
    return [by_person[key(name)] for name in "abc"]


def test_snapshots_replace_and_are_kept(store: RegistryStore) -> None:
    assert _import(store, dibao_extract(), dt.date(2024, 12, 31))
    assert not _import(store, dibao_extract(), dt.date(2024, 12, 31))  # same extract: nothing
    newer = dibao_extract(status=["ended", "ended", "active"])
    assert _import(store, newer, dt.date(2025, 6, 30))
    assert len(store.snapshots("dibao")) == 2
    old = store.as_of(dt.date(2025, 1, 1))
    assert old.snapshot_dates == {"dibao": "2024-12-31"}
    assert statuses(old.rows["dibao"]) == ["active", "ended", "active"]
    now = store.as_of(dt.date(2025, 7, 1))
    assert statuses(now.rows["dibao"]) == ["ended", "ended", "active"]
    assert store.as_of(dt.date(2024, 1, 1)).snapshots == {}
    assert list(store.counts()) == [("dibao", 2, 3)]


def test_a_failing_import_leaves_nothing(store: RegistryStore) -> None:
    rows = validate_extract(dibao_extract(), CONFIG.department("dibao"), dt.date(2024, 12, 31))
    broken = rows.assign(status=[None, "active", "active"])  # NOT NULL breaks mid-insert
    with pytest.raises(Exception):  # noqa: B017 - the driver's own integrity error
        store.import_extract("dibao", dt.date(2024, 12, 31), broken, "d", "x.csv", "v")
    assert store.snapshots() == []


def test_another_secret_is_refused(store: RegistryStore) -> None:
    store.check_secret("one")
    store.check_secret("one")
    with pytest.raises(RegistryStoreError, match="differs"):
        store.check_secret("two")


def test_import_command_refuses_bad_rows_and_a_missing_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDREC_DATA_DIR", str(tmp_path))
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    dibao_extract().to_csv(good, index=False)
    dibao_extract(status=["active", "gone", "active"]).to_csv(bad, index=False)
    args = ["registries", "import", "--department", "dibao", "--as-of", "2024-12-31", "--file"]
    no_secret = runner.invoke(app, [*args, str(good)])
    assert no_secret.exit_code == 2 and "no person-key secret" in no_secret.output
    monkeypatch.setenv("AIDREC_PERSON_KEY_SECRET", SECRET)
    refused = runner.invoke(app, [*args, str(bad)])
    assert refused.exit_code == 1
    assert "row 2: status: must be one of active, suspended, ended" in refused.output
    listed = runner.invoke(app, ["registries", "list"])
    assert "no registry imported yet" in listed.output
    done = runner.invoke(app, [*args, str(good)])
    assert done.exit_code == 0, done.output
    assert "3 rows imported" in done.output
    listed = runner.invoke(app, ["registries", "list"])
    assert "dibao" in listed.output and "1 snapshot(s)" in listed.output
    monkeypatch.setenv("AIDREC_PERSON_KEY_SECRET", "t" * 40)
    wrong = runner.invoke(app, [*args, str(good)])
    assert wrong.exit_code == 2 and "secret differs" in wrong.output


def _cards() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_key": [key("a"), key("b"), key("c"), None],
            "decision_year": [2023.0, 2023.0, 2023.0, 2023.0],
            "low_income_status": ["none", "dibao", None, "marginal"],
            "disability_certificate": [np.nan, 1.0, 0.0, np.nan],
            "registry_flags": [None, "veteran_family", "", ""],
        }
    )


def _rows(kind: str, frame: pd.DataFrame) -> pd.DataFrame:
    return validate_extract(frame, CONFIG.department(kind), dt.date(2024, 12, 31))


def test_join_keeps_card_and_registry_side_by_side_with_sources() -> None:
    cards = _cards()
    dibao = _rows("dibao", dibao_extract())
    disability = _rows(
        "disability",
        pd.DataFrame(
            {
                "person_key": [key("c")],
                "status": ["active"],
                "valid_from": ["2018-01-01"],
                "disability_category": ["physical"],
                "disability_level": ["3"],
                "certificate": ["true"],
            }
        ),
    )
    veterans = _rows(
        "veteran_family",
        pd.DataFrame(
            {"person_key": [key("a")], "status": ["active"], "valid_from": ["2010-01-01"]}
        ),
    )
    tekun = _rows(
        "tekun",
        pd.DataFrame(
            {"person_key": [key("z")], "status": ["active"], "valid_from": ["2010-01-01"]}
        ),
    )
    snapshots = dict.fromkeys(["dibao", "tekun", "disability", "veteran_family"], "2024-12-31")
    joined = join_registries(
        cards,
        {"dibao": dibao, "tekun": tekun, "disability": disability, "veteran_family": veterans},
        snapshots,
        card_dates(cards["decision_year"].to_numpy(), None),
        CONFIG,
    )
    # a: card says none, 低保 registry says dibao (valid since 2020): both kept, registry wins
    assert joined.loc[0, "low_income_status_card"] == "none"
    assert joined.loc[0, "low_income_status_registry"] == "dibao"
    assert joined.loc[0, "low_income_status"] == "dibao"
    assert joined.loc[0, "low_income_status_source"] == "dibao@2024-12-31"
    # b: the card says dibao but the registry's row ended in 2021: registry knows "not covered"
    assert joined.loc[1, "low_income_status_registry"] is None
    assert joined.loc[1, "dibao_or_tekun_registry"] == 0.0
    assert joined.loc[1, "low_income_status"] == "dibao"
    # c: 低保 from 2024-06 only, so not on 2023-12-31; certificate in 残联's registry
    assert joined.loc[2, "registry_dibao"] == 0.0
    assert joined.loc[2, "disability_certificate_card"] == 0.0
    assert joined.loc[2, "disability_certificate"] == 1.0
    assert joined.loc[2, "disability_level_registry"] == 3.0
    assert joined.loc[1, "disability_certificate"] == 0.0  # the registry overrules the card
    # flags: union of card and registry, registry's source named
    assert joined.loc[0, "registry_flags"] == "veteran_family"
    assert joined.loc[0, "registry_flags_source"] == "veteran_family@2024-12-31"
    assert json.loads(joined.loc[0, "registry_sources"]) == [
        {
            "department": "dibao",
            "department_zh": "最低生活保障（低保）",
            "snapshot": "2024-12-31",
            "field": "low_income_status",
        },
        {
            "department": "veteran_family",
            "department_zh": "退役军人及其家庭（退役军人事务局）",
            "snapshot": "2024-12-31",
            "field": "registry_flags",
        },
    ]
    # no person key: nothing known from registries, the card's values stay
    assert np.isnan(joined.loc[3, "registry_dibao"])
    assert joined.loc[3, "low_income_status"] == "marginal"
    assert np.isnan(joined.loc[0, "registry_serious_illness"])  # no snapshot: unknown, not "no"


def test_as_of_date_reads_every_card_on_that_day() -> None:
    cards = _cards()
    joined = join_registries(
        cards,
        {"dibao": _rows("dibao", dibao_extract())},
        {"dibao": "2024-12-31"},
        card_dates(cards["decision_year"].to_numpy(), dt.date(2024, 7, 1)),
        CONFIG,
    )
    assert joined["registry_dibao"].tolist()[:3] == [1.0, 0.0, 1.0]
    either = joined["dibao_or_tekun_registry"].to_numpy()
    assert either[0] == 1.0 and np.isnan(either[1])  # 特困 unknown: not known "outside 低保"


def test_dibao_table_has_every_province_with_a_source() -> None:
    table = DibaoTable.from_csv()
    assert table.frame["source"].str.len().gt(20).all()
    line, year = table.standard(
        np.array(["11", "11", "52"], dtype=object),
        np.array([2024.0, 2024.0, 2019.0]),
        np.array([0.0, 1.0, np.nan]),
    )
    assert line[0] > line[1] > 0  # urban above rural
    assert year[2] == table.frame.loc[table.frame["province_code"] == "52", "year"].min()


def test_a_corrected_extract_of_the_same_date_replaces_the_first(store: RegistryStore) -> None:
    on = dt.date(2024, 12, 31)
    assert _import(store, dibao_extract(), on)
    assert _import(store, dibao_extract(status=["suspended", "ended", "active"]), on)
    view = store.as_of(on)
    assert statuses(view.rows["dibao"]) == ["suspended", "ended", "active"]
    assert len(store.snapshots("dibao")) == 2


def test_card_dates_are_the_year_end_unless_a_date_is_given() -> None:
    years = np.array([2019.0, np.nan, 2024.0])
    assert card_dates(years, None).astype(str).tolist() == ["2019-12-31", "NaT", "2024-12-31"]
    assert set(card_dates(years, dt.date(2023, 5, 1)).astype(str)) == {"2023-05-01"}


def test_the_join_pairs_every_card_with_each_row_of_its_person_valid_on_its_date() -> None:
    """Against a plain loop over cards × rows (keys shared by cards, open and closed rows)."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        pool = [key(str(i)) for i in range(int(rng.integers(1, 12)))]
        n, m = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        keys = [None if rng.random() < 0.2 else pool[rng.integers(len(pool))] for _ in range(n)]
        cards = pd.DataFrame(
            {
                "person_key": pd.Series(keys, dtype=object),
                "decision_year": rng.integers(2015, 2026, n).astype(float),
                "low_income_status": None,
                "disability_certificate": np.nan,
                "registry_flags": None,
            }
        )
        dates = card_dates(cards["decision_year"].to_numpy(), None)
        day = np.datetime64("2012-01-01")
        year_ends = [np.datetime64(f"{y}-12-31") for y in rng.integers(2015, 2026, m)]
        starts = [  # some start or end on a card's date: the bounds count
            y if rng.random() < 0.3 else day + int(d)
            for y, d in zip(year_ends, rng.integers(0, 5000, m), strict=True)
        ]
        ends = [
            None if rng.random() < 0.4 else (y if rng.random() < 0.5 else s + int(d))
            for s, y, d in zip(starts, year_ends, rng.integers(0, 2000, m), strict=True)
        ]
        ends = [None if e is not None and e < s else e for s, e in zip(starts, ends, strict=True)]
        levels = rng.integers(1, 5, m).tolist()
        certified = (rng.random(m) < 0.7).tolist()
        rows = pd.DataFrame(
            {
                "person_key": [pool[rng.integers(len(pool))] for _ in range(m)],
                "status": rng.choice(["active", "revoked"], m),
                "valid_from": [str(s) for s in starts],
                "valid_to": [None if e is None else str(e) for e in ends],
                "attributes": [
                    json.dumps({"disability_level": lv, "certificate": c})
                    for lv, c in zip(levels, certified, strict=True)
                ],
            }
        )
        pairs = [
            (c, r)
            for c in range(n)
            for r in range(m)
            if keys[c] is not None
            and keys[c] == rows["person_key"][r]
            and rows["status"][r] == "active"
            and starts[r] <= dates[c]
            and (ends[r] is None or ends[r] >= dates[c])
        ]
        joined = join_registries(cards, {"disability": rows}, {"disability": "x"}, dates, CONFIG)
        covered = [
            np.nan if keys[c] is None else float(any(p[0] == c for p in pairs)) for c in range(n)
        ]
        assert joined["registry_disability"].tolist() == pytest.approx(covered, nan_ok=True)
        lowest = [
            min((levels[r] for cc, r in pairs if cc == c and certified[r]), default=np.nan)
            for c in range(n)
        ]
        assert joined["disability_level_registry"].tolist() == pytest.approx(lowest, nan_ok=True)


def test_one_card_at_a_time_joins_exactly_as_the_whole_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Card by card, the live path equals the vectorised join of the whole chunk.

    One card, its person's rows as arrays, the small pair loop: every column the same,
    sources JSON included.
    """
    history = generate_history(2_500, seed=31)
    on = registry_date(history)
    extracts = generate_registries(history, seed=31)
    rows = {k: validate_extract(v, CONFIG.department(k), on) for k, v in extracts.items()}
    del rows["women_in_hardship"]  # a department without a snapshot on the date
    cards = case_cards(history)
    year_end = dict(
        zip(
            cards["person_key"],
            cards["decision_year"].astype(int).astype(str) + "-12-31",
            strict=True,
        )
    )
    for table in rows.values():  # some rows start or end on their person's card date
        ends = table["person_key"].map(year_end)
        table.loc[table.index[::3], "valid_to"] = ends.iloc[::3]
        table.loc[table.index[1::5], "valid_from"] = ends.iloc[1::5]
    cards.loc[cards.index[::7], "person_key"] = None
    dates = card_dates(cards["decision_year"].to_numpy(dtype=float), None)
    snapshots = dict.fromkeys(rows, on.isoformat())
    assert len(cards) > SMALL_JOIN  # the chunk takes the vectorised path
    whole = join_registries(cards, rows, snapshots, dates, CONFIG)
    assert whole["registry_sources"].notna().sum() > 500
    assert (whole["disability_level_registry"].notna()).sum() > 20

    def vectorised(*args: object) -> None:
        raise AssertionError("one card must take the small path")

    monkeypatch.setattr(registries, "_pairs_vectorised", vectorised)
    positions = {
        kind: table.groupby("person_key", sort=False).indices for kind, table in rows.items()
    }
    columns = {
        kind: {name: table[name].to_numpy(dtype=object) for name in ROW_COLUMNS}
        for kind, table in rows.items()
    }
    empty = np.zeros(0, dtype=int)
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(len(cards)):
        card = cards.iloc[i : i + 1]
        person = card["person_key"].iloc[0]
        tables = {  # what RegistryStore.persons reads: the person's rows, every status
            kind: {
                name: values[positions[kind].get(person, empty) if person else empty]
                for name, values in table.items()
            }
            for kind, table in columns.items()
        }
        one = join_registry_columns(join_inputs(card), tables, snapshots, dates[i : i + 1], CONFIG)
        for name, values in one.items():
            parts.setdefault(name, []).append(values)
    assert list(parts) == list(whole.columns)
    for name, values in parts.items():
        joined = np.concatenate(values)
        assert joined.dtype == whole[name].dtype, name
        np.testing.assert_array_equal(joined, whole[name].to_numpy(), err_msg=name, strict=True)
