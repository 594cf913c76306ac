"""The live answer's 数据来源: the department registries joined on the card's person key.

For each record of a ``/v1/score`` request (:func:`join_live`):

* without a ``person_key`` nothing is read (status ``no_person_key``, no query);
* with one, the registry store is read once per decision date for every such record of the
  request (:meth:`RegistryStore.persons`, one indexed query): each department's current
  snapshot on the decision date and the person's rows in it;
* the rows go through the same pure join the screening uses
  (:func:`features.registries.join_registry_columns`, the arrays behind
  :func:`~features.registries.join_registries`), so a live answer and ``aidrec screen``
  read a card alike: ``low_income_status``, ``disability_certificate`` and
  ``registry_flags`` become the registry's value where it knows one, and the model reads
  them;
* each answer says what was read (:class:`schemas.DataSources`): per field the card's value,
  the registry's, the one used, whether they disagree, and the snapshots (department, id,
  date). The snapshot ids are stored with the answer, so a replay reads the same snapshots
  even after newer extracts are imported (``pins``).

A registry store that cannot be read never withholds an answer: the card alone is scored,
the status says ``unavailable`` and the failure is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from features.contract import FIELD_BY_NAME, REGISTRY_FLAGS, wire_value
from features.registries import (
    JOINED_FIELDS,
    RegistryConfig,
    card_dates,
    field_of,
    join_inputs,
    join_registry_columns,
)
from serving import formats, schemas
from serving.registry_store import RegistryStore, RegistryStoreError, RegistryView

log = logging.getLogger(__name__)

JOINED = "joined"
NO_PERSON_KEY = "no_person_key"
NO_REGISTRIES = "no_registries"
UNAVAILABLE = "unavailable"
STATUS_ZH = {
    JOINED: "已比对部门登记数据",
    NO_PERSON_KEY: "案件记录未提供人员标识，未比对部门登记数据",
    NO_REGISTRIES: "决定日尚无部门登记数据，仅依据办案系统填报",
    UNAVAILABLE: "部门登记库暂不可用，仅依据办案系统填报",
}
CASE_SYSTEM_SOURCE = "case_system"
"""The department of a fact the calling case system sent itself (no registry said it)."""
CASE_CARD_ZH = "办案系统填报"

Pin = tuple[int, ...] | None
"""What a replay reads for one record: the snapshot ids its answer read (``()``: none was
known), or None: the answer was given from the card alone (the store was unavailable)."""


@dataclass
class LiveJoin:
    """The model's input after the join, and each record's 数据来源."""

    columns: dict[str, np.ndarray]
    sources: list[schemas.DataSources]


def join_live(
    columns: Mapping[str, np.ndarray],
    store: RegistryStore | None,
    config: RegistryConfig,
    pins: Sequence[Pin] | None = None,
) -> LiveJoin:
    """Join the registries to validated canonical columns (one row per record).

    Args:
        columns: canonical columns of the request's records (``columns_from_records``).
        store: the registry store; None when it cannot be opened (status ``unavailable``).
        config: the registries' config (names, what each department supplies).
        pins: per record, for a replay: the snapshots its answer read (see :data:`Pin`);
            None = read each department's current snapshot on the decision date.

    Returns:
        The columns with the joined fields replaced (the other arrays shared, not copied),
        and each record's :class:`schemas.DataSources`.
    """
    n = len(columns["case_id"])
    keys = [v if isinstance(v, str) else None for v in columns["person_key"]]
    dates = card_dates(np.asarray(columns["decision_year"], dtype=float), None)
    sources: list[schemas.DataSources] = [_card_only(NO_PERSON_KEY)] * n
    groups: dict[tuple[dt.date, tuple[int, ...] | None], list[int]] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        day: dt.date = dates[i].astype(object)
        pin = None if pins is None else pins[i]
        if store is None or (pins is not None and pin is None):
            sources[i] = _card_only(UNAVAILABLE, day)
        elif pin == ():
            sources[i] = _card_only(NO_REGISTRIES, day)
        else:
            groups.setdefault((day, pin), []).append(i)  # pin None here: the current ones
    out = dict(columns)
    if groups:
        out.update({name: np.array(columns[name], copy=True) for name in JOINED_FIELDS})
    for (day, pin), rows in groups.items():
        view = _read(store, [str(keys[i]) for i in rows], day, pin)
        if view is None or not view.snapshots:
            for i in rows:
                sources[i] = _card_only(UNAVAILABLE if view is None else NO_REGISTRIES, day)
            continue
        index = np.asarray(rows, dtype=int)
        joined = join_registry_columns(
            join_inputs(columns, index), view.tables, view.snapshot_dates, dates[index], config
        )
        for name in JOINED_FIELDS:
            out[name][index] = joined[name].astype(out[name].dtype)
        for k, i in enumerate(rows):
            card = {name: values[k] for name, values in joined.items()}
            sources[i] = _joined_sources(card, view, config)
    return LiveJoin(out, sources)


def _read(
    store: RegistryStore | None, keys: list[str], on: dt.date, pin: tuple[int, ...] | None
) -> RegistryView | None:
    """The persons' rows in the snapshots current on ``on`` (or pinned); None: unreadable."""
    assert store is not None
    try:
        return store.persons(keys, on, pin)
    except (SQLAlchemyError, RegistryStoreError, OSError) as exc:
        log.error(
            "the registry store cannot be read: %d answer(s) from the card alone: %s",
            len(keys),
            exc,
        )
        return None


