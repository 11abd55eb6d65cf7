//! Key files in the relay's key directory: the Ed25519 identity and the
//! current and previous X25519 onion keys, each with its creation time.
//!
//! The directory is 0700 and each file 0600; anything readable by group or
//! others is refused at load. Files are text (`created` UNIX seconds and the
//! secret in hex) so an operator can see what they hold, and are replaced
//! atomically (write to a temporary file, then rename).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{CryptoRng, RngCore};
use trine_circuit::{IdentityKey, OnionSecretKey};
pub use trine_node::keyfile::KeyFileError;
use trine_node::keyfile::{check_mode, create_private_dir, read_key, write_key};

const IDENTITY: &str = "identity.key";
const ONION: &str = "onion.key";
const ONION_PREVIOUS: &str = "onion.key.previous";

/// An onion key and when it was made.
pub struct DatedOnionKey {
    /// The key.
    pub key: OnionSecretKey,
    /// Creation time, UNIX seconds.
    pub created: u64,
}

/// The relay's keys, as loaded from its key directory.
pub struct KeyStore {
    dir: PathBuf,
    /// The identity.
    pub identity: IdentityKey,
    /// The onion key in use.
    pub onion: DatedOnionKey,
    /// The previous onion key, still accepted during the overlap.
    pub previous: Option<DatedOnionKey>,
}

impl KeyStore {
    /// Creates `dir` (0700) with a new identity and onion key. Refuses to
    /// overwrite existing keys.
    pub fn init<R: RngCore + CryptoRng>(
        dir: &Path,
        now: u64,
        rng: &mut R,
    ) -> Result<Self, KeyFileError> {
        create_private_dir(dir)?;
        for name in [IDENTITY, ONION] {
            let path = dir.join(name);
            if path.exists() {
                return Err(KeyFileError::Exists(path));
            }
        }
        let store = Self {
            dir: dir.to_path_buf(),
            identity: IdentityKey::generate(rng),
            onion: DatedOnionKey {
                key: OnionSecretKey::generate(rng),
                created: now,
            },
            previous: None,
        };
        write_key(&dir.join(IDENTITY), now, &store.identity.to_secret_bytes())?;
        write_key(&dir.join(ONION), now, &store.onion.key.to_secret_bytes())?;
        Ok(store)
    }

    /// Loads the keys in `dir`, refusing loose permissions.
    pub fn load(dir: &Path) -> Result<Self, KeyFileError> {
        check_mode(dir, 0o700)?;
        let (_, identity) = read_key(&dir.join(IDENTITY))?;
        let (created, onion) = read_key(&dir.join(ONION))?;
        let previous_path = dir.join(ONION_PREVIOUS);
        let previous = if previous_path.exists() {
            let (created, key) = read_key(&previous_path)?;
            Some(DatedOnionKey {
                key: OnionSecretKey::from_secret_bytes(*key),
                created,
            })
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            identity: IdentityKey::from_secret_bytes(&identity),
            onion: DatedOnionKey {
                key: OnionSecretKey::from_secret_bytes(*onion),
                created,
            },
            previous,
        })
    }

    /// Onion keys to accept, current first.
    pub fn onion_keys(&self) -> Vec<OnionSecretKey> {
        std::iter::once(&self.onion)
            .chain(self.previous.as_ref())
            .map(|dated| OnionSecretKey::from_secret_bytes(*dated.key.to_secret_bytes()))
            .collect()
    }

    /// Rotates if the current key is older than `rotation`, and forgets the
    /// previous key once it has been retired for `overlap`. Returns whether
    /// the accepted set changed.
    pub fn rotate<R: RngCore + CryptoRng>(
        &mut self,
        now: u64,
        rotation: Duration,
        overlap: Duration,
        rng: &mut R,
    ) -> Result<bool, KeyFileError> {
        let mut changed = false;
        if now.saturating_sub(self.onion.created) >= rotation.as_secs() {
            let fresh = DatedOnionKey {
                key: OnionSecretKey::generate(rng),
                created: now,
            };
            // The retiring key's "created" becomes its retirement time, so
            // the overlap is counted from when it stopped being current.
            write_key(
                &self.dir.join(ONION_PREVIOUS),
                now,
                &self.onion.key.to_secret_bytes(),
            )?;
            write_key(&self.dir.join(ONION), now, &fresh.key.to_secret_bytes())?;
            let retired = std::mem::replace(&mut self.onion, fresh);
            self.previous = Some(DatedOnionKey {
                key: retired.key,
                created: now,
            });
            changed = true;
        }
        if let Some(previous) = &self.previous {
            if now.saturating_sub(previous.created) >= overlap.as_secs() {
                let path = self.dir.join(ONION_PREVIOUS);
                fs::remove_file(&path).map_err(|source| KeyFileError::Io {
                    path: path.clone(),
                    source,
                })?;
                self.previous = None;
                changed = true;
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trine-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn init_writes_private_files_and_load_reads_them_back() {
        let dir = temp_dir("init");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let made = KeyStore::init(&dir, 100, &mut rng).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(dir.join(IDENTITY))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let loaded = KeyStore::load(&dir).unwrap();
        assert_eq!(loaded.identity.relay_id(), made.identity.relay_id());
        assert_eq!(loaded.onion.key.public_key(), made.onion.key.public_key());
        assert!(matches!(
            KeyStore::init(&dir, 100, &mut rng),
            Err(KeyFileError::Exists(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loose_permissions_are_refused() {
        let dir = temp_dir("perms");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        KeyStore::init(&dir, 0, &mut rng).unwrap();
        fs::set_permissions(dir.join(IDENTITY), fs::Permissions::from_mode(0o640)).unwrap();
        let error = KeyStore::load(&dir).err().unwrap();
        assert!(
            matches!(error, KeyFileError::Permissions { mode: 0o640, .. }),
            "{error}"
        );
        fs::set_permissions(dir.join(IDENTITY), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            KeyStore::load(&dir),
            Err(KeyFileError::Permissions { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_the_previous_key_for_the_overlap() {
        let dir = temp_dir("rotate");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let mut store = KeyStore::init(&dir, 0, &mut rng).unwrap();
        let week = Duration::from_secs(7 * 86_400);
        let first = store.onion.key.public_key();
        assert!(!store.rotate(100, week, week, &mut rng).unwrap());
        assert!(store.rotate(week.as_secs(), week, week, &mut rng).unwrap());
        let keys = store.onion_keys();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].public_key(), first);
        let reloaded = KeyStore::load(&dir).unwrap();
        assert_eq!(reloaded.onion_keys().len(), 2);
        assert!(
            store
                .rotate(week.as_secs() + 10, week, week, &mut rng)
                .is_ok()
        );
        assert_eq!(store.onion_keys().len(), 2, "still inside the overlap");
        store
            .rotate(2 * week.as_secs() - 1, week, week, &mut rng)
            .unwrap();
        // The rotation at 2 weeks retires the second key and drops the first.
        store
            .rotate(2 * week.as_secs(), week, week, &mut rng)
            .unwrap();
        assert!(store.onion_keys().iter().all(|k| k.public_key() != first));
        fs::remove_dir_all(&dir).unwrap();
    }
}
