"""Server-side SVG charts: no CDN, no JavaScript, readable without colour
alone (every chart has a title, and its numbers are also in a table or CSV
on the same page)."""
from markupsafe import Markup, escape

PALETTE = ("#1f5fbf", "#2e8540", "#b35c00", "#6f42c1", "#b3261e", "#0b7285")


def _svg(width: int, height: int, title: str, body: str) -> Markup:
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
                  f'role="img" aria-label="{escape(title)}" class="chart" width="100%">'
                  f'<title>{escape(title)}</title>{body}</svg>')


def line_chart(points: list[tuple[str, float]], title: str, width: int = 640, height: int = 200,
               threshold: float | None = None) -> Markup:
    """points: (label, value) in order. An optional dashed threshold line."""
    if not points:
        return _svg(width, 40, title, f'<text x="4" y="24" font-size="13">{escape(title)}: no data</text>')
    pad_left, pad_bottom, pad_top = 44, 24, 12
    values = [v for _, v in points] + ([threshold] if threshold is not None else [])
    low, high = min(0.0, min(values)), max(values) or 1.0
    span = (high - low) or 1.0
    plot_w, plot_h = width - pad_left - 8, height - pad_bottom - pad_top

    def xy(i, v):
        x = pad_left + (plot_w * i / max(len(points) - 1, 1))
        y = pad_top + plot_h * (1 - (v - low) / span)
        return x, y
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in
                    enumerate(xy(i, v) for i, (_, v) in enumerate(points)))
    parts = [f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 8}" y2="{pad_top + plot_h}" stroke="#8a94a6"/>',
             f'<text x="{pad_left - 6}" y="{pad_top + 4}" font-size="11" text-anchor="end">{high:g}</text>',
             f'<text x="{pad_left - 6}" y="{pad_top + plot_h}" font-size="11" text-anchor="end">{low:g}</text>',
             f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>']
    if threshold is not None:
        _, ty = xy(0, threshold)
        parts.append(f'<line x1="{pad_left}" y1="{ty:.1f}" x2="{width - 8}" y2="{ty:.1f}" stroke="{PALETTE[4]}" '
                     f'stroke-dasharray="4 3"/><text x="{width - 10}" y="{ty - 4:.1f}" font-size="11" '
                     f'text-anchor="end" fill="{PALETTE[4]}">{threshold:g}</text>')
    for index in sorted({0, len(points) - 1}):
        x, _ = xy(index, points[index][1])
        # The last label ends at its point, so that it is not cut at the edge.
        anchor = "end" if index and index == len(points) - 1 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" font-size="11" text-anchor="{anchor}">'
                     f'{escape(points[index][0])}</text>')
    return _svg(width, height, title, "".join(parts))


def bar_chart(bars: list[tuple[str, float]], title: str, width: int = 640, bar_height: int = 22,
              suffix: str = "") -> Markup:
    """Horizontal bars with their value written beside them (a funnel, a
    breakdown by source)."""
    label_w = 170
    height = max(len(bars), 1) * (bar_height + 8) + 8
    top = max((v for _, v in bars), default=0) or 1
    parts = []
    for i, (label, value) in enumerate(bars):
        y = 8 + i * (bar_height + 8)
        w = max((width - label_w - 70) * value / top, 1 if value else 0)
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_height * 0.7:.1f}" font-size="13" text-anchor="end">'
                     f'{escape(label)}</text><rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_height}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{label_w + w + 6:.1f}" '
                     f'y="{y + bar_height * 0.7:.1f}" font-size="13">{value:g}{escape(suffix)}</text>')
    return _svg(width, height, title, "".join(parts))


def heat_colour(share: float | None) -> str:
    """Background for a cohort cell: lighter is lower. Text stays dark on
    every shade (contrast ≥ 4.5:1)."""
    if share is None:
        return "#ffffff"
    share = max(0.0, min(1.0, share))
    # from #eef4fc (0 %) to #8fb3e6 (100 %)
    start, end = (0xEE, 0xF4, 0xFC), (0x8F, 0xB3, 0xE6)
    rgb = tuple(round(a + (b - a) * share) for a, b in zip(start, end))
    return "#%02x%02x%02x" % rgb
