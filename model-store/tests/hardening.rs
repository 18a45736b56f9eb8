//! Imports of untrusted local paths and archives, staging leftovers, and a full disk.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_model_store::{
    ArtifactFile, Budget, Cancel, DiskFullAfter, FaultInjector, ImportLimits, ImportPolicy,
    LocalSource, ManifestDraft, ModelStore, StoreError,
};

fn draft() -> ManifestDraft {
    ManifestDraft {
        runtime: "onnx".into(),
        ..Default::default()
    }
}

fn store() -> (tempfile::TempDir, ModelStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn staging_entries(store: &ModelStore) -> Vec<PathBuf> {
    fs::read_dir(store.root().join(".staging"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn limits(max_bytes: u64, max_files: u64) -> ImportLimits {
    ImportLimits {
        max_bytes,
        max_files,
        timeout: Some(Duration::from_secs(60)),
    }
}

/// Scans `path` and stages it within `limits`; returns the staged file names.
fn import(
    store: &ModelStore,
    path: &Path,
    limits: ImportLimits,
) -> Result<Vec<String>, StoreError> {
    let source = LocalSource::scan(path, &ImportPolicy::anywhere(), &limits)?;
    let mut budget = Budget::new(limits, Cancel::new());
    let mut staging = store.stage()?;
    staging.add_source(&source, &mut budget)?;
    let mut names: Vec<String> = staging.files().iter().map(|f| f.name.clone()).collect();
    names.sort();
    Ok(names)
}

#[test]
fn devices_fifos_and_system_folders_are_refused_without_blocking() {
    let (t, store) = store();
    for path in ["/dev/zero", "/proc/self/status", "/", "/sys/kernel"] {
        let err = import(&store, Path::new(path), ImportLimits::default()).unwrap_err();
        assert!(
            matches!(err, StoreError::ImportRefused { .. }),
            "{path}: {err}"
        );
    }
    // Opened directly (as if swapped in after the scan), a device is refused by fstat.
    let mut staging = store.stage().unwrap();
    let err = staging
        .add_path("m", Path::new("/dev/zero"), &mut Budget::unlimited())
        .unwrap_err();
    assert!(err.to_string().contains("character device"), "{err}");
    drop(staging);

    let fifo = t.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let err = import(&store, &fifo, ImportLimits::default()).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    let mut staging = store.stage().unwrap();
    let err = staging
        .add_path("m", &fifo, &mut Budget::unlimited())
        .unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    drop(staging);
    assert!(started.elapsed() < Duration::from_secs(5), "a FIFO blocked");

    let folder = t.path().join("with-fifo");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("model.onnx"), b"x").unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(folder.join("p"))
            .status()
            .unwrap()
            .success()
    );
    let err = import(&store, &folder, ImportLimits::default()).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    assert!(
        staging_entries(&store).is_empty(),
        "nothing left in staging"
    );
}

#[test]
fn byte_and_file_limits_hold_while_copying() {
    let (t, store) = store();
    let big = t.path().join("big.bin");
    fs::write(&big, vec![1u8; 300_000]).unwrap();
    let err = import(&store, &big, limits(100_000, 10)).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");

    // The scan saw a small file; it grew before the copy: the copy stops at the limit.
    let growing = t.path().join("growing.bin");
    fs::write(&growing, vec![1u8; 10]).unwrap();
    let source =
        LocalSource::scan(&growing, &ImportPolicy::anywhere(), &limits(100_000, 10)).unwrap();
    fs::write(&growing, vec![1u8; 300_000]).unwrap();
    let mut staging = store.stage().unwrap();
    let err = staging
        .add_source(
            &source,
            &mut Budget::new(limits(100_000, 10), Cancel::new()),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    drop(staging);

    let many = t.path().join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..50 {
        fs::write(many.join(format!("f{i}")), b"").unwrap();
    }
    let err = import(&store, &many, limits(1 << 20, 20)).unwrap_err();
    assert!(err.to_string().contains("20 files"), "{err}");
    assert!(staging_entries(&store).is_empty());
}

#[test]
fn cancel_and_timeout_stop_an_import_and_clean_staging() {
    let (t, store) = store();
    let src = t.path().join("m.bin");
    fs::write(&src, vec![3u8; 1 << 20]).unwrap();
    let cancel = Cancel::new();
    cancel.cancel();
    let mut staging = store.stage().unwrap();
    let err = staging
        .add_path(
            "m.bin",
            &src,
            &mut Budget::new(ImportLimits::default(), cancel),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Cancelled), "{err}");
    drop(staging);

    let no_time = ImportLimits {
        timeout: Some(Duration::ZERO),
        ..ImportLimits::default()
    };
    let mut staging = store.stage().unwrap();
    let err = staging
        .add_path("m.bin", &src, &mut Budget::new(no_time, Cancel::new()))
        .unwrap_err();
    assert!(matches!(err, StoreError::TimedOut { .. }), "{err}");
    drop(staging);
    assert!(staging_entries(&store).is_empty());
}

#[test]
fn import_roots_confine_paths_and_links() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("models");
    let outside = t.path().join("secret");
    fs::create_dir_all(root.join("a")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(root.join("a/model.onnx"), b"m").unwrap();
    fs::write(outside.join("key"), b"k").unwrap();
    std::os::unix::fs::symlink(outside.join("key"), root.join("a/link.onnx")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    let policy = ImportPolicy::under_roots(std::slice::from_ref(&root)).unwrap();

    let ok = policy.check(&root.join("a/model.onnx")).unwrap();
    assert!(ok.starts_with(fs::canonicalize(&root).unwrap()));
    for bad in [
        outside.join("key"),
        root.join("../secret/key"),
        root.join("escape/key"),
        root.join("a/link.onnx"),
        PathBuf::from("/etc/passwd"),
    ] {
        let err = policy.check(&bad).unwrap_err();
        assert!(
            err.to_string().contains("outside the import roots"),
            "{}: {err}",
            bad.display()
        );
    }
    // A folder under the root holding a link that leaves it is refused as a whole.
    let err = LocalSource::scan(&root.join("a"), &policy, &ImportLimits::default()).unwrap_err();
    assert!(
        err.to_string().contains("outside the import roots"),
        "{err}"
    );

    let refused = ImportPolicy::refused("local imports are off");
    assert!(
        refused
            .check(&root.join("a/model.onnx"))
            .unwrap_err()
            .to_string()
            .contains("local imports are off")
    );
}

/// A gzip tar of `entries` (name, bytes); names go in raw, so `..` and absolute paths can be
/// written as an attacker would.
fn tar_gz(path: &Path, entries: &[(&str, &[u8], tar::EntryType)]) {
    let file = fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, data, kind) in entries {
        let mut header = tar::Header::new_gnu();
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if kind.is_symlink() || kind.is_hard_link() {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn model_tar_gz_unpacks_top_level_files_only() {
    let (t, store) = store();
    let archive = t.path().join("model.tar.gz");
    tar_gz(
        &archive,
        &[
            ("./", b"", tar::EntryType::Directory),
            ("./xgboost-model", b"trees", tar::EntryType::Regular),
            ("code/inference.py", b"print()", tar::EntryType::Regular),
            ("._xgboost-model", b"fork", tar::EntryType::Regular),
        ],
    );
    assert_eq!(
        import(&store, &archive, ImportLimits::default()).unwrap(),
        vec!["xgboost-model".to_string()]
    );
    // A folder holding only the archive is the archive.
    let folder = t.path().join("s3-prefix");
    fs::create_dir(&folder).unwrap();
    fs::copy(&archive, folder.join("model.tar.gz")).unwrap();
    let source =
        LocalSource::scan(&folder, &ImportPolicy::anywhere(), &ImportLimits::default()).unwrap();
    assert!(matches!(source, LocalSource::Archive { gzip: true, .. }));

    let mut staging = store.stage().unwrap();
    staging
        .add_source(&source, &mut Budget::unlimited())
        .unwrap();
    let manifest = staging.publish("xgb", draft()).unwrap();
    assert_eq!(manifest.files[0].name, "xgboost-model");
    let opened = store.open_version("xgb", Some(manifest.version)).unwrap();
    assert_eq!(fs::read(opened.primary_path().unwrap()).unwrap(), b"trees");
    assert!(staging_entries(&store).is_empty());
}

#[test]
fn archives_that_leave_their_target_or_hold_links_are_refused() {
    let (t, store) = store();
    let cases: &[(&str, tar::EntryType, &str)] = &[
        ("../evil", tar::EntryType::Regular, "'..'"),
        ("a/../../evil", tar::EntryType::Regular, "'..'"),
        ("/etc/cron.d/evil", tar::EntryType::Regular, "absolute"),
        ("link", tar::EntryType::Symlink, "only regular files"),
        ("hard", tar::EntryType::Link, "only regular files"),
        ("fifo", tar::EntryType::Fifo, "only regular files"),
        ("dev", tar::EntryType::Char, "only regular files"),
    ];
    for (i, (name, kind, expected)) in cases.iter().enumerate() {
        let archive = t.path().join(format!("bad{i}.tar.gz"));
        tar_gz(
            &archive,
            &[
                ("model.onnx", b"m", tar::EntryType::Regular),
                (name, b"x", *kind),
            ],
        );
        let err = import(&store, &archive, ImportLimits::default()).unwrap_err();
        assert!(
            matches!(err, StoreError::UnsafeArchive { .. }) && err.to_string().contains(expected),
            "{name}: {err}"
        );
        assert!(!t.path().join("evil").exists());
    }
    assert!(staging_entries(&store).is_empty());
}

#[test]
fn a_gzip_bomb_stops_at_the_byte_limit() {
    let (t, store) = store();
    let archive = t.path().join("bomb.tar.gz");
    let zeros = vec![0u8; 64 << 20];
    tar_gz(&archive, &[("model.onnx", &zeros, tar::EntryType::Regular)]);
    assert!(
        fs::metadata(&archive).unwrap().len() < 1 << 20,
        "it compresses"
    );
    let started = Instant::now();
    let err = import(&store, &archive, limits(4 << 20, 100)).unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(staging_entries(&store).is_empty());

    // A long-name header is not held in memory past 64 KiB either.
    let long = t.path().join("longname.tar");
    let mut file = fs::File::create(&long).unwrap();
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(1 << 20);
    header.set_cksum();
    file.write_all(header.as_bytes()).unwrap();
    file.write_all(&vec![b'a'; 1 << 20]).unwrap();
    drop(file);
    let err = import(&store, &long, ImportLimits::default()).unwrap_err();
    assert!(err.to_string().contains("64 KiB"), "{err}");
}

#[test]
fn a_full_disk_leaves_no_version_and_no_staging() {
    let (t, store) = store();
    let src = t.path().join("model.onnx");
    fs::write(&src, vec![9u8; 300_000]).unwrap();
    store.set_fault_injector(Some(Arc::new(DiskFullAfter::new(100_000))));
    let err = store
        .publish(
            "m",
            vec![ArtifactFile::from_path("model.onnx", &src)],
            draft(),
        )
        .unwrap_err();
    assert!(err.is_store_failure(), "{err}");
    match &err {
        StoreError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{err}")
        }
        other => panic!("{other}"),
    }
    assert!(store.list_versions("m").unwrap().is_empty());
    assert!(!store.root().join("m/1").exists());
    assert!(staging_entries(&store).is_empty());

    store.set_fault_injector(None);
    let m = store
        .publish(
            "m",
            vec![ArtifactFile::from_path("model.onnx", &src)],
            draft(),
        )
        .unwrap();
    assert_eq!(m.version, 1);
}

/// A fault injector that records the files it saw (to show it is called per chunk).
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<(String, u64)>>);

impl FaultInjector for Recorder {
    fn before_write(&self, file: &str, offset: u64, _len: usize) -> std::io::Result<()> {
        self.0.lock().unwrap().push((file.to_owned(), offset));
        Ok(())
    }
}

#[test]
fn the_fault_injector_sees_every_chunk() {
    let (_t, store) = store();
    let recorder = Arc::new(Recorder::default());
    store.set_fault_injector(Some(recorder.clone()));
    store
        .publish(
            "m",
            vec![ArtifactFile::from_bytes("w.bin", vec![0u8; 200_000])],
            draft(),
        )
        .unwrap();
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&("w.bin".to_string(), 0)));
    assert!(seen.len() >= 3, "{seen:?}");
}

/// Start time (field 22 of /proc/PID/stat) of a process.
fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn sweeping_removes_dead_writers_staging_and_never_a_live_one() {
    let (_t, store) = store();
    let staging = store.root().join(".staging");
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let live = staging.join(format!("{}.{}-1-0", child.id(), start_time(child.id())));
    let reused = staging.join(format!("{}.{}-1-1", child.id(), start_time(child.id()) + 7));
    let dead = staging.join(format!("{}.1-1-2", u32::MAX - 3));
    for dir in [&live, &reused, &dead] {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("w.bin"), b"partial").unwrap();
    }
    // This process's own staging, in use, is kept too.
    let mine = store.stage().unwrap();

    assert_eq!(store.sweep_staging().unwrap(), 2);
    assert!(live.exists(), "a live writer's staging is never touched");
    assert!(
        !reused.exists(),
        "same pid, other start time: another process"
    );
    assert!(!dead.exists());
    assert_eq!(staging_entries(&store).len(), 2);

    child.kill().unwrap();
    child.wait().unwrap();
    // Opening the store sweeps.
    let reopened = ModelStore::open(store.root()).unwrap();
    assert!(!live.exists(), "its writer is gone now");
    assert_eq!(staging_entries(&reopened).len(), 1);
    drop(mine);
    assert!(staging_entries(&reopened).is_empty());
}

#[test]
fn the_sweeper_thread_sweeps_and_stops() {
    let (_t, store) = store();
    let dead = store
        .root()
        .join(".staging")
        .join(format!("{}.1-1-0", u32::MAX - 3));
    let sweeper = store.spawn_sweeper(Duration::from_millis(20)).unwrap();
    fs::create_dir_all(&dead).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.exists() {
        assert!(Instant::now() < deadline, "the sweeper never swept");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    drop(sweeper);
    assert!(started.elapsed() < Duration::from_secs(5));
}
