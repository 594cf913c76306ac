"""Thin commands of the screening path: pseudonymise, registries, generate-registries, screen.

They compose ``features`` (person keys, registries, department rules), ``serving`` (the
registry store) and ``training`` (screening with the champion); each is a thin layer over a
package function.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer
from tqdm import tqdm

from aidrec.settings import Settings, settings_of
from features.contract import ORACLE_PREFIX, ContractError, parse_records
from features.department_rules import DepartmentRules
from features.persons import (
    BadIdentifiersError,
    PersonKeyError,
    create_secret_file,
    load_secret,
    secret_check,
)
from features.persons import (
    pseudonymise as pseudonymise_frame,
)
from features.registries import (
    DibaoTable,
    ExtractError,
    RegistryConfig,
    RegistryConfigError,
    extract_digest,
    registry_table,
    validate_extract,
)
from features.synthetic import generate_history
from features.synthetic_registries import (
    case_cards,
    generate_registries,
    registry_date,
    write_registries,
)
from features.tables import TableError, read_table, table_format, write_table
from features.wages import WageTable
from serving.audit import AuditError
from serving.leads import LeadCandidate, LeadError, RegisterSummary
from serving.registry_store import RegistryStore, RegistryStoreError
from serving.stores import open_lead_store
from training.registry import CHAMPION, RegistryError, configure_tracking, load_bundle
from training.screening import (
    RegistrySnapshot,
    Screener,
    evaluate_screening,
    lead_candidates,
    screen_file,
    write_leads,
)
from training.spark_engine import (
    JoinContext,
    SparkEngineError,
    SparkJob,
    SparkOptions,
    parse_conf,
    screen_on_spark,
    spark_for,
)

log = logging.getLogger(__name__)


class Engine(StrEnum):
    """Where ``aidrec screen`` runs."""

    LOCAL = "local"
    SPARK = "spark"


MAX_LISTED = 20
"""Refused rows listed on the terminal before a summary line."""
REGISTER_BATCH = 5_000
"""Leads registered per call of the lead register (bounded memory and transactions)."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def person_key_secret(settings: Settings) -> bytes:
    """The deployment's person-key secret (raises PersonKeyError when absent or short)."""
    value = settings.person_key_secret.get_secret_value() if settings.person_key_secret else None
    return load_secret(value, settings.person_key_secret_path)


def pseudonymise(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", help="a table with ID numbers, CSV/Parquet")],
    column: Annotated[str, typer.Option(help="the 身份证号 column")],
    out: Annotated[Path, typer.Option(help="the same table with person_key instead")],
) -> None:
    """Replace a 身份证号 column by person_key (HMAC-SHA256 under the deployment secret).

    Refuses without a secret, and refuses the whole file (exit 1, nothing written) when any ID
    fails the GB 11643 check, listing the rows. Neither the secret nor an ID is ever logged.
    """
    settings = settings_of(ctx)
    try:
        secret = person_key_secret(settings)
        table_format(out)
        frame = read_table(input)
        keyed = pseudonymise_frame(frame, column, secret)
    except (PersonKeyError, TableError) as exc:
        raise _fail(str(exc)) from None
    except BadIdentifiersError as exc:
        for problem in exc.problems[:MAX_LISTED]:
            typer.echo(problem.describe(), err=True)
        hidden = len(exc.problems) - MAX_LISTED
        if hidden > 0:
            typer.echo(f"... and {hidden} more", err=True)
        raise _fail(f"{exc}; nothing written (身份证号校验失败)", code=1) from None
    write_table(keyed, out)
    typer.echo(f"{len(keyed)} rows pseudonymised → {out}")


def parse_date(text: str, option: str) -> dt.date:
    """An ISO date (YYYY-MM-DD) from an option, or a clear error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None


registries_app = typer.Typer(
    help="Other departments' registries (数据管理): import extracts, list snapshots.",
    no_args_is_help=True,
)


def open_registries(settings: Settings) -> RegistryStore:
    """The configured registry store (the audit database unless AIDREC_REGISTRY_URL)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # a fresh directory's first import
    try:
        return RegistryStore.open(settings.registry_database_url)
    except RegistryStoreError as exc:
        raise _fail(str(exc)) from None


