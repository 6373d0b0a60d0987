//! Where the test world's services are.
//!
//! Tests read only these variables, so the same suite runs against the local
//! world started by `tests/env/up` or against any cluster (kind, say) whose
//! addresses are exported:
//!
//! | variable | meaning |
//! |---|---|
//! | `KUBECONFIG` | the cluster's kubeconfig (admin) |
//! | `MILLRACE_KAFKA_BOOTSTRAP` | Kafka bootstrap servers |
//! | `MILLRACE_CASSANDRA_CONTACT_POINTS` | comma-separated `host:port` |
//! | `MILLRACE_CASSANDRA_LOCAL_DC` | the local datacenter |
//! | `MILLRACE_CASSANDRA_USERNAME` / `_PASSWORD` | a Cassandra superuser |
//! | `MILLRACE_SCHEMA_REGISTRY_URL` | a Confluent-compatible Schema Registry's base URL (the local world's Apicurio `.../apis/ccompat/v7`); only tests of Avro need it, and fail without it |
//! | `MILLRACE_SCHEMA_REGISTRY_TLS_URL` / `_CA` | the same registry over HTTPS, and a file with the CA (PEM) that signed its certificate, which names `127.0.0.1`; only the test of a registry behind a private CA needs them |
//! | `MILLRACE_TEST_CLIENT_CIDR` | only on a cluster whose network plugin enforces NetworkPolicies: this machine's address as the Pods see it (a CIDR); each test namespace lets it in to the runner Pods ([`crate::kube_helpers::HARNESS_POLICY`]) |
//! | `MILLRACE_HOST_FROM_PODS` | an address of this machine that the cluster's Pods can reach, where a test serves what its Pods call (an API to pull); default `127.0.0.1`, where the local world's Pods run |
//!
//! When `MILLRACE_KAFKA_BOOTSTRAP` is not set, the env file of the local world
//! (`$MILLRACE_WORLD/env`, default `~/.cache/millrace/world/env`) is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;

#[derive(Clone)]
pub struct World {
    pub kubeconfig: Option<PathBuf>,
    pub kafka_bootstrap: String,
    pub cassandra_contact_points: Vec<String>,
    pub cassandra_local_dc: String,
    pub cassandra_username: String,
    cassandra_password: String,
    /// Optional here so the worlds without one still serve every other
    /// test; [`World::schema_registry_url`] is what a test calls.
    pub schema_registry_url: Option<String>,
    vars: HashMap<String, String>,
}

impl std::fmt::Debug for World {
    // Hand-written so a password never reaches a test's output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("kubeconfig", &self.kubeconfig)
            .field("kafka_bootstrap", &self.kafka_bootstrap)
            .field("cassandra_contact_points", &self.cassandra_contact_points)
            .field("cassandra_local_dc", &self.cassandra_local_dc)
            .field("cassandra_username", &self.cassandra_username)
            .field("schema_registry_url", &self.schema_registry_url)
            .finish_non_exhaustive()
    }
}

