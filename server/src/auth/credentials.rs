//! The credentials file: AWS's shared-credentials INI format (`~/.aws/credentials`), with two
//! Pier keys per section.
//!
//! ```ini
//! [ops]
//! aws_access_key_id = AKIDOPS
//! aws_secret_access_key = ...
//! pier_planes = admin,invoke   ; optional, default both
//! pier_token = ...             ; optional bearer token granting the same planes
//! ```
//!
//! Parsed once at start into an immutable [`Credentials`] table that request checks share
//! through an `Arc`; every error names the file's line.

use std::collections::HashMap;
use std::path::Path;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use hmac::Hmac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Which listeners a key may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planes {
    /// The control plane (SageMaker API on `--admin`).
    pub admin: bool,
    /// The data plane (invocations, v2 REST and gRPC).
    pub invoke: bool,
}

impl Planes {
    /// Both planes.
    pub const ALL: Self = Self {
        admin: true,
        invoke: true,
    };

    /// Whether `plane` is allowed.
    pub fn allows(self, plane: Plane) -> bool {
        match plane {
            Plane::Admin => self.admin,
            Plane::Invoke => self.invoke,
        }
    }
}

/// One plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// The control plane.
    Admin,
    /// The data plane.
    Invoke,
}

impl Plane {
    /// The name used in `pier_planes`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Invoke => "invoke",
        }
    }
}

/// One section of the file.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The section's name (`[name]`), for logs.
    pub name: String,
    /// `aws_access_key_id`.
    pub access_key_id: String,
    /// `aws_secret_access_key`.
    pub secret_access_key: String,
    /// `pier_planes`.
    pub planes: Planes,
    /// The last SigV4 signing key derived for this key and its scope
    /// (`DATE/REGION/SERVICE/aws4_request`): a key changes once a day, so nearly every
    /// request skips the four HMACs of its derivation.
    pub(crate) signing_key: Arc<ArcSwapOption<(String, Hmac<Sha256>)>>,
}

/// The parsed file: keys by access key id, and the bearer tokens.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    keys: HashMap<String, Principal>,
    tokens: Tokens,
}

/// Up to this many tokens are compared one by one; a larger table is indexed by digest.
const SCAN_MAX: usize = 16;

/// The bearer tokens, checked without leaking their bytes through timing: a small table
/// (the usual handful of sections) is scanned whole with constant-time comparisons and no
/// early exit, so the time depends only on the number and lengths of the tokens; a larger
/// one is looked up by SHA-256 digest. Neither allocates.
#[derive(Clone, Default)]
struct Tokens {
    list: Vec<(Box<[u8]>, Principal)>,
    /// Token digest to its index in `list`; empty while `list` has up to [`SCAN_MAX`].
    by_digest: HashMap<[u8; 32], usize>,
}

impl Tokens {
    fn get(&self, token: &str) -> Option<&Principal> {
        if self.by_digest.is_empty() {
            let mut found = None;
            for (stored, principal) in &self.list {
                if bool::from(stored.ct_eq(token.as_bytes())) {
                    found = Some(principal);
                }
            }
            found
        } else {
            let index = *self.by_digest.get(&token_digest(token))?;
            self.list.get(index).map(|(_, principal)| principal)
        }
    }

    /// Adds `token`; false when it is already there.
    fn insert(&mut self, token: &str, principal: Principal) -> bool {
        if self.list.iter().any(|(t, _)| **t == *token.as_bytes()) {
            return false;
        }
        self.list.push((token.as_bytes().into(), principal));
        if self.list.len() > SCAN_MAX {
            let start = if self.by_digest.is_empty() {
                0
            } else {
                self.list.len() - 1
            };
            for (i, (t, _)) in self.list.iter().enumerate().skip(start) {
                self.by_digest.insert(Sha256::digest(t).into(), i);
            }
        }
        true
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("Tokens")
            .field("len", &self.list.len())
            .finish()
    }
}

