//! Small filesystem helpers: bounded hashing copies, opening only regular files, fsync of
//! files and folders, create-only rename.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result, StoreError};
use crate::fault::FaultInjector;
use crate::limits::Budget;

/// Size and hex sha256 of what was written or read.
pub(crate) struct Digested {
    pub size: u64,
    pub sha256: String,
}

/// Streams `reader` (the content of `src`) into a new file `dest` named `file` in the
/// artifact, hashing on the way, and fsyncs it. Every chunk is charged to `budget` (bytes,
/// deadline, cancel flag) and announced to the fault injector before it is written.
pub(crate) fn write_hashed(
    mut reader: impl Read,
    src: &Path,
    dest: &Path,
    file: &str,
    budget: &mut Budget,
    faults: Option<&dyn FaultInjector>,
) -> Result<Digested> {
    let mut out = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .at(dest)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        budget.check()?;
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(src, e)),
        };
        budget.charge_bytes(n as u64, || "the import".to_owned())?;
        if let Some(faults) = faults {
            faults.before_write(file, size, n).at(dest)?;
        }
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

/// A read error of a source; a [`StoreError`] raised inside a reader chain (an archive over
/// its limit) comes back as itself.
pub(crate) fn read_error(src: &Path, e: io::Error) -> StoreError {
    match e.downcast::<StoreError>() {
        Ok(store) => store,
        Err(source) => StoreError::Read {
            path: src.to_path_buf(),
            source,
        },
    }
}

/// Opens a file to import, refusing anything but a regular file: the open never blocks (a
/// FIFO swapped in after a stat is opened non-blocking, then refused by `fstat`), and files
/// of `/proc`, `/sys` and the like are refused by filesystem type.
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    let mut options = File::options();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        options.custom_flags(flags.bits() as i32);
    }
    let file = options.open(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = file.metadata().map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(StoreError::ImportRefused {
            path: path.to_path_buf(),
            reason: format!("{}, not a regular file", file_kind(&meta.file_type())),
        });
    }
    // `f_type`'s integer type differs between architectures.
    #[cfg(target_os = "linux")]
    #[allow(clippy::unnecessary_cast)]
    if let Ok(fs) = rustix::fs::fstatfs(&file)
        && is_pseudo_fs(fs.f_type as i64)
    {
        return Err(StoreError::ImportRefused {
            path: path.to_path_buf(),
            reason: "a file of a kernel pseudo-filesystem (/proc, /sys), not a model file".into(),
        });
    }
    Ok(file)
}

/// procfs, sysfs, debugfs, securityfs, cgroup, cgroup2, tracefs, configfs, efivarfs.
#[cfg(target_os = "linux")]
fn is_pseudo_fs(magic: i64) -> bool {
    [
        0x9fa0,
        0x6265_6572,
        0x6462_6720,
        0x7363_6673,
        0x0027_e0eb,
        0x6367_7270,
        0x7472_6163,
        0x6265_6570,
        0xde5e_81e4,
    ]
    .contains(&magic)
}

/// "a folder", "a FIFO", ... for messages.
pub(crate) fn file_kind(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
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
