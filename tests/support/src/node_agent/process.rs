//! Starting a container as a local process.
//!
//! Each container runs in its own mount namespace (`unshare --mount`), where
//! the Pod's directory is bound at [`POD_ROOT`], the image's binary at
//! `POD_ROOT/bin/<name>`, and each volume at its `mountPath`. The Pod's user
//! is taken with `setpriv`, and `readOnlyRootFilesystem` remounts `/`
//! read-only inside the namespace. So a Pod sees its ConfigMaps, Secrets and
//! service-account token where Kubernetes puts them, and nothing it writes
//! reaches another Pod.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Where a Pod's own directory appears inside its mount namespace.
pub const POD_ROOT: &str = "/run/millrace-pod";

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct Launch {
    /// The Pod's directory on the host.
    pub pod_dir: PathBuf,
    /// The binary on the host that the image stands for.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub workdir: Option<String>,
    pub user: Option<i64>,
    pub group: Option<i64>,
    pub read_only_root: bool,
    pub log: PathBuf,
    /// Set when the container runs as a real container of its image.
    pub podman: Option<Podman>,
}

/// Running a container as a real container of its image with podman (host
/// network, the Pod's env, mounts, user and read-only root), so the images
/// we ship are the ones tested. Chosen per Pod by [`PODMAN_ANNOTATION`].
#[derive(Debug, Clone)]
pub struct Podman {
    pub image: String,
    /// The container's name in podman's store.
    pub name: String,
    /// The container's `command`, which replaces the image's entrypoint.
    pub command: Option<Vec<String>>,
}

/// `millrace.io/node-runtime: podman` on a Pod runs its containers with
/// podman; without it they run as local processes.
pub const PODMAN_ANNOTATION: &str = "millrace.io/node-runtime";

/// podman's global flags on our machines (see the README: hybrid cgroups
/// need runc and cgroupfs; vfs needs nothing from the kernel), with a
/// container store of millrace's own (`images/build` uses the same): the
/// machine's store may already exist with another driver (installing
/// Debian's podman creates one with overlay), which podman then refuses to
/// open with vfs, and a store of our own never touches a user's images.
pub fn podman_global() -> Vec<String> {
    let home = crate::world::millrace_home();
    let runtime = std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/run".into());
    [
        "--storage-driver".to_owned(),
        "vfs".to_owned(),
        "--root".to_owned(),
        home.join("containers/storage").display().to_string(),
        "--runroot".to_owned(),
        format!("{runtime}/millrace-containers"),
        "--runtime".to_owned(),
        "runc".to_owned(),
        "--cgroup-manager".to_owned(),
        "cgroupfs".to_owned(),
    ]
    .into()
}

