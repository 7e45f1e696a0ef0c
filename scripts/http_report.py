#!/usr/bin/env python3
"""Summarises scripts/http_bench's raw numbers (a CSV: rep, case, server,
requests_s, transfer, p50, p99, stream_transfer, as wrk printed them) into a
Markdown table of medians and per-repetition ratios on stdout, and draws
the chart (an SVG written by hand: no packages needed).

    scripts/http_report.py RESULTS.csv CHART.svg
"""
import csv
import statistics
import sys

CASES = [("small", "4 KiB cached"), ("medium", "64 KiB cached"), ("large", "1 MiB cached"),
         ("mixed", "mixed: 4 KiB during cold 256 MiB streams"),
         ("mixed_slow", "mixed, slow disk (reads limited by a blkio cgroup)"),
         ("tls_small", "4 KiB cached, HTTPS"), ("tls_medium", "64 KiB cached, HTTPS"),
         ("tls_large", "1 MiB cached, HTTPS")]
# The cases compared with nginx by requests/s (the chart shows the first three).
RATIO_CASES = CASES[:3] + CASES[5:]
MIXED = [("mixed", "mixed"), ("mixed_slow", "mixed, slow disk")]
SERVERS = ["nginx", "fsys", "blocking"]
TARGET_RPS = {"small": 0.7, "medium": 0.9, "large": 1.0, "tls_medium": 0.9, "tls_large": 0.9}


def seconds(v):
    """wrk's latency ("649.00us", "13.21ms", "1.20s") in milliseconds."""
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)


def megabytes(v):
    """wrk's transfer ("85.00MB", "0.94GB", "512.00KB", "865.27B") in MB."""
    if not v:
        return None
    for unit, f in (("KB", 1 / 1024), ("MB", 1.0), ("GB", 1024.0), ("B", 1 / (1 << 20))):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v) / (1 << 20)


def load(path):
    rows = {}
    for r in csv.DictReader(open(path)):
        if not r["requests_s"]:
            continue
        rows[(int(r["rep"]), r["case"], r["server"])] = {
            "rps": float(r["requests_s"]), "mb": megabytes(r["transfer"]), "p50": seconds(r["p50"]),
            "p99": seconds(r["p99"]), "stream": megabytes(r.get("stream_transfer", ""))}
    return rows


def fmt_range(values, f="{:.3g}"):
    if not values:
        return "-"
    m = statistics.median(values)
    if len(values) == 1:
        return f.format(m)
    return (f + " ({}–{})").format(m, f.format(min(values)), f.format(max(values)))


def main():
    rows = load(sys.argv[1])
    reps = sorted({k[0] for k in rows})
    out = []
    out.append("Medians over the repetitions (min–max in brackets).\n")
    out.append("| case | server | requests/s | MB/s | p50 ms | p99 ms |")
    out.append("|---|---|---|---|---|---|")
    for case, label in CASES:
        for s in SERVERS:
            v = [rows[(r, case, s)] for r in reps if (r, case, s) in rows]
            if not v:
                continue
            out.append("| {} | {} | {} | {} | {} | {} |".format(
                label, s, fmt_range([x["rps"] for x in v], "{:.0f}"), fmt_range([x["mb"] for x in v], "{:.1f}"),
                fmt_range([x["p50"] for x in v], "{:.2f}"), fmt_range([x["p99"] for x in v], "{:.2f}")))
    out.append("")
    out.append("Ratios, computed within each repetition (the three servers ran one after the other), "
               "then the median (min–max):\n")
    out.append("| case | measure | fsys | blocking | target (fsys) |")
    out.append("|---|---|---|---|---|")
    ratios = {}
    for case, label in RATIO_CASES:
        for s in ("fsys", "blocking"):
            ratios[(case, s)] = [rows[(r, case, s)]["rps"] / rows[(r, case, "nginx")]["rps"] for r in reps
                                 if (r, case, s) in rows and (r, case, "nginx") in rows]
        if not ratios[(case, "fsys")] and not ratios[(case, "blocking")]:
            continue
        target = "≥ {}".format(TARGET_RPS[case]) if case in TARGET_RPS else "-"
        out.append("| {} | requests/s ÷ nginx | {} | {} | {} |".format(
            label, fmt_range(ratios[(case, "fsys")]), fmt_range(ratios[(case, "blocking")]), target))
    for case, label in MIXED:
        vs_blocking = [rows[(r, case, "fsys")]["p99"] / rows[(r, case, "blocking")]["p99"] for r in reps
                       if (r, case, "fsys") in rows and (r, case, "blocking") in rows]
        vs_nginx = {s: [rows[(r, case, s)]["p99"] / rows[(r, case, "nginx")]["p99"] for r in reps
                        if (r, case, s) in rows and (r, case, "nginx") in rows] for s in ("fsys", "blocking")}
        if not vs_blocking:
            continue
        out.append("| {} | small-request p99 ÷ blocking's | {} | 1 | ≤ 0.25 |".format(label, fmt_range(vs_blocking)))
        out.append("| {} | small-request p99 ÷ nginx's | {} | {} | ≤ 1.5 |".format(
            label, fmt_range(vs_nginx["fsys"]), fmt_range(vs_nginx["blocking"])))
    for case, label in MIXED:
        streams = {s: [rows[(r, case, s)]["stream"] for r in reps
                       if (r, case, s) in rows and rows[(r, case, s)]["stream"] is not None] for s in SERVERS}
        if any(streams.values()):
            out.append("")
            out.append("Cold 256 MiB streams beside the {} case, MB/s: ".format(label) + "; ".join(
                "{} {}".format(s, fmt_range(streams[s], "{:.0f}")) for s in SERVERS) + ".")
    out.append("")
    out.append("![requests/s relative to nginx, and p99 of the mixed case](http.svg)")
    print("\n".join(out))
    chart(sys.argv[2], ratios, rows, reps)