@registries_app.command("import")
def import_registry(
    ctx: typer.Context,
    department: Annotated[str, typer.Option(help="the registry kind, e.g. dibao, disability")],
    file: Annotated[Path, typer.Option(help="the department's extract, CSV or Parquet")],
    as_of: Annotated[str, typer.Option(help="the date the extract describes, YYYY-MM-DD")],
) -> None:
    """Import one department's extract as a new snapshot (all rows or none).

    Every row is checked first (columns, person keys, statuses, dates, attributes); any
    problem refuses the whole extract (exit 1), listing row, column and rule. The person-key
    secret must be configured and be the one earlier imports used.
    """
    settings = settings_of(ctx)
    on = parse_date(as_of, "--as-of")
    try:
        config = RegistryConfig.load()
        spec = config.department(department)
        secret = person_key_secret(settings)
        raw = read_table(file)
        canonical = validate_extract(raw, spec, on)
    except (RegistryConfigError, PersonKeyError, TableError) as exc:
        raise _fail(str(exc)) from None
    except ExtractError as exc:
        for problem in exc.problems[:MAX_LISTED]:
            typer.echo(problem.describe(), err=True)
        if exc.total > MAX_LISTED:
            typer.echo(f"... and {exc.total - MAX_LISTED} more", err=True)
        raise _fail(str(exc), code=1) from None
    store = open_registries(settings)
    try:
        store.check_secret(secret_check(secret))
        started = time.perf_counter()
        result = store.import_extract(
            department, on, canonical, extract_digest(canonical), file.name, config.version
        )
    except RegistryStoreError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    seconds = time.perf_counter() - started
    snapshot = result.snapshot
    if result.created:
        typer.echo(
            f"{spec.zh} ({department}) as of {on}: {snapshot.rows} rows imported as snapshot "
            f"{snapshot.id} ({snapshot.rows / max(seconds, 1e-9):,.0f} rows/s)"
        )
    else:
        typer.echo(
            f"{spec.zh} ({department}) as of {on}: the same extract is snapshot "
            f"{snapshot.id}; nothing changed"
        )


@registries_app.command("list")
def list_registries(ctx: typer.Context) -> None:
    """Each department: its snapshots, the current one's date and rows."""
    settings = settings_of(ctx)
    config = RegistryConfig.load()
    store = open_registries(settings)
    try:
        current = store.current(dt.date.max)
        counts = list(store.counts())
    finally:
        store.close()
    if not counts:
        typer.echo("no registry imported yet (尚未导入部门数据)")
        return
    for department, count, rows in counts:
        zh = config.departments[department].zh if department in config.departments else "?"
        typer.echo(
            f"{department:<24} {zh}: {count} snapshot(s); current as of "
            f"{current[department].as_of} with {rows} rows"
        )


@registries_app.command("export")
def export_registries(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="one Parquet table of every department's rows")],
    as_of: Annotated[
        str | None, typer.Option(help="the snapshots known on this date (default: today)")
    ] = None,
) -> None:
    """Every department's current snapshot in one table (what ``screen --engine spark`` reads)."""
    settings = settings_of(ctx)
    on = parse_date(as_of, "--as-of") if as_of else dt.date.today()
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise _fail(f"{out}: the export is Parquet (name it *.parquet)")
    store = open_registries(settings)
    try:
        view = store.as_of(on)
    finally:
        store.close()
    table = registry_table(view.rows, view.snapshot_dates)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    typer.echo(f"{len(table)} rows of {len(view.snapshots)} department(s) known on {on} → {out}")


