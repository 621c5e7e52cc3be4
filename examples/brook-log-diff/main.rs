//! `brook-log-diff [--upto OFFSET] [--list] DIR DIR...`: compares partition replicas' logs (their
//! directories, e.g. `node1/topic-0 node2/topic-0 node3/topic-0`, with no broker running) batch by batch
//! up to OFFSET (normally the high watermark; the whole logs when omitted). Prints "identical up to N"
//! and exits 0, or prints the first difference and exits 1; 2 on bad arguments or unreadable logs.
//! `--list` also prints every batch of every replica.

use std::path::PathBuf;
use std::process::ExitCode;

use brook::log::audit::{Comparison, compare, list_partition};

const USAGE: &str = "usage: brook-log-diff [--upto OFFSET] [--list] DIR [DIR...]";

fn main() -> ExitCode {
    let mut upto = None;
    let mut list = false;
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--upto" => match args.next().and_then(|v| v.parse::<i64>().ok()) {
                Some(v) => upto = Some(v),
                None => {
                    eprintln!("--upto needs an offset\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--list" => list = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => dirs.push(PathBuf::from(arg)),
        }
    }
    if dirs.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut listings = Vec::new();
    for dir in &dirs {
        match list_partition(dir) {
            Ok(listing) => listings.push(listing),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    for (i, listing) in listings.iter().enumerate() {
        println!(
            "replica {i}: {} ({} batches, end offset {}, torn tail {} bytes, leader epochs {:?})",
            listing.dir.display(),
            listing.batches.len(),
            listing.end_offset().map_or("-".into(), |o| o.to_string()),
            listing.torn_tail_bytes,
            listing.leader_epochs.as_deref().unwrap_or(&[])
        );
        if list {
            for batch in &listing.batches {
                println!("  {batch}");
            }
        }
    }
    match compare(&listings, upto) {
        Comparison::Identical { from, upto } => {
            println!("identical up to {upto} (from {from})");
            ExitCode::SUCCESS
        }
        Comparison::Differs(d) => {
            println!("{d}");
            ExitCode::from(1)
        }
    }
}
