//! Running the system tools (`nft`, `ip`) the Linux backend applies its
//! state with. Only exit statuses are looked at, never standard output.

use std::io::Write;
use std::process::{Command, Stdio};

/// A system tool could not be run or refused what it was given.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started (missing, or not permitted).
    #[error("cannot run `{program}` (is it installed? the client needs root): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line, for the message.
        command: String,
        /// Its standard error, on one line.
        stderr: String,
    },
}

/// Runs `program args…`, feeding `stdin` when given; fails on a non-zero
/// exit.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), CommandError> {
    let spawn_error = |source| CommandError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if output.status.success() {
        return Ok(());
    }
    Err(CommandError::Failed {
        command: format!("{program} {}", args.join(" ")),
        stderr: String::from_utf8_lossy(&output.stderr)
            .trim()
            .replace('\n', "; "),
    })
}

/// Like [`run`], for removals: a failure means "nothing to remove" and is
/// ignored (so removal is idempotent), but a tool that cannot be started
/// is still an error.
pub(crate) fn run_absent_ok(program: &str, args: &[&str]) -> Result<bool, CommandError> {
    match run(program, args, None) {
        Ok(()) => Ok(true),
        Err(CommandError::Failed { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}
