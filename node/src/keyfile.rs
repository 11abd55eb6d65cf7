//! Key files shared by every Trine daemon (relay, directory authority,
//! client): text files holding a creation time and a 32-byte secret in hex,
//! mode 0600 in a 0700 directory. Anything readable by group or others is
//! refused; files are replaced atomically.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Why key files could not be created or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// An I/O error on a key path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key file or the directory is accessible by group or others.
    #[error(
        "{path} has mode {mode:o}; it must not be accessible by group or others (chmod {want:o})"
    )]
    Permissions {
        /// The path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
        /// The mode to set.
        want: u32,
    },
    /// The file does not hold a key in the expected format.
    #[error("{path}: not a Trine key file ({problem})")]
    Format {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// `init` would overwrite existing keys.
    #[error("{0} already exists; refusing to overwrite keys")]
    Exists(PathBuf),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and parents) and makes it 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), KeyFileError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Refuses `path` if group or others have any access; `want` is the mode
/// the error suggests.
pub fn check_mode(path: &Path, want: u32) -> Result<(), KeyFileError> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
            want,
        });
    }
    Ok(())
}

/// Writes a key file atomically (temporary file, then rename), mode 0600.
pub fn write_key(path: &Path, created: u64, secret: &[u8; 32]) -> Result<(), KeyFileError> {
    let mut text = Zeroizing::new(format!(
        "# trine key file: keep secret\ncreated {created}\nsecret "
    ));
    for byte in secret {
        text.push_str(&format!("{byte:02x}"));
    }
    text.push('\n');
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(text.as_bytes()).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    fs::rename(&temporary, path).map_err(io(path))
}

/// Reads a key file, refusing loose permissions and anything but the
/// format [`write_key`] writes.
pub fn read_key(path: &Path) -> Result<(u64, Zeroizing<[u8; 32]>), KeyFileError> {
    check_mode(path, 0o600)?;
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
    let format = |problem| KeyFileError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let mut created = None;
    let mut secret = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        match line.split_once(' ') {
            Some(("created", value)) => {
                created = Some(
                    value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| format("bad `created`"))?,
                );
            }
            Some(("secret", value)) => {
                let value = value.trim();
                if value.len() != 64 || !value.is_ascii() {
                    return Err(format("`secret` must be 64 hex digits"));
                }
                let mut bytes = Zeroizing::new([0u8; 32]);
                for (byte, pair) in bytes.iter_mut().zip(value.as_bytes().chunks(2)) {
                    let pair = std::str::from_utf8(pair).map_err(|_| format("bad hex"))?;
                    *byte = u8::from_str_radix(pair, 16).map_err(|_| format("bad hex"))?;
                }
                secret = Some(bytes);
            }
            _ => return Err(format("unexpected line")),
        }
    }
    match (created, secret) {
        (Some(created), Some(secret)) => Ok((created, secret)),
        _ => Err(format("missing `created` or `secret`")),
    }
}
