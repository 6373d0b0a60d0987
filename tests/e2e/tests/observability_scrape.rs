//! A real Prometheus scrapes a running pipeline: the operator, and the
//! runner Pods relabelled by the chart's own PodMonitor. Every metric the
//! dashboard and the alert rules read has data (the names come from the
//! dashboard JSON and the rule file, not from a list kept here), the runner
//! series carry the `namespace` and `pipeline` the dashboard filters on, the
//! rules load and evaluate without error, and the alerts the pipeline's
//! state calls for are active while the stalled-sink alert is not.
//!
//! Debian's prometheus is built without Kubernetes discovery, so the test
//! lists the Pods from the apiserver and hands them to Prometheus as
//! file_sd targets carrying the `__meta_kubernetes_*` labels Kubernetes
//! discovery would set; Prometheus then applies the PodMonitor's selector,
//! port and relabelings as the Prometheus Operator would.
//!
//! With `MILLRACE_DASHBOARD_PNG=PATH`, the test then lets the pipeline run
//! until Prometheus holds `MILLRACE_DASHBOARD_MINUTES` (default 5) minutes
//! of it and draws the dashboard's main panels to PATH with
//! `scripts/render-dashboard` (docs/observability.md's picture).

mod operator_common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
use k8s_openapi::api::core::v1::Pod;
use millrace_testsupport::kube_helpers::{pod_ip, pods};
use millrace_testsupport::{Deadline, poll_until, repo_root, unique_name};
use operator_common::{Operator, Scenario};
use serde_json::{Value, json};

const DASHBOARD: &str = "charts/millrace/dashboards/millrace.json";
const RULES: &str = "charts/millrace/rules/millrace-rules.yaml";

/// The metric names a PromQL expression reads: identifiers that are not
/// functions, aggregations, keywords, label names or durations. Strings,
/// label matchers (`{...}`), ranges (`[...]`) and the label lists of
/// `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` are skipped.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    const LIST_BEFORE: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "and", "or", "unless", "offset", "bool", "inf", "nan", "atan2",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |from: usize, close: char| -> usize {
        let mut i = from + 1;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some(_) if c == '\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == close => return i + 1,
                None => {}
            }
            i += 1;
        }
        i
    };
    let mut i = 0;
    let mut list_follows = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '(' && list_follows {
            list_follows = false;
            i = skip_to(i, ')');
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_start();
            // `sum by (x) (...)`: an aggregation whose modifier comes first.
            let modifier_follows = ["by", "without"].iter().any(|m| {
                rest.strip_prefix(m)
                    .is_some_and(|after| after.trim_start().starts_with('('))
            });
            if LIST_BEFORE.contains(&word.as_str()) {
                list_follows = rest.starts_with('(');
            } else if rest.starts_with('(') || modifier_follows || KEYWORDS.contains(&word.as_str())
            {
                // a function, an aggregation or an operator
            } else {
                out.insert(word);
            }
        } else {
            i += 1;
        }
    }
}

/// Every expression of the dashboard (panel queries, and the selectors of
/// its `label_values(SELECTOR, LABEL)` variables) and of the rule file.
fn exprs_in_use() -> anyhow::Result<Vec<(String, String)>> {
    let root = repo_root();
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(root.join(DASHBOARD))?)?;
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for p in dashboard["panels"].as_array().context("panels")? {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().context("a target without expr")?;
            out.push((
                format!("panel {}", p["title"].as_str().unwrap_or("?")),
                expr.to_owned(),
            ));
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .context("templating")?
    {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .context("query")?;
            let inner = q
                .trim()
                .strip_prefix("label_values(")
                .and_then(|s| s.rsplit_once(','))
                .map(|(selector, _label)| selector)
                .with_context(|| format!("variable {}: {q}", v["name"]))?;
            out.push((format!("variable {}", v["name"]), inner.to_owned()));
        }
    }
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join(RULES))?)?;
    for g in rules["groups"].as_sequence().context("groups")? {
        for r in g["rules"].as_sequence().context("rules")? {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            out.push((
                format!("rule {name}"),
                r["expr"].as_str().context("expr")?.to_owned(),
            ));
        }
    }
    Ok(out)
}

