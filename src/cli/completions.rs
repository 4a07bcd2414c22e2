//! `subrelay completions <shell>`: the shell completion script, generated from the same clap
//! definition that parses the command line, so it never lists a command that does not exist.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Writes the completion script for `shell` to stdout.
pub fn run(shell: Shell) -> ExitCode {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "subrelay", &mut std::io::stdout());
    ExitCode::SUCCESS
}
