"""Server-side SVG charts for the statistics pages: no JavaScript, no inline style (CSP-safe).

Each function returns markup for an `<svg>` with a title (read by screen readers), a
`<title>` tooltip on every bar, and presentation attributes only. Data tables always sit next
to the charts on the page: a chart is never the only way to read a figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import count

from markupsafe import Markup, escape

# Okabe–Ito, colour-blind safe, starting with the site's blue.
PALETTE = ("#0b5cad", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#6b6b6b", "#b8a100")
MUTED = "#b9c4d0"
INK = "#1d2733"
GRID = "#e3e8ee"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'
_ids = count(1)


def _text_on(color: str) -> str:
    """White or ink text, whichever reads better on this fill."""
    r, g, b = (int(color[i: i + 2], 16) for i in (1, 3, 5))
    return "#ffffff" if 0.299 * r + 0.587 * g + 0.114 * b < 150 else INK


def number(value: float | int | None, decimals: int = 0) -> str:
    """French formatting: 32 492 ; 18,11."""
    if value is None:
        return "—"
    text = f"{value:,.{decimals}f}".replace(",", "\u202f").replace(".", ",")
    return text


def _ticks(peak: float, count: int = 4) -> tuple[float, float]:
    """(step, top) of a round y axis: about `count` steps of 1, 2, 2.5 or 5 × 10^k above `peak`."""
    if peak <= 0:
        return 1.0, float(count)
    raw = peak / count
    exp = 10 ** math.floor(math.log10(raw))
    step = next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= raw)
    if step < 1:
        step = 1.0
    return step, step * math.ceil(peak / step)


def _svg(width: int, height: float, title: str, body: list[str]) -> Markup:
    tid = f"chart-title-{next(_ids)}"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="{tid}" '
        f'xmlns="http://www.w3.org/2000/svg" {FONT} font-size="12">'
        f'<title id="{tid}">{escape(title)}</title>' + "".join(body) + "</svg>"
    )


def _legend(names: Sequence[str], colors: Sequence[str], x: float, y: float, width: float) -> tuple[list[str], float]:
    """Legend items left to right, wrapping; returns the markup and the height used."""
    out, cx, cy = [], x, y
    for name, color in zip(names, colors, strict=False):  # the palette may be shorter than the series
        w = 18 + 7 * len(name)
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        out.append(f'<rect x="{cx:.1f}" y="{cy:.1f}" width="12" height="12" fill="{color}" rx="2"/>')
        out.append(f'<text x="{cx + 16:.1f}" y="{cy + 10:.1f}" fill="{INK}">{escape(name)}</text>')
        cx += w
    return out, cy - y + 18


def grouped_bars(
    groups: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, title: str,
    colors: Sequence[str] = PALETTE, value_labels: bool = True, width: int = 720, height: int = 300,
    unit: str = "", decimals: int = 0, ymax: float | None = None,
) -> Markup:
    """Vertical bars: one group per x label, one bar per series in each group. `unit` follows the values
    (« 85 % »), `ymax` fixes the top of the axis (100 for shares)."""
    names = [name for name, _ in series]
    legend, legend_h = _legend(names, colors, 56, 4, width - 60)
    top, left, bottom, right = 16 + legend_h, 56, 28, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([v or 0 for _, values in series for v in values] or [0])
    step, top_value = _ticks(max(peak, ymax or 0))
    ymax = top_value
    suffix = f"\u202f{unit}" if unit else ""
    body = list(legend)
    for i in range(int(round(ymax / step)) + 1):
        v = step * i
        y = top + plot_h - plot_h * v / ymax
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{INK}">{escape(number(v) + suffix)}</text>')
    n = max(1, len(groups))
    group_w = plot_w / n
    bar_w = min(48.0, group_w * 0.8 / max(1, len(series)))
    for g, label in enumerate(groups):
        x0 = left + g * group_w + (group_w - bar_w * len(series)) / 2
        for s, (name, values) in enumerate(series):
            v = values[g] or 0
            h = plot_h * v / ymax
            x, y = x0 + s * bar_w, top + plot_h - h
            tip = f"{label} — {name} : {number(values[g], decimals)}{suffix if values[g] is not None else ''}"
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                f'fill="{colors[s % len(colors)]}"><title>{escape(tip)}</title></rect>'
            )
            if value_labels and len(series) <= 3 and values[g]:
                body.append(
                    f'<text x="{x + bar_w / 2 - 1:.1f}" y="{y - 4:.1f}" text-anchor="middle" fill="{INK}" '
                    f'font-size="11">{escape(number(values[g], decimals) + suffix)}</text>'
                )
        body.append(
            f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{height - 8}" text-anchor="middle" '
            f'fill="{INK}">{escape(label)}</text>'
        )
    return _svg(width, height, title, body)


def _clip(label: str, size: int = 28) -> str:
    return label if len(label) <= size else label[: size - 1] + "…"


def hbars(items: Sequence[tuple[str, float]], *, title: str, color: str = PALETTE[0], width: int = 480, limit: int = 20) -> Markup:
    """Horizontal bars, largest first as given; beyond `limit` items the rest are summed."""
    items = list(items)
    if len(items) > limit:
        rest = sum(v for _, v in items[limit - 1:])
        items = items[: limit - 1] + [(f"{len(items) - limit + 1} autres", rest)]
    row, top, left, right = 20, 4, 170, 60
    height = top + row * max(1, len(items)) + 4
    peak = max([v for _, v in items] or [0]) or 1
    plot_w = width - left - right
    body = []
    for i, (label, value) in enumerate(items):
        y = top + i * row
        w = plot_w * value / peak
        body.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" fill="{INK}">{escape(_clip(label, 26))}</text>')
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color}" rx="2">'
            f'<title>{escape(label)} : {escape(number(value))}</title></rect>'
        )
        body.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}" fill="{INK}">{escape(number(value))}</text>')
    return _svg(width, height, title, body)


def stacked_shares(
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]], keys: Sequence[str], labels: dict[str, str], *,
    title: str, colors: Sequence[str] = PALETTE, width: int = 720,
) -> Markup:
    """One horizontal 100 % bar per row, split by `keys` (shares in %), with a legend."""
    color = {k: colors[i % len(colors)] for i, k in enumerate(keys)}
    legend, legend_h = _legend([labels.get(k, k) for k in keys], [color[k] for k in keys], 210, 4, width - 214)
    row, top, left, right = 24, 12 + legend_h, 210, 8
    height = top + row * max(1, len(rows)) + 4
    plot_w = width - left - right
    body = list(legend)
    for i, (label, parts) in enumerate(rows):
        y = top + i * row
        body.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end" fill="{INK}">{escape(_clip(label, 30))}</text>')
        total = sum(v for _, v in parts) or 1
        x = float(left)
        for key, value in sorted(parts, key=lambda kv: keys.index(kv[0]) if kv[0] in keys else 99):
            w = plot_w * value / total
            share = 100 * value / total
            tip = f"{label} — {labels.get(key, key)} : {number(share, 1)} %"
            body.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color.get(key, MUTED)}">'
                f'<title>{escape(tip)}</title></rect>'
            )
            if w > 38:
                body.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + 16}" text-anchor="middle" '
                    f'fill="{_text_on(color.get(key, MUTED))}" font-size="11">'
                    f'{escape(number(share, 0))} %</text>'
                )
            x += w
    return _svg(width, height, title, body)
