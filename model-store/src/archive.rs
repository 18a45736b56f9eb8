//! Unpacking a model archive (SageMaker's `model.tar.gz`, or a plain `.tar`) into a staging
//! folder, safely: only regular files and folders, no entry that leaves the target (`..`, an
//! absolute path) and no links of any kind; every decompressed byte counts against the
//! import's byte limit (a gzip bomb stops at the limit) and every entry against its file limit.
//!
//! The files at the archive's top level become the artifact's files; files in sub-folders
//! (SageMaker's `code/` and the like) are read past, not stored, as Pier runs no user code.

use std::io::{self, Read};
use std::path::{Component, Path};

use crate::error::{Result, StoreError};
use crate::fsutil;
use crate::limits::Budget;
use crate::staging::Staging;

/// Largest GNU long name or pax header read.
const MAX_METADATA: u64 = 64 * 1024;

/// Tar headers and padding allowed on top of the byte limit when counting decompressed bytes.
const TAR_OVERHEAD: u64 = 1 << 20;

/// Unpacks `archive` into `staging`.
pub(crate) fn unpack(
    staging: &mut Staging,
    archive: &Path,
    gzip: bool,
    budget: &mut Budget,
) -> Result<()> {
    let file = fsutil::open_regular(archive)?;
    let limits = budget.limits();
    let compressed = Counted::new(file, limits.max_bytes, "the archive");
    let decompressed: Box<dyn Read> = if gzip {
        Box::new(Counted::new(
            flate2::read::GzDecoder::new(compressed),
            limits.max_bytes.saturating_add(TAR_OVERHEAD),
            "the decompressed archive",
        ))
    } else {
        Box::new(compressed)
    };
    let mut tar = tar::Archive::new(decompressed);
    // Raw entries: GNU long names and pax headers are read here, each bounded, instead of
    // by the tar crate, which would hold one of any size in memory.
    let entries = tar
        .entries()
        .map_err(|e| fsutil::read_error(archive, e))?
        .raw(true);
    let unsafe_entry = |entry: &str, reason| StoreError::UnsafeArchive {
        path: archive.to_path_buf(),
        entry: entry.to_owned(),
        reason,
    };
    let (mut long_name, mut pax_path) = (None::<Vec<u8>>, None::<Vec<u8>>);
    for entry in entries {
        budget.check()?;
        let mut entry = entry.map_err(|e| fsutil::read_error(archive, e))?;
        budget.charge_file(|| "the archive".to_owned())?;
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
        {
            let mut meta = Vec::new();
            (&mut entry)
                .take(MAX_METADATA + 1)
                .read_to_end(&mut meta)
                .map_err(|e| fsutil::read_error(archive, e))?;
            if meta.len() as u64 > MAX_METADATA {
                return Err(unsafe_entry(
                    "(extended header)",
                    "an extended header is larger than 64 KiB",
                ));
            }
            if kind.is_gnu_longname() {
                while meta.last() == Some(&0) {
                    meta.pop();
                }
                long_name = Some(meta);
            } else if kind.is_pax_local_extensions() {
                for ext in tar::PaxExtensions::new(&meta) {
                    let ext = ext.map_err(|e| fsutil::read_error(archive, e))?;
                    if ext.key_bytes() == b"path" {
                        pax_path = Some(ext.value_bytes().to_vec());
                    }
                }
            }
            continue;
        }
        let name_bytes = pax_path
            .take()
            .or(long_name.take())
            .unwrap_or_else(|| entry.header().path_bytes().into_owned());
        let raw = String::from_utf8_lossy(&name_bytes).into_owned();
        let Ok(path) = std::str::from_utf8(&name_bytes) else {
            return Err(unsafe_entry(&raw, "its name is not UTF-8"));
        };
        let mut parts = Vec::new();
        for component in Path::new(path).components() {
            match component {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::CurDir => {}
                Component::ParentDir => return Err(unsafe_entry(&raw, "it contains '..'")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(unsafe_entry(&raw, "it is an absolute path"));
                }
            }
        }
        if kind.is_dir() {
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(unsafe_entry(
                &raw,
                "only regular files and folders are accepted (no links, devices or FIFOs)",
            ));
        }
        let name = match parts.as_slice() {
            [name] => name.clone(),
            _ => {
                // A file in a sub-folder: read past it (its bytes still count).
                tracing::debug!(entry = %raw, "archive entry in a sub-folder is not imported");
                continue;
            }
        };
        if name.starts_with('.') {
            // macOS resource forks (`._model`) and other hidden files, as a folder import skips.
            continue;
        }
        staging.add_reader(&name, entry, archive, budget)?;
    }
    Ok(())
}

/// A reader that fails with [`StoreError::TooLarge`] once more than `limit` bytes came through.
struct Counted<R> {
    inner: R,
    limit: u64,
    seen: u64,
    what: &'static str,
}

impl<R> Counted<R> {
    fn new(inner: R, limit: u64, what: &'static str) -> Self {
        Self {
            inner,
            limit,
            seen: 0,
            what,
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Read one byte past the limit at most, to tell "exactly at" from "over".
        let left = self.limit - self.seen;
        let cap = usize::try_from(left.saturating_add(1)).unwrap_or(usize::MAX);
        let len = buf.len().min(cap);
        let n = self.inner.read(&mut buf[..len])?;
        if n as u64 > left {
            return Err(io::Error::other(StoreError::TooLarge {
                what: self.what.to_owned(),
                limit: self.limit,
                unit: "bytes",
            }));
        }
        self.seen += n as u64;
        Ok(n)
    }
}