/// The chart's runner PodMonitor, rendered by helm.
fn pod_monitor(s: &Scenario) -> anyhow::Result<serde_yaml::Value> {
    let out = std::process::Command::new(s.world.tool("helm"))
        .args([
            "template",
            "obs",
            "charts/millrace",
            "--kube-version",
            "1.36.3",
            "--set",
            "metrics.runnerPodMonitor.enabled=true",
            "--show-only",
            "templates/podmonitor.yaml",
        ])
        .current_dir(repo_root())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_yaml::from_slice(&out.stdout)?)
}

/// How Kubernetes discovery names a Pod label in `__meta_kubernetes_*`.
fn meta_label(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The scrape job the Prometheus Operator makes of the PodMonitor, with
/// file_sd in place of Kubernetes discovery (its relabelings verbatim).
fn runner_job(pm: &serde_yaml::Value, targets_file: &Path) -> anyhow::Result<Value> {
    let spec = &pm["spec"];
    let endpoint = &spec["podMetricsEndpoints"][0];
    let port = endpoint["port"]
        .as_str()
        .context("podMetricsEndpoints[0].port")?;
    let mut relabel = Vec::new();
    for (k, v) in spec["selector"]["matchLabels"]
        .as_mapping()
        .context("selector.matchLabels")?
    {
        relabel.push(json!({
            "source_labels": [format!("__meta_kubernetes_pod_label_{}", meta_label(k.as_str().context("label")?))],
            "regex": v.as_str().context("label value")?,
            "action": "keep",
        }));
    }
    relabel.push(json!({"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port, "action": "keep"}));
    for (meta, label) in [
        ("__meta_kubernetes_namespace", "namespace"),
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_pod_container_name", "container"),
    ] {
        relabel.push(json!({"source_labels": [meta], "target_label": label}));
    }
    for r in endpoint["relabelings"].as_sequence().into_iter().flatten() {
        let mut out = serde_json::Map::new();
        for (k, v) in r.as_mapping().context("relabeling")? {
            let key = match k.as_str().context("key")? {
                "sourceLabels" => "source_labels",
                "targetLabel" => "target_label",
                other => other,
            };
            out.insert(key.to_owned(), serde_json::to_value(v)?);
        }
        relabel.push(Value::Object(out));
    }
    Ok(json!({
        "job_name": "millrace-runners",
        "metrics_path": endpoint["path"].as_str().unwrap_or("/metrics"),
        "file_sd_configs": [{"files": [targets_file], "refresh_interval": "2s"}],
        "relabel_configs": relabel,
    }))
}

/// The namespace's Pods as Kubernetes discovery (role pod) sees them: one
/// target per container port.
fn pod_targets(pods: &[Pod]) -> Value {
    let mut targets = Vec::new();
    for pod in pods {
        let Some(ip) = pod_ip(pod) else { continue };
        let meta = &pod.metadata;
        for c in pod.spec.iter().flat_map(|s| &s.containers) {
            for p in c.ports.iter().flatten() {
                let mut labels = BTreeMap::from([
                    (
                        "__meta_kubernetes_namespace".to_owned(),
                        meta.namespace.clone().unwrap_or_default(),
                    ),
                    (
                        "__meta_kubernetes_pod_name".to_owned(),
                        meta.name.clone().unwrap_or_default(),
                    ),
                    ("__meta_kubernetes_pod_ip".to_owned(), ip.clone()),
                    (
                        "__meta_kubernetes_pod_container_name".to_owned(),
                        c.name.clone(),
                    ),
                    (
                        "__meta_kubernetes_pod_container_port_name".to_owned(),
                        p.name.clone().unwrap_or_default(),
                    ),
                    (
                        "__meta_kubernetes_pod_container_port_number".to_owned(),
                        p.container_port.to_string(),
                    ),
                ]);
                for (k, v) in meta.labels.iter().flatten() {
                    labels.insert(
                        format!("__meta_kubernetes_pod_label_{}", meta_label(k)),
                        v.clone(),
                    );
                }
                targets.push(
                    json!({"targets": [format!("{ip}:{}", p.container_port)], "labels": labels}),
                );
            }
        }
    }
    Value::Array(targets)
}

/// A prometheus process of the test's own: its config, data and port.
struct Prometheus {
    child: tokio::process::Child,
    dir: PathBuf,
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    async fn start(config: &Value, dir: PathBuf) -> anyhow::Result<Self> {
        let port = millrace_testsupport::free_port()?;
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, serde_yaml::to_string(config)?)?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = tokio::process::Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("starting /usr/bin/prometheus (Debian's prometheus package; scripts/install-system-packages)")?;
        let p = Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        poll_until("prometheus to be ready", Deadline::secs(30), || async {
            let r = p.http.get(format!("{}/-/ready", p.url)).send().await?;
            Ok(r.status().is_success().then_some(()))
        })
        .await
        .with_context(|| p.log())?;
        Ok(p)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let text = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await?
            .text()
            .await?;
        let body: Value = serde_json::from_str(&text).with_context(|| text.clone())?;
        anyhow::ensure!(body["status"] == "success", "{path} {query:?}: {text}");
        Ok(body["data"].clone())
    }

    /// The instant vector `expr`, as (labels, value).
    async fn query(&self, expr: &str) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
        let data = self.api("query", &[("query", expr)]).await?;
        let mut out = Vec::new();
        for r in data["result"].as_array().context("result")? {
            let labels = serde_json::from_value(r["metric"].clone())?;
            let v: f64 = r["value"][1].as_str().context("value")?.parse()?;
            out.push((labels, v));
        }
        Ok(out)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A stand-in for the randomuser API: page 3 of the recorded pages, which
/// holds one record the table cannot take (so the pipeline dead-letters).
async fn serve_api() -> anyhow::Result<SocketAddr> {
    let page = std::fs::read_to_string(repo_root().join("tests/fixtures/randomuser/page-3.json"))?;
    let app = Router::new().route(
        "/api/",
        get(move || {
            let page = page.clone();
            async move { ([("content-type", "application/json")], page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[test]
fn metric_names_are_read_from_promql() {
    let mut names = BTreeSet::new();
    metric_names(
        r#"histogram_quantile(0.99, sum by (namespace, le) (rate(a_bucket{x=~"$y", z="}"}[$__rate_interval])))
           and on (namespace) b > 6 * 3600 unless c offset 10m or (d unless d offset 10m) * 1
           - time() + sum without (pod) (e:rate5m) # f is a comment
           + label_replace(g, "to", "$1", "from", "(.*)")"#,
        &mut names,
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(names, ["a_bucket", "b", "c", "d", "e:rate5m", "g"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_finds_data_for_every_metric_the_dashboard_and_the_alerts_read()
-> anyhow::Result<()> {
    // The names first: a dashboard or rule file nobody can read fails
    // before anything starts.
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (where_, expr) in exprs_in_use()? {
        let mut names = BTreeSet::new();
        metric_names(&expr, &mut names);
        anyhow::ensure!(!names.is_empty(), "{where_} reads no metric: {expr}");
        for n in names {
            used.entry(n).or_default().insert(where_.clone());
        }
    }
    // Every name must have data: the runners export their own process
    // metrics, so nothing the dashboard or the rules read comes from
    // cAdvisor or kube-state-metrics.
    let ours: Vec<&String> = used.keys().collect();
    println!(
        "{} metric names in the dashboard and the rules; all must have data here",
        ours.len()
    );

    let s = Scenario::new("obs").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let api = serve_api().await?;
    let name = "watched";
    let mut sp = s.seed_pipeline(name)?;
    // Every series the dashboard shows: generated and pulled records in,
    // rows out, a poison record in each pull (dead letters), one pull
    // source that works and one that cannot (both outcomes).
    sp["spec"]["sources"] = json!([
        {"name": "synthetic", "generator": {"profile": "randomuser", "recordsPerSecond": 40}},
        {"name": "api", "httpPull": {"url": format!("http://{api}/api/"), "schedule": "5s", "recordsPath": "/results"}},
        {"name": "down", "httpPull": {"url": "http://127.0.0.1:9/users", "schedule": "5s", "maxRetries": 0}},
    ]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    let dir = std::env::temp_dir().join(unique_name("obs-prometheus"));
    std::fs::create_dir_all(&dir)?;
    let targets_file = dir.join("runners.json");
    let pm = pod_monitor(&s)?;
    let selector: Vec<String> = pm["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .context("matchLabels")?
        .iter()
        .map(|(k, v)| format!("{}={}", k.as_str().unwrap_or(""), v.as_str().unwrap_or("")))
        .collect();
    let selector = selector.join(",");
    let pod_api = s.ns.api::<Pod>();
    let refresh_targets = || async {
        let found = pods(&pod_api, &selector).await?;
        let tmp = targets_file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&pod_targets(&found))?)?;
        std::fs::rename(&tmp, &targets_file)?;
        anyhow::Ok(found.len())
    };
    refresh_targets().await?;
    let config = json!({
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [repo_root().join(RULES)],
        "scrape_configs": [
            {
                "job_name": "millrace-operator",
                "static_configs": [{"targets": [op.metrics_addr], "labels": {"namespace": s.ns.name}}],
            },
            runner_job(&pm, &targets_file)?,
        ],
    });
    // A second pipeline whose credentials Secret does not exist: its
    // reconciles fail (category `secret`), so the operator's failure series
    // exist. Made just before Prometheus starts, so the operator's retries
    // (15 s, then 30 s, doubling) fall inside the scrape.
    let unready = "unready";
    let mut bad = s.seed_pipeline(unready)?;
    bad["spec"]["kafka"]["topic"]["name"] = json!(format!("{}-{unready}", s.topic));
    bad["spec"]["cassandra"]["table"]["name"] = json!(unready);
    bad["spec"]["cassandra"]["credentialsSecretRef"] = json!({"name": "no-such-secret"});
    bad["spec"]["sources"] = json!([]);
    s.apply(&bad).await?;
    let prom = Prometheus::start(&config, dir).await?;
    s.wait_condition(unready, "Ready", "False", Some("SecretNotFound"), 60)
        .await?;

    // Every name with data; runner series under this pipeline's labels.
    let ns = s.ns.name.clone();
    let found = poll_until(
        "data for every metric the dashboard and the rules read",
        Deadline::secs(180),
        || async {
            let n = refresh_targets().await?;
            let mut missing = Vec::new();
            let mut counts = BTreeMap::new();
            for name in &ours {
                let selector = if name.starts_with("millrace_operator_") {
                    format!("{{__name__=\"{name}\", job=\"millrace-operator\"}}")
                } else {
                    format!("{{__name__=\"{name}\", namespace=\"{ns}\", pipeline=\"watched\"}}")
                };
                let got = prom.query(&format!("count({selector})")).await?;
                match got.first() {
                    Some((_, c)) if *c > 0.0 => {
                        counts.insert((*name).clone(), *c);
                    }
                    _ => missing.push(format!("{name} (read by {:?})", used[*name])),
                }
            }
            if missing.is_empty() {
                Ok(Some(counts))
            } else {
                bail!("{n} runner Pods; no data yet for {missing:?}")
            }
        },
    )
    .await?;
    for (name, count) in &found {
        println!("  {name}: {count} series");
    }

    // Both runner roles are scraped, under the chart's labels.
    let components = prom
        .query(&format!(
            "count by (component) (up{{job=\"millrace-runners\", namespace=\"{ns}\", pipeline=\"watched\"}} == 1)"
        ))
        .await?;
    let components: BTreeSet<String> = components
        .iter()
        .filter_map(|(l, _)| l.get("component").cloned())
        .collect();
    assert_eq!(
        components,
        BTreeSet::from(["ingest".to_owned(), "sink".to_owned()]),
        "the runner targets by component"
    );

    // The rules loaded and evaluate cleanly against the real series, and
    // the alerts this pipeline's state calls for are active.
    let alerts = poll_until(
        "the alert rules to evaluate and the expected alerts to be active",
        Deadline::secs(300),
        || async {
            let rules = prom.api("rules", &[]).await?;
            let mut rules_seen = 0;
            for g in rules["groups"].as_array().context("groups")? {
                for r in g["rules"].as_array().context("rules")? {
                    rules_seen += 1;
                    if r["health"] != "ok" {
                        bail!("rule {} is {}: {}", r["name"], r["health"], r["lastError"]);
                    }
                }
            }
            anyhow::ensure!(rules_seen > 0, "no rules loaded");
            let active = prom.api("alerts", &[]).await?;
            let active: Vec<(String, BTreeMap<String, String>, String)> = active["alerts"]
                .as_array()
                .context("alerts")?
                .iter()
                .map(|a| {
                    (
                        a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                        serde_json::from_value(a["labels"].clone()).unwrap_or_default(),
                        a["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            let has = |alert: &str, label: &str, value: &str| {
                active
                    .iter()
                    .any(|(n, l, _)| n == alert && l.get(label).map(String::as_str) == Some(value))
            };
            let expected = [
                ("MillraceDeadLettering", "pipeline", "watched"),
                ("MillracePullFailing", "source", "down"),
                ("MillraceOperatorReconcileFailing", "category", "secret"),
            ];
            let waiting: Vec<_> = expected.iter().filter(|(a, l, v)| !has(a, l, v)).collect();
            if waiting.is_empty() {
                Ok(Some((rules_seen, active)))
            } else {
                bail!("not active yet: {waiting:?}; active: {active:?}")
            }
        },
    )
    .await?;
    let (rules_seen, active) = alerts;
    println!("{rules_seen} rules evaluated, all healthy; active alerts:");
    for (name, labels, state) in &active {
        println!("  {name} {state} {labels:?}");
    }
    assert!(
        !active.iter().any(|(n, l, _)| n == "MillraceSinkStalled"
            && l.get("pipeline").map(String::as_str) == Some("watched")),
        "rows flow, yet MillraceSinkStalled is active: {active:?}"
    );
    assert!(
        !active.iter().any(|(n, l, _)| n == "MillracePullFailing"
            && l.get("source").map(String::as_str) == Some("api")),
        "the working pull source is reported failing: {active:?}"
    );

    if let Ok(png) = std::env::var("MILLRACE_DASHBOARD_PNG") {
        draw(&prom, &ns, &png, &refresh_targets).await?;
    }

    drop(prom);
    // While the operator runs, so their finalizers run and the namespace
    // can go.
    s.delete_pipeline(name, 120).await?;
    s.delete_pipeline(unready, 120).await?;
    op.stop().await?;
    s.drop_own_topics(&[unready]).await;
    s.cleanup().await
}

/// Lets the pipeline run until Prometheus holds the minutes asked for, then
/// draws the dashboard's main panels from it.
async fn draw<F, Fut>(
    prom: &Prometheus,
    ns: &str,
    png: &str,
    refresh_targets: &F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let minutes: f64 = std::env::var("MILLRACE_DASHBOARD_MINUTES")
        .ok()
        .map(|m| m.parse())
        .transpose()?
        .unwrap_or(5.0);
    let span = format!(
        "time() - min_over_time(timestamp(millrace_rows_written_total{{namespace=\"{ns}\", component=\"sink\"}})[{}s:2s])",
        (minutes * 60.0) as u64 + 60
    );
    poll_until(
        &format!("{minutes} minutes of scrapes"),
        Deadline::after(Duration::from_secs_f64(minutes * 60.0 + 120.0)),
        || async {
            refresh_targets().await?;
            let got = prom.query(&span).await?;
            let held = got.iter().map(|(_, v)| *v).fold(0.0, f64::max);
            Ok((held >= minutes * 60.0).then_some(()))
        },
    )
    .await?;
    let status = std::process::Command::new(repo_root().join("scripts/render-dashboard"))
        .args([
            "--prometheus",
            &prom.url,
            "--set",
            &format!("namespace={ns}"),
            "--set",
            "pipeline=watched",
            "--minutes",
            &minutes.to_string(),
            "--note",
            &format!(
                "observability_scrape: seed pipeline, generator 40 records/s, a pull every 5 s (page of 10 with 1 poison record), a pull that fails; scraped every 2 s; {minutes} minutes"
            ),
            "--out",
            png,
        ])
        .status()?;
    anyhow::ensure!(status.success(), "scripts/render-dashboard: {status}");
    Ok(())
}