impl World {
    /// Finds the world, or explains how to start one.
    pub fn discover() -> anyhow::Result<Self> {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        if !vars.contains_key("MILLRACE_KAFKA_BOOTSTRAP") {
            let file = env_file_path();
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "no test world: MILLRACE_KAFKA_BOOTSTRAP is not set and {} cannot be read; \
                     start one with `tests/env/up` (or `make test`)",
                    file.display()
                )
            })?;
            // Variables already in the environment win over the file.
            for (k, v) in parse_env_file(&text) {
                vars.entry(k).or_insert(v);
            }
        }
        Self::from_vars(vars)
    }

    fn from_vars(vars: HashMap<String, String>) -> anyhow::Result<Self> {
        let get = |name: &str| -> anyhow::Result<String> {
            match vars.get(name) {
                Some(v) if !v.is_empty() => Ok(v.clone()),
                _ => bail!("{name} is not set in the test world's environment"),
            }
        };
        Ok(Self {
            kubeconfig: vars.get("KUBECONFIG").map(PathBuf::from),
            kafka_bootstrap: get("MILLRACE_KAFKA_BOOTSTRAP")?,
            cassandra_contact_points: get("MILLRACE_CASSANDRA_CONTACT_POINTS")?
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            cassandra_local_dc: vars
                .get("MILLRACE_CASSANDRA_LOCAL_DC")
                .cloned()
                .unwrap_or_else(|| "datacenter1".into()),
            cassandra_username: get("MILLRACE_CASSANDRA_USERNAME")?,
            cassandra_password: get("MILLRACE_CASSANDRA_PASSWORD")?,
            schema_registry_url: vars
                .get("MILLRACE_SCHEMA_REGISTRY_URL")
                .filter(|v| !v.is_empty())
                .map(|v| v.trim_end_matches('/').to_string()),
            vars,
        })
    }

    /// Any other variable of the world (e.g. `MILLRACE_KAFKA_SASL_BOOTSTRAP`).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A program the world built (helm, kubectl, ...) from `MILLRACE_BIN`,
    /// else the one on PATH.
    pub fn tool(&self, name: &str) -> PathBuf {
        let built = self
            .var("MILLRACE_BIN")
            .map(|bin| Path::new(bin).join(name));
        match built {
            Some(path) if path.exists() => path,
            _ => PathBuf::from(name),
        }
    }

    /// The address a test binds a server to when the cluster's Pods must
    /// reach it: the local world's Pods are processes on this machine; a
    /// kind cluster's reach it through their network's gateway.
    pub fn host_from_pods(&self) -> &str {
        self.var("MILLRACE_HOST_FROM_PODS")
            .filter(|v| !v.is_empty())
            .unwrap_or("127.0.0.1")
    }

    pub fn cassandra_password(&self) -> &str {
        &self.cassandra_password
    }

    /// The Confluent-compatible Schema Registry's base URL (`GET
    /// {url}/schemas/ids/1` works under it). An error, never a skip, when
    /// the world has none: a test of Avro without a registry fails.
    pub fn schema_registry_url(&self) -> anyhow::Result<&str> {
        self.schema_registry_url.as_deref().with_context(|| {
            "MILLRACE_SCHEMA_REGISTRY_URL is not set in the test world's environment: \
             this world has no schema registry; `tests/env/up` from this tree starts one"
                .to_string()
        })
    }

    /// `tests/env/avro-produce` with the world's Kafka and registry:
    /// Confluent's own Python client (AvroSerializer, SchemaRegistryClient)
    /// serializes `records` with the Avro `schema`, registering it under
    /// `{topic}-value`, and produces them to `topic`, keyed by the record's
    /// `key_field` when given. Returns the schema id the records carry.
    pub fn avro_produce(
        &self,
        topic: &str,
        schema: &serde_json::Value,
        records: &[serde_json::Value],
        key_field: Option<&str>,
    ) -> anyhow::Result<u32> {
        let schema = schema.to_string();
        let mut args = vec!["produce", "--topic", topic, "--schema", schema.as_str()];
        if let Some(field) = key_field {
            args.extend(["--key-field", field]);
        }
        let input: String = records.iter().map(|r| format!("{r}\n")).collect();
        let out = self.run_avro_produce(&args, &input)?;
        parse_schema_id(&out)
    }

    /// Registers the Avro `schema` under `subject` without producing
    /// anything; returns its id (the same id when it was already there).
    pub fn register_avro_schema(
        &self,
        subject: &str,
        schema: &serde_json::Value,
    ) -> anyhow::Result<u32> {
        let schema = schema.to_string();
        let out = self.run_avro_produce(
            &[
                "register",
                "--subject",
                subject,
                "--schema",
                schema.as_str(),
            ],
            "",
        )?;
        parse_schema_id(&out)
    }

    fn run_avro_produce(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        use std::io::Write;
        let registry = self.schema_registry_url()?;
        let tool = repo_root().join("tests/env/avro-produce");
        let mut child = std::process::Command::new(&tool)
            .args(args)
            .args(["--registry", registry])
            .env("MILLRACE_KAFKA_BOOTSTRAP", &self.kafka_bootstrap)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", tool.display()))?;
        child
            .stdin
            .take()
            .context("avro-produce's stdin")?
            .write_all(stdin.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "avro-produce {} failed ({}): {}",
                args.first().copied().unwrap_or_default(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A client for the world's apiserver, as its admin.
    pub async fn kube_client(&self) -> anyhow::Result<kube::Client> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
            }
            None => kube::Config::infer().await?,
        };
        Ok(kube::Client::try_from(config)?)
    }

    /// Base Kafka client settings for the world's broker.
    pub fn kafka_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.kafka_bootstrap);
        cfg
    }

    /// A CQL session, authenticated as the world's superuser.
    pub async fn cassandra_session(&self) -> anyhow::Result<scylla::client::session::Session> {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&self.cassandra_contact_points)
            .user(&self.cassandra_username, &self.cassandra_password)
            .build()
            .await
            .with_context(|| {
                format!(
                    "connecting to Cassandra at {:?}",
                    self.cassandra_contact_points
                )
            })?;
        Ok(session)
    }
}

