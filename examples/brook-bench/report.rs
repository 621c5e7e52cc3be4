//! Results as a table on stdout, as Markdown for the README's performance section, and workload 4's
//! latency distribution as a hand-written SVG percentile plot (no plotting crate needed for two lines).

use std::fmt::Write as _;

use crate::limits::Limits;
use crate::workloads::Measured;

/// Which of the issue's targets a row is checked against; fixes the headline's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// records/s; target 3,000,000 records/s; limit: MB/s over page-cache write.
    ProduceSmall,
    /// MB/s; target 50% of the page-cache write bandwidth.
    Produce1k,
    /// MB/s; target 50% of the loopback TCP bandwidth.
    Consume,
    /// p99 ms; target 3 ms or less.
    Latency,
    /// records/s; target 5x the single-writer fsync rate.
    Durable,
    /// MB; target 20 MB or less.
    IdleRss,
    /// MB; target 100 MB or less.
    ManyRss,
    /// ms; target under 1,000 ms.
    Startup,
    /// records/s measured by librdkafka's rdkafka_performance -P; no target (a reference figure).
    ToolProduce,
    /// records/s measured by rdkafka_performance -C; no target (a reference figure).
    ToolConsume,
    /// records/s of workload 8's plain producer, the baseline of the rows below it; no target.
    ExactlyOncePlain,
    /// workload 8's idempotent or transactional producer: its records/s over the plain producer's in the
    /// same run (the overhead of exactly-once); no target.
    ExactlyOnceRatio,
    /// Workload 9's baselines on the three-node cluster: MB/s of the RF=1 produce, or of the consumer
    /// reading from the leader; no target.
    ReplicationProduce,
    ReplicationConsume,
    /// Workload 9's RF=3 produce over the RF=1 one, or the follower consumer over the leader one (median of
    /// per-round ratios); no target: the issue asks for the ratio and what bounds it.
    ReplicationRatio,
    /// Workload 10: p50 microseconds from a 4 MiB Fetch request to its response's first byte; target
    /// (issue 17) under 100 us.
    FetchFirstByte,
    /// Workload 10: p50 microseconds to the response's last byte; limit: 4 MiB over loopback TCP.
    FetchLastByte,
    /// Workload 11: total MB/s of 16 producers; limit: page-cache write. No target.
    FanOutProduce,
    /// Workload 11: total MB/s of 8 readers of one backlog; limit: loopback TCP. No target.
    FanOutConsume,
    /// Workload 11: the broker's CPU-seconds per GB moved (lower is better). No target.
    CpuPerGb,
    /// Workload 11: the broker's CPU-seconds per million records produced (lower is better). No target.
    CpuPerMillion,
}

/// One line of the results: a workload (or one figure of it) on each broker measured.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: u8,
    pub name: String,
    pub kind: Kind,
    /// One entry per broker (A, then B); `None` where the workload does not apply to that broker.
    pub results: Vec<Option<Result<Measured, String>>>,
}

/// A row's standing against the machine limit and the issue's target.
pub struct Verdict {
    pub vs_limit: String,
    pub target: String,
    /// `None`: the row has no target.
    pub met: Option<bool>,
}

