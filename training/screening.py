"""Screening: every case card joined with the registries, scored, and checked for leads.

A screening run reads case cards (the contract's shape, outcomes absent) in chunks. For each
chunk (:meth:`Screener.screen`):

1. the cards are validated; a card that breaks the contract becomes an ``error`` row and the
   others go on;
2. the registries known on the run's date are joined (``features.registries``): each card's
   ``low_income_status``, ``disability_certificate`` and ``registry_flags`` become the
   registry's value where it knows one (the card's value and the source are kept beside);
3. the champion scores the joined cards (:meth:`ModelBundle.score`): each flagged lead
   (``judicial_aid``, ``social_assistance``, ``civil_support``) is one lead row, with its
   probability, threshold and top contributions;
4. the department-failure rules (``features.department_rules``) run on the same facts: each
   hit is a ``department_failure:<rule>`` lead with the rule's text and the facts it read.

Every lead row carries its 数据来源 (``sources``: the departments and snapshot dates its
facts came from). :func:`rank_leads` orders the table: by ``priority``, the lead's
probability, or for a department-failure lead the card's judicial-aid probability (how much
the victim's household needs the help the department owes). :func:`evaluate_screening`
compares the leads with the cards' eventual outcomes, against a rule screen alone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from features.contract import INPUT_NAMES, OUTCOME_NAMES, parse_records
from features.department_rules import (
    DepartmentRule,
    DepartmentRules,
    department_facts,
    evaluate,
    hit_facts,
)
from features.registries import (
    JOINED_FIELDS,
    DibaoTable,
    RegistryConfig,
    card_dates,
    join_registries,
)
from features.rules import RULE_BY_ID, EligibilityStatus
from features.tables import iter_table_chunks, table_format
from training.bundle import ModelBundle

MODEL_KINDS_ZH = {
    "judicial_aid": "司法救助线索",
    "social_assistance": "社会救助移送线索",
    "civil_support": "民事支持起诉线索",
}
DEPARTMENT_FAILURE = "department_failure"
DEPARTMENT_FAILURE_ZH = "部门履职线索"
CASE_SYSTEM_SOURCE = "case_system"
"""The case card as a source (the same name the lead register gives a live answer's card)."""
CASE_CARD_ZH = "办案系统填报"
DIBAO_STANDARDS_ZH = "各省低保标准表"
LEAD_COLUMNS = (
    "case_id",
    "kind",
    "kind_zh",
    "score",
    "priority",
    "person_key",
    "province_code",
    "office_code",
    "decision_year",
    "p_judicial_aid",
    "reasons",
    "sources",
    "policy_version",
    "origin",
    "error",
)
"""The columns of the leads table ``aidrec screen`` writes (one row per case and kind)."""
TEXT_LEAD_COLUMNS = tuple(
    c for c in LEAD_COLUMNS if c not in ("score", "priority", "decision_year", "p_judicial_aid")
)


@dataclass(frozen=True)
class RegistrySnapshot:
    """The registries a run reads: each department's rows and its snapshot date."""

    rows: Mapping[str, pd.DataFrame]
    snapshots: Mapping[str, str]


@dataclass
class Screener:
    """Everything a screening run needs, fixed for the run.

    :meth:`screen` depends only on its chunk and these settings (it adds to ``counts``, and
    to ``card_scores`` when asked), so chunks may be screened in any order or in parallel
    processes (e.g. a Spark ``mapInPandas``) with the same leads.

    Attributes:
        bundle: the champion.
        registries: the registries known on the run's date.
        registry_config: the registries' config.
        rules: the department-failure rules.
        dibao: the 低保 standards.
        run_id: names the run in each lead's ``origin`` (``screening:<run_id>``).
        as_of: read every card's registries on this date; None = each card's decision date.
        top_reasons: model contributions listed per lead (0 = none, faster).
    """

    bundle: ModelBundle
    registries: RegistrySnapshot
    registry_config: RegistryConfig
    rules: DepartmentRules
    dibao: DibaoTable
    run_id: str
    as_of: dt.date | None = None
    top_reasons: int = 3
    keep_card_scores: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    card_scores: list[pd.DataFrame] = field(default_factory=list)

    @property
    def origin(self) -> str:
        """Where the run's leads came from, as the lead register records it."""
        return f"screening:{self.run_id}"

    def screen(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Screen one chunk of wire case cards: lead rows, then one row per refused card."""
        raw = raw.reset_index(drop=True)
        inputs = raw.drop(columns=[c for c in OUTCOME_NAMES if c in raw.columns])
        parsed = parse_records(inputs, scoring=True)
        errors: dict[int, str] = {}
        for violation in parsed.violations:
            text = f"{violation.field}: {violation.rule}"
            row = violation.row - 1
            errors[row] = f"{errors[row]}; {text}" if row in errors else text
        valid = ~parsed.invalid_rows
        cards = parsed.frame.loc[valid].reset_index(drop=True)
        parts = [self._leads(cards)] if len(cards) else []
        if errors:
            failed = pd.DataFrame(
                {
                    "case_id": parsed.frame["case_id"].to_numpy(dtype=object)[list(errors)],
                    "error": list(errors.values()),
                }
            )
            parts.append(failed)
        self._count("cards", len(raw))
        self._count("refused", len(errors))
        if not parts:
            return empty_leads()
        return conform(pd.concat(parts, ignore_index=True))

    def _count(self, name: str, value: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + value

    def _leads(self, cards: pd.DataFrame) -> pd.DataFrame:
        dates = card_dates(cards["decision_year"].to_numpy(dtype=float), self.as_of)
        snapshots = dict(self.registries.snapshots)
        joined = join_registries(
            cards, self.registries.rows, snapshots, dates, self.registry_config
        )
        scored = cards.copy()
        for name in JOINED_FIELDS:
            scored[name] = joined[name].to_numpy()
        scores = self.bundle.score(scored)
        p_aid = scores.lead_probability["judicial_aid"]
        if self.keep_card_scores:
            self.card_scores.append(
                pd.DataFrame(
                    {
                        "case_id": cards["case_id"].to_numpy(dtype=object),
                        "p_judicial_aid": p_aid,
                        "eligibility_status": np.asarray(scores.rules.status, dtype=object),
                    }
                )
            )
        common = {
            "person_key": cards["person_key"].to_numpy(dtype=object),
            "province_code": cards["province_code"].to_numpy(dtype=object),
            "office_code": cards["office_code"].to_numpy(dtype=object),
            "decision_year": cards["decision_year"].to_numpy(dtype=float),
            "p_judicial_aid": p_aid,
        }
        parts: list[pd.DataFrame] = []
        thresholds = self.bundle.lead_thresholds
        for target, flagged in scores.lead_flagged.items():
            rows = np.flatnonzero(flagged)
            if not len(rows):
                continue
            probability = scores.lead_probability[target][rows]
            reasons = self._model_reasons(scores, target, rows, thresholds[target])
            parts.append(
                self._part(
                    cards,
                    rows,
                    common,
                    target,
                    MODEL_KINDS_ZH.get(target, target),
                    probability,
                    probability,
                    reasons,
                    model_sources(joined, rows),
                )
            )
            self._count(target, len(rows))
        facts = department_facts(cards, joined, self.dibao)
        for rule in self.rules.rules:
            fires = evaluate(rule.when, facts)
            rows = np.flatnonzero(fires)
            if not len(rows):
                continue
            row_sources = rule_sources(
                rule, joined, snapshots, self.registry_config, self.dibao.version, rows
            )
            reasons = [
                json.dumps(
                    {
                        "rule": rule.id,
                        "rule_zh": rule.zh,
                        "act_department_zh": rule.act_department_zh,
                        "rules_version": self.rules.version,
                        "facts": shown,
                    },
                    ensure_ascii=False,
                )
                for shown in hit_facts(rule, facts, rows)
            ]
            parts.append(
                self._part(
                    cards,
                    rows,
                    common,
                    rule.kind,
                    f"{DEPARTMENT_FAILURE_ZH}：{rule.zh}",
                    np.full(len(rows), np.nan),
                    p_aid[rows],
                    reasons,
                    row_sources,
                )
            )
            self._count(rule.kind, len(rows))
        return pd.concat(parts, ignore_index=True) if parts else empty_leads()

    def _part(
        self,
        cards: pd.DataFrame,
        rows: np.ndarray,
        common: Mapping[str, np.ndarray],
        kind: str,
        kind_zh: str,
        score: np.ndarray,
        priority: np.ndarray,
        reasons: list[str],
        sources: list[str],
    ) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "case_id": cards["case_id"].to_numpy(dtype=object)[rows],
                "kind": kind,
                "kind_zh": kind_zh,
                "score": np.round(score, 6),
                "priority": np.round(priority, 6),
                **{name: values[rows] for name, values in common.items()},
                "reasons": reasons,
                "sources": sources,
                "policy_version": self.bundle.policy.version,
                "origin": self.origin,
            }
        )

    def _model_reasons(
        self, scores: Any, target: str, rows: np.ndarray, threshold: float
    ) -> list[str]:
        status = scores.rules.status[rows]
        hits = [
            [{"id": rule_id, "zh": _rule_zh(rule_id)} for rule_id in scores.rules.rule_ids(int(i))]
            for i in rows
        ]
        top: list[list[dict[str, Any]]] = [[] for _ in rows]
        if self.top_reasons > 0:
            found = self.bundle.contributions(target, scores.matrix[rows])
            order = np.argsort(-found.values, axis=1)[:, : self.top_reasons]
            for k, (i, best) in enumerate(zip(rows, order, strict=True)):
                for j in best:
                    phi = float(found.values[k, j])
                    if phi <= 0:
                        break
                    feature = found.features[j]
                    top[k].append(
                        {
                            "feature": feature,
                            "label_zh": self.bundle.label_zh(feature),
                            "value": self.bundle.decode(
                                feature, float(scores.matrix[i, found.columns[j]])
                            ),
                            "contribution": round(phi, 4),
                        }
                    )
        probability = scores.lead_probability[target][rows]
        return [
            json.dumps(
                {
                    "probability": round(float(p), 4),
                    "threshold": round(float(threshold), 4),
                    "eligibility_status": str(s),
                    "rule_hits": h,
                    "top": t,
                    "contribution_unit": "log-odds",
                },
                ensure_ascii=False,
            )
            for p, s, h, t in zip(probability, status, hits, top, strict=True)
        ]


def model_sources(joined: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """数据来源 of model leads on the given cards (rows of ``joined``), as JSON texts.

    The registries holding the person, and the case card for every joined field it gave
    where no registry knew. One definition for both engines (the Spark engine calls it per
    batch of cards).
    """
    held = joined["registry_sources"].to_numpy(dtype=object)
    from_card = {
        name: pd.isna(joined[f"{name}_registry"].to_numpy(dtype=object))
        & pd.notna(joined[f"{name}_card"].to_numpy(dtype=object))
        for name in JOINED_FIELDS
    }
    out: list[str] = []
    for i in np.asarray(rows, dtype=int).tolist():
        listed = json.loads(held[i]) if isinstance(held[i], str) else []
        listed += [_card_source(name) for name in JOINED_FIELDS if from_card[name][i]]
        out.append(json.dumps(listed, ensure_ascii=False))
    return out


def rule_sources(
    rule: DepartmentRule,
    joined: pd.DataFrame,
    snapshots: Mapping[str, str],
    config: RegistryConfig,
    dibao_version: str,
    rows: np.ndarray,
) -> list[str]:
    """数据来源 of a department-failure rule's leads on the given cards, as JSON texts.

    The departments it read (with their snapshots), the 低保 table when it reads the line,
    the case card for the facts only the card gives, and for each merged field the card where
    no registry knew. One definition for both engines.
    """
    fixed: list[dict[str, Any]] = [
        {
            "department": d,
            "department_zh": config.departments[d].zh,
            "snapshot": snapshots[d],
            "field": _FIELD_OF.get(d, d),
        }
        for d in rule.departments
        if d in snapshots
    ]
    if "dibao_standard_yuan" in rule.facts:
        fixed.append(
            {
                "department": "dibao_standards",
                "department_zh": DIBAO_STANDARDS_ZH,
                "snapshot": None,
                "field": "dibao_standard_yuan",
                "version": dibao_version,
            }
        )
    card_fields = [f for f in rule.facts if f in INPUT_NAMES and f not in JOINED_FIELDS]
    fixed += [_card_source(name) for name in card_fields]
    merged = [f for f in rule.facts if f in JOINED_FIELDS]
    from_card = {  # a merged value came from the card where the registry knew nothing
        name: pd.isna(joined[f"{name}_registry"].to_numpy(dtype=object)) for name in merged
    }
    return [
        json.dumps(fixed + [_card_source(n) for n in merged if from_card[n][i]], ensure_ascii=False)
        for i in np.asarray(rows, dtype=int).tolist()
    ]


def _card_source(name: str) -> dict[str, Any]:
    """A fact the case card itself gave (数据来源: 办案系统填报)."""
    return {
        "department": CASE_SYSTEM_SOURCE,
        "department_zh": CASE_CARD_ZH,
        "snapshot": None,
        "field": name,
    }


def _rule_zh(rule_id: str) -> str:
    rule = RULE_BY_ID.get(rule_id)
    return rule.zh if rule is not None else rule_id


_FIELD_OF = {
    "dibao": "low_income_status",
    "tekun": "low_income_status",
    "disability": "disability_certificate",
    "child_without_carer": "registry_flags",
    "temporary_relief": "temporary_relief",
}


def empty_leads() -> pd.DataFrame:
    """A leads table without rows (the columns and their types)."""
    return conform(pd.DataFrame({name: [] for name in LEAD_COLUMNS}))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Every lead column, in order, text as object and numbers as float (stable schema)."""
    out = frame.reindex(columns=list(LEAD_COLUMNS))
    for name in LEAD_COLUMNS:
        if name in TEXT_LEAD_COLUMNS:
            values = out[name].to_numpy(dtype=object)
            out[name] = pd.Series(
                [v if isinstance(v, str) else None for v in values], dtype=object, index=out.index
            )
        else:
            out[name] = out[name].astype(float)
    return out


def rank_leads(leads: pd.DataFrame) -> pd.DataFrame:
    """Leads by priority (highest first), refused cards last; adds a 1-based ``rank``."""
    ordered = leads.assign(_refused=leads["error"].notna()).sort_values(
        ["_refused", "priority", "case_id", "kind"],
        ascending=[True, False, True, True],
        na_position="last",
        kind="stable",
    )
    ordered = ordered.drop(columns="_refused").reset_index(drop=True)
    rank = np.where(ordered["error"].isna(), np.arange(1, len(ordered) + 1), np.nan)
    ordered.insert(0, "rank", rank)
    return ordered


# --- registering -----------------------------------------------------------------------------


def lead_candidates(leads: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The keyword arguments of one ``LeadCandidate`` per lead row (refused cards skipped)."""
    for row in leads.loc[leads["error"].isna()].itertuples(index=False):
        value: Any = row.score
        score = None if value is None or np.isnan(value) else float(value)
        yield {
            "kind": str(row.kind),
            "case_id": str(row.case_id),
            "person_key": row.person_key if isinstance(row.person_key, str) else None,
            "province_code": str(row.province_code),
            "office_code": row.office_code if isinstance(row.office_code, str) else None,
            "score": score,
            "reasons": json.loads(row.reasons) if isinstance(row.reasons, str) else {},
            "sources": json.loads(row.sources) if isinstance(row.sources, str) else [],
            "origin": str(row.origin),
            "policy_version": str(row.policy_version),
        }


# --- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetRecall:
    """Recall of eventually aided cards when an office can check ``per_thousand`` of 1,000."""

    per_thousand: int
    screening_recall: float
    rule_screen_recall: float


@dataclass(frozen=True)
class ScreeningEvaluation:
    """What screening found compared with a rule screen alone (how offices find leads today)."""

    cards: int
    aided: int
    leads_per_thousand: dict[str, float]
    rule_screen_leads_per_thousand: float
    screening_leads_per_thousand: float
    department_failure_per_thousand: float
    budgets: tuple[BudgetRecall, ...]

    def lines(self) -> list[str]:
        """The figures as lines a report prints."""
        out = [
            f"cards screened: {self.cards}; eventually aided: {self.aided}",
            f"leads per 1,000 cards: screening {self.screening_leads_per_thousand:.1f} "
            f"(judicial aid, referral, civil support, department failure) vs rule screen "
            f"{self.rule_screen_leads_per_thousand:.1f}; department-failure leads "
            f"{self.department_failure_per_thousand:.1f}",
        ]
        out += [f"  {kind}: {v:.1f}" for kind, v in sorted(self.leads_per_thousand.items())]
        out += [
            f"recall of aided cards checking {b.per_thousand} per 1,000: screening "
            f"{b.screening_recall:.3f} vs rule screen {b.rule_screen_recall:.3f}"
            for b in self.budgets
        ]
        return out


def evaluate_screening(
    leads: pd.DataFrame,
    card_scores: pd.DataFrame,
    aided: np.ndarray,
    budgets: tuple[int, ...] = (100, 200, 400),
) -> ScreeningEvaluation:
    """Leads per 1,000 cards and recall of aided cards at fixed budgets.

    The screening checks cards in order of their judicial-aid probability; the rule screen —
    how offices find leads today — checks the cards the statutory rules call eligible, in
    file order (it has no ranking), and nothing else.

    Args:
        leads: the run's leads table.
        card_scores: every screened card (``Screener.card_scores``): ``case_id``,
            ``p_judicial_aid``, ``eligibility_status``.
        aided: whether each card of ``card_scores`` was eventually aided (``aid_granted``).
        budgets: cards an office can check per 1,000 screened.
    """
    n = len(card_scores)
    aided = np.asarray(aided, dtype=bool)
    good = leads.loc[leads["error"].isna()]
    per_kind = {str(k): 1000 * v / n for k, v in good.groupby("kind").size().items()}
    department = sum(v for k, v in per_kind.items() if k.startswith(DEPARTMENT_FAILURE))
    p = card_scores["p_judicial_aid"].to_numpy(dtype=float)
    order = np.argsort(-p, kind="stable")
    eligible = rule_eligible(card_scores["eligibility_status"].to_numpy())
    eligible_order = np.flatnonzero(eligible)
    total = max(int(aided.sum()), 1)
    rows = []
    for budget in budgets:
        k = round(n * budget / 1000)
        screening = aided[order[:k]].sum() / total
        rule = aided[eligible_order[:k]].sum() / total
        rows.append(BudgetRecall(budget, float(screening), float(rule)))
    return ScreeningEvaluation(
        cards=n,
        aided=int(aided.sum()),
        leads_per_thousand=per_kind,
        rule_screen_leads_per_thousand=1000 * float(eligible.sum()) / max(n, 1),
        screening_leads_per_thousand=1000 * good["case_id"].nunique() / max(n, 1),
        department_failure_per_thousand=department,
        budgets=tuple(rows),
    )


def rule_eligible(statuses: np.ndarray) -> np.ndarray:
    """Where the statutory rules call a card eligible (the rule screen's leads)."""
    return np.asarray(statuses, dtype=object) == EligibilityStatus.ELIGIBLE.value


# --- a run over a file -----------------------------------------------------------------------


def lead_schema() -> pa.Schema:
    """The Arrow schema of the leads table (before ranking)."""
    return pa.schema(
        [
            pa.field(name, pa.string() if name in TEXT_LEAD_COLUMNS else pa.float64())
            for name in LEAD_COLUMNS
        ]
    )


def screen_file(screener: Screener, path: Path, chunk_rows: int) -> pa.Table:
    """Screen a file of case cards chunk by chunk (progress bar); the ranked leads table.

    Memory holds one chunk of cards and the leads found so far (a fraction of the cards).
    """
    schema = lead_schema()
    parts: list[pa.Table] = []
    total = _row_count(path)
    with tqdm(total=total, desc="screening", unit="card") as bar:
        for chunk in iter_table_chunks(path, chunk_rows):
            leads = screener.screen(chunk)
            parts.append(pa.Table.from_pandas(leads, schema=schema, preserve_index=False))
            bar.update(len(chunk))
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    return rank_table(table)


def _row_count(path: Path) -> int | None:
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def rank_table(table: pa.Table) -> pa.Table:
    """The Arrow form of :func:`rank_leads`: by priority, refused cards last, ``rank`` first."""
    refused = pc.is_valid(table["error"])
    keyed = table.append_column("_refused", refused)
    order = pc.sort_indices(
        keyed,
        sort_keys=[
            ("_refused", "ascending"),
            ("priority", "descending"),
            ("case_id", "ascending"),
            ("kind", "ascending"),
        ],
    )
    ordered = table.take(order)
    n = ordered.num_rows
    positions = np.arange(1, n + 1, dtype=float)
    is_refused = ordered["error"].is_valid().to_numpy(zero_copy_only=False)
    rank = pa.array(np.where(is_refused, np.nan, positions), from_pandas=True)
    return ordered.add_column(0, "rank", rank)


def write_leads(table: pa.Table, path: Path, fmt: str) -> Path:
    """Write the ranked leads as CSV or Parquet."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="needed"))
    return path
