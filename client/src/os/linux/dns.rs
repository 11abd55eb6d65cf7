//! DNS: points the system resolver file (`/etc/resolv.conf` unless
//! configured otherwise) at the tunnel's virtual resolver, after saving the
//! original beside the client's state. The backup is written (and synced)
//! before the file is touched and removed only after the original is back,
//! so a crash at any point leaves enough to restore: the daemon restores a
//! leftover backup when it starts.
//!
//! A symlinked resolver file (resolvconf, or systemd-resolved when told
//! to use the file) is replaced by a plain file and the link is recreated
//! on restore. The file is rewritten in place, not renamed over, because
//! inside a network namespace it is a bind mount that cannot be replaced.
//!
//! Where systemd-resolved owns the resolver (the file is a link to its
//! stub), the daemon instead gives the tunnel device the tunnel's resolver
//! and the `~.` routing domain through `resolvectl`, so every lookup goes
//! to the tunnel and resolved keeps caching; the per-link settings vanish
//! with the device.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use trine_circuit::ip::{TUNNEL_RESOLVER_V4, TUNNEL_RESOLVER_V6};

/// The first line of a backup of a symlink; the target follows.
const SYMLINK_HEADER: &str = "trine-backup symlink ";
/// The first line of a backup of a regular file; the content follows.
const FILE_HEADER: &str = "trine-backup file";
/// The whole backup when there was no resolver file.
const ABSENT_HEADER: &str = "trine-backup absent";

/// The resolver file could not be redirected or restored.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Reading or writing a file failed.
    #[error("DNS: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The backup is not one the client wrote.
    #[error("DNS: {0} is not a backup written by trine; restore the resolver by hand")]
    BadBackup(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DnsError + '_ {
    move |source| DnsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The resolver file pointing at the tunnel.
pub fn tunnel_resolv_conf(ipv6: bool) -> String {
    let mut text = format!(
        "# Written by the Trine daemon while the tunnel is up; the original\n\
         # comes back on `trine down`.\nnameserver {TUNNEL_RESOLVER_V4}\n"
    );
    if ipv6 {
        text.push_str(&format!("nameserver {TUNNEL_RESOLVER_V6}\n"));
    }
    text
}

/// Whether systemd-resolved manages the resolver: `resolv_conf` is a link
/// into `/run/systemd/resolve/` and resolved is running.
pub fn resolved_manages(resolv_conf: &Path) -> bool {
    let points_at_resolved = fs::read_link(resolv_conf)
        .is_ok_and(|target| target.to_string_lossy().contains("/run/systemd/resolve/"));
    points_at_resolved && Path::new("/run/systemd/resolve/stub-resolv.conf").exists()
}

/// The `resolvectl` calls that send every lookup to the tunnel's resolver.
pub fn resolved_commands(tun: &str, ipv6: bool) -> Vec<Vec<String>> {
    let mut servers = vec![TUNNEL_RESOLVER_V4.to_string()];
    if ipv6 {
        servers.push(TUNNEL_RESOLVER_V6.to_string());
    }
    let mut dns = vec!["dns".to_string(), tun.to_string()];
    dns.extend(servers);
    vec![
        dns,
        vec!["domain".into(), tun.into(), "~.".into()],
        vec!["default-route".into(), tun.into(), "yes".into()],
    ]
}

/// Points systemd-resolved at the tunnel for every domain.
pub fn redirect_resolved(tun: &str, ipv6: bool) -> Result<(), super::CommandError> {
    for (i, args) in resolved_commands(tun, ipv6).iter().enumerate() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match super::command::run("resolvectl", &args, None) {
            Ok(()) => {}
            // `default-route` is newer than the rest; `~.` does the job.
            Err(error) if i == 2 => tracing::debug!(%error, "resolvectl default-route"),
            Err(error) => return Err(error),
        }
    }
    tracing::info!(tun, "systemd-resolved sends every lookup to the tunnel");
    Ok(())
}

/// Undoes [`redirect_resolved`] (also done by the device going away).
pub fn revert_resolved(tun: &str) {
    let _ = super::command::run_absent_ok("resolvectl", &["revert", tun]);
}

/// Saves `resolv_conf` to `backup` (unless a backup from an earlier run is
/// still there: that one holds the true original) and points the file at
/// the tunnel.
pub fn redirect(resolv_conf: &Path, backup: &Path, ipv6: bool) -> Result<(), DnsError> {
    if !backup.exists() {
        let saved = match fs::read_link(resolv_conf) {
            Ok(target) => format!("{SYMLINK_HEADER}{}\n", target.display()),
            Err(_) => match fs::read_to_string(resolv_conf) {
                Ok(content) => format!("{FILE_HEADER}\n{content}"),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    format!("{ABSENT_HEADER}\n")
                }
                Err(error) => return Err(io(resolv_conf)(error)),
            },
        };
        write_synced(backup, &saved)?;
    }
    if fs::symlink_metadata(resolv_conf).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(resolv_conf).map_err(io(resolv_conf))?;
    }
    write_in_place(resolv_conf, &tunnel_resolv_conf(ipv6))?;
    tracing::info!(path = %resolv_conf.display(), "resolver points at the tunnel");
    Ok(())
}

