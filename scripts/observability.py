#!/usr/bin/env python3
"""The chart's Grafana dashboard and alert rules, read the way Grafana and
Prometheus read them. tests/check-observability runs the subcommands below;
scripts/render-dashboard imports the query helpers.

  observability.py lint-dashboard DASHBOARD      problems with the dashboard, exit 1 if any
  observability.py dashboard-rules DASHBOARD     every query as a recording rule, for promtool
  observability.py check-rendered RENDERED RULES DASHBOARD LABEL VALUE
                                                 the helm output holds exactly these rules and dashboard
"""

import json
import re
import sys

# What Grafana puts in for its built-in variables, in a check: any valid
# duration will do, promtool only parses.
BUILTIN = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def panels(doc):
    """Every panel but rows, including those inside collapsed rows."""
    for p in doc.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def targets(doc):
    """(panel, target) for each query of each panel."""
    for p in panels(doc):
        for t in p.get("targets", []):
            yield p, t


def variable_selectors(doc):
    """(name, PromQL) of each query variable: the selector its
    label_values(...) reads."""
    for v in doc.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q)
        yield v.get("name"), (m.group(1) if m else None), q


def substitute(expr, values):
    """`expr` with Grafana's $name and ${name} replaced from `values`
    (built-ins default to BUILTIN); unknown names are left as they are."""
    allv = {**BUILTIN, **values}

    def one(m):
        name = m.group(1) or m.group(2)
        return allv.get(name, m.group(0))

    return re.sub(r"\$\{([a-zA-Z_][a-zA-Z0-9_]*)\}|\$([a-zA-Z_][a-zA-Z0-9_]*)", one, expr)


def template_values(doc):
    """Each query variable at its All value: what a check substitutes."""
    out = {}
    for v in doc.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            out[v["name"]] = v.get("allValue") or ".+"
    return out


def lint(doc):
    problems = []
    variables = {v.get("name") for v in doc.get("templating", {}).get("list", [])}
    if not doc.get("uid") or not doc.get("title"):
        problems.append("the dashboard needs a uid and a title")
    seen_ids = set()
    count = 0
    for p in panels(doc):
        count += 1
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in seen_ids:
            problems.append(f"{where}: its id is used twice")
        seen_ids.add(p.get("id"))
        ds = p.get("datasource")
        if not isinstance(ds, dict) or not ds.get("uid"):
            problems.append(f"{where}: no datasource")
        elif ds.get("uid", "").startswith("$") and ds["uid"].strip("${}") not in variables:
            problems.append(f"{where}: datasource {ds['uid']} is no variable of the dashboard")
        ts = p.get("targets") or []
        if not ts:
            problems.append(f"{where}: no targets")
        for t in ts:
            if not (t.get("expr") or "").strip():
                problems.append(f"{where} target {t.get('refId')}: no expr")
            tds = t.get("datasource")
            if tds is not None and tds != ds:
                problems.append(f"{where} target {t.get('refId')}: another datasource than its panel's")
            used = set(re.findall(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)", t.get("expr", "")))
            unknown = used - variables - set(BUILTIN)
            if unknown:
                problems.append(f"{where} target {t.get('refId')}: unknown variables {sorted(unknown)}")
        if not p.get("description"):
            problems.append(f"{where}: no description (it shows as the panel's help)")
    if count == 0:
        problems.append("the dashboard has no panels")
    for name, selector, q in variable_selectors(doc):
        if selector is None:
            problems.append(f"variable {name}: {q!r} is not label_values(SELECTOR, LABEL)")
    return problems


def dashboard_rules(doc):
    """A rule file with one recording rule per query, so `promtool check
    rules` parses every expression the dashboard sends."""
    values = template_values(doc)
    rules = []
    for p, t in targets(doc):
        rules.append({
            "record": f"dashboard:panel_{p.get('id')}_{t.get('refId')}",
            "expr": substitute(t["expr"], values),
        })
    for name, selector, _ in variable_selectors(doc):
        if selector:
            rules.append({"record": f"dashboard:variable_{name}", "expr": substitute(selector, values)})
    return {"groups": [{"name": "dashboard-queries", "rules": rules}]}


def check_rendered(rendered, rules_path, dashboard_path, label, value):
    import yaml  # only the checks need it; the picture's venv has none

    docs = [d for d in yaml.safe_load_all(rendered) if d]
    rules = yaml.safe_load(open(rules_path))
    dashboard = json.load(open(dashboard_path))
    problems = []
    kinds = {}
    for d in docs:
        kinds.setdefault(d.get("kind"), []).append(d)
    prs = kinds.get("PrometheusRule", [])
    if len(prs) != 1:
        problems.append(f"expected one PrometheusRule, rendered {len(prs)}")
    elif prs[0].get("spec") != rules:
        problems.append(f"the PrometheusRule's spec is not {rules_path}")
    boards = [c for c in kinds.get("ConfigMap", [])
              if (c.get("metadata", {}).get("labels") or {}).get(label) == value]
    if len(boards) != 1:
        problems.append(f"expected one ConfigMap labelled {label}={value}, rendered {len(boards)}")
    else:
        data = boards[0].get("data") or {}
        if list(data) != ["millrace.json"]:
            problems.append(f"the dashboard ConfigMap's keys are {list(data)}")
        elif json.loads(data["millrace.json"]) != dashboard:
            problems.append(f"the ConfigMap's millrace.json is not {dashboard_path}")
    pms = kinds.get("PodMonitor", [])
    if len(pms) != 1:
        problems.append(f"expected one PodMonitor for the runners, rendered {len(pms)}")
    else:
        relabels = pms[0]["spec"]["podMetricsEndpoints"][0].get("relabelings", [])
        targets_ = {r.get("targetLabel") for r in relabels}
        if "pipeline" not in targets_:
            problems.append("the runner PodMonitor does not set the pipeline label")
    return problems, {k: len(v) for k, v in kinds.items()}


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "lint-dashboard":
        problems = lint(json.load(open(argv[2])))
        for p in problems:
            print(f"{argv[2]}: {p}", file=sys.stderr)
        if not problems:
            doc = json.load(open(argv[2]))
            n = sum(1 for _ in panels(doc))
            q = sum(1 for _ in targets(doc))
            print(f"{argv[2]}: {n} panels, {q} queries, each with a datasource and a description")
        return 1 if problems else 0
    if cmd == "dashboard-rules":
        import yaml

        yaml.safe_dump(dashboard_rules(json.load(open(argv[2]))), sys.stdout, sort_keys=False, width=1000)
        return 0
    if cmd == "check-rendered":
        problems, kinds = check_rendered(open(argv[2]).read(), *argv[3:7])
        for p in problems:
            print(f"helm template: {p}", file=sys.stderr)
        if not problems:
            print(f"helm template: {kinds}; the PrometheusRule's spec is {argv[3]}, "
                  f"the ConfigMap labelled {argv[5]}={argv[6]} holds {argv[4]}")
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
