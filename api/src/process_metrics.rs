//! The standard Prometheus process metrics (`process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, `process_start_time_seconds`, ...) of the
//! runner and the operator, read from Linux's `/proc`.
//!
//! They let the dashboard show a runner's memory and restarts from the
//! runner's own scrape, on clusters without cAdvisor or kube-state-metrics
//! in Prometheus. Our own: `prometheus-client` has no process collector, and
//! the crates that have one (`metrics-process`, `prometheus`) belong to other
//! metrics libraries; the `/proc` fields read here are few and stable.

use std::fmt::Write as _;

/// Clock ticks per second in `/proc/*/stat`: Linux's `USER_HZ`, fixed at 100
/// in the user-space ABI whatever the kernel's own tick rate.
const USER_HZ: f64 = 100.0;

/// One reading of the process's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSample {
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
}

impl ProcessSample {
    /// Reads this process's sample; `None` where `/proc` is not Linux's.
    pub fn read() -> Option<Self> {
        Self::read_from("/proc/self")
    }

    /// Reads the sample of process `pid` (a bench measuring a server on
    /// the same box); `None` when it is gone.
    pub fn read_pid(pid: u32) -> Option<Self> {
        Self::read_from(&format!("/proc/{pid}"))
    }

    fn read_from(dir: &str) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string(format!("{dir}/limits")).unwrap_or_default();
        let open_fds = std::fs::read_dir(format!("{dir}/fd")).map_or(0, |d| d.count() as u64);
        parse(&stat, &status, &boot, &limits, open_fds)
    }

    /// The sample in the OpenMetrics text format, without the `# EOF` line
    /// (it goes before a registry's own exposition).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, sample: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{sample} {value}");
        };
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            "process_resident_memory_bytes",
            self.resident_memory_bytes.to_string(),
        );
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            "process_virtual_memory_bytes",
            self.virtual_memory_bytes.to_string(),
        );
        metric(
            "process_cpu_seconds",
            "counter",
            "Total user and system CPU time spent in seconds.",
            "process_cpu_seconds_total",
            format!("{:.2}", self.cpu_seconds),
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
            "process_start_time_seconds",
            format!("{:.2}", self.start_time_seconds),
        );
        metric(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            "process_threads",
            self.threads.to_string(),
        );
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            "process_open_fds",
            self.open_fds.to_string(),
        );
        if let Some(max) = self.max_fds {
            metric(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                "process_max_fds",
                max.to_string(),
            );
        }
        out
    }
}

/// Parses the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat`
/// and `/proc/self/limits`.
fn parse(
    stat: &str,
    status: &str,
    boot: &str,
    limits: &str,
    open_fds: u64,
) -> Option<ProcessSample> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: the fields that follow start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = field(14)? + field(15)?;
    let threads = field(20)?;
    let start_ticks = field(22)?;
    let virtual_memory_bytes = field(23)?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let boot_time = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    Some(ProcessSample {
        resident_memory_bytes: kib("VmRSS:")? * 1024,
        virtual_memory_bytes,
        cpu_seconds: ticks as f64 / USER_HZ,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / USER_HZ,
        threads,
        open_fds,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (tokio (main) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                        250 130 0 0 20 0 9 0 123456 987654321 5120 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17 0 0 0 0 0 0";
    const STATUS: &str =
        "Name:\tmillrace-runner\nVmPeak:\t  300000 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
    const BOOT: &str = "cpu  1 2 3\nbtime 1764800000\nprocesses 10\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
                          Max cpu time              unlimited            unlimited            seconds   \n\
                          Max open files            1048576              1048576              files     \n";

    #[test]
    fn a_sample_is_read_from_the_proc_texts() {
        let s = parse(STAT, STATUS, BOOT, LIMITS, 12).expect("parses");
        assert_eq!(
            s,
            ProcessSample {
                resident_memory_bytes: 20480 * 1024,
                virtual_memory_bytes: 987_654_321,
                cpu_seconds: 3.8,
                start_time_seconds: 1_764_800_000.0 + 1234.56,
                threads: 9,
                open_fds: 12,
                max_fds: Some(1_048_576),
            }
        );
    }

    #[test]
    fn a_truncated_stat_is_no_sample() {
        assert_eq!(parse("4242 (x) S 1 2", STATUS, BOOT, LIMITS, 1), None);
        assert_eq!(parse(STAT, "Name:\tx\n", BOOT, LIMITS, 1), None);
    }

    #[test]
    fn the_exposition_names_a_counter_by_its_family() {
        let text = parse(STAT, STATUS, BOOT, LIMITS, 12)
            .expect("parses")
            .render();
        assert!(
            text.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total 3.80\n"),
            "{text}"
        );
        assert!(
            text.contains("process_resident_memory_bytes 20971520\n"),
            "{text}"
        );
        assert!(
            text.contains("process_start_time_seconds 1764801234.56\n"),
            "{text}"
        );
        assert!(text.contains("process_max_fds 1048576\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn this_process_can_be_read() {
        let s = ProcessSample::read().expect("/proc is readable on Linux");
        assert!(
            s.resident_memory_bytes > 0 && s.threads >= 1 && s.open_fds >= 3,
            "{s:?}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs_f64();
        assert!(
            s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0 * 365.0,
            "{s:?}"
        );
    }
}