impl Launch {
    fn program_name(&self) -> String {
        self.program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "program".into())
    }

    /// The shell script run inside the new mount namespace; arguments follow
    /// it as `$@`, so none of them is ever parsed by the shell.
    pub fn script(&self) -> String {
        let q = shell_quote;
        let bin = format!("{POD_ROOT}/bin/{}", self.program_name());
        let mut s = String::from("set -e\n");
        s += &format!(
            "mount --bind {} {POD_ROOT}\n",
            q(&self.pod_dir.to_string_lossy())
        );
        s += &format!(
            "mount --bind {} {}\n",
            q(&self.program.to_string_lossy()),
            q(&bin)
        );
        for m in &self.mounts {
            let target = q(&m.target);
            if m.source.is_dir() {
                s += &format!("mkdir -p {target}\n");
            } else {
                s += &format!("mkdir -p \"$(dirname {target})\" && touch {target}\n");
            }
            s += &format!("mount --bind {} {target}\n", q(&m.source.to_string_lossy()));
            if m.read_only {
                s += &format!("mount -o remount,bind,ro {target}\n");
            }
        }
        if self.read_only_root {
            s += "mount -o remount,bind,ro /\n";
        }
        s += &format!("cd {}\n", q(self.workdir.as_deref().unwrap_or("/")));
        match (self.user, self.group) {
            (Some(u), g) => {
                let g = g.unwrap_or(u);
                s += &format!(
                    "exec /usr/bin/setpriv --reuid={u} --regid={g} --clear-groups -- {} \"$@\"\n",
                    q(&bin)
                );
            }
            (None, _) => s += &format!("exec {} \"$@\"\n", q(&bin)),
        }
        s
    }

    /// `podman run` arguments for [`Podman`] mode. The environment goes
    /// through `env_file`, so no value (a password, say) is on a command line.
    pub fn podman_args(&self, p: &Podman, env_file: &Path) -> Vec<String> {
        let mut a: Vec<String> = podman_global();
        a.extend(
            [
                "run",
                "--rm",
                "--replace",
                "--name",
                &p.name,
                "--network",
                "host",
                "--pull",
                "never",
                "--sig-proxy=true",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                "--log-driver",
                "none",
            ]
            .map(String::from),
        );
        a.push(format!("--env-file={}", env_file.display()));
        if let Some(u) = self.user {
            a.push(format!("--user={u}:{}", self.group.unwrap_or(u)));
        }
        if self.read_only_root {
            a.extend([
                "--read-only".to_string(),
                "--read-only-tmpfs=false".to_string(),
            ]);
        }
        if let Some(w) = &self.workdir {
            a.push(format!("--workdir={w}"));
        }
        for m in &self.mounts {
            let ro = if m.read_only { ":ro" } else { "" };
            a.push(format!("--volume={}:{}{ro}", m.source.display(), m.target));
        }
        let mut args = self.args.clone();
        if let Some((first, rest)) = p.command.as_deref().and_then(<[String]>::split_first) {
            a.push(format!("--entrypoint={first}"));
            let mut all = rest.to_vec();
            all.append(&mut args);
            args = all;
        }
        a.push(p.image.clone());
        a.extend(args);
        a
    }

    /// Removes what podman may still hold for this run (a container whose
    /// `podman run` client was killed keeps running under conmon).
    pub async fn cleanup(&self) {
        if let Some(p) = &self.podman {
            let _ = Command::new("podman")
                .args(podman_global())
                .args(["rm", "--force", "--time", "0", &p.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    }

    /// Starts the process in its own process group, with stdout and stderr
    /// appended to the container's log file.
    pub fn spawn(&self) -> std::io::Result<Child> {
        if let Some(p) = &self.podman {
            return self.spawn_podman(p);
        }
        let bin_dir = self.pod_dir.join("bin");
        std::fs::create_dir_all(&bin_dir)?;
        // The bind mount needs an existing file to cover.
        let placeholder = bin_dir.join(self.program_name());
        if !placeholder.exists() {
            File::create(&placeholder)?;
        }
        std::fs::create_dir_all(POD_ROOT)?;
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new("/usr/bin/unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(self.script())
            .arg("sh")
            .args(&self.args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn()
    }
}

impl Launch {
    fn spawn_podman(&self, p: &Podman) -> std::io::Result<Child> {
        std::fs::create_dir_all(&self.pod_dir)?;
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let env_file = self.pod_dir.join(format!("{}.env", p.name));
        let mut text = String::new();
        for (k, v) in &self.env {
            // An env file holds one line per variable; a value with a line
            // break cannot be passed this way.
            if v.contains('\n') {
                return Err(std::io::Error::other(format!(
                    "env {k} has a line break, which podman's env file cannot carry"
                )));
            }
            text.push_str(&format!("{k}={v}\n"));
        }
        write_private(&env_file, text.as_bytes())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new("podman");
        cmd.args(self.podman_args(p, &env_file))
            .env("PATH", DEFAULT_PATH)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Sends `signal` to the process group led by `pid` (our containers lead
/// their own groups, so their children get it too).
pub fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let _ = killpg(Pid::from_raw(raw), signal);
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Whether `path` names an existing regular file.
pub fn is_file(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            pod_dir: "/w/pods/uid-1".into(),
            program: "/t/debug/millrace-runner".into(),
            args: vec!["sink".into()],
            env: vec![],
            mounts: vec![Mount {
                source: "/nonexistent/secret-file".into(),
                target: "/etc/it's".into(),
                read_only: true,
            }],
            workdir: None,
            user: Some(65532),
            group: None,
            read_only_root: true,
            log: "/w/logs/x.log".into(),
            podman: None,
        }
    }

    #[test]
    fn podman_runs_the_image_with_the_pods_settings() {
        let l = launch();
        let p = Podman {
            image: "localhost/millrace-runner:dev".into(),
            name: "c1".into(),
            command: Some(vec!["/millrace-runner".into()]),
        };
        let a = l
            .podman_args(&p, Path::new("/w/pods/uid-1/c1.env"))
            .join(" ");
        assert!(a.starts_with("--storage-driver vfs --root "), "{a}");
        assert!(
            a.contains("/containers/storage --runroot ")
                && a.contains(
                    "/millrace-containers --runtime runc --cgroup-manager cgroupfs run --rm"
                ),
            "{a}"
        );
        for part in [
            "--network host",
            "--env-file=/w/pods/uid-1/c1.env",
            "--user=65532:65532",
            "--read-only",
            "--volume=/nonexistent/secret-file:/etc/it's:ro",
            "--entrypoint=/millrace-runner",
        ] {
            assert!(a.contains(part), "missing {part}: {a}");
        }
        assert!(a.ends_with("localhost/millrace-runner:dev sink"), "{a}");
    }

    #[test]
    fn script_binds_pod_binary_and_volumes_then_drops_privileges() {
        let s = launch().script();
        assert!(
            s.contains("mount --bind '/w/pods/uid-1' /run/millrace-pod\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "mount --bind '/t/debug/millrace-runner' '/run/millrace-pod/bin/millrace-runner'"
            ),
            "{s}"
        );
        assert!(
            s.contains("touch '/etc/it'\\''s'"),
            "quotes are escaped: {s}"
        );
        assert!(
            s.contains("mount -o remount,bind,ro '/etc/it'\\''s'"),
            "{s}"
        );
        assert!(s.contains("mount -o remount,bind,ro /\n"), "{s}");
        assert!(s.ends_with("exec /usr/bin/setpriv --reuid=65532 --regid=65532 --clear-groups -- '/run/millrace-pod/bin/millrace-runner' \"$@\"\n"), "{s}");
    }
}