def chart(path, ratios, rows, reps):
    w, h = 780, 340
    colors = {"fsys": "#1f77b4", "blocking": "#ff7f0e", "nginx": "#7f7f7f"}
    e = []
    e.append('<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" '
             'font-size="12">'.format(w, h))
    e.append('<rect width="100%" height="100%" fill="white"/>')
    # Left: requests/s ÷ nginx per case (median bar, min–max whisker), target marks.
    x0, y0, pw, ph = 60, 40, 360, 240
    ymax = max([1.5] + [max(v) for (c, _), v in ratios.items() if v and c in dict(CASES[:3])]) * 1.1
    e.append('<text x="{}" y="20" font-weight="bold">requests/s ÷ nginx (1 worker), cached files</text>'.format(x0))
    for i in range(0, int(ymax * 4) + 1):
        y = y0 + ph - ph * (i / 4) / ymax
        e.append('<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="#ddd"/>'.format(x0, x0 + pw, y, y))
        e.append('<text x="{}" y="{:.1f}" text-anchor="end">{:.2f}</text>'.format(x0 - 5, y + 4, i / 4))
    y1 = y0 + ph - ph / ymax
    e.append('<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="black" stroke-dasharray="4 3"/>'.format(
        x0, x0 + pw, y1, y1))
    group = pw / 3
    for gi, (case, label) in enumerate(CASES[:3]):
        gx = x0 + gi * group
        for si, s in enumerate(("fsys", "blocking")):
            v = ratios.get((case, s)) or []
            if not v:
                continue
            m = statistics.median(v)
            bx = gx + 20 + si * 45
            by = y0 + ph - ph * m / ymax
            e.append('<rect x="{:.1f}" y="{:.1f}" width="40" height="{:.1f}" fill="{}"/>'.format(
                bx, by, y0 + ph - by, colors[s]))
            lo, hi = (y0 + ph - ph * min(v) / ymax), (y0 + ph - ph * max(v) / ymax)
            e.append('<line x1="{0:.1f}" x2="{0:.1f}" y1="{1:.1f}" y2="{2:.1f}" stroke="black"/>'.format(
                bx + 20, lo, hi))
            e.append('<text x="{:.1f}" y="{:.1f}" text-anchor="middle" font-size="10">{:.2f}</text>'.format(
                bx + 20, min(by, hi) - 4, m))
        ty = y0 + ph - ph * TARGET_RPS[case] / ymax
        e.append('<line x1="{:.1f}" x2="{:.1f}" y1="{:.1f}" y2="{:.1f}" stroke="green" stroke-width="2"/>'.format(
            gx + 15, gx + 110, ty, ty))
        e.append('<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>'.format(gx + 62, y0 + ph + 16, label))
    # Right: p99 of the small requests in the mixed cases, ms, log axis.
    import math
    x1, pw2 = 480, 260
    vals = {(c, s): [rows[(r, c, s)]["p99"] for r in reps if (r, c, s) in rows] for c, _ in MIXED for s in SERVERS}
    top = max([10.0] + [max(v) for v in vals.values() if v])
    lo_exp, hi_exp = -1, math.ceil(math.log10(top))
    def ypos(v):
        v = max(v, 10 ** lo_exp)
        return y0 + ph - ph * (math.log10(v) - lo_exp) / (hi_exp - lo_exp)
    e.append('<text x="{}" y="20" font-weight="bold">p99 of 4 KiB requests beside cold streams, ms</text>'.format(x1 - 20))
    for k in range(lo_exp, hi_exp + 1):
        y = ypos(10 ** k)
        e.append('<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" stroke="#ddd"/>'.format(x1, x1 + pw2, y, y))
        e.append('<text x="{}" y="{:.1f}" text-anchor="end">{:g}</text>'.format(x1 - 5, y + 4, 10 ** k))
    for ci, (case, label) in enumerate(MIXED):
        gx = x1 + ci * (pw2 / 2)
        for si, s in enumerate(SERVERS):
            v = vals[(case, s)]
            if not v:
                continue
            m = statistics.median(v)
            bx = gx + 8 + si * 38
            by = ypos(m)
            e.append('<rect x="{:.1f}" y="{:.1f}" width="32" height="{:.1f}" fill="{}"/>'.format(
                bx, by, y0 + ph - by, colors[s]))
            e.append('<line x1="{0:.1f}" x2="{0:.1f}" y1="{1:.1f}" y2="{2:.1f}" stroke="black"/>'.format(
                bx + 16, ypos(min(v)), ypos(max(v))))
            e.append('<text x="{:.1f}" y="{:.1f}" text-anchor="middle" font-size="10">{:.3g}</text>'.format(
                bx + 16, min(by, ypos(max(v))) - 4, m))
        e.append('<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>'.format(gx + 65, y0 + ph + 16, label))
    # Legend.
    ly = h - 18
    for i, (s, text) in enumerate((("fsys", "fsys-http-server, 1 thread"),
                                   ("blocking", "same, --blocking-file-body"), ("nginx", "nginx, 1 worker"))):
        lx = 60 + i * 230
        e.append('<rect x="{}" y="{}" width="12" height="12" fill="{}"/>'.format(lx, ly - 10, colors[s]))
        e.append('<text x="{}" y="{}">{}</text>'.format(lx + 16, ly, text))
    e.append('<text x="{}" y="{}" font-size="10">bars: median of the repetitions; whiskers: min–max; '
             'dashed: nginx; green: target</text>'.format(60, h - 36))
    e.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(e) + "\n")


if __name__ == "__main__":
    main()
