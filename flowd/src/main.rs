use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = flowd::cli::Cli::parse();
    match flowd::cli::execute(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("flowd: {err:#}");
            ExitCode::FAILURE
        }
    }
}
