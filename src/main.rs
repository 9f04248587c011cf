//! The `pitr` binary: parse, switch OS user if root, run, map errors to
//! exit codes (docs/exit-codes.md).

use std::process::ExitCode;

use clap::Parser;
use pitr::cli::{self, args::Cli, exit::Code};

/// The error and its causes, each once: library errors that already
/// quote their source are not followed by it again.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn main() -> ExitCode {
    // The settings file first: its settings are environment defaults the
    // command line's flags fall back to (cli/config.rs).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(e) = cli::config::apply(&args) {
        eprintln!("pitr: error: {e}");
        return ExitCode::from(Code::Usage as u8);
    }
    let cli = Cli::parse_from(args);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PITR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let quiet_not_found = matches!(cli.command, cli::args::Command::WalFetch { .. });
    let result = cli::drop_privileges(&cli).and_then(|()| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| cli::exit::Failure::new(Code::Internal, e))?;
        rt.block_on(cli::run(cli))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // A missing file is an ordinary answer to restore_command.
            if !(quiet_not_found && f.code == Code::NotFound) {
                eprintln!("pitr: error: {}", describe(&f.error));
            }
            ExitCode::from(f.code as u8)
        }
    }
}
