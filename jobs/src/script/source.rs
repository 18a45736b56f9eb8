//! The script's code: `sagemaker_submit_directory` (the SDK's `sourcedir.tar.gz`, on S3 or a
//! local path under the import roots) downloaded within a byte limit and unpacked into the
//! job's `code/` folder with the same care as a model archive: regular files and folders
//! only (no links, devices or pipes), no absolute path and no `..`, every byte and file
//! counted against the limits. Also the entry point's checks and the cache of virtual
//! environments built from a `requirements.txt` (one per interpreter and file content, under
//! `<work dir>/.venvs/<sha256>`, built under an exclusive lock so two jobs never build the
//! same one at once).

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use object_store::path::Path as ObjectPath;
use pier_model_store::ImportPolicy;
use sha2::{Digest, Sha256};

use crate::channels::{Location, S3Config};

/// Refuses an entry point that is not a relative path inside the source folder.
pub fn check_entry_point(entry_point: &str) -> Result<(), String> {
    if entry_point.is_empty() || entry_point.len() > 256 {
        return Err("must have 1 to 256 characters".into());
    }
    let path = Path::new(entry_point);
    if !path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        || entry_point.ends_with('/')
    {
        return Err(
            "must be a file's path relative to the source folder (no '/' first, no '..')".into(),
        );
    }
    Ok(())
}

/// Why the source could not be had.
#[derive(Debug)]
pub struct SourceError(pub String);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Limits of one source archive.
#[derive(Clone, Copy, Debug)]
pub struct SourceLimits {
    /// Most bytes downloaded, and most bytes unpacked.
    pub max_bytes: u64,
    /// Most entries.
    pub max_files: u64,
}

/// Gets `uri` (`s3://…`, `file:///…` or a local path) as a local file: an S3 object is
/// downloaded to `scratch`; a local path is checked against `policy`.
pub async fn fetch(
    uri: &str,
    scratch: &Path,
    policy: &ImportPolicy,
    s3: &S3Config,
    limits: SourceLimits,
) -> Result<PathBuf, SourceError> {
    let field = "HyperParameters.sagemaker_submit_directory";
    let fail = |reason: String| SourceError(format!("{field} {uri}: {reason}"));
    match Location::parse(uri).map_err(&fail)? {
        Location::Local(path) => {
            let policy = policy.clone();
            let resolved = tokio::task::spawn_blocking(move || policy.check(&path))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(e.to_string()))?;
            Ok(resolved)
        }
        Location::S3 { bucket, key } => {
            let store = s3.client(&bucket).map_err(&fail)?;
            let got = store
                .get(&ObjectPath::from(key.as_str()))
                .await
                .map_err(|e| fail(crate::channels::location_error_text(&e)))?;
            if got.meta.size > limits.max_bytes {
                return Err(fail(format!(
                    "is larger than the limit of {} bytes",
                    limits.max_bytes
                )));
            }
            let dest = scratch.join("sourcedir.tar.gz");
            let write_err =
                |e: std::io::Error| fail(format!("cannot write {}: {e}", dest.display()));
            let mut out = std::fs::File::create(&dest).map_err(write_err)?;
            let mut stream = got.into_stream();
            let mut seen = 0u64;
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                let chunk = chunk.map_err(|e| fail(crate::channels::location_error_text(&e)))?;
                seen += chunk.len() as u64;
                if seen > limits.max_bytes {
                    return Err(fail(format!(
                        "is larger than the limit of {} bytes",
                        limits.max_bytes
                    )));
                }
                // The store's chunks are small; a blocking write of one is brief.
                std::io::Write::write_all(&mut out, &chunk).map_err(write_err)?;
            }
            Ok(dest)
        }
    }
}

/// Unpacks the gzip'd tar at `archive` into `dest` (see the module docs); returns the files
/// written. Blocking.
pub fn unpack(
    archive: &Path,
    uri: &str,
    dest: &Path,
    limits: SourceLimits,
    cancel: &AtomicBool,
) -> Result<u64, SourceError> {
    let field = "HyperParameters.sagemaker_submit_directory";
    let fail = |reason: String| SourceError(format!("{field} {uri}: {reason}"));
    let mut file = std::fs::File::open(archive).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("is not a file (a sourcedir.tar.gz)".into()));
    }
    if meta.len() > limits.max_bytes {
        return Err(fail(format!(
            "is larger than the limit of {} bytes",
            limits.max_bytes
        )));
    }
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| fail(e.to_string()))?;
    if n < 2 || magic != [0x1f, 0x8b] {
        return Err(fail(
            "is not a tar.gz: it is not gzip-compressed (the SDK uploads the source folder as sourcedir.tar.gz)"
                .into(),
        ));
    }
    let file = std::fs::File::open(archive).map_err(|e| fail(e.to_string()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut bytes, mut files) = (0u64, 0u64);
    let entries = tar
        .entries()
        .map_err(|e| fail(format!("is not a valid tar.gz: {e}")))?;
    for entry in entries {
        if cancel.load(Ordering::Relaxed) {
            return Err(fail("unpacking was stopped".into()));
        }
        let mut entry = entry.map_err(|e| fail(format!("is not a valid tar.gz: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| fail(format!("an entry's name is not valid: {e}")))?
            .into_owned();
        let shown = raw.display().to_string();
        let mut rel = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                _ => {
                    return Err(fail(format!(
                        "entry '{shown}' would be written outside the source folder"
                    )));
                }
            }
        }
        files += 1;
        if files > limits.max_files {
            return Err(fail(format!(
                "holds more than {} entries",
                limits.max_files
            )));
        }
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| fail(format!("{shown}: {e}")))?;
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(fail(format!(
                "entry '{shown}' is a {}; only regular files and folders are unpacked",
                match kind {
                    tar::EntryType::Symlink => "symbolic link",
                    tar::EntryType::Link => "hard link",
                    _ => "special file",
                }
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("{shown}: {e}")))?;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let mut out = std::fs::File::create(&target).map_err(|e| fail(format!("{shown}: {e}")))?;
        let room = limits.max_bytes.saturating_sub(bytes);
        let copied = std::io::copy(&mut (&mut entry).take(room + 1), &mut out)
            .map_err(|e| fail(format!("{shown}: {e}")))?;
        bytes += copied;
        if bytes > limits.max_bytes {
            return Err(fail(format!(
                "unpacks to more than the limit of {} bytes",
                limits.max_bytes
            )));
        }
        if mode & 0o111 != 0 {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755));
        }
    }
    Ok(files)
}

