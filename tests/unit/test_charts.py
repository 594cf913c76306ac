"""The pages' charts and number formats: geometry that matches the numbers, escaped labels."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import xml.etree.ElementTree as ET

import pytest

from serving import charts, formats

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def bars(svg: ET.Element) -> list[tuple[float, float, str, str]]:
    """(x0, x1, fill, tooltip) of every bar."""
    found = []
    for rect in svg.iter(f"{SVG}rect"):
        tooltip = rect.find(f"{SVG}title")
        if tooltip is None:
            continue
        x0, width = float(rect.get("x", 0)), float(rect.get("width", 0))
        found.append((x0, x0 + width, rect.get("fill", ""), tooltip.text or ""))
    return found


def texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


STEPS = [
    charts.Step("人身损害严重程度 = 3", 8000.0),
    charts.Step("已获赔偿（月工资倍数） = 2", -3000.0),
    charts.Step("被扶养人数 = 2", 1000.0),
    charts.Step("其余特征合计", 500.0),
]


@pytest.mark.parametrize("width", [charts.WIDTH, charts.NARROW])
def test_a_waterfall_walks_from_the_base_through_each_step_to_the_output(width: int) -> None:
    svg = parse(
        charts.waterfall(
            "w",
            "理由",
            "基准值",
            6000.0,
            STEPS,
            "本案金额",
            formats.yuan,
            formats.signed_yuan,
            width,
        )
    )
    drawn = bars(svg)
    assert len(drawn) == len(STEPS) + 2
    base, *steps, output = drawn
    scale = (base[1] - base[0]) / 6000.0  # the base bar runs from zero to the base value
    position = base[1]
    for (x0, x1, fill, _), step in zip(steps, STEPS, strict=True):
        start, end = position, position + step.delta * scale
        assert sorted((start, end)) == pytest.approx([x0, x1], abs=0.2)
        assert fill == (charts.UP if step.delta > 0 else charts.DOWN)
        position = end
    assert output[0] == pytest.approx(base[0], abs=0.2)  # the output is drawn from zero...
    assert output[1] == pytest.approx(position, abs=0.2)  # ... to where the last step ended
    assert "12,500 元" in texts(svg) and "−3,000 元" in texts(svg)
    assert float(svg.get("viewBox", "").split()[2]) == width


def test_a_chart_is_an_image_with_a_title_and_a_description_in_words() -> None:
    svg = parse(
        charts.waterfall(
            "reasons-x", "理由", "基准值", 1.0, STEPS[:1], "输出", str, formats.signed_yuan
        )
    )
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "reasons-x-title reasons-x-desc"
    assert svg.find(f"{SVG}title").text == "理由"  # type: ignore[union-attr]
    desc = svg.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    assert "人身损害严重程度 = 3 +8,000 元" in desc


def test_labels_are_escaped_and_shown_as_text() -> None:
    hostile = '<script>alert(1)</script> & "x"'
    markup = charts.waterfall(
        "<x>", hostile, hostile, 1.0, [charts.Step(hostile, 1.0)], hostile, str, str
    )
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    svg = parse(markup)  # still well-formed XML
    assert hostile in texts(svg)
    assert svg.find(f"{SVG}title").text == hostile  # type: ignore[union-attr]


def test_the_amount_axis_places_the_reference_inside_its_interval_and_the_granted_below() -> None:
    svg = parse(charts.amount_axis("a", 20_000, (10_000, 35_000), 60_000, 30_000))
    band = next(r for r in svg.iter(f"{SVG}rect"))
    x0, x1 = float(band.get("x", 0)), float(band.get("x", 0)) + float(band.get("width", 0))
    lines = [
        line
        for line in svg.iter(f"{SVG}line")
        if line.get("stroke") in (charts.REFERENCE, charts.CEILING)
    ]
    reference = next(float(v.get("x1", 0)) for v in lines if v.get("stroke") == charts.REFERENCE)
    ceiling = next(float(v.get("x1", 0)) for v in lines if v.get("stroke") == charts.CEILING)
    assert x0 < reference < x1 < ceiling
    # proportional: the reference sits 20k/60k of the way to the ceiling
    assert (reference - 10) / (ceiling - 10) == pytest.approx(20 / 60, abs=0.01)
    words = " ".join(texts(svg))
    assert "参考金额 20,000 元" in words and "法定上限 60,000 元" in words
    assert "实际（拟）救助 30,000 元" in words
    assert "≫" not in words


def test_a_far_ceiling_stands_behind_a_break_so_the_interval_stays_readable() -> None:
    svg = parse(charts.amount_axis("a", 20_000, (10_000, 35_000), 375_000))
    band = next(r for r in svg.iter(f"{SVG}rect"))
    assert float(band.get("width", 0)) > 0.3 * charts.WIDTH
    words = " ".join(texts(svg))
    assert "≫" in words and "法定上限 375,000 元" in words
    assert "实际" not in words  # nothing granted, no marker


def test_a_lead_gauge_fills_to_the_probability_and_marks_the_threshold() -> None:
    flagged = parse(charts.lead_gauge("g", "司法救助线索", 0.75, 0.5))
    track, fill = list(flagged.iter(f"{SVG}rect"))[:2]
    ratio = float(fill.get("width", 0)) / float(track.get("width", 0))
    assert ratio == pytest.approx(0.75, abs=0.01)
    assert fill.get("fill") == charts.FLAGGED
    assert "阈值 50%" in texts(flagged)
    quiet = parse(charts.lead_gauge("g", "司法救助线索", 0.2, 0.5))
    assert list(quiet.iter(f"{SVG}rect"))[1].get("fill") == charts.UNFLAGGED
    assert "未达阈值" in (quiet.find(f"{SVG}desc").text or "")  # type: ignore[union-attr]


def test_responsive_draws_a_wide_and_a_narrow_chart_with_distinct_ids() -> None:
    markup = charts.responsive(
        lambda ident, width: charts.lead_gauge(ident, "x", 0.5, 0.5, width), "lead"
    )
    assert 'id="lead-title"' in markup and 'id="lead-narrow-title"' in markup
    assert f'viewBox="0 0 {charts.NARROW} ' in markup and f'viewBox="0 0 {charts.WIDTH} ' in markup


@pytest.mark.parametrize(
    ("low", "high"), [(0, 21_407), (-2.16, 0.0), (-0.91, 2.33), (0, 1), (3, 3.0001)]
)
def test_nice_ticks_are_round_and_cover_the_range(low: float, high: float) -> None:
    ticks = charts.nice_ticks(low, high)
    assert len(ticks) >= 2
    step = ticks[1] - ticks[0]
    assert ticks[0] >= low - 1e-9 and ticks[0] - step < low
    assert ticks[-1] <= high + 1e-9 and ticks[-1] + step > high
    assert all(b - a == pytest.approx(step) for a, b in itertools.pairwise(ticks))
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 5, 10)


def test_numbers_dates_and_values_read_as_a_chinese_reader_expects() -> None:
    assert formats.yuan(12_345.6) == "12,346 元"
    assert formats.yuan(None) == formats.MISSING
    assert formats.signed_yuan(-567.2) == "−567 元" and formats.signed_yuan(-0.3) == "0 元"
    assert formats.signed(-0.001) == "0.00" and formats.signed(0.25) == "+0.25"
    assert formats.percent(0.375) == "37.5%" and formats.percent(0.3, 0) == "30%"
    assert formats.log_odds(-1.7) == "−1.70"
    moment = dt.datetime(2025, 3, 4, 18, 5, tzinfo=dt.UTC)
    assert formats.local_time(moment) == "2025-03-05 02:05"  # Beijing is UTC+8
    assert formats.local_time("2025-03-04T06:05:00+00:00") == "2025-03-04 14:05"
    assert formats.province("32") == "江苏（32）"
    assert formats.field_value("crime_type", "intentional_injury") == "故意伤害"
    assert formats.field_value("urgent_medical_need", True) == "是"
    assert formats.field_value("registry_flags", ["serious_illness"]) == "大病"
    assert formats.field_value("medical_cost_yuan", 48_000) == "48,000 元"
    assert formats.field_value("victim_age", None) == "未知"
    assert formats.feature_value("province_code", "32") == "江苏（32）"
    assert formats.feature_value("medical_cost_months", 4.6) == "4.6"
    assert formats.in_lead_order({"civil_support": 1, "judicial_aid": 2, "other": 3}) == [
        "judicial_aid",
        "civil_support",
        "other",
    ]
    assert formats.years([2018, 2016, 2023]) == "2016–2023 年"


RATIO_ROWS = [
    charts.RatioRow("320104", 40, 0.9, 1.0, 1.1, parent_median=1.0),
    charts.RatioRow(
        "320105", 35, 1.4, 1.6, 1.9, parent_median=1.0, flag="generous", flag_zh="偏高"
    ),
    charts.RatioRow(
        "<b>3201</b>", 31, 0.3, 0.5, 0.6, parent_median=1.0, flag="stingy", flag_zh="偏低"
    ),
    charts.RatioRow("320199", 2, 4.0, 6.0, 9.0),
]


@pytest.mark.parametrize("width", [charts.WIDTH, charts.NARROW])
def test_ratio_rows_place_quartiles_and_medians_on_one_axis_and_colour_the_flags(
    width: int,
) -> None:
    svg = parse(charts.ratio_rows("dev", "按办案检察院", RATIO_ROWS, width))
    boxes = bars(svg)
    assert len(boxes) == len(RATIO_ROWS)
    assert [fill for _, _, fill, _ in boxes] == [
        charts.UNFLAGGED,
        charts.UP,
        charts.DOWN,
        charts.UNFLAGGED,
    ]
    medians = [
        float(line.get("x1", 0))
        for line in svg.iter(f"{SVG}line")
        if (tip := line.find(f"{SVG}title")) is not None and "中位数" in (tip.text or "")
    ]
    assert medians[2] < medians[0] < medians[1] < medians[3]
    # one scale: each median lies inside its own quartile bar
    for (x0, x1, _, _), median in zip(boxes, medians, strict=True):
        assert x0 - 0.2 <= median <= x1 + 0.2
    # ratios beyond 3× are drawn at the axis's end, inside the drawing
    assert medians[3] <= width and boxes[3][1] <= width
    labels = texts(svg)
    assert "320105（35 件） 偏高" in labels and "<b>3201</b>（31 件） 偏低" in labels
    desc = svg.find(f"{SVG}desc")
    assert desc is not None and "320104 40 件，中位数 100%" in (desc.text or "")
    assert "<b>" not in str(charts.ratio_rows("dev", "t", RATIO_ROWS, width))


def test_ratio_rows_axis_covers_the_reference_when_every_group_is_below_it() -> None:
    rows = [charts.RatioRow("A", 5, 0.1, 0.2, 0.3)]
    svg = parse(charts.ratio_rows("low", "t", rows))
    assert "100%" in texts(svg) and "150%" in texts(svg)
