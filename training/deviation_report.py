"""The deviation report as files a supervisor opens: an HTML page with charts, and CSV tables.

``deviation.html`` speaks Chinese and embeds its charts (matplotlib, PNG in base64), so the
one file can be mailed or archived; ``groups.csv``, ``largest.csv`` and
``largest_similar.csv`` hold the same tables for a spreadsheet (UTF-8 with a byte-order mark,
which Excel needs to read Chinese). The charts need a font with Chinese glyphs: the first
system font that has them is used (Debian: ``fonts-noto-cjk``); without one the charts fall
back to English labels and province codes, with a warning in the log.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.deviation import (
    GENEROUS,
    GROUP_BY_ZH,
    STINGY,
    DeviationReport,
)

log = logging.getLogger(__name__)

PREFERRED_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
)
"""Fonts with Chinese glyphs, best first; any other font that has them will do."""
_FONT_FILE_HINTS = ("cjk", "wqy", "sourcehan", "simhei", "msyh", "pingfang", "notosanssc")
CHART_ROWS = 40
"""At most this many groups in a chart (every flagged one first, then the largest)."""
COLOURS = {GENEROUS: "#c0392b", STINGY: "#2c6fbb", "": "#8a8a8a"}


def _has_chinese(path: str) -> bool:
    from matplotlib import font_manager

    try:
        return ord("中") in font_manager.get_font(path).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False


def find_cjk_font() -> str | None:
    """The name of a font with Chinese glyphs that matplotlib can use, or None.

    Fonts installed after matplotlib built its font cache are registered on the way.
    """
    from matplotlib import font_manager

    manager = font_manager.fontManager

    def known() -> str | None:
        by_name = {f.name: f.fname for f in manager.ttflist}
        for name in PREFERRED_FONTS:
            if name in by_name and _has_chinese(by_name[name]):
                return name
        for entry in manager.ttflist:
            if "CJK" in entry.name and _has_chinese(entry.fname):
                return str(entry.name)
        return None

    found = known()
    if found is not None:
        return found
    registered = {f.fname for f in manager.ttflist}
    for path in font_manager.findSystemFonts():
        hinted = any(hint in Path(path).name.lower() for hint in _FONT_FILE_HINTS)
        if hinted and path not in registered and _has_chinese(path):
            manager.addfont(path)
    return known()


class _Text:
    """Chart texts in Chinese when a font can show them, else in English."""

    def __init__(self, font: str | None) -> None:
        self.chinese = font is not None

    def __call__(self, zh: str, en: str) -> str:
        return zh if self.chinese else en


def _plain_log_axis(axis: Any) -> None:
    """Tick labels of a log axis as plain numbers (0.5, 2), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _chart_rows(groups: pd.DataFrame) -> pd.DataFrame:
    shown = groups[groups["relative_to_parent"].notna()]
    flagged = shown[shown["flag"] != ""]
    flagged = flagged.iloc[np.argsort(-np.abs(np.log(flagged["relative_to_parent"].to_numpy())))]
    rest = shown[shown["flag"] == ""].head(max(0, CHART_ROWS - len(flagged)))
    rows = pd.concat([flagged.head(CHART_ROWS), rest])
    return rows.sort_values("relative_to_parent")


def _relative_chart(report: DeviationReport, text: _Text) -> str:
    import matplotlib.pyplot as plt

    rows = _chart_rows(report.groups)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.26 * max(len(rows), 1)))
    tolerance = report.tolerance
    ax.axvspan(1 / (1 + tolerance), 1 + tolerance, color="#e8f0e8", label=text("常见区间", "usual"))
    ax.axvline(1.0, color="#555555", linewidth=0.8)
    parent = rows["parent_median"].to_numpy(dtype=float)
    centre = rows["relative_to_parent"].to_numpy(dtype=float)
    low = rows["ratio_q1"].to_numpy(dtype=float) / parent
    high = rows["ratio_q3"].to_numpy(dtype=float) / parent
    labels = [
        f"{label} ({group})" if text.chinese and label != group else str(group)
        for group, label in zip(rows["group"], rows["label_zh"], strict=True)
    ]
    y = np.arange(len(rows))
    colours = [COLOURS[str(f)] for f in rows["flag"]]
    ax.hlines(y, np.maximum(low, 1e-3), np.maximum(high, 1e-3), colors=colours, linewidth=2.5)
    ax.scatter(centre, y, color=colours, zorder=3, s=18)
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set_yticks(y, labels, fontsize=7)
    against = text("本省", "its province") if report.group_by == "office" else text("总体", "all")
    ax.set_xlabel(
        text(
            f"实际救助金额 ÷ 参考金额，相对{against}中位数（点：中位数；线：四分位）",
            f"granted ÷ reference, relative to the median of {against} (dot: median; "
            "line: quartiles)",
        )
    )
    ax.set_title(
        text(
            f"按{GROUP_BY_ZH[report.group_by]}：救助金额偏离（红：偏高，蓝：偏低）",
            f"by {report.group_by}: deviation (red: generous, blue: stingy)",
        )
    )
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _histogram(report: DeviationReport, text: _Text) -> str:
    import matplotlib.pyplot as plt

    ratio = report.decisions["ratio"].to_numpy(dtype=float)
    ratio = ratio[ratio > 0]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    if len(ratio):
        bins = np.geomspace(max(ratio.min(), 1e-3), max(ratio.max(), 1e-3 * 1.01), 60).tolist()
        ax.hist(ratio, bins=bins, color="#5b7fa6")
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
    ax.axvline(1.0, color="#333333", linewidth=0.8)
    ax.set_xlabel(text("实际救助金额 ÷ 参考金额", "granted ÷ reference"))
    ax.set_ylabel(text("决定件数", "decisions"))
    ax.set_title(text("全部救助决定的偏离分布", "all granted decisions"))
    fig.tight_layout()
    return _png(fig)