/// The cached environment's folder for `requirements` under `python`.
pub fn venv_dir(work_dir: &Path, python: &str, requirements: &[u8]) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(python.as_bytes());
    hash.update([0]);
    hash.update(requirements);
    let digest = hex::encode(hash.finalize());
    work_dir.join(".venvs").join(&digest[..32])
}

/// The marker file of a finished environment.
pub const VENV_READY: &str = ".pier-ready";

/// Holds the exclusive lock of one environment's build while alive.
pub struct VenvLock {
    _file: std::fs::File,
}

/// Takes the build lock of `venv` (`<venv>.lock`), polling so a stop request is seen;
/// `None` when `cancel` was set first.
pub async fn lock_venv(venv: &Path, cancel: &AtomicBool) -> std::io::Result<Option<VenvLock>> {
    use rustix::fs::{FlockOperation, flock};
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut lock_path = venv.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(lock_path))?;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Some(VenvLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, data, kind) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                header.set_size(0);
                tar.append_link(&mut header, name, "/etc/passwd").unwrap();
            } else {
                // Raw names: the builder itself refuses `..`.
                let bytes = header.as_old_mut();
                bytes.name[..name.len()].copy_from_slice(name.as_bytes());
                header.set_cksum();
                tar.append(&header, *data).unwrap();
            }
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn unpack_bytes(
        bytes: &[u8],
        limits: SourceLimits,
    ) -> (tempfile::TempDir, Result<u64, SourceError>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("sourcedir.tar.gz");
        std::fs::write(&archive, bytes).unwrap();
        let dest = dir.path().join("code");
        std::fs::create_dir(&dest).unwrap();
        let result = unpack(
            &archive,
            "file:///x/sourcedir.tar.gz",
            &dest,
            limits,
            &AtomicBool::new(false),
        );
        (dir, result)
    }

    const LIMITS: SourceLimits = SourceLimits {
        max_bytes: 1 << 20,
        max_files: 100,
    };

    #[test]
    fn unpacks_files_and_refuses_escapes_links_and_non_gzip() {
        let ok = tarball(&[
            ("train.py", b"print(1)\n", tar::EntryType::Regular),
            ("lib/util.py", b"x = 1\n", tar::EntryType::Regular),
        ]);
        let (dir, result) = unpack_bytes(&ok, LIMITS);
        assert_eq!(result.unwrap(), 2);
        assert_eq!(
            std::fs::read(dir.path().join("code/lib/util.py")).unwrap(),
            b"x = 1\n"
        );
        for (bytes, needle) in [
            (
                tarball(&[("../evil.py", b"x", tar::EntryType::Regular)]),
                "outside the source folder",
            ),
            (
                tarball(&[("link", b"", tar::EntryType::Symlink)]),
                "symbolic link",
            ),
            (b"print('not an archive')".to_vec(), "is not a tar.gz"),
            (
                tarball(&[("big", &[0u8; 2048], tar::EntryType::Regular)]),
                "limit of 1000 bytes",
            ),
        ] {
            let limits = SourceLimits {
                max_bytes: 1000,
                max_files: 10,
            };
            let (dir, result) = unpack_bytes(&bytes, limits);
            let err = result.unwrap_err().0;
            assert!(err.contains(needle), "{needle}: {err}");
            assert!(!dir.path().join("evil.py").exists());
        }
    }

    #[test]
    fn entry_points_stay_inside() {
        assert!(check_entry_point("train.py").is_ok());
        assert!(check_entry_point("src/train.py").is_ok());
        for bad in ["", "/etc/x.py", "../x.py", "a/../../x.py", "dir/"] {
            assert!(check_entry_point(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn venvs_are_keyed_by_interpreter_and_content() {
        let w = Path::new("/w");
        let a = venv_dir(w, "python3", b"numpy\n");
        assert_eq!(a, venv_dir(w, "python3", b"numpy\n"));
        assert_ne!(a, venv_dir(w, "python3", b"numpy\nscipy\n"));
        assert_ne!(a, venv_dir(w, "/usr/bin/python3.12", b"numpy\n"));
        assert!(a.starts_with("/w/.venvs"));
    }
}
