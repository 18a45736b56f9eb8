//! Local paths a client names: which ones may be read ([`ImportPolicy`], the import roots)
//! and what is read from them ([`LocalSource`]: a regular file, a folder of regular files, or
//! a model archive).
//!
//! The policy is one type so every feature that reads a client-named local path (model
//! imports today; training channels, transform input and output, script folders later)
//! confines it to the same roots. A path is resolved (symbolic links included) before it is
//! compared with the roots, so a link inside a root that points outside is refused.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::limits::ImportLimits;

/// Which local paths clients may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportPolicy {
    rule: Rule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    Anywhere,
    Roots(Vec<PathBuf>),
    Refused(String),
}

/// System folders never imported from, whatever the roots.
const SYSTEM_DIRS: &[&str] = &["/proc", "/sys", "/dev"];

impl ImportPolicy {
    /// Any local path (still only regular files, never system folders).
    pub fn anywhere() -> Self {
        Self {
            rule: Rule::Anywhere,
        }
    }

    /// Only paths under these folders (each must exist; they are resolved once here).
    pub fn under_roots(roots: &[PathBuf]) -> Result<Self> {
        let mut resolved = Vec::with_capacity(roots.len());
        for root in roots {
            let canonical = fs::canonicalize(root).map_err(|e| StoreError::ImportRefused {
                path: root.clone(),
                reason: format!("the import root cannot be used: {e}"),
            })?;
            if !canonical.is_dir() {
                return Err(StoreError::ImportRefused {
                    path: root.clone(),
                    reason: "the import root is not a folder".into(),
                });
            }
            resolved.push(canonical);
        }
        Ok(Self {
            rule: Rule::Roots(resolved),
        })
    }

    /// No local path at all; `reason` says why and how to allow them.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self {
            rule: Rule::Refused(reason.into()),
        }
    }

    /// The import roots (empty unless restricted to roots).
    pub fn roots(&self) -> &[PathBuf] {
        match &self.rule {
            Rule::Roots(r) => r,
            _ => &[],
        }
    }

    /// Resolves `path` and checks that it may be read; returns the resolved path.
    pub fn check(&self, path: &Path) -> Result<PathBuf> {
        let refuse = |reason: String| StoreError::ImportRefused {
            path: path.to_path_buf(),
            reason,
        };
        let roots = match &self.rule {
            Rule::Refused(reason) => return Err(refuse(reason.clone())),
            Rule::Anywhere => None,
            Rule::Roots(roots) => Some(roots),
        };
        let absolute = std::path::absolute(path).map_err(|e| refuse(e.to_string()))?;
        let outside = || {
            refuse(format!(
                "it is outside the import roots ({})",
                roots
                    .into_iter()
                    .flatten()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        // Refused before the filesystem is asked, so nothing outside the roots is probed.
        if let Some(roots) = roots
            && !roots.iter().any(|r| lexical(&absolute).starts_with(r))
        {
            return Err(outside());
        }
        let canonical = fs::canonicalize(&absolute).map_err(|e| refuse(e.to_string()))?;
        if let Some(roots) = roots
            && !roots.iter().any(|r| canonical.starts_with(r))
        {
            return Err(outside());
        }
        if canonical.parent().is_none() {
            return Err(refuse("it is the filesystem root".into()));
        }
        if SYSTEM_DIRS.iter().any(|d| canonical.starts_with(d)) {
            return Err(refuse(
                "it is in a system folder (/proc, /sys, /dev), not a model".into(),
            ));
        }
        Ok(canonical)
    }
}

/// `path` with `.` and `..` applied as text.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What an import reads from a local path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalSource {
    /// Regular files, by name (a file, or the regular files of a folder).
    Files(Vec<SourceFile>),
    /// A tar archive (`model.tar.gz`, `.tgz`, `.tar`), or a folder holding only one.
    Archive {
        /// The archive file (resolved).
        path: PathBuf,
        /// gzip-compressed.
        gzip: bool,
    },
}

/// One file of a [`LocalSource`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Name in the artifact.
    pub name: String,
    /// Where it is read from (resolved).
    pub path: PathBuf,
}

