//! The millrace test world, seen from Rust.
//!
//! `world` finds the running services (from the env file written by
//! `tests/env/up`, or from variables pointing at any other cluster such as a
//! kind cluster), `wait` polls with deadlines, `names` makes names unique per
//! test, and `node_agent` is the kubelet stand-in that runs Pods as local
//! processes, `tools` runs helm and podman as the tests need them, and
//! `tcp_gate` cuts one client off from a shared service, `ports` chooses
//! ports for the servers tests start, and `fixtures` reads the recorded API
//! responses.

pub mod fixtures;
pub mod kube_helpers;
pub mod names;
pub mod node_agent;
pub mod ports;
pub mod tcp_gate;
pub mod tools;
pub mod wait;
pub mod world;

pub use fixtures::randomuser_page;
pub use kube_helpers::TestNamespace;
pub use names::{unique_cql_name, unique_name};
pub use ports::free_port;
pub use wait::{Deadline, poll_until};
pub use world::{World, repo_root};