/// Why the credentials file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not valid.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file defines no usable key or token.
    #[error("no section defines aws_access_key_id and aws_secret_access_key or pier_token")]
    Empty,
}

#[derive(Default)]
struct Section {
    name: String,
    line: usize,
    key: Option<String>,
    secret: Option<String>,
    planes: Option<Planes>,
    token: Option<String>,
}

impl Credentials {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        text.parse()
    }

    /// The principal of an access key id.
    pub fn key(&self, access_key_id: &str) -> Option<&Principal> {
        self.keys.get(access_key_id)
    }

    /// The principal of a bearer token.
    pub fn token(&self, token: &str) -> Option<&Principal> {
        self.tokens.get(token)
    }

    /// Number of access keys and tokens.
    pub fn len(&self) -> (usize, usize) {
        (self.keys.len(), self.tokens.list.len())
    }

    fn add(&mut self, section: Section) -> Result<(), CredentialsError> {
        let at = |message: String| CredentialsError::Line {
            line: section.line,
            message,
        };
        let planes = section.planes.unwrap_or(Planes::ALL);
        let name = section.name.clone();
        match (&section.key, &section.secret) {
            (Some(key), Some(secret)) => {
                let principal = Principal {
                    name: name.clone(),
                    access_key_id: key.clone(),
                    secret_access_key: secret.clone(),
                    planes,
                    signing_key: Arc::default(),
                };
                if self.keys.insert(key.clone(), principal).is_some() {
                    return Err(at(format!(
                        "[{name}]: aws_access_key_id {key} is defined twice"
                    )));
                }
            }
            (Some(_), None) => {
                return Err(at(format!("[{name}]: aws_secret_access_key is missing")));
            }
            (None, Some(_)) => return Err(at(format!("[{name}]: aws_access_key_id is missing"))),
            (None, None) if section.token.is_none() => {
                return Err(at(format!(
                    "[{name}]: the section has neither aws_access_key_id nor pier_token"
                )));
            }
            (None, None) => {}
        }
        if let Some(token) = &section.token {
            let principal = Principal {
                name: name.clone(),
                access_key_id: section.key.clone().unwrap_or_default(),
                secret_access_key: String::new(),
                planes,
                signing_key: Arc::default(),
            };
            if !self.tokens.insert(token, principal) {
                return Err(at(format!(
                    "[{name}]: the same pier_token is defined twice"
                )));
            }
        }
        Ok(())
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_planes(value: &str) -> Result<Planes, String> {
    let mut planes = Planes::default();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "admin" => planes.admin = true,
            "invoke" => planes.invoke = true,
            other => {
                return Err(format!(
                    "pier_planes: unknown plane {other:?} (expected admin, invoke or both)"
                ));
            }
        }
    }
    if planes == Planes::default() {
        return Err("pier_planes names no plane (expected admin, invoke or both)".into());
    }
    Ok(planes)
}