impl LocalSource {
    /// Checks `path` against `policy` and lists what it holds, refusing anything but regular
    /// files (a folder's hidden files and sub-folders are left out), and sources over the
    /// limits by their current size (the copy checks again, as files may grow).
    pub fn scan(path: &Path, policy: &ImportPolicy, limits: &ImportLimits) -> Result<Self> {
        let resolved = policy.check(path)?;
        let meta = fs::symlink_metadata(&resolved).map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            return Self::scan_dir(path, &resolved, policy, limits);
        }
        if !meta.is_file() {
            return Err(StoreError::ImportRefused {
                path: path.to_path_buf(),
                reason: format!(
                    "it is {}; only regular files and folders of them are imported",
                    fsutil::file_kind(&meta.file_type())
                ),
            });
        }
        check_size(path, meta.len(), limits)?;
        // The name the client gave, not the one a symbolic link leads to.
        let name = path
            .file_name()
            .or(resolved.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(match archive_kind(&name) {
            Some(gzip) => Self::Archive {
                path: resolved,
                gzip,
            },
            None => Self::Files(vec![SourceFile {
                name,
                path: resolved,
            }]),
        })
    }

    fn scan_dir(
        given: &Path,
        dir: &Path,
        policy: &ImportPolicy,
        limits: &ImportLimits,
    ) -> Result<Self> {
        let read_err = |source| StoreError::Read {
            path: given.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        let (mut total, mut entries) = (0u64, 0u64);
        for entry in fs::read_dir(dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            // Every entry counts, so a folder of millions of hidden files or sub-folders
            // is not listed to its end either.
            entries += 1;
            if entries > limits.max_files {
                return Err(StoreError::TooLarge {
                    what: format!("the folder {}", given.display()),
                    limit: limits.max_files,
                    unit: "files",
                });
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let shown = given.join(&name);
            let mut meta = entry.metadata().map_err(|source| StoreError::Read {
                path: shown.clone(),
                source,
            })?;
            let mut path = entry.path();
            if meta.file_type().is_symlink() {
                path = policy.check(&path).map_err(|e| match e {
                    StoreError::ImportRefused { reason, .. } => StoreError::ImportRefused {
                        path: shown.clone(),
                        reason,
                    },
                    other => other,
                })?;
                meta = fs::metadata(&path).map_err(|source| StoreError::Read {
                    path: shown.clone(),
                    source,
                })?;
            }
            if meta.is_dir() {
                continue;
            }
            if !meta.is_file() {
                return Err(StoreError::ImportRefused {
                    path: shown,
                    reason: format!(
                        "it is {}; only regular files and folders of them are imported",
                        fsutil::file_kind(&meta.file_type())
                    ),
                });
            }
            total = total.saturating_add(meta.len());
            check_size(given, total, limits)?;
            files.push(SourceFile { name, path });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        match files.as_slice() {
            [] => Err(StoreError::ImportRefused {
                path: given.to_path_buf(),
                reason: "the folder holds no files".into(),
            }),
            [only] => match archive_kind(&only.name) {
                Some(gzip) => Ok(Self::Archive {
                    path: only.path.clone(),
                    gzip,
                }),
                None => Ok(Self::Files(files)),
            },
            _ => Ok(Self::Files(files)),
        }
    }
}

fn check_size(path: &Path, size: u64, limits: &ImportLimits) -> Result<()> {
    if size > limits.max_bytes {
        return Err(StoreError::TooLarge {
            what: path.display().to_string(),
            limit: limits.max_bytes,
            unit: "bytes",
        });
    }
    Ok(())
}

/// `Some(gzip)` for an archive's file name.
fn archive_kind(name: &str) -> Option<bool> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        Some(true)
    } else if lower.ends_with(".tar") {
        Some(false)
    } else {
        None
    }
}
