"""Thin commands over the lead register (线索管理): list, report, sync from stored answers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from aidrec.settings import settings_of
from serving.answer_index import AnswerQuery
from serving.audit import AuditError
from serving.checkpoints import AuditKeyError
from serving.lead_schemas import LeadOut
from serving.lead_service import sync_answers
from serving.leads import (
    DEPARTMENTS,
    KIND_ZH,
    OVERDUE_ZH,
    STATUS_ZH,
    STATUSES,
    LeadError,
    LeadQuery,
    LeadStore,
    kind_family,
)
from serving.scopes import Scope, ScopeError
from serving.stores import open_lead_store
from training.policy import PolicyError, load_policy

log = logging.getLogger(__name__)
leads_app = typer.Typer(help="The lead register (线索管理).", no_args_is_help=True)
FORMATS = ("table", "json")
SYNC_PAGE = 200
"""Stored answers read at a time by ``aidrec leads sync``."""

PolicyOption = Annotated[
    Path | None,
    typer.Option(help="policy file whose lead_deadlines apply (default: the shipped policy)"),
]
ScopeOption = Annotated[
    str, typer.Option(help="national, or a province (32), city (3201) or office (320104)")
]
FormatOption = Annotated[str, typer.Option("--format", help="table or json")]


def _open(ctx: typer.Context, policy: Path | None) -> LeadStore:
    try:
        deadlines = load_policy(policy).lead_deadlines
        return open_lead_store(settings_of(ctx), deadlines)
    except (PolicyError, AuditError, AuditKeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _checked(scope: str, output: str) -> Scope:
    if output not in FORMATS:
        raise typer.BadParameter(f"--format {output!r}: one of {', '.join(FORMATS)}")
    try:
        return Scope.parse(scope)
    except ScopeError as exc:
        raise typer.BadParameter(str(exc)) from None


def report_table(report: dict[str, Any]) -> str:
    """The report as aligned text in Chinese (the command's default output)."""
    lines = [
        f"线索统计  截至 {report['as_of']}  范围 {report['scope']}  共 {report['total']} 条",
        f"期限: 发现后 {report['deadlines']['transfer_days']} 日内流转, "
        f"流转后 {report['deadlines']['feedback_days']} 日内反馈",
        "",
        "按类型",
    ]
    for kind, count in report["by_kind"].items():
        zh = KIND_ZH.get(kind_family(kind), kind)
        lines.append(f"  {zh:<10}{kind:<44}{count:>8}")
    lines += ["", "按状态"]
    lines += [f"  {STATUS_ZH[s]:<10}{s:<44}{n:>8}" for s, n in report["by_status"].items()]
    lines += ["", "按流转部门"]
    for department, count in report["by_department"].items():
        lines.append(f"  {DEPARTMENTS.get(department, department):<22}{department:<32}{count:>8}")
    lines += ["", "逾期"]
    lines += [f"  {OVERDUE_ZH[k]:<10}{k:<44}{n:>8}" for k, n in report["overdue"].items()]
    return "\n".join(lines)


@leads_app.command("report")
def report(
    ctx: typer.Context,
    scope: ScopeOption = "national",
    output: FormatOption = "table",
    policy: PolicyOption = None,
) -> None:
    """Counts of leads by kind, status, department and overdue (线索统计)."""
    where = _checked(scope, output)
    store = _open(ctx, policy)
    try:
        found = store.report(where)
    finally:
        store.engine.dispose()
    typer.echo(
        json.dumps(found, ensure_ascii=False, indent=2) if output == "json" else report_table(found)
    )


@leads_app.command("list")
def list_leads(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="a lead kind, or department_failure")] = None,
    status: Annotated[str | None, typer.Option(help="one of " + ", ".join(STATUSES))] = None,
    province: Annotated[str | None, typer.Option(help="province code")] = None,
    overdue: Annotated[
        bool | None, typer.Option("--overdue/--in-time", help="only overdue or only in time")
    ] = None,
    assignee: Annotated[str | None, typer.Option(help="承办人")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    scope: ScopeOption = "national",
    output: FormatOption = "table",
    policy: PolicyOption = None,
) -> None:
    """Leads, newest first, with status and deadline (线索列表)."""
    where = _checked(scope, output)
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"--status {status!r}: one of {', '.join(STATUSES)}")
    store = _open(ctx, policy)
    query = LeadQuery(where, kind, status, province, overdue, assignee)
    try:
        found, total = store.search(query, limit)
    finally:
        store.engine.dispose()
    if output == "json":
        items = [LeadOut.of(lead).model_dump(mode="json", exclude={"history"}) for lead in found]
        typer.echo(json.dumps({"total": total, "items": items}, ensure_ascii=False, indent=2))
        return
    typer.echo(f"共 {total} 条，显示 {len(found)} 条")
    for lead in found:
        score = "规则" if lead.score is None else f"{lead.score:.2f}"
        late = OVERDUE_ZH.get(lead.overdue or "", "")
        typer.echo(
            f"{lead.id}  {lead.case_id:<20} {lead.kind:<40} {score:>5}  "
            f"{STATUS_ZH[lead.status]:<5} {lead.assignee or '-':<10} {late}"
        )


@leads_app.command("sync")
def sync(ctx: typer.Context, policy: PolicyOption = None) -> None:
    """Register the flagged leads of every stored answer (idempotent; after a register outage)."""
    store = _open(ctx, policy)
    audit = store.audit

    def stored(bar: tqdm[Any]) -> Any:
        offset = 0
        while True:
            page, total = audit.predictions(AnswerQuery(flagged=True), SYNC_PAGE, offset)
            bar.total = total
            for record in page:
                yield record.payload["request"]["record"], record.payload["response"]
            bar.update(len(page))
            offset += SYNC_PAGE
            if offset >= total:
                return

    try:
        with tqdm(desc="stored answers with a flagged lead", unit="answer") as bar:
            summary = sync_answers(stored(bar), store)
    except (AuditError, LeadError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.engine.dispose()
    typer.echo(
        f"leads of stored answers: {summary.created} registered, {summary.updated} refreshed, "
        f"{summary.unchanged} already there"
    )
