//! Bounds shared by the CRD schema and [`crate::validate`], so the two
//! cannot drift apart. List and string bounds also keep the apiserver's CEL
//! cost estimates within its limits.

/// Longest keyspace, table or column name (Cassandra's limit for keyspaces
/// and tables).
pub const CQL_IDENTIFIER_MAX: usize = 48;
/// Longest Kafka topic name.
pub const TOPIC_NAME_MAX: usize = 249;
/// Longest source name (a DNS label).
pub const SOURCE_NAME_MAX: usize = 63;
/// Longest StreamPipeline name, leaving room for the suffixes of the
/// runner's Deployments and Service within 63 characters.
pub const PIPELINE_NAME_MAX: usize = 50;

pub const PARTITIONS: (i64, i64) = (1, 10_000);
pub const TOPIC_REPLICATION_FACTOR: (i64, i64) = (1, 32_767);
pub const KEYSPACE_REPLICATION_FACTOR: (i64, i64) = (1, 32);
pub const TIMEOUT_SECONDS: (i64, i64) = (1, 600);
pub const MAX_RETRIES: (i64, i64) = (0, 20);
pub const MAX_BODY_BYTES: (i64, i64) = (1, 64 * 1024 * 1024);
/// A pull's largest response body. The top is a memory bound: a page is
/// held whole and parsed into JSON values several times its size.
pub const MAX_RESPONSE_BYTES: (i64, i64) = (1024, 128 * 1024 * 1024);
/// The default `maxResponseBytes`: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: i64 = 16 * 1024 * 1024;
pub const RECORDS_PER_SECOND: (i64, i64) = (1, 1_000_000);
pub const REPLICAS: (i64, i64) = (0, 64);
/// Autoscaling never goes to zero: a sink with no replica commits nothing,
/// which is the sign the autoscaler reads as a stalled sink.
pub const AUTOSCALE_REPLICAS: (i64, i64) = (1, 64);
pub const TARGET_LAG: (i64, i64) = (1, 1_000_000_000);
/// Cassandra's longest TTL: 20 years.
pub const TTL_SECONDS_MAX: i32 = 630_720_000;
pub const COOLDOWN_SECONDS: (i64, i64) = (0, 86_400);
pub const MAX_IN_FLIGHT: (i64, i64) = (1, 65_536);
pub const BATCH_MAX_RECORDS: (i64, i64) = (2, 1_000);
pub const BATCH_MAX_DELAY_MS: (i64, i64) = (0, 1_000);
pub const MAX_PAGES: (i64, i64) = (1, 10_000);
pub const PAGE_SIZE: (i64, i64) = (1, 1_000_000);
/// Most windows a backfill is split into.
pub const BACKFILL_WINDOWS_MAX: u64 = 10_000;

pub const CONTACT_POINTS_MAX: usize = 16;
pub const COLUMNS_MAX: usize = 100;
/// Tables one pipeline writes (each record becomes a row in each).
pub const TABLES_MAX: usize = 8;
pub const KEY_COLUMNS_MAX: usize = 8;
pub const SOURCES_MAX: usize = 16;
pub const TOPIC_CONFIG_MAX: usize = 64;
pub const HEADERS_MAX: usize = 32;
/// DNS names a `ClientCertificate` push source may allow.
pub const ALLOWED_DNS_NAMES_MAX: usize = 64;
pub const DATACENTERS_MAX: usize = 16;
pub const POINTER_MAX: usize = 512;
pub const TEMPLATE_MAX: usize = 1024;
pub const URL_MAX: usize = 2048;
pub const SCHEDULE_MAX: usize = 128;
pub const QUERY_PARAM_MAX: usize = 128;
