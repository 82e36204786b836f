//! The admin HTTP listener's bearer tokens (Redpanda's `admin_api_require_auth`, with tokens
//! instead of users): which `Authorization` header values let a request through.
//!
//! Tokens come from `admin_token` (one) and `admin_token_file` (one per line; blank lines and
//! `#` comments skipped), so a token is rotated without a restart: add the new line, move the
//! clients over, delete the old line. The file is re-read when it changes
//! ([`AdminAuth::reload_if_changed`], called by the broker's reload thread) or on SIGHUP; a
//! file that cannot be read keeps the tokens loaded before.
//!
//! Accepted headers: `Bearer <token>` and `Basic base64(<any user>:<token>)` (for tools that
//! only speak basic auth; the user name is ignored). Tokens are compared as SHA-256 digests
//! with [`subtle`]'s constant-time equality, every configured token each time, so neither
//! the time taken nor a length difference tells a client how close it came.
//!
//! Pure and synchronous: no I/O but reading the token file.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted (a guessable token is no protection).
pub use crate::config::listener::ADMIN_TOKEN_BYTES_MIN;
/// Largest token file read (a token file is a few lines).
const TOKEN_FILE_BYTES_MAX: u64 = 64 * 1024;

/// What [`AdminAuth::check`] made of a request's `Authorization` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A configured token: let the request through.
    Allowed,
    /// No `Authorization` header, or one of another scheme.
    Missing,
    /// A bearer or basic credential that matches no token.
    Invalid,
}

type Digest32 = [u8; 32];

fn digest(token: &[u8]) -> Digest32 {
    Sha256::digest(token).into()
}

/// The configured tokens. See the module docs.
#[derive(Debug)]
pub struct AdminAuth {
    /// `admin_token`'s digest.
    inline: Option<Digest32>,
    /// `admin_token_file`, with the digests of its tokens as last read.
    file: Option<PathBuf>,
    from_file: RwLock<Vec<Digest32>>,
    /// The file's modification time and size when last read.
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl AdminAuth {
    /// Tokens from `token` and the lines of `file`; `Ok(None)` when neither is set (the admin
    /// listener is open). An unreadable file, a file without a token or a short token is an
    /// error.
    pub fn load(token: Option<&str>, file: Option<&Path>) -> Result<Option<AdminAuth>, String> {
        if token.is_none() && file.is_none() {
            return Ok(None);
        }
        if let Some(token) = token {
            check_token(token)?;
        }
        let auth = AdminAuth {
            inline: token.map(|t| digest(t.as_bytes())),
            file: file.map(Path::to_owned),
            from_file: RwLock::new(Vec::new()),
            stamp: Mutex::new(None),
        };
        if let Some(path) = file {
            let tokens = read_tokens(path)?;
            if tokens.is_empty() {
                return Err(format!("{}: no token in the file", path.display()));
            }
            auth.set_file_tokens(tokens, stamp(path));
        }
        Ok(Some(auth))
    }

    fn set_file_tokens(&self, tokens: Vec<Digest32>, stamp: Option<(SystemTime, u64)>) {
        if let Ok(mut current) = self.from_file.write() {
            *current = tokens;
        }
        if let Ok(mut seen) = self.stamp.lock() {
            *seen = stamp;
        }
    }

    /// Judges a request's `Authorization` header value (`None`: no header).
    pub fn check(&self, authorization: Option<&[u8]>) -> Verdict {
        let Some(presented) = authorization.and_then(credential) else {
            return Verdict::Missing;
        };
        let presented = digest(&presented);
        // Every token is compared, matched or not: the time taken does not depend on which.
        let mut matched = subtle::Choice::from(0);
        if let Some(inline) = &self.inline {
            matched |= inline[..].ct_eq(&presented[..]);
        }
        let from_file = match self.from_file.read() {
            Ok(tokens) => tokens.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for token in &from_file {
            matched |= token[..].ct_eq(&presented[..]);
        }
        if bool::from(matched) {
            Verdict::Allowed
        } else {
            Verdict::Invalid
        }
    }

    /// Re-reads the token file if it changed since it was read: `Ok(true)` when new tokens
    /// are in place, `Ok(false)` when nothing changed (or there is no file), an error (the
    /// old tokens stay) when it cannot be read or holds no token.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let now = stamp(path);
        let changed = self.stamp.lock().map_or(true, |seen| *seen != now);
        if !changed {
            return Ok(false);
        }
        self.reload_file(path, now).map(|()| true)
    }

    /// Re-reads the token file now (SIGHUP): `Ok(true)` when there is one and it was read.
    pub fn reload(&self) -> Result<bool, String> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        self.reload_file(path, stamp(path)).map(|()| true)
    }

