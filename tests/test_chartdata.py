"""What the charts draw, without a terminal: EMA, paired downsampling, ticks."""

from __future__ import annotations

import math

from tunedeck.runner.chartdata import ChartView, downsample_xy, ema, fmt_tick, ticks


def test_ema_starts_at_the_first_value_and_lags_behind_a_step() -> None:
    assert ema([2.0, 2.0, 2.0], 0.9) == [2.0, 2.0, 2.0]  # bias-corrected: no drag towards 0
    out = ema([0.0] * 5 + [1.0] * 5, 0.6)
    assert out[4] == 0.0 and 0.0 < out[5] < out[9] < 1.0
    assert ema([1.0, 5.0], 0.0) == [1.0, 5.0]


def test_downsample_keeps_x_and_y_paired_when_a_bucket_is_all_nan() -> None:
    xs = [float(i) for i in range(10)]
    ys = [1.0, 1.0, math.nan, math.nan, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0]
    dx, dy = downsample_xy(xs, ys, 5)
    assert dx == (0.5, 4.5, 6.5, 8.5) and dy == (1.0, 3.0, 4.0, 5.0)


def test_ticks_label_the_min_and_the_max() -> None:
    vals, labels = ticks(10, 500, 5, "step")
    assert vals[0] == 10 and vals[-1] == 500 and labels[0] == "10" and labels[-1] == "500"
    assert ticks(0, 7200, 3, "time")[1] == ["0:00", "1:00:00", "2:00:00"]
    assert fmt_tick(2_048_000, "tokens") == "2.05M"
    assert fmt_tick(2e-4) == "2.0e-04"


def test_view_keys_cycle() -> None:
    v = ChartView()
    assert [v.next_x().x, v.next_x().next_x().x, v.next_x().next_x().next_x().x] == ["tokens", "time", "step"]
    assert v.next_smoothing().smoothing == 0.6 and v.next_zoom().zoom == 1000


def test_desktop_notification_escape_only_for_terminals_that_have_one() -> None:
    from tunedeck.tui.desktop import escape_for

    assert escape_for("t", "b", {"TERM": "xterm-256color"}) is None
    assert escape_for("run done", "a;b\x1b", {"TERM_PROGRAM": "iTerm.app"}) == "\x1b]9;run done: a,b\x07"
    assert escape_for("x", "y", {"TERM": "foot"}) == "\x1b]777;notify;x;y\x07"
    wrapped = escape_for("x", "y", {"TERM": "foot", "TMUX": "/tmp/tmux-0/default,1,0"})
    assert wrapped == "\x1bPtmux;\x1b\x1b]777;notify;x;y\x07\x1b\\"