pub fn verdict(kind: Kind, m: &Measured, limits: Option<&Limits>) -> Verdict {
    let h = m.headline;
    let mb = m.mb_per_s.unwrap_or(0.0);
    let pc = limits.map(|l| l.page_cache_write_mb_s);
    let lo = limits.map(|l| l.loopback_mb_s);
    let fs = limits.map(|l| l.fsync_per_s);
    let frac = |v: f64, l: Option<f64>, name: &str| match l {
        Some(l) if l > 0.0 => format!("{:.0}% of {name}", 100.0 * v / l),
        _ => "-".to_string(),
    };
    match kind {
        Kind::ProduceSmall => Verdict {
            vs_limit: frac(mb, pc, "page-cache write"),
            target: format!("{:.2}x of 3.0 M rec/s", h / 3e6),
            met: Some(h >= 3e6),
        },
        Kind::Produce1k => Verdict {
            vs_limit: frac(h, pc, "page-cache write"),
            target: ">= 50% of page-cache write".into(),
            met: Some(pc.is_some_and(|l| h >= 0.5 * l)),
        },
        Kind::Consume => Verdict {
            vs_limit: frac(h, lo, "loopback TCP"),
            target: ">= 50% of loopback TCP".into(),
            met: Some(lo.is_some_and(|l| h >= 0.5 * l)),
        },
        Kind::Latency => Verdict {
            vs_limit: match limits {
                Some(l) if l.rtt_p99_ms > 0.0 => {
                    format!("{:.1}x loopback round-trip p99", h / l.rtt_p99_ms)
                }
                _ => "-".into(),
            },
            target: format!("p99 {:.2}x of 3 ms", h / 3.0),
            met: Some(h <= 3.0),
        },
        Kind::Durable => Verdict {
            vs_limit: match fs {
                Some(f) if f > 0.0 => format!("{:.1}x fsync rate", h / f),
                _ => "-".into(),
            },
            target: ">= 5x fsync rate".into(),
            met: Some(fs.is_some_and(|f| h >= 5.0 * f)),
        },
        Kind::IdleRss => Verdict {
            vs_limit: "-".into(),
            target: format!("{:.2}x of 20 MB", h / 20.0),
            met: Some(h <= 20.0),
        },
        Kind::ManyRss => Verdict {
            vs_limit: "-".into(),
            target: format!("{:.2}x of 100 MB", h / 100.0),
            met: Some(h <= 100.0),
        },
        Kind::Startup => Verdict {
            vs_limit: "-".into(),
            target: format!("{:.2}x of 1 s", h / 1000.0),
            met: Some(h < 1000.0),
        },
        Kind::ToolProduce => Verdict {
            vs_limit: frac(mb, pc, "page-cache write"),
            target: "- (reference tool)".into(),
            met: None,
        },
        Kind::ToolConsume => Verdict {
            vs_limit: frac(mb, lo, "loopback TCP"),
            target: "- (reference tool)".into(),
            met: None,
        },
        Kind::ExactlyOncePlain => Verdict {
            vs_limit: frac(mb, pc, "page-cache write"),
            target: "- (baseline)".into(),
            met: None,
        },
        Kind::ExactlyOnceRatio => Verdict {
            vs_limit: match &m.latency {
                Some(l) => format!("commit p99 {:.2} ms", l.p99),
                None => "-".into(),
            },
            target: "- (overhead)".into(),
            met: None,
        },
        Kind::ReplicationProduce => Verdict {
            vs_limit: frac(h, pc, "page-cache write"),
            target: "- (baseline)".into(),
            met: None,
        },
        Kind::ReplicationConsume => Verdict {
            vs_limit: frac(h, lo, "loopback TCP"),
            target: "- (baseline)".into(),
            met: None,
        },
        Kind::ReplicationRatio => Verdict {
            vs_limit: "-".into(),
            target: "- (ratio)".into(),
            met: None,
        },
        Kind::FetchFirstByte => Verdict {
            vs_limit: "-".into(),
            target: format!("p50 {:.2}x of 100 us", h / 100.0),
            met: Some(h < 100.0),
        },
        Kind::FetchLastByte => Verdict {
            // 4 MiB at the loopback rate: MB/s are bytes per microsecond.
            vs_limit: match lo {
                Some(l) if l > 0.0 => {
                    format!(
                        "{:.1}x 4 MiB over loopback TCP",
                        h / (4.0 * 1_048_576.0 / l)
                    )
                }
                _ => "-".into(),
            },
            target: "- (transfer)".into(),
            met: None,
        },
        Kind::FanOutProduce => Verdict {
            vs_limit: frac(h, pc, "page-cache write"),
            target: "- (many clients)".into(),
            met: None,
        },
        Kind::FanOutConsume => Verdict {
            vs_limit: frac(h, lo, "loopback TCP"),
            target: "- (many clients)".into(),
            met: None,
        },
        Kind::CpuPerGb | Kind::CpuPerMillion => Verdict {
            vs_limit: "-".into(),
            target: "- (broker cost)".into(),
            met: None,
        },
    }
}

/// The headline in its unit.
pub fn headline(kind: Kind, m: &Measured) -> String {
    let h = m.headline;
    match kind {
        Kind::ProduceSmall
        | Kind::Durable
        | Kind::ToolProduce
        | Kind::ToolConsume
        | Kind::ExactlyOncePlain => {
            format!("{} rec/s", group_digits(h))
        }
        Kind::Produce1k | Kind::Consume | Kind::ReplicationProduce | Kind::ReplicationConsume => {
            format!("{h:.0} MB/s")
        }
        Kind::Latency => format!("p99 {h:.2} ms"),
        Kind::IdleRss | Kind::ManyRss => format!("{h:.1} MB RSS"),
        Kind::Startup => format!("{h:.0} ms"),
        Kind::ExactlyOnceRatio => format!("{h:.2}x plain rec/s"),
        Kind::ReplicationRatio => format!("{h:.2}x"),
        Kind::FetchFirstByte | Kind::FetchLastByte => format!("p50 {h:.0} us"),
        Kind::FanOutProduce | Kind::FanOutConsume => format!("{h:.0} MB/s"),
        Kind::CpuPerGb => format!("{h:.2} CPU-s/GB"),
        Kind::CpuPerMillion => format!("{h:.3} CPU-s/M records"),
    }
}