def generate_registries_command(
    ctx: typer.Context,
    history: Annotated[Path, typer.Option(help="a generated history (aidrec generate)")],
    out_dir: Annotated[Path, typer.Option(help="where the extracts go, one CSV per department")],
    cards: Annotated[
        Path | None, typer.Option(help="also write the history's case cards (no outcomes) here")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the registries' own random stream")] = 0,
    import_: Annotated[
        bool, typer.Option("--import", help="also import every extract into the registry store")
    ] = False,
) -> None:
    """Write departments' registry extracts consistent with a generated history.

    The same people (person keys) with realistic gaps: graded victims without a 残疾人证,
    poor households outside 低保, stale 低保 claims, families without temporary relief.
    """
    settings = settings_of(ctx)
    try:
        frame = _history_frame(history)
        extracts = generate_registries(frame, seed, WageTable.from_csv(settings.wage_table))
    except (TableError, ContractError, ValueError) as exc:
        raise _fail(str(exc)) from None
    on = registry_date(frame)
    paths = write_registries(extracts, out_dir)
    typer.echo(f"{len(paths)} extracts as of {on} → {out_dir}")
    if cards is not None:
        write_table(case_cards(frame), cards)
        typer.echo(f"{len(frame)} case cards → {cards}")
    if import_:
        import_extracts(settings, paths, on)


def _history_frame(path: Path) -> pd.DataFrame:
    """A generated history as canonical columns (its oracle columns kept)."""
    raw = read_table(path)
    parsed = parse_records(raw)
    if parsed.violations:
        raise ContractError(f"{path}: {len(parsed.violations)} contract violations")
    oracle = [c for c in raw.columns if str(c).startswith(ORACLE_PREFIX)]
    return pd.concat([parsed.frame, raw[oracle].reset_index(drop=True)], axis=1)


def import_extracts(settings: Settings, paths: dict[str, Path], on: dt.date) -> None:
    """Validate and import extracts (every one checked before the first is stored)."""
    config = RegistryConfig.load()
    try:
        secret = person_key_secret(settings)
        canonical = {
            kind: validate_extract(read_table(path), config.department(kind), on)
            for kind, path in paths.items()
        }
    except (PersonKeyError, TableError, RegistryConfigError) as exc:
        raise _fail(str(exc)) from None
    except ExtractError as exc:
        for problem in exc.problems[:MAX_LISTED]:
            typer.echo(f"{exc.department}: {problem.describe()}", err=True)
        raise _fail(str(exc), code=1) from None
    store = open_registries(settings)
    try:
        store.check_secret(secret_check(secret))
        for kind, rows in canonical.items():
            result = store.import_extract(
                kind, on, rows, extract_digest(rows), paths[kind].name, config.version
            )
            state = "imported" if result.created else "unchanged"
            typer.echo(f"  {kind}: {len(rows)} rows {state} (snapshot {result.snapshot.id})")
    except RegistryStoreError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()


def screen(
    ctx: typer.Context,
    cases: Annotated[Path, typer.Option(help="case cards, CSV or Parquet (no outcomes)")],
    out: Annotated[Path, typer.Option(help="the ranked leads, CSV or Parquet")],
    as_of: Annotated[
        str | None,
        typer.Option(help="read registries on this date (YYYY-MM-DD); default: each card's year"),
    ] = None,
    model_uri: Annotated[str, typer.Option(help="registered model (default: the champion)")] = "",
    chunk_rows: Annotated[int, typer.Option(min=1, help="cards per chunk")] = 50_000,
    top_reasons: Annotated[int, typer.Option(min=0, help="contributions listed per lead")] = 3,
    register: Annotated[
        bool, typer.Option(help="register the leads in the lead register (线索管理)")
    ] = True,
    evaluate_with: Annotated[
        Path | None,
        typer.Option(help="a history with the cards' outcomes: report recall at fixed budgets"),
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help="local (this process, chunked) or spark (a Spark cluster)")
    ] = Engine.LOCAL,
    registries: Annotated[
        str | None,
        typer.Option(
            help="spark: the registries table (path or table name; aidrec registries export); "
            "default: the registry store's snapshots, exported beside --out"
        ),
    ] = None,
    master: Annotated[str, typer.Option(help="spark: local[N], spark://host:port, yarn")] = (
        "local[2]"
    ),
    driver_memory: Annotated[str | None, typer.Option(help="spark: e.g. 4g")] = None,
    shuffle_partitions: Annotated[
        int | None, typer.Option(min=1, help="spark: spark.sql.shuffle.partitions")
    ] = None,
    conf: Annotated[
        list[str] | None, typer.Option(help="spark: KEY=VALUE, repeatable (passed to Spark)")
    ] = None,
) -> None:
    """Screen every case card: registries joined, champion scores, department-failure rules.

    Writes one ranked row per lead (case and kind) with its reasons and 数据来源; a card that
    breaks the contract gets a row with an ``error`` and the others are screened. The
    registries used are the snapshots known on ``--as-of`` (default today). Leads are then
    registered (idempotent on case and kind: a re-run creates no duplicate).

    With ``--engine spark`` the same screening runs on Spark (``--cases`` and
    ``--registries`` may be tables of the catalogue); ``--out`` is then a folder holding
    ``leads/`` (Parquet, partitioned by province) and ``errors/``.
    """
    settings = settings_of(ctx)
    on = parse_date(as_of, "--as-of") if as_of else None
    if engine is Engine.SPARK:
        try:
            options = SparkOptions(
                master, driver_memory, shuffle_partitions, parse_conf(conf or [])
            )
        except SparkEngineError as exc:
            raise _fail(str(exc)) from None
        spark_screen(settings, str(cases), registries, out, on, model_uri, options, register)
        return
    configure_tracking(settings.tracking_store_uri)
    uri = model_uri or f"models:/{settings.registered_model}@{CHAMPION}"
    try:
        out_format = table_format(out)
        table_format(cases)
        if not cases.is_file():
            raise TableError(f"{cases}: no such file")
        bundle, info = load_bundle(uri)
    except (TableError, RegistryError) as exc:
        raise _fail(str(exc)) from None
    store = open_registries(settings)
    try:
        view = store.as_of(on or dt.date.today())
    finally:
        store.close()
    if not view.snapshots:
        log.warning("no registry snapshot known on %s: cards are screened alone", view.on)
    run_id = screening_run_id(cases, str(info["version"]), on, view.snapshot_dates)
    screener = Screener(
        bundle=bundle,
        registries=RegistrySnapshot(view.rows, view.snapshot_dates),
        registry_config=RegistryConfig.load(),
        rules=DepartmentRules.load(),
        dibao=DibaoTable.from_csv(),
        run_id=run_id,
        as_of=on,
        top_reasons=top_reasons,
        keep_card_scores=evaluate_with is not None,
    )
    started = time.perf_counter()
    try:
        leads = screen_file(screener, cases, chunk_rows)
    except (TableError, ContractError) as exc:
        raise _fail(str(exc)) from None
    seconds = time.perf_counter() - started
    write_leads(leads, out, out_format)
    counts = screener.counts
    typer.echo(
        f"{counts.get('cards', 0)} cards screened by {info['name']} version {info['version']} "
        f"in {seconds:.1f} s ({counts.get('cards', 0) / max(seconds, 1e-9):,.0f} cards/s); "
        f"{leads.num_rows - counts.get('refused', 0)} leads → {out}"
        + (
            f" ({counts['refused']} cards refused, see the error column)"
            if counts.get("refused")
            else ""
        )
    )
    for kind, count in sorted(counts.items()):
        if kind not in ("cards", "refused"):
            typer.echo(f"  {kind}: {count}")
    if evaluate_with is not None:
        _evaluate(screener, leads, evaluate_with)
    if register:
        _register(settings, leads)