def _outside_chart(report: DeviationReport, text: _Text) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    rows = report.groups.head(CHART_ROWS).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.26 * max(len(rows), 1)))
    y = np.arange(len(rows))
    labels = [
        str(label) if text.chinese else str(group)
        for group, label in zip(rows["group"], rows["label_zh"], strict=True)
    ]
    ax.barh(y, rows["share_outside_interval"], color=[COLOURS[str(f)] for f in rows["flag"]])
    ax.axvline(0.2, color="#333333", linestyle=":", linewidth=0.8)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel(
        text(
            "超出参考金额80%区间的决定占比（虚线：20%，模型应有的比例）",
            "share outside the 80 % interval (dotted: the 20 % a calibrated model expects)",
        )
    )
    ax.set_title(text("区间外占比（件数最多的分组）", "outside the interval (largest groups)"))
    fig.tight_layout()
    return _png(fig)


def charts(report: DeviationReport) -> dict[str, str]:
    """The report's charts as base64 PNG, by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = find_cjk_font()
    if font is None:
        log.warning(
            "no font with Chinese glyphs found (install fonts-noto-cjk): the charts use English "
            "labels and codes"
        )
    text = _Text(font)
    style: Any = {"font.family": "sans-serif", "axes.unicode_minus": False}
    if font:
        style["font.sans-serif"] = [font, "DejaVu Sans"]
    with plt.rc_context(style):
        return {
            "relative": _relative_chart(report, text),
            "histogram": _histogram(report, text),
            "outside": _outside_chart(report, text),
        }


def _percent(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * float(value):.1f}%"


def _number(value: Any, digits: int = 2) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):,.{digits}f}"


def _cells(values: list[Any], tag: str = "td") -> str:
    return "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in values)


GROUP_HEADERS = (
    "分组代码",
    "名称",
    "决定件数",
    "比值下四分位",
    "比值中位数",
    "比值上四分位",
    "超出80%区间",
    "达到上限",
    "对照",
    "相对对照",
    "标记",
)


def _groups_table(report: DeviationReport) -> str:
    rows = []
    for row in report.groups.to_dict("records"):
        css = f' class="{row["flag"]}"' if row["flag"] else ""
        rows.append(
            f"<tr{css}>"
            + _cells(
                [
                    row["group"] or "（空）",
                    row["label_zh"],
                    int(row["count"]),
                    _number(row["ratio_q1"]),
                    _number(row["ratio_median"]),
                    _number(row["ratio_q3"]),
                    _percent(row["share_outside_interval"]),
                    _percent(row["share_at_ceiling"]),
                    "总体" if row["parent"] == "all" else row["parent"],
                    _number(row["relative_to_parent"]),
                    row["flag_zh"],
                ]
            )
            + "</tr>"
        )
    return f"<table><tr>{_cells(list(GROUP_HEADERS), 'th')}</tr>{''.join(rows)}</table>"


def _largest_section(report: DeviationReport) -> str:
    parts = []
    for i, case in enumerate(report.largest, 1):
        similar = "".join(
            "<tr>"
            + _cells(
                [
                    c.case_id,
                    c.province_code,
                    c.decision_year,
                    c.crime_type,
                    c.harm_outcome,
                    _number(c.amount_yuan, 0),
                    _number(c.months_of_wage),
                    _number(c.similarity, 3),
                ]
            )
            + "</tr>"
            for c in case.similar
        )
        heading = (
            f"{i}. 案件 {case.case_id}（{case.office_code or case.province_code}，"
            f"{case.decision_year}年）：实际 {case.granted_yuan:,.0f} 元，参考 "
            f"{case.reference_yuan:,.0f} 元（80%区间 {case.interval_low_yuan:,.0f}–"
            f"{case.interval_high_yuan:,.0f}），比值 {case.ratio_to_reference:.2f}"
        )
        parts.append(
            f"<h3>{html.escape(heading)}</h3><table><tr>"
            + _cells(
                ["相似案件", "省份", "年度", "案由", "损害后果", "救助金额", "月数", "相似度"], "th"
            )
            + f"</tr>{similar}</table>"
        )
    return "".join(parts)


STYLE = """
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; }
tr.generous td { background: #fbe9e7; }
tr.stingy td { background: #e3edf9; }
img { max-width: 100%; }
.note { color: #555; font-size: 13px; }
"""


def render_html(report: DeviationReport, source: str, pictures: dict[str, str]) -> str:
    """The report as one self-contained HTML page (charts embedded)."""
    years = f"{report.years[0]}–{report.years[1]}年" if report.years else "全部年度"
    overall = report.overall
    model = report.model
    by = GROUP_BY_ZH[report.group_by]
    against = "本省全部决定" if report.group_by == "office" else "全部决定"
    tolerance = report.tolerance
    flagged = report.groups[report.groups["flag"] != ""]
    images = "".join(
        f'<p><img alt="{name}" src="data:image/png;base64,{data}"></p>'
        for name, data in pictures.items()
    )
    summary = _cells(
        [
            int(overall["count"]),
            _number(overall["ratio_q1"]),
            _number(overall["ratio_median"]),
            _number(overall["ratio_q3"]),
            _percent(overall["share_outside_interval"]),
            _percent(overall["share_at_ceiling"]),
        ]
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>同案不同救监督报告（按{html.escape(by)}）</title><style>{STYLE}</style></head>
<body>
<h1>同案不同救监督报告：按{html.escape(by)}分组</h1>
<p class="note">数据：{html.escape(source)}；{years}；读取 {report.rows_read:,} 行，
其中无效 {report.rows_refused:,} 行未计入；已救助且有金额的决定 {int(overall["count"]):,} 件。
参考金额由模型 {html.escape(model.get("name", ""))} 版本 {html.escape(model.get("version", ""))}
（策略版本 {html.escape(model.get("policy_version", ""))}）给出，模型不看省份与办案检察院，
因此比值反映的是与全国同类案件做法的差别。生成于
{dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}。</p>
<h2>总体</h2>
<table><tr>{
        _cells(
            ["决定件数", "比值下四分位", "比值中位数", "比值上四分位", "超出80%区间", "达到上限"],
            "th",
        )
    }</tr><tr>{summary}</tr></table>
<p class="note">比值 = 实际救助金额 ÷ 参考金额。决定件数不少于 {report.min_cases} 件、且中位数高于
{against}中位数的 {1 + tolerance:.2f} 倍（或低于其 1/{1 + tolerance:.2f}）的分组标记为
“偏高”（或“偏低”），共 {len(flagged)} 个。</p>
<h2>图表</h2>{images}
<h2>各分组</h2>{_groups_table(report)}
<h2>偏离最大的决定及其相似案件</h2>{_largest_section(report)}
</body></html>
"""


def largest_tables(report: DeviationReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The largest deviations, one row each, and their similar cases, one row each."""
    cases = pd.DataFrame(
        [{k: v for k, v in asdict(case).items() if k != "similar"} for case in report.largest]
    )
    similar = pd.DataFrame(
        [
            {"deviating_case_id": case.case_id, "rank": rank, **asdict(similar_case)}
            for case in report.largest
            for rank, similar_case in enumerate(case.similar, 1)
        ]
    )
    return cases, similar


def write_report(report: DeviationReport, out: Path, source: str) -> list[Path]:
    """Write ``deviation.html`` and the CSV tables into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    page = out / "deviation.html"
    page.write_text(render_html(report, source, charts(report)), encoding="utf-8")
    written = [page]
    cases, similar = largest_tables(report)
    for name, table in (
        ("groups.csv", report.groups),
        ("largest.csv", cases),
        ("largest_similar.csv", similar),
    ):
        table.to_csv(out / name, index=False, encoding="utf-8-sig")
        written.append(out / name)
    log.info("deviation report written to %s", out)
    return written