/// Puts back what [`redirect`] saved and removes the backup. Returns
/// whether there was anything to restore.
pub fn restore(resolv_conf: &Path, backup: &Path) -> Result<bool, DnsError> {
    let saved = match fs::read_to_string(backup) {
        Ok(saved) => saved,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(io(backup)(error)),
    };
    let (header, content) = saved.split_once('\n').unwrap_or((saved.as_str(), ""));
    if let Some(target) = header.strip_prefix(SYMLINK_HEADER) {
        let _ = fs::remove_file(resolv_conf);
        std::os::unix::fs::symlink(target, resolv_conf).map_err(io(resolv_conf))?;
    } else if header == FILE_HEADER {
        write_in_place(resolv_conf, content)?;
    } else if header == ABSENT_HEADER {
        match fs::remove_file(resolv_conf) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(resolv_conf)(error)),
        }
    } else {
        return Err(DnsError::BadBackup(backup.to_path_buf()));
    }
    fs::remove_file(backup).map_err(io(backup))?;
    tracing::info!(path = %resolv_conf.display(), "resolver restored");
    Ok(true)
}

fn write_in_place(path: &Path, text: &str) -> Result<(), DnsError> {
    // Readable by every program whatever the daemon's umask.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Writes `path` durably: a synced temporary file renamed into place,
/// then the directory synced so the rename survives a power cut.
fn write_synced(path: &Path, text: &str) -> Result<(), DnsError> {
    let temporary = path.with_extension("tmp");
    write_in_place(&temporary, text)?;
    fs::rename(&temporary, path).map_err(io(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trine-dns-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_is_redirected_and_restored_byte_for_byte() {
        let dir = scratch("file");
        let (conf, backup) = (dir.join("resolv.conf"), dir.join("backup"));
        let original = "nameserver 9.9.9.9\noptions edns0\n";
        fs::write(&conf, original).unwrap();
        redirect(&conf, &backup, true).unwrap();
        let now = fs::read_to_string(&conf).unwrap();
        assert!(now.contains("nameserver 172.22.0.53\n"));
        assert!(now.contains("nameserver fd74:726e::53\n"));
        assert!(!now.contains("9.9.9.9"));
        // A second redirect (a crash and restart) keeps the true original.
        redirect(&conf, &backup, false).unwrap();
        assert!(restore(&conf, &backup).unwrap());
        assert_eq!(fs::read_to_string(&conf).unwrap(), original);
        assert!(!backup.exists());
        assert!(!restore(&conf, &backup).unwrap(), "nothing left to restore");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_symlink_comes_back_as_the_same_symlink() {
        let dir = scratch("link");
        let (conf, backup) = (dir.join("resolv.conf"), dir.join("backup"));
        let stub = dir.join("stub-resolv.conf");
        fs::write(&stub, "nameserver 127.0.0.53\n").unwrap();
        std::os::unix::fs::symlink(&stub, &conf).unwrap();
        redirect(&conf, &backup, false).unwrap();
        assert!(
            !fs::symlink_metadata(&conf)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(&stub).unwrap(),
            "nameserver 127.0.0.53\n",
            "the link's target is never written"
        );
        restore(&conf, &backup).unwrap();
        assert_eq!(fs::read_link(&conf).unwrap(), stub);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_file_is_missing_again_after_restore() {
        let dir = scratch("absent");
        let (conf, backup) = (dir.join("resolv.conf"), dir.join("backup"));
        redirect(&conf, &backup, false).unwrap();
        assert!(conf.exists());
        restore(&conf, &backup).unwrap();
        assert!(!conf.exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn resolved_gets_the_tunnel_resolver_for_every_domain() {
        let lines: Vec<String> = resolved_commands("trine0", true)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            lines,
            [
                "dns trine0 172.22.0.53 fd74:726e::53",
                "domain trine0 ~.",
                "default-route trine0 yes"
            ]
        );
        assert_eq!(resolved_commands("trine0", false)[0].len(), 3);
    }

    #[test]
    fn only_a_link_into_resolved_counts_as_resolved() {
        let dir = scratch("resolved");
        let plain = dir.join("plain");
        fs::write(&plain, "nameserver 1.1.1.1\n").unwrap();
        assert!(!resolved_manages(&plain));
        let link = dir.join("link");
        std::os::unix::fs::symlink("/run/resolvconf/resolv.conf", &link).unwrap();
        assert!(!resolved_manages(&link));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_foreign_backup_is_refused() {
        let dir = scratch("foreign");
        let (conf, backup) = (dir.join("resolv.conf"), dir.join("backup"));
        fs::write(&conf, "x").unwrap();
        fs::write(&backup, "something else\n").unwrap();
        assert!(matches!(
            restore(&conf, &backup),
            Err(DnsError::BadBackup(_))
        ));
        assert_eq!(fs::read_to_string(&conf).unwrap(), "x");
        let _ = fs::remove_dir_all(dir);
    }
}