fn group_digits(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| {
        if digits == 0 {
            group_digits(v)
        } else {
            format!("{v:.digits$}")
        }
    })
    .unwrap_or_else(|| "-".into())
}

fn latency_cell(m: &Measured) -> String {
    m.latency
        .as_ref()
        .map(|l| format!("{:.2} / {:.2} / {:.2}", l.p50, l.p99, l.p999))
        .unwrap_or_else(|| "-".into())
}

/// Table cells for one (row, broker) pair, in the order of [`HEADER`].
fn cells(
    row: &Row,
    label: &str,
    r: &Result<Measured, String>,
    limits: Option<&Limits>,
) -> Vec<String> {
    match r {
        Ok(m) => {
            let v = verdict(row.kind, m, limits);
            vec![
                row.workload.to_string(),
                row.name.clone(),
                label.to_string(),
                opt(m.records_per_s, 0),
                opt(m.mb_per_s, 1),
                latency_cell(m),
                headline(row.kind, m),
                v.vs_limit,
                v.target,
                match v.met {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                }
                .to_string(),
            ]
        }
        Err(e) => vec![
            row.workload.to_string(),
            row.name.clone(),
            label.to_string(),
            format!("FAILED: {e}"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ],
    }
}

const HEADER: [&str; 10] = [
    "#",
    "workload",
    "broker",
    "records/s",
    "MB/s",
    "latency p50 / p99 / p99.9 ms",
    "result",
    "vs machine limit",
    "target",
    "met",
];

fn all_cells(rows: &[Row], labels: &[String], limits: Option<&Limits>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for row in rows {
        for (i, r) in row.results.iter().enumerate() {
            if let Some(r) = r {
                out.push(cells(row, &labels[i], r, limits));
            }
        }
    }
    out
}

/// Pair ratios (B over A) of the headline, when both brokers ran a row.
fn pair_ratios(rows: &[Row]) -> Vec<(String, f64)> {
    rows.iter()
        .filter_map(|row| match (row.results.first(), row.results.get(1)) {
            (Some(Some(Ok(a))), Some(Some(Ok(b)))) if a.headline > 0.0 => Some((
                format!("{} {}", row.workload, row.name),
                b.headline / a.headline,
            )),
            _ => None,
        })
        .collect()
}

pub fn limits_lines(l: &Limits) -> Vec<String> {
    vec![
        format!(
            "sequential write into the page cache, sustained as long as a produce phase: {:.0} MB/s \
             (its first {} MiB: {:.0} MB/s)",
            l.page_cache_write_mb_s,
            l.burst_bytes >> 20,
            l.page_cache_burst_mb_s
        ),
        format!("loopback TCP, one stream: {:.0} MB/s", l.loopback_mb_s),
        format!(
            "single-writer fsync (1 KiB write + fdatasync): {:.0} ops/s",
            l.fsync_per_s
        ),
        format!(
            "1 KiB loopback round trip between two threads, paced like workload 4: p50 {:.2} ms, p99 {:.2} ms",
            l.rtt_p50_ms, l.rtt_p99_ms
        ),
    ]
}

/// The plain-text table for stdout.
pub fn text(rows: &[Row], labels: &[String], limits: Option<&Limits>) -> String {
    let body = all_cells(rows, labels, limits);
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for line in &body {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    if let Some(l) = limits {
        out.push_str("machine limits (same run, medians):\n");
        for line in limits_lines(l) {
            let _ = writeln!(out, "  {line}");
        }
        out.push('\n');
    }
    let fmt_line = |cells: &[String]| {
        let mut s = String::new();
        for (c, w) in cells.iter().zip(&widths) {
            let pad = w.saturating_sub(c.chars().count());
            let _ = write!(s, "{c}{}  ", " ".repeat(pad));
        }
        s.trim_end().to_string()
    };
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let _ = writeln!(out, "{}", fmt_line(&header));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "{}", fmt_line(&rule));
    for line in &body {
        let _ = writeln!(out, "{}", fmt_line(line));
    }
    let ratios = pair_ratios(rows);
    if !ratios.is_empty() {
        let _ = writeln!(
            out,
            "\n{} / {} (headline ratio pair by pair; with --repeat, of the two medians):",
            labels[1], labels[0]
        );
        for (name, r) in ratios {
            let _ = writeln!(out, "  {name}: {r:.2}x");
        }
    }
    out
}

/// The Markdown report: command, limits, table, notes, pair ratios, plot link.
pub fn markdown(
    rows: &[Row],
    labels: &[String],
    limits: Option<&Limits>,
    command: &str,
    context: &str,
    plot: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### brook-bench results\n");
    let _ = writeln!(out, "Command: `{command}`\n");
    let _ = writeln!(out, "{context}\n");
    if let Some(l) = limits {
        let _ = writeln!(out, "Machine limits, measured in the same run (medians):\n");
        for line in limits_lines(l) {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
    for line in all_cells(rows, labels, limits) {
        let escaped: Vec<String> = line.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", escaped.join(" | "));
    }
    out.push('\n');
    let _ = writeln!(out, "Notes per row:\n");
    for row in rows {
        for (i, r) in row.results.iter().enumerate() {
            if let Some(Ok(m)) = r
                && !m.note.is_empty()
            {
                let cpu = m
                    .cpu
                    .map(|c| format!("; {}", c.describe()))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "- {} {} ({}): {}{cpu}",
                    row.workload, row.name, labels[i], m.note
                );
            }
        }
    }
    let ratios = pair_ratios(rows);
    if !ratios.is_empty() {
        let _ = writeln!(
            out,
            "\n{} / {}, headline ratio pair by pair (with --repeat, of the two medians):\n",
            labels[1], labels[0]
        );
        for (name, r) in ratios {
            let _ = writeln!(out, "- {name}: {r:.2}x");
        }
    }
    if let Some(p) = plot {
        let _ = writeln!(out, "\n![workload 4 latency distribution]({p})");
    }
    out
}

/// Percentile plot of workload 4 (x: 0% .. 99.99% on the usual 1/(1-q) log scale; y: latency in ms),
/// one line per broker. `None` when no broker has a latency curve.
pub fn latency_svg(rows: &[Row], labels: &[String], title: &str) -> Option<String> {
    let curves: Vec<(&str, &[(f64, f64)])> = rows
        .iter()
        .filter(|r| r.kind == Kind::Latency)
        .flat_map(|r| {
            r.results
                .iter()
                .enumerate()
                .filter_map(|(i, res)| match res {
                    Some(Ok(m)) => m
                        .latency
                        .as_ref()
                        .map(|l| (labels[i].as_str(), l.curve.as_slice())),
                    _ => None,
                })
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if curves.is_empty() {
        return None;
    }
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const L: f64 = 70.0;
    const R: f64 = 40.0;
    const T: f64 = 40.0;
    const B: f64 = 60.0;
    const MAX_NINES: f64 = 4.0; // 99.99%
    let x_of = |q: f64| {
        let nines = if q >= 1.0 {
            MAX_NINES
        } else {
            (-(1.0 - q).log10()).min(MAX_NINES)
        };
        L + (W - L - R) * nines / MAX_NINES
    };
    // Log scale in decades: latency tails span two or three orders of magnitude.
    let values = || {
        curves
            .iter()
            .flat_map(|(_, c)| c.iter().filter(|(q, _)| *q <= 0.9999).map(|(_, v)| *v))
    };
    let y_max = values().fold(0.0_f64, f64::max).max(0.01);
    let y_min = values().fold(f64::INFINITY, f64::min).clamp(0.001, y_max);
    let lo_decade = y_min.log10().floor() as i32;
    let hi_decade = (y_max.log10().ceil() as i32).max(lo_decade + 1);
    let y_of = |ms: f64| {
        let d = ms
            .max(1e-3)
            .log10()
            .clamp(lo_decade as f64, hi_decade as f64);
        T + (H - T - B) * (1.0 - (d - lo_decade as f64) / (hi_decade - lo_decade) as f64)
    };
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        W / 2.0,
        xml_escape(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%"].iter().enumerate() {
        let x = L + (W - L - R) * i as f64 / MAX_NINES;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            H - B,
            H - B + 16.0
        );
    }
    for decade in lo_decade..=hi_decade {
        let v = 10f64.powi(decade);
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0,
            trim_float(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (W + L - R) / 2.0,
        H - B + 36.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">latency (ms, log scale)</text>"#,
        (H - B + T) / 2.0,
        (H - B + T) / 2.0
    );
    // 3 ms target line.
    if 3.0 <= 10f64.powi(hi_decade) && 3.0 >= 10f64.powi(lo_decade) {
        let y = y_of(3.0);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#888" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">p99 target 3 ms</text>"##,
            W - R,
            W - R - 4.0,
            y - 4.0
        );
    }
    for (i, (label, curve)) in curves.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<String> = curve
            .iter()
            .filter(|(q, _)| *q <= 0.9999 || curve.len() < 2)
            .map(|(q, v)| format!("{:.1},{:.1}", x_of(*q), y_of(*v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = T + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly:.1}" x2="{}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{}" y="{:.1}">{}</text>"#,
            L + 10.0,
            L + 34.0,
            L + 40.0,
            ly + 4.0,
            xml_escape(label)
        );
    }
    s.push_str("</svg>\n");
    Some(s)
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