impl std::str::FromStr for Credentials {
    type Err = CredentialsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut credentials = Self::default();
        let mut current: Option<Section> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| CredentialsError::Line { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(err(format!("unclosed section header {trimmed:?}")));
                };
                let name = name.trim();
                if name.is_empty() {
                    return Err(err("empty section name".into()));
                }
                if let Some(done) = current.take() {
                    credentials.add(done)?;
                }
                current = Some(Section {
                    name: name.to_owned(),
                    line,
                    ..Section::default()
                });
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                return Err(err(format!("expected `key = value`, found {trimmed:?}")));
            };
            let (key, value) = (key.trim(), value.trim());
            let Some(section) = current.as_mut() else {
                return Err(err(format!("{key} appears before any [section]")));
            };
            if value.is_empty() {
                return Err(err(format!("{key} has an empty value")));
            }
            let slot = match key {
                "aws_access_key_id" => &mut section.key,
                "aws_secret_access_key" => &mut section.secret,
                "pier_token" => &mut section.token,
                "pier_planes" => {
                    section.planes = Some(parse_planes(value).map_err(err)?);
                    continue;
                }
                // Other AWS keys (region, aws_session_token, ...) are allowed and ignored.
                _ => continue,
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(err(format!("{key} is set twice in [{}]", section.name)));
            }
        }
        if let Some(done) = current.take() {
            credentials.add(done)?;
        }
        if credentials.keys.is_empty() && credentials.tokens.list.is_empty() {
            return Err(CredentialsError::Empty);
        }
        Ok(credentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_planes_and_tokens() {
        let c: Credentials = "# comment\n[default]\naws_access_key_id = AKID1\n\
             aws_secret_access_key = s1\nregion = us-east-1\n\n[ci]\naws_access_key_id=AKID2\n\
             aws_secret_access_key=s2\npier_planes = invoke\npier_token = tok\n[bot]\npier_token = t2\npier_planes=admin\n"
            .parse()
            .unwrap();
        assert_eq!(c.key("AKID1").unwrap().planes, Planes::ALL);
        let ci = c.key("AKID2").unwrap();
        assert_eq!(
            (ci.secret_access_key.as_str(), ci.planes.admin),
            ("s2", false)
        );
        assert_eq!(c.token("tok").unwrap().name, "ci");
        assert!(c.token("t2").unwrap().planes.admin);
        assert!(c.token("nope").is_none());
        assert_eq!(c.len(), (2, 2));
    }

    #[test]
    fn errors_name_the_line() {
        let e = "[a]\naws_access_key_id = k\n"
            .parse::<Credentials>()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: [a]: aws_secret_access_key is missing"
        );
        let e = "[a]\nnonsense\n".parse::<Credentials>().unwrap_err();
        assert!(e.to_string().starts_with("line 2: expected"), "{e}");
        let e = "aws_access_key_id = k\n"
            .parse::<Credentials>()
            .unwrap_err();
        assert!(e.to_string().starts_with("line 1: "), "{e}");
        let e = "[a]\npier_token = t\npier_planes = admin,root\n"
            .parse::<Credentials>()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("line 3: pier_planes: unknown plane \"root\""),
            "{e}"
        );
        let e = "[a\n".parse::<Credentials>().unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = "[a]\naws_access_key_id = k\naws_access_key_id = j\n"
            .parse::<Credentials>()
            .unwrap_err();
        assert!(e.to_string().starts_with("line 3: "), "{e}");
        let e = "[a]\naws_access_key_id = k\naws_secret_access_key = s\n[b]\naws_access_key_id = k\naws_secret_access_key = s\n"
            .parse::<Credentials>()
            .unwrap_err();
        assert!(e.to_string().starts_with("line 4: "), "{e}");
        assert!(matches!(
            "# only\n".parse::<Credentials>(),
            Err(CredentialsError::Empty)
        ));
    }

    #[test]
    fn tokens_small_and_large_tables() {
        for n in [1, SCAN_MAX, SCAN_MAX + 1, 40] {
            let text: String = (0..n)
                .map(|i| format!("[s{i}]\npier_token = token-{i}\n"))
                .collect();
            let c: Credentials = text.parse().unwrap();
            assert_eq!(c.len(), (0, n), "{n}");
            assert_eq!(c.tokens.by_digest.len(), if n > SCAN_MAX { n } else { 0 });
            for i in 0..n {
                assert_eq!(
                    c.token(&format!("token-{i}")).unwrap().name,
                    format!("s{i}")
                );
            }
            for wrong in ["", "token-", "token-00", "Token-0", "token-0 "] {
                assert!(c.token(wrong).is_none(), "{n} {wrong:?}");
            }
            let dup = format!("{text}[again]\npier_token = token-{}\n", n - 1);
            let e = dup.parse::<Credentials>().unwrap_err();
            assert!(
                e.to_string()
                    .contains("the same pier_token is defined twice"),
                "{e}"
            );
            assert!(
                !format!("{c:?}").contains("token-0"),
                "Debug shows no token"
            );
        }
    }
}
