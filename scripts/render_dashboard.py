"""Draws panels of the Grafana dashboard from a Prometheus's query_range
answers, as Grafana would show them, into one PNG (scripts/render-dashboard
runs this in its venv)."""

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import observability  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = {"cps": "per second", "ops": "per second", "s": "seconds", "bytes": "bytes", "short": ""}


def query_range(base, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    out = fmt or "{{__name__}}"
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out.replace("{{", "").replace("}}", "").strip() or "value"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboard", default=os.path.join(REPO, "charts/millrace/dashboards/millrace.json"))
    ap.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                    help="a dashboard variable (namespace, pipeline); others take their All value")
    ap.add_argument("--minutes", type=float, default=5, help="the time range, ending now")
    ap.add_argument("--step", type=float, default=5, help="seconds between points")
    ap.add_argument("--rate-interval", default="30s", help="what $__rate_interval stands for")
    ap.add_argument("--rows", default="Flow,Pull sources,Runner processes,Operator (all pipelines)",
                    help="the dashboard rows whose panels to draw, by title")
    ap.add_argument("--note", default="", help="a line under the title: how the data was made")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    doc = json.load(open(args.dashboard))
    values = observability.template_values(doc)
    for kv in args.set:
        k, _, v = kv.partition("=")
        values[k] = v
    values["__rate_interval"] = args.rate_interval
    values["__interval"] = f"{int(args.step)}s"
    values["__range"] = f"{int(args.minutes * 60)}s"

    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    chosen = []
    current = None
    for p in doc["panels"]:
        if p.get("type") == "row":
            current = p.get("title")
            for inner in p.get("panels", []):
                if current in wanted:
                    chosen.append(inner)
            continue
        if current in wanted:
            chosen.append(p)
    if not chosen:
        sys.exit(f"no panels in rows {wanted}")

    end = time.time()
    start = end - args.minutes * 60
    cols = 3
    rows = (len(chosen) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    empty = []
    for ax, panel in zip(axes.flat, chosen):
        drawn = 0
        for t in panel.get("targets", []):
            expr = observability.substitute(t["expr"], values)
            for series in query_range(args.prometheus, expr, start, end, args.step):
                xs = [(float(ts) - end) / 60 for ts, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, linewidth=1.2, label=legend(t.get("legendFormat"), series["metric"]))
                drawn += 1
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        ax.set_title(panel["title"], fontsize=11, loc="left")
        ax.set_ylabel(UNITS.get(unit, unit), fontsize=8)
        ax.set_xlim(-args.minutes, 0)
        ax.set_xlabel("minutes before the picture", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="upper left")
        else:
            empty.append(panel["title"])
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(chosen):]:
        ax.axis("off")
    title = "millrace pipelines — " + ", ".join(f"{k} {values[k]}" for k in ("namespace", "pipeline") if k in values)
    fig.suptitle(title + ("\n" + args.note if args.note else ""), fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(args.out, dpi=80)
    print(f"{args.out}: {len(chosen)} panels over {args.minutes:g} minutes"
          + (f"; no data: {', '.join(empty)}" if empty else ""))
    if empty:
        sys.exit(1)


if __name__ == "__main__":
    main()
