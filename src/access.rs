//! Who may call what: API keys from a file (`--api-keys-file`), shared by every door.
//!
//! The file has one key per line, `<role> <key>`, `#` starts a comment; roles are `inference`
//! (classification and model metadata on the public ports) and `admin` (the admin listener).
//! A client presents its key as `Authorization: Bearer <key>` (an HTTP header, or gRPC
//! metadata). Keys are kept as SHA-256 digests and every presented key is compared with every
//! digest in constant time ([`subtle`]), so neither the timing nor the answer says how much of
//! a key was right. The file is re-read when its content changes (a rotated Kubernetes
//! Secret): the new set applies to the next request, on connections already open too; a file
//! that no longer parses keeps the previous keys and is logged and counted.
//!
//! Without a key file [`Access::open`] lets every call through, as before keys existed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::metrics::Metrics;

/// The largest key file read (a few thousand keys); larger is refused, not truncated.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The shortest key accepted, so that a key cannot be guessed in a few million tries.
pub(crate) const MIN_KEY_LEN: usize = 16;

/// How often the key file is checked for changes.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Classification, v2 inference and model metadata on the public ports.
    Inference,
    /// The admin listener: metrics, stats, full model details.
    Admin,
}

impl Role {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "inference" => Some(Self::Inference),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The answer for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// No key, a malformed header, or a key not in the file.
    Unauthorized,
    /// A key from the file, for another role.
    Forbidden,
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the API key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the API key file {path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("the API key file {path}, line {line}: {why}")]
    Line {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("the API key file {path} has no keys (lines `inference <key>` or `admin <key>`)")]
    Empty { path: PathBuf },
}

/// The keys of one version of the file, as digests.
#[derive(Debug, Default)]
struct KeySet {
    keys: Vec<(Role, [u8; 32])>,
}

impl KeySet {
    /// Parses the file's text; `path` only names the file in errors.
    fn parse(text: &str, path: &Path) -> Result<Self, KeysError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let error = |why: String| KeysError::Line {
                path: path.to_owned(),
                line: index + 1,
                why,
            };
            let mut words = line.split_whitespace();
            let (Some(role), Some(key), None) = (words.next(), words.next(), words.next()) else {
                return Err(error("expected `<role> <key>`".into()));
            };
            let role = Role::parse(role).ok_or_else(|| {
                error(format!(
                    "unknown role `{role}` (use `inference` or `admin`)"
                ))
            })?;
            if key.len() < MIN_KEY_LEN {
                return Err(error(format!(
                    "a key must have at least {MIN_KEY_LEN} characters"
                )));
            }
            keys.push((role, digest(key.as_bytes())));
        }
        if keys.is_empty() {
            return Err(KeysError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// Compares `presented` with every key, in time that does not depend on which matched.
    fn check(&self, presented: &[u8], needed: Role) -> Verdict {
        let presented = digest(presented);
        let mut known = Choice::from(0);
        let mut allowed = Choice::from(0);
        for (role, key) in &self.keys {
            let same = key.ct_eq(&presented);
            known |= same;
            allowed |= same & Choice::from(u8::from(*role == needed));
        }
        if bool::from(allowed) {
            Verdict::Allowed
        } else if bool::from(known) {
            Verdict::Forbidden
        } else {
            Verdict::Unauthorized
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The key `Authorization: Bearer <key>` carries (scheme case-insensitive), if well formed.
fn bearer(authorization: &[u8]) -> Option<&[u8]> {
    let text = std::str::from_utf8(authorization).ok()?;
    let (scheme, key) = text.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim().as_bytes())
        .filter(|key| !key.is_empty())
}

/// The keys in force, re-read from their file when it changes.
#[derive(Debug)]
struct KeyFile {
    path: PathBuf,
    current: ArcSwap<KeySet>,
    /// The digest of the file's bytes the current set came from (or last failed on).
    seen: std::sync::Mutex<[u8; 32]>,
}

impl KeyFile {
    fn read(path: &Path) -> Result<(Vec<u8>, KeySet), KeysError> {
        let read_error = |source| KeysError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_error)?.len();
        if len > MAX_FILE_BYTES {
            return Err(KeysError::TooLarge {
                path: path.to_owned(),
            });
        }
        let bytes = std::fs::read(path).map_err(read_error)?;
        let text = String::from_utf8_lossy(&bytes);
        let keys = KeySet::parse(&text, path)?;
        Ok((bytes, keys))
    }

    /// Re-reads the file if its bytes changed; true when a new set was taken.
    fn reload(&self, metrics: &Metrics) -> bool {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                // A Secret being swapped can be missing for a moment; the next look retries.
                tracing::debug!(path = %self.path.display(), error = %e, "API key file unreadable");
                return false;
            }
        };
        let fingerprint = digest(&bytes);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == fingerprint {
            return false;
        }
        *seen = fingerprint;
        match Self::read(&self.path) {
            Ok((_, keys)) => {
                let count = keys.keys.len();
                self.current.store(Arc::new(keys));
                metrics.api_keys_reloaded(true);
                tracing::info!(path = %self.path.display(), keys = count, "API keys reloaded");
                true
            }
            Err(e) => {
                metrics.api_keys_reloaded(false);
                tracing::error!(error = %e, "API key file changed but is invalid: the previous keys stay in force");
                false
            }
        }
    }
}

