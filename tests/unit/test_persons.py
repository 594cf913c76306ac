"""Person keys: the GB 11643 check, the keyed hash, the secret, and the command."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from aidrec.cli import app
from features.persons import (
    BadIdentifiersError,
    PersonKeyError,
    check_character,
    id_problem,
    load_secret,
    pseudonymise,
)

SECRET = "s" * 40
VALID = "11010519491231002X"  # the standard's own example
runner = CliRunner()


def with_check(first17: str) -> str:
    return first17 + check_character(first17)


def test_check_character_follows_gb11643() -> None:
    assert check_character("11010519491231002") == "X"
    assert check_character("44052418800101001") == "4"
    assert id_problem(VALID) is None
    assert id_problem(VALID.lower()) is None  # a lower-case x is the same ID


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("110105194912310021", "check character"),
        ("1101051949123100", "18 characters"),
        ("1101051949123100AX", "17 digits"),
        (None, "missing"),
    ],
)
def test_bad_ids_are_named_without_the_id(value: str | None, words: str) -> None:
    problem = id_problem(value)
    assert problem is not None and words in problem
    assert value is None or value not in problem


def test_key_is_hmac_sha256_of_the_upper_cased_id() -> None:
    frame = pd.DataFrame({"id_number": [VALID.lower()], "x": [1]})
    out = pseudonymise(frame, "id_number", SECRET.encode())
    expected = hmac.new(SECRET.encode(), VALID.encode(), hashlib.sha256).hexdigest()
    assert list(out.columns) == ["person_key", "x"]
    assert out.loc[0, "person_key"] == expected
    other = pseudonymise(frame, "id_number", ("t" * 40).encode())
    assert other.loc[0, "person_key"] != expected


def test_a_file_with_a_bad_id_is_refused_naming_every_bad_row() -> None:
    frame = pd.DataFrame({"id_number": [VALID, "110105194912310021", VALID, "123"]})
    with pytest.raises(BadIdentifiersError) as caught:
        pseudonymise(frame, "id_number", SECRET.encode())
    assert [p.row for p in caught.value.problems] == [2, 4]


def test_secret_is_required_and_long_enough(tmp_path: Path) -> None:
    with pytest.raises(PersonKeyError, match="no person-key secret"):
        load_secret(None, tmp_path / "absent")
    with pytest.raises(PersonKeyError, match="at least 32"):
        load_secret("short", None)
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert load_secret(None, path) == SECRET.encode()


def test_command_writes_keys_and_never_prints_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDREC_DATA_DIR", str(tmp_path))
    source = tmp_path / "ids.csv"
    pd.DataFrame({"sfz": [VALID, with_check("32010419800101123")], "n": [1, 2]}).to_csv(
        source, index=False
    )
    out = tmp_path / "keyed.csv"
    refused = runner.invoke(
        app, ["pseudonymise", "--input", str(source), "--column", "sfz", "--out", str(out)]
    )
    assert refused.exit_code == 2 and "no person-key secret" in refused.output
    assert not out.exists()
    monkeypatch.setenv("AIDREC_PERSON_KEY_SECRET", SECRET)
    done = runner.invoke(
        app, ["pseudonymise", "--input", str(source), "--column", "sfz", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    keyed = pd.read_csv(out)
    assert list(keyed.columns) == ["person_key", "n"]
    assert keyed["person_key"].str.fullmatch("[0-9a-f]{64}").all()
    assert VALID not in done.output and SECRET not in done.output


def test_command_refuses_a_file_with_bad_rows_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDREC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIDREC_PERSON_KEY_SECRET", SECRET)
    source = tmp_path / "ids.csv"
    pd.DataFrame({"sfz": [VALID, "110105194912310021"]}).to_csv(source, index=False)
    out = tmp_path / "keyed.csv"
    result = runner.invoke(
        app, ["pseudonymise", "--input", str(source), "--column", "sfz", "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "row 2: the check character does not match" in result.output
    assert "110105194912310021" not in result.output
    assert not out.exists()
