//! Where a job's model goes beside the store, as SageMaker writes it:
//! `<S3OutputPath>/<job>/output/model.tar.gz` holding the artifact under SageMaker's file
//! name. This is the local stand-in (a `file://` URL or a plain folder), written atomically
//! (a temporary file in the same folder, fsync, rename), that the full output writer
//! (`s3://` through `object_store`) replaces: [`model_location`] and [`publish_tarball`] keep
//! their signatures.
//!
//! Blocking; the runner calls it on a blocking thread.

use std::io::Write;
use std::path::PathBuf;

use crate::error::{JobsError, Result};

/// `<S3OutputPath>/<job>/output/model.tar.gz`.
pub fn model_location(output_path: &str, job: &str) -> String {
    format!(
        "{}/{job}/output/model.tar.gz",
        output_path.trim_end_matches('/')
    )
}

/// Writes `model.tar.gz` holding `file_name` = `bytes` at `location` (from
/// [`model_location`]); nothing is visible there until it is whole.
pub fn publish_tarball(location: &str, file_name: &str, bytes: &[u8]) -> Result<()> {
    let err = |reason: String| JobsError::Output {
        location: location.to_owned(),
        reason,
    };
    if location.starts_with("s3://") {
        return Err(err(
            "this build of Pier writes outputs to local paths only".into()
        ));
    }
    let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
    let dir = path.parent().ok_or_else(|| err("not a file path".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create the folder: {e}")))?;
    let tmp = dir.join(format!(
        ".model.tar.gz.{}.{:x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        header.set_cksum();
        tar.append_data(&mut header, file_name, bytes)?;
        let gz = tar.into_inner()?;
        let mut file = gz.finish()?;
        file.flush()?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(format!("cannot write: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_a_tarball_with_the_sagemaker_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let location = model_location(&format!("file://{}/", dir.path().display()), "job-1");
        assert!(
            location.ends_with("/job-1/output/model.tar.gz"),
            "{location}"
        );
        publish_tarball(&location, "xgboost-model", b"{}").unwrap();
        let path = dir.path().join("job-1/output/model.tar.gz");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&path).unwrap(),
        ));
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("xgboost-model"));
        let mut body = String::new();
        entry.read_to_string(&mut body).unwrap();
        assert_eq!(body, "{}");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left");
    }
}