/// The access rules every door applies; cloning is cheap.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    keys: Option<Arc<KeyFile>>,
}

impl Access {
    /// Every call allowed (no key file).
    pub(crate) fn open() -> Self {
        Self { keys: None }
    }

    /// The keys in `path`; an unreadable or invalid file is an error naming it.
    pub(crate) fn from_file(path: &Path) -> Result<Self, KeysError> {
        let (bytes, keys) = KeyFile::read(path)?;
        tracing::info!(path = %path.display(), keys = keys.keys.len(), "API keys loaded: every call but health needs one");
        Ok(Self {
            keys: Some(Arc::new(KeyFile {
                path: path.to_owned(),
                current: ArcSwap::from_pointee(keys),
                seen: std::sync::Mutex::new(digest(&bytes)),
            })),
        })
    }

    /// Whether keys are required at all (a key file was given).
    pub(crate) fn is_configured(&self) -> bool {
        self.keys.is_some()
    }

    /// The verdict for a call that needs `role` and came with this `Authorization` value.
    pub(crate) fn check(&self, authorization: Option<&[u8]>, role: Role) -> Verdict {
        let Some(file) = &self.keys else {
            return Verdict::Allowed;
        };
        match authorization.and_then(bearer) {
            Some(key) => file.current.load().check(key, role),
            None => Verdict::Unauthorized,
        }
    }

    /// Re-reads the key file every [`RELOAD_EVERY`] while the service runs (nothing to do
    /// without one).
    pub(crate) async fn watch(self, metrics: Arc<Metrics>) {
        let Some(file) = self.keys else { return };
        let mut ticks = tokio::time::interval(RELOAD_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let (file, metrics) = (file.clone(), metrics.clone());
            let _ = tokio::task::spawn_blocking(move || file.reload(&metrics)).await;
        }
    }
}

/// The message of a refused call: the same for a missing, malformed or unknown key.
pub(crate) const UNAUTHORIZED: &str =
    "a valid API key is required: send `Authorization: Bearer <key>`";

/// The message of a key used beyond its role.
pub(crate) const FORBIDDEN: &str = "this API key's role does not allow this call";

#[cfg(test)]
mod tests {
    use super::*;

    const INFERENCE: &str = "inference-key-0123456789";
    const ADMIN: &str = "admin-key-0123456789abcdef";

    fn keys(text: &str) -> KeySet {
        KeySet::parse(text, Path::new("keys")).expect("parses")
    }

    #[test]
    fn keys_are_checked_by_role() {
        let set = keys(&format!(
            "# rotated 2026-11\ninference {INFERENCE}\n\n  admin {ADMIN}  # ops\n"
        ));
        assert_eq!(
            set.check(INFERENCE.as_bytes(), Role::Inference),
            Verdict::Allowed
        );
        assert_eq!(set.check(ADMIN.as_bytes(), Role::Admin), Verdict::Allowed);
        assert_eq!(
            set.check(INFERENCE.as_bytes(), Role::Admin),
            Verdict::Forbidden
        );
        assert_eq!(
            set.check(b"inference-key-012345678", Role::Inference),
            Verdict::Unauthorized
        );
        assert_eq!(set.check(b"", Role::Inference), Verdict::Unauthorized);
    }

    #[test]
    fn bearer_needs_the_scheme_and_a_key() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"abc"), None);
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, says) in [
            ("reader 0123456789abcdef", "line 1: unknown role `reader`"),
            ("\ninference short", "line 2: a key must have at least 16"),
            ("admin a b", "line 1: expected `<role> <key>`"),
            ("# nothing\n", "has no keys"),
        ] {
            let error = KeySet::parse(text, Path::new("keys.txt"))
                .expect_err(text)
                .to_string();
            assert!(
                error.contains("keys.txt") && error.contains(says),
                "{error}"
            );
        }
    }

    #[test]
    fn without_a_file_everything_is_allowed() {
        assert_eq!(Access::open().check(None, Role::Admin), Verdict::Allowed);
    }

    #[test]
    fn a_changed_file_replaces_the_keys_and_a_broken_one_keeps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("inference {INFERENCE}\n")).expect("write");
        let access = Access::from_file(&path).expect("loads");
        let file = access.keys.clone().expect("keys");
        let metrics = Metrics::new();
        let header = |key: &str| format!("Bearer {key}");
        let allowed = |key: &str| {
            access.check(Some(header(key).as_bytes()), Role::Inference) == Verdict::Allowed
        };
        assert!(allowed(INFERENCE));
        assert!(!file.reload(&metrics), "unchanged file, no reload");

        std::fs::write(&path, format!("inference {ADMIN}\n")).expect("write");
        assert!(file.reload(&metrics));
        assert!(allowed(ADMIN) && !allowed(INFERENCE));

        std::fs::write(&path, "inference short\n").expect("write");
        assert!(!file.reload(&metrics));
        assert!(allowed(ADMIN), "a broken file keeps the previous keys");
    }
}