def spark_screen(
    settings: Settings,
    cases: str,
    registries: str | None,
    out: Path,
    on: dt.date | None,
    model_uri: str,
    options: SparkOptions,
    register: bool,
) -> None:
    """``screen --engine spark``: the screening on Spark, then the leads registered here."""
    configure_tracking(settings.tracking_store_uri)
    uri = model_uri or f"models:/{settings.registered_model}@{CHAMPION}"
    try:
        bundle, info = load_bundle(uri)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    if registries is None:
        store = open_registries(settings)
        try:
            view = store.as_of(on or dt.date.today())
        finally:
            store.close()
        exported = out.with_name(f"{out.name}.registries.parquet")
        exported.parent.mkdir(parents=True, exist_ok=True)
        registry_table(view.rows, view.snapshot_dates).to_parquet(exported, index=False)
        registries = str(exported)
    run_id = hashlib.sha256(f"{cases}|{registries}|{info['version']}|{on}".encode()).hexdigest()[
        :16
    ]
    job = SparkJob(cases, registries, out, uri, run_id, on, options)
    context = JoinContext(RegistryConfig.load(), DibaoTable.from_csv(), DepartmentRules.load())
    started = time.perf_counter()
    try:
        with spark_for(options) as spark:
            result = screen_on_spark(spark, job, bundle, context)
    except SparkEngineError as exc:
        raise _fail(str(exc)) from None
    seconds = time.perf_counter() - started
    typer.echo(
        f"{result.cards} cards screened on Spark ({options.master}) by {info['name']} version "
        f"{info['version']} in {seconds:.1f} s; {result.leads} leads → {result.leads_path}"
        + (f" ({result.refused} cards refused → {result.errors_path})" if result.refused else "")
    )
    for kind, count in sorted(result.leads_by_kind.items()):
        typer.echo(f"  {kind}: {count}")
    if register:
        import pyarrow.dataset as ds

        leads = ds.dataset(result.leads_path, format="parquet", partitioning="hive").to_table()
        leads = leads.set_column(
            leads.schema.get_field_index("province_code"),
            "province_code",
            leads["province_code"].cast(pa.string()),
        )
        _register(settings, leads)


