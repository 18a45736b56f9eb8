//! Small filesystem helpers: hashing copies, fsync of files and folders, create-only rename.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

/// Size and hex sha256 of what was written or read.
pub(crate) struct Digested {
    pub size: u64,
    pub sha256: String,
}

/// Streams `reader` into a new file at `dest`, hashing on the way, and fsyncs it.
pub(crate) fn write_hashed(mut reader: impl Read, dest: &Path) -> Result<Digested> {
    let mut out = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .at(dest)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).at(dest),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).at(dest)?;
        size += n as u64;
    }
    out.sync_all().at(dest)?;
    Ok(Digested {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Hashes an existing file.
pub(crate) fn hash_file(path: &Path) -> io::Result<Digested> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher)?;
    Ok(Digested {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Replaces the content of `path` with `bytes` and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).at(path)?;
    f.write_all(bytes).at(path)?;
    f.sync_all().at(path)
}

/// Fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path).and_then(|d| d.sync_all()).at(path)
}

/// Outcome of a create-only rename.
pub(crate) enum Rename {
    Done,
    TargetExists,
}

/// Renames `from` to `to` only if `to` does not exist, atomically.
///
/// On Linux this is `renameat2(RENAME_NOREPLACE)`. Where that flag is unsupported (or on
/// other systems) it falls back to `rename`, which refuses to replace a non-empty folder —
/// and the store never leaves an empty version folder behind.
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> Result<Rename> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(Rename::Done),
            Err(rustix::io::Errno::EXIST) => return Ok(Rename::TargetExists),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {}
            Err(e) => return Err(io::Error::from(e)).at(to),
        }
    }
    if to.exists() {
        return Ok(Rename::TargetExists);
    }
    match fs::rename(from, to) {
        Ok(()) => Ok(Rename::Done),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Ok(Rename::TargetExists)
        }
        Err(e) => Err(e).at(to),
    }
}
