"""``aidrec leads report`` and ``aidrec leads list`` over a register in a temporary store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aidrec.cli import app
from aidrec.settings import Settings
from serving.leads import TransitionRequest
from serving.stores import open_lead_store
from tests.unit.test_leads import candidate


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIDREC_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AIDREC_AUDIT_URL", raising=False)
    store = open_lead_store(Settings(data_dir=tmp_path))
    store.register(
        [
            candidate("C1"),
            candidate("C2", kind="civil_support"),
            candidate("C3", kind="department_failure:no_certificate"),
            candidate("C4", province_code="11", office_code="110105"),
        ]
    )
    lead = store.find("C1", "judicial_aid")
    assert lead is not None
    store.transition(lead.id, TransitionRequest("transferred", "civil_affairs"), "test")
    store.engine.dispose()
    return tmp_path


def test_report_counts_by_kind_status_department_and_overdue(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["leads", "report", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["total"] == 4
    assert report["by_status"]["new"] == 3 and report["by_status"]["transferred"] == 1
    assert report["by_department"] == {"civil_affairs": 1}
    assert report["by_kind"]["department_failure:no_certificate"] == 1
    assert report["overdue"] == {"transfer": 0, "feedback": 0}  # just registered
    scoped = json.loads(
        CliRunner().invoke(app, ["leads", "report", "--scope", "11", "--format", "json"]).output
    )
    assert scoped["total"] == 1
    table = CliRunner().invoke(app, ["leads", "report"])
    assert table.exit_code == 0 and "民政局" in table.output and "待流转" in table.output


def test_list_filters_and_refuses_a_bad_status(data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["leads", "list", "--status", "new", "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert listed["total"] == 3 and {i["case_id"] for i in listed["items"]} == {"C2", "C3", "C4"}
    rule = CliRunner().invoke(app, ["leads", "list", "--kind", "department_failure"])
    assert "C3" in rule.output and "C2" not in rule.output
    late = json.loads(
        CliRunner().invoke(app, ["leads", "list", "--overdue", "--format", "json"]).output
    )
    assert late["total"] == 0
    bad = CliRunner().invoke(app, ["leads", "list", "--status", "lost"])
    assert bad.exit_code != 0 and "lost" in bad.output