def pin_of(stored: Mapping[str, Any]) -> Pin:
    """What a replay reads for a stored answer's ``data_sources`` (its JSON form)."""
    if stored["status"] == UNAVAILABLE:
        return None
    return tuple(int(s["snapshot_id"]) for s in stored.get("snapshots", []))


def _card_only(status: str, day: dt.date | None = None) -> schemas.DataSources:
    return schemas.DataSources.model_validate(
        {"status": status, "status_zh": STATUS_ZH[status], "read_on": day}
    )


def _wire(name: str, value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    return wire_value(name, value)


def _conflict(name: str, card: Any, registry: Any, spoken_flags: set[str]) -> bool:
    """Whether the card and the registries say different things of a field."""
    if card is None or registry is None:
        return False
    if name == "registry_flags":  # the registries speak only of their departments' flags
        return bool((set(card) ^ set(registry)) & spoken_flags)
    return bool(card != registry)


def _joined_sources(
    joined: Mapping[str, Any], view: RegistryView, config: RegistryConfig
) -> schemas.DataSources:
    refs = {
        kind: schemas.SourceRef(
            department=kind,
            department_zh=config.departments[kind].zh if kind in config.departments else kind,
            authority_zh=(
                config.departments[kind].authority_zh if kind in config.departments else ""
            ),
            snapshot_id=snapshot.id,
            snapshot_date=snapshot.as_of,
            holds_person=bool(joined.get(f"registry_{kind}") == 1.0),
        )
        for kind, snapshot in sorted(view.snapshots.items())
    }
    flag_of = config.flag_departments()
    spoken = {flag for kind, flag in flag_of.items() if kind in refs} & set(REGISTRY_FLAGS)
    fields = []
    for name in JOINED_FIELDS:
        card = _wire(name, joined[f"{name}_card"])
        registry = _wire(name, joined[f"{name}_registry"])
        fields.append(
            schemas.FieldSource(
                field=name,
                field_zh=FIELD_BY_NAME[name].zh,
                card=card,
                registry=registry,
                used=_wire(name, joined[name]),
                conflict=_conflict(name, card, registry, spoken),
                sources=[
                    ref
                    for kind, ref in refs.items()
                    if kind in config.departments and field_of(config.departments[kind]) == name
                ],
            )
        )
    return schemas.DataSources(
        status=JOINED,
        status_zh=STATUS_ZH[JOINED],
        read_on=view.on,
        snapshots=list(refs.values()),
        fields=fields,
    )


def lead_sources(record: Mapping[str, Any], answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A live lead's 数据来源 (the shape screening leads carry), from the stored answer.

    The registries that hold the person (department, snapshot date and id), then the case
    card for each joined field it gave where no registry said anything; an answer without
    a join names the card for every such field it gave.
    """
    found = answer.get("data_sources")
    if not found or found["status"] != JOINED:
        day = str((found or {}).get("read_on") or formats.local_date(answer["created_at"]))
        return [
            {
                "department": CASE_SYSTEM_SOURCE,
                "department_zh": CASE_CARD_ZH,
                "snapshot": day,
                "field": name,
            }
            for name in JOINED_FIELDS
            if record.get(name) not in (None, [], "")
        ]
    out: list[dict[str, Any]] = [
        {
            "department": ref["department"],
            "department_zh": ref["department_zh"],
            "snapshot": ref["snapshot_date"],
            "snapshot_id": ref["snapshot_id"],
            "field": field["field"],
        }
        for field in found["fields"]
        for ref in field["sources"]
        if ref["holds_person"]
    ]
    shown = {ref["department"] for ref in out}
    out += [
        {
            "department": ref["department"],
            "department_zh": ref["department_zh"],
            "snapshot": ref["snapshot_date"],
            "snapshot_id": ref["snapshot_id"],
            "field": ref["department"],
        }
        for ref in found["snapshots"]
        if ref["holds_person"] and ref["department"] not in shown
    ]
    out += [
        {
            "department": CASE_SYSTEM_SOURCE,
            "department_zh": CASE_CARD_ZH,
            "snapshot": None,
            "field": field["field"],
        }
        for field in found["fields"]
        if field["registry"] is None and field["card"] not in (None, [])
    ]
    conflicts = [
        {
            "department": CASE_SYSTEM_SOURCE,
            "department_zh": CASE_CARD_ZH,
            "snapshot": None,
            "field": field["field"],
            "conflict": True,
            "card": field["card"],
            "registry": field["registry"],
        }
        for field in found["fields"]
        if field["conflict"]
    ]
    return out + conflicts
