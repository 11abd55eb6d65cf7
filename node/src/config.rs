//! Why a daemon's configuration file was refused: one error type for the
//! relay's `relay.toml` and the client's `trine.toml`, so every daemon
//! reports bad files the same way (the file, then the field).

use std::path::PathBuf;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, which names the key and line.
        message: String,
    },
    /// A value outside what the daemon accepts.
    #[error("{path}: `{field}` {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key, e.g. `tunnel.mtu`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}
