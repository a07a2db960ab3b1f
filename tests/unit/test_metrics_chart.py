"""The KPI chart (bot.metrics_chart): a PNG at the size Slack previews, its alt text within Slack's limit,
and each panel's legend clear of what it plots, so no week's figure hides behind it."""
from __future__ import annotations

import random
import struct
from datetime import datetime, timedelta, timezone

import pytest

from bot.metrics_chart import alt_text, chart_png, figure
from commands.metrics import Week

MONDAY = datetime(2026, 9, 7, tzinfo=timezone.utc)


def weeks(seed: int, n: int = 13) -> tuple[Week, ...]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        d = rng.randint(0, 25)
        f = rng.randint(0, d // 2) if d else 0
        out.append(Week(MONDAY + timedelta(weeks=i), d, d - f, f))
    return tuple(out)


def test_the_png_is_600_by_520_pixels():
    png = chart_png(weeks(1), title="Release metrics", frequency_target=5, cfr_target=15)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (600, 520)  # IHDR: Slack's preview scales it to about 360 px


@pytest.mark.parametrize("seed", range(12))
def test_no_point_or_bar_top_is_behind_a_legend(seed):
    fig = figure(weeks(seed), title="Release metrics", frequency_target=5, cfr_target=15)
    fig.canvas.draw()
    for ax in fig.axes:
        box = ax.get_legend().get_window_extent()
        points = [xy for line in ax.get_lines() if line.get_marker() not in (None, "None", "")
                  for xy in ax.transData.transform(line.get_xydata())]
        points += [ax.transData.transform((p.get_x() + p.get_width() / 2, p.get_height())) for p in ax.patches
                   if p.get_height() > 0]
        inside = [tuple(p) for p in points if box.contains(*p)]
        assert not inside, f"{ax.get_ylabel()}: {inside}"


def test_weeks_with_nothing_deployed_still_draw():
    empty = tuple(Week(MONDAY + timedelta(weeks=i), 0, 0, 0) for i in range(4))
    assert chart_png(empty, title="Release metrics", frequency_target=5, cfr_target=15)[:4] == b"\x89PNG"


def test_the_alt_text_names_the_latest_weeks_within_slacks_limit():
    text = alt_text(weeks(2, n=60))
    assert len(text) <= 1000 and text.startswith("Deployment frequency and change failure rate by week.")
    assert f"{weeks(2, n=60)[-1].start:%d %b}" in text
    assert "none finished" in alt_text((Week(MONDAY, 0, 0, 0),))