    fn reload_file(&self, path: &Path, now: Option<(SystemTime, u64)>) -> Result<(), String> {
        let tokens = read_tokens(path);
        let tokens = match tokens {
            Ok(tokens) if !tokens.is_empty() => tokens,
            failed => {
                // Remember the bad file: the error is reported once, not at every check.
                if let Ok(mut seen) = self.stamp.lock() {
                    *seen = now;
                }
                let why = failed.err().unwrap_or_else(|| "no token in the file".into());
                return Err(format!("{}: {why}", path.display()));
            }
        };
        self.set_file_tokens(tokens, now);
        Ok(())
    }
}

fn check_token(token: &str) -> Result<(), String> {
    if token.len() < ADMIN_TOKEN_BYTES_MIN {
        return Err(format!("an admin token must be at least {ADMIN_TOKEN_BYTES_MIN} bytes"));
    }
    if token.chars().any(char::is_whitespace) {
        return Err("an admin token must not contain white space".into());
    }
    Ok(())
}

/// The digests of the tokens of a token file (one per line, `#` comments).
fn read_tokens(path: &Path) -> Result<Vec<Digest32>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(TOKEN_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tokens = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        check_token(line).map_err(|e| format!("{}: {e}", path.display()))?;
        tokens.push(digest(line.as_bytes()));
    }
    Ok(tokens)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The secret a header value carries: the token of `Bearer <token>`, the password of
/// `Basic base64(user:password)`; `None` for anything else.
fn credential(header: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, value) = text.split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!value.is_empty()).then(|| value.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        return decoded.get(colon + 1..).map(<[u8]>::to_vec);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn bearer_and_basic_credentials_pass_and_others_do_not() {
        let auth = AdminAuth::load(Some(TOKEN), None).unwrap().unwrap();
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(auth.check(Some(bearer.as_bytes())), Verdict::Allowed);
        assert_eq!(auth.check(Some(format!("bearer  {TOKEN} ").as_bytes())), Verdict::Allowed);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{TOKEN}"));
        assert_eq!(auth.check(Some(format!("Basic {basic}").as_bytes())), Verdict::Allowed);
        assert_eq!(auth.check(None), Verdict::Missing);
        assert_eq!(auth.check(Some(b"Digest abc")), Verdict::Missing);
        assert_eq!(auth.check(Some(b"Bearer wrong-token-of-some-length")), Verdict::Invalid);
        let prefix = format!("Bearer {}", &TOKEN[..10]);
        assert_eq!(auth.check(Some(prefix.as_bytes())), Verdict::Invalid);
        assert_eq!(auth.check(Some(&[0xff, 0xfe])), Verdict::Missing);
    }

    #[test]
    fn no_token_means_no_check_and_short_tokens_are_refused() {
        assert!(AdminAuth::load(None, None).unwrap().is_none());
        assert!(AdminAuth::load(Some("short"), None).is_err());
    }

    #[test]
    fn the_token_file_rotates_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# ops\nold-token-0123456789\n\n").unwrap();
        let auth = AdminAuth::load(None, Some(&path)).unwrap().unwrap();
        let old = b"Bearer old-token-0123456789".as_slice();
        let new = b"Bearer new-token-0123456789".as_slice();
        assert_eq!(auth.check(Some(old)), Verdict::Allowed);
        assert_eq!(auth.check(Some(new)), Verdict::Invalid);
        std::fs::write(&path, "old-token-0123456789\nnew-token-0123456789\n").unwrap();
        assert!(auth.reload_if_changed().unwrap());
        assert_eq!(auth.check(Some(old)), Verdict::Allowed);
        assert_eq!(auth.check(Some(new)), Verdict::Allowed);
        std::fs::write(&path, "new-token-0123456789\n").unwrap();
        assert!(auth.reload().unwrap());
        assert_eq!(auth.check(Some(old)), Verdict::Invalid);
        // An emptied file keeps the tokens it had.
        std::fs::write(&path, "").unwrap();
        assert!(auth.reload().is_err());
        assert_eq!(auth.check(Some(new)), Verdict::Allowed);
    }
}
