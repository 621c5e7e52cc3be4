//! brook-bench: the benchmark program of issue 7. It drives a Kafka-compatible broker (an in-process
//! brook by default, or any `--bootstrap` address, optionally against a second `--compare` address pair
//! by pair) with rdkafka clients, measures this machine's limits in the same run, and prints a table,
//! writes it as Markdown, and plots workload 4's latency distribution as SVG.
//!
//! It is an example rather than a `src/bin` program because rdkafka (librdkafka built from source) is a
//! dev-dependency: the broker binary stays free of it. `tests/bench_smoke.rs` compiles these same modules
//! and runs them with tiny sizes, so CI proves the program still works.
//!
//! `cargo run --release --example brook-bench -- --help`

mod clients;
mod cpu;
mod fanout;
mod fetchlat;
mod limits;
mod opts;
mod ports;
mod rdkperf;
mod replication;
mod report;
mod runner;
mod workloads;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match opts::parse(args.clone()) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{}", opts::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("brook-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let outcome = match runner::run(&options) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("brook-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print!(
        "{}",
        report::text(&outcome.rows, &outcome.labels, outcome.limits.as_ref())
    );
    println!("{}", outcome.context);
    if let Some(dir) = &options.out {
        let command = if args.is_empty() {
            "cargo run --release --example brook-bench".to_string()
        } else {
            format!(
                "cargo run --release --example brook-bench -- {}",
                args.join(" ")
            )
        };
        let svg = report::latency_svg(
            &outcome.rows,
            &outcome.labels,
            &format!(
                "workload 4: end-to-end latency, 1 KiB records at {} records/s",
                options.latency_rate
            ),
        );
        let md = report::markdown(
            &outcome.rows,
            &outcome.labels,
            outcome.limits.as_ref(),
            &command,
            &outcome.context,
            svg.as_ref().map(|_| "latency.svg"),
        );
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(dir.join("results.md"), md))
            .and_then(|_| match &svg {
                Some(s) => std::fs::write(dir.join("latency.svg"), s),
                None => Ok(()),
            });
        if let Err(e) = written {
            eprintln!(
                "brook-bench: cannot write results to {}: {e}",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
        println!(
            "written: {}/results.md{}",
            dir.display(),
            if svg.is_some() {
                " and latency.svg"
            } else {
                ""
            }
        );
    }
    let failed = outcome
        .rows
        .iter()
        .flat_map(|r| r.results.iter())
        .any(|r| matches!(r, Some(Err(_))));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