def screening_run_id(
    cases: Path, model_version: str, on: dt.date | None, snapshots: dict[str, str]
) -> str:
    """The run's id: a digest of the cards file, the model version, the date and snapshots.

    The same cards screened by the same model on the same registries get the same id, so a
    re-run leaves the lead register unchanged instead of touching every lead.
    """
    digest = hashlib.sha256()
    with cases.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(f"|{model_version}|{on}|{sorted(snapshots.items())}".encode())
    return digest.hexdigest()[:16]


def _evaluate(screener: Screener, leads: pa.Table, history: Path) -> None:
    card_scores = pd.concat(screener.card_scores, ignore_index=True)
    outcomes = read_table(history)
    if "aid_granted" not in outcomes.columns:
        raise _fail(f"{history}: no aid_granted column to evaluate with")
    granted = parse_records(outcomes).frame.set_index("case_id")["aid_granted"]
    aided = granted.reindex(card_scores["case_id"]).to_numpy(dtype=float) == 1.0
    frame = leads.select(["case_id", "kind", "error"]).to_pandas()
    for line in evaluate_screening(frame, card_scores, aided).lines():
        typer.echo(line)


def _register(settings: Settings, leads: pa.Table) -> None:
    """Register the leads in the lead register (线索管理) in bounded batches.

    Idempotent on (case, kind): a re-run creates nothing twice, and a lead still ``new``
    takes the new score.
    """
    lead_store = open_lead_store(settings)
    total = RegisterSummary()
    try:
        with tqdm(total=leads.num_rows, desc="registering leads", unit="lead") as bar:
            for batch in leads.to_batches(max_chunksize=REGISTER_BATCH):
                frame = batch.to_pandas()
                candidates = [LeadCandidate(**c) for c in lead_candidates(frame)]
                summary = lead_store.register(candidates, actor="aidrec screen")
                total = total + RegisterSummary(summary.created, summary.updated, summary.unchanged)
                bar.update(len(frame))
    except (LeadError, AuditError) as exc:
        raise _fail(f"the lead register refused the leads: {exc}") from None
    finally:
        lead_store.engine.dispose()
    typer.echo(
        f"lead register: {total.created} created, {total.updated} updated, "
        f"{total.unchanged} unchanged"
    )


def screen_demo(ctx: typer.Context, rows: int, seed: int) -> None:
    """The main job's screening: new cards and registries generated once, then screened.

    The cards come from another seed than the training history (new cases, with their
    outcomes kept apart in ``screening-history.parquet`` for the evaluation); the registries
    are imported (unchanged on a re-run) and the leads registered, so the workbench's
    线索管理 page shows them. Without a configured secret a demonstration one is created in
    the data directory.
    """
    settings = settings_of(ctx)
    if settings.person_key_secret is None and create_secret_file(settings.person_key_secret_path):
        log.warning(
            "created a demonstration person-key secret %s; a deployment sets its own "
            "(AIDREC_PERSON_KEY_SECRET), shared with the departments",
            settings.person_key_secret_path,
        )
    data = settings.data_dir
    history, cards, registries = (
        data / "screening-history.parquet",
        data / "cards.parquet",
        data / "registries",
    )
    if not cards.exists() or not history.exists():
        log.info("generating %d new case cards and the departments' registries", rows)
        frame = generate_history(rows, seed + 1, wage_table=WageTable.from_csv(settings.wage_table))
        write_table(frame, history)
        write_registries(
            generate_registries(frame, seed + 1, WageTable.from_csv(settings.wage_table)),
            registries,
        )
        write_table(case_cards(frame), cards)
    on = registry_date(read_table(history)[["decision_year"]].astype(float))
    paths = {p.stem: p for p in sorted(registries.glob("*.csv"))}
    import_extracts(settings, paths, on)
    screen(
        ctx,
        cases=cards,
        out=data / "leads.parquet",
        as_of=None,
        model_uri="",
        chunk_rows=50_000,
        top_reasons=3,
        register=True,
        evaluate_with=history,
    )