fn parse_schema_id(out: &str) -> anyhow::Result<u32> {
    out.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("avro-produce printed no schema id: {out:?}"))
}

/// The repository's root: the nearest directory above the running test's
/// package (`CARGO_MANIFEST_DIR` as cargo sets it for the test process)
/// that holds `Cargo.lock`.
///
/// Read at run time, not with `env!`: two checkouts sharing one target
/// directory share this crate's build, and cargo does not rebuild a
/// workspace member for a new checkout path, so a path compiled in can name
/// the other checkout (or one since removed).
pub fn repo_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no Cargo.lock above {}", package.display()))
}

fn env_file_path() -> PathBuf {
    if let Ok(world) = std::env::var("MILLRACE_WORLD") {
        return Path::new(&world).join("env");
    }
    millrace_home().join("world/env")
}

/// Where downloads, builds and the world live: `$MILLRACE_HOME`, default
/// `~/.cache/millrace`.
pub fn millrace_home() -> PathBuf {
    std::env::var("MILLRACE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            Path::new(&home).join(".cache/millrace")
        })
}

/// Reads `export NAME=value` lines as written by `tests/env/up`, where values
/// are single-quoted shell words.
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (name, raw) = l.split_once('=')?;
            Some((name.trim().to_string(), unquote(raw.trim())))
        })
        .collect()
}

fn unquote(raw: &str) -> String {
    // Shell single quotes, with '\'' for a quote inside.
    if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') {
        raw[1..raw.len() - 1].replace("'\\''", "'")
    } else if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        raw[1..raw.len() - 1].to_string()
    } else {
        raw.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_file_written_by_up() {
        let text = "# test world\nexport KUBECONFIG='/w/kubeconfig'\nexport MILLRACE_CASSANDRA_PASSWORD='it'\\''s'\nPLAIN=1\n";
        let vars: HashMap<_, _> = parse_env_file(text).into_iter().collect();
        assert_eq!(vars["KUBECONFIG"], "/w/kubeconfig");
        assert_eq!(vars["MILLRACE_CASSANDRA_PASSWORD"], "it's");
        assert_eq!(vars["PLAIN"], "1");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let vars = HashMap::from([("MILLRACE_KAFKA_BOOTSTRAP".to_string(), "k:1".to_string())]);
        let err = World::from_vars(vars).expect_err("incomplete");
        assert!(
            err.to_string()
                .contains("MILLRACE_CASSANDRA_CONTACT_POINTS"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let vars = HashMap::from([
            ("MILLRACE_KAFKA_BOOTSTRAP".to_string(), "k:1".to_string()),
            (
                "MILLRACE_CASSANDRA_CONTACT_POINTS".to_string(),
                "c:1".to_string(),
            ),
            ("MILLRACE_CASSANDRA_USERNAME".to_string(), "u".to_string()),
            (
                "MILLRACE_CASSANDRA_PASSWORD".to_string(),
                "s3cret-value".to_string(),
            ),
        ]);
        let world = World::from_vars(vars).expect("complete");
        assert!(!format!("{world:?}").contains("s3cret-value"));
        // Optional in the world, required by whoever asks for it.
        let err = world.schema_registry_url().expect_err("no registry");
        assert!(
            err.to_string().contains("MILLRACE_SCHEMA_REGISTRY_URL"),
            "{err}"
        );
    }
}
