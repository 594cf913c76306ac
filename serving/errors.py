"""Error answers: every refusal names the field path and the rule, in English and Chinese."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.contract import FIELD_BY_NAME

RULE_ZH = {
    "missing": "必填字段缺失",
    "extra_forbidden": "合同未定义该字段，不得提交（含个人身份信息）",
    "literal_error": "取值不在允许范围内",
    "enum": "取值不在允许范围内",
    "greater_than_equal": "数值低于下限",
    "greater_than": "数值低于下限",
    "less_than_equal": "数值超过上限",
    "int_parsing": "不是有效整数",
    "int_from_float": "不是有效整数",
    "int_type": "不是有效整数",
    "float_parsing": "不是有效数字",
    "float_type": "不是有效数字",
    "finite_number": "数值必须有限",
    "bool_parsing": "不是有效布尔值",
    "bool_type": "不是有效布尔值",
    "string_type": "须为文本",
    "string_too_short": "长度过短",
    "string_too_long": "长度过长",
    "list_type": "须为列表",
    "too_short": "条目过少",
    "model_attributes_type": "须为JSON对象",
    "dict_type": "须为JSON对象",
    "json_invalid": "JSON格式错误",
    "string_pattern_mismatch": "格式不符合要求",
    "datetime_from_date_parsing": "不是有效时间",
    "datetime_parsing": "不是有效时间",
    "bool": "不是有效布尔值",
}


def describe_error(error: dict[str, Any], prefix: list[str | int] | None = None) -> dict[str, Any]:
    """One pydantic error as {loc, field, rule, rule_zh}; the contract's rule where it applies."""
    loc = [*(prefix or []), *error.get("loc", ())]
    names = (
        [str(part) for part in loc[1:]]
        if loc and loc[0] in ("body", "query", "path")
        else [str(part) for part in loc]
    )
    field = ".".join(names) or "body"
    rule = str(error.get("msg", "invalid"))
    last = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    spec = FIELD_BY_NAME.get(last)
    if spec is not None and error.get("type") not in ("extra_forbidden",):
        rule = f"{rule}; must be {spec.rule_text()}"
    if error.get("type") == "extra_forbidden":
        rule = "is not a field of the contract and is refused (no personal identifiers)"
    return {"loc": loc, "field": field, "rule": rule,
            "rule_zh": RULE_ZH.get(str(error.get("type")), "取值不符合规定")}  # fmt: skip


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 for a request that breaks the contract's types."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [describe_error(e) for e in exc.errors()]}, status_code=422)


async def http_handler(request: Request, exc: Exception) -> JSONResponse:
    """Every HTTP error as {"detail": text}."""
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such route: {request.method} {request.url.path} (路径不存在)"
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path} (请求方法不允许)"
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)
