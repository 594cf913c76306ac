"""Access scopes: the part of the country a key may read.

A scope is national, a province (2 digits), a city (4) or an office (6 digits, the
procuratorate's administrative division code). Every read (answers, leads, reports, pages)
is limited to the caller's scope; a record outside it is answered as if it did not exist.
A record without an office code is inside a province scope but outside any city or office.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, true

from features.contract import PROVINCE_CODES

LEVELS = {0: "national", 2: "province", 4: "city", 6: "office"}
LEVELS_ZH = {"national": "全国", "province": "省级", "city": "市级", "office": "院级"}


class ScopeError(ValueError):
    """A scope that is not national, a province, a city or an office code."""


@dataclass(frozen=True)
class Scope:
    """A key's scope: ``code`` is "" (national) or a 2-, 4- or 6-digit prefix."""

    code: str = ""

    @classmethod
    def parse(cls, text: str | None) -> Scope:
        """``national`` (or empty), or a province, city or office code."""
        code = (text or "").strip()
        if code.lower() == "national":
            code = ""
        if len(code) not in LEVELS or not (code.isdigit() or code == ""):
            raise ScopeError(
                f"{text!r} is not a scope: use 'national' or a 2-, 4- or 6-digit code "
                "(province, city, office)"
            )
        if code and code[:2] not in PROVINCE_CODES:
            raise ScopeError(f"{text!r}: {code[:2]!r} is not a province code")
        return cls(code)

    @property
    def level(self) -> str:
        """national, province, city or office."""
        return LEVELS[len(self.code)]

    def __str__(self) -> str:
        return self.code or "national"

    def covers(self, province_code: str | None, office_code: str | None) -> bool:
        """Whether a record of this province and office lies inside the scope."""
        if not self.code:
            return True
        if len(self.code) == 2:
            return province_code == self.code
        return office_code is not None and office_code.startswith(self.code)

    def contains(self, other: Scope) -> bool:
        """Whether every record inside ``other`` is inside this scope too."""
        return other.code.startswith(self.code)

    def where(self, province_code: Any, office_code: Any) -> ColumnElement[bool]:
        """The same test as :meth:`covers`, as an SQL condition on two columns."""
        if not self.code:
            return true()
        if len(self.code) == 2:
            return and_(province_code == self.code)
        return and_(office_code.like(f"{self.code}%"))


NATIONAL = Scope("")
