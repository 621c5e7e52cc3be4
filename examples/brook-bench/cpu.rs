//! CPU time used during a timed phase, split between the rdkafka client (librdkafka's `rdk:` threads and
//! this program's main thread) and the rest of the process: the in-process broker's runtime and log
//! threads, or librdkafka's mock cluster thread (`rdk:mock`). Shows which side sets the pace when a figure
//! falls short of its target: on 2 cores, a client that needs most of them leaves the broker idle however
//! fast it is.

use std::time::Instant;

/// CPU seconds consumed so far, read from /proc.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    client: f64,
    total: f64,
    at: Instant,
}

/// Cores in use on average between two [`CpuClock`] readings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub client_cores: f64,
    /// The rest of this process: the broker when it runs in-process; the runner sets `None` for a broker
    /// elsewhere, where the rest of this process is idle.
    pub broker_cores: Option<f64>,
}

impl CpuUse {
    pub fn describe(&self) -> String {
        match self.broker_cores {
            Some(b) => format!(
                "CPU in the timed phase: broker {b:.2} cores, rdkafka client {:.2} cores",
                self.client_cores
            ),
            None => format!(
                "CPU in the timed phase: rdkafka client {:.2} cores",
                self.client_cores
            ),
        }
    }
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime in seconds from a /proc stat line (the command name may contain spaces: skip past it).
fn stat_cpu(stat: &str, tick: f64) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted after the command name (field 2) and state (field 3).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / tick))
}

impl CpuClock {
    pub fn now() -> CpuClock {
        let tick = ticks_per_s();
        // The process figure includes threads that have exited (the broker's short-lived blocking threads).
        let total = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| stat_cpu(&s, tick))
            .map(|(_, c)| c)
            .unwrap_or(0.0);
        let mut client = 0.0;
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                    continue;
                };
                if let Some((comm, cpu)) = stat_cpu(&stat, tick)
                    && ((comm.starts_with("rdk:") && comm != "rdk:mock") || comm == "brook-bench")
                {
                    client += cpu;
                }
            }
        }
        CpuClock {
            client,
            total,
            at: Instant::now(),
        }
    }

    /// Average cores used since `self`.
    pub fn since(&self) -> CpuUse {
        let now = CpuClock::now();
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-6);
        let client = (now.client - self.client).max(0.0);
        let rest = (now.total - self.total - client).max(0.0);
        CpuUse {
            client_cores: client / secs,
            broker_cores: Some(rest / secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_with_spaces_and_parens() {
        let line = "42 (rdk:broker (1)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        let (comm, cpu) = stat_cpu(line, 100.0).unwrap();
        assert_eq!(comm, "rdk:broker (1)");
        assert!((cpu - 3.0).abs() < 1e-9);
    }
}
