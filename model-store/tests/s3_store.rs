//! The store on object storage, against a real S3-compatible server (`s3s-fs` on a free
//! loopback port, started by the test): the local layout under a key prefix, publishers
//! racing on one name never sharing a version, a corrupted object failing its digest check
//! with the object named, the cache's LRU eviction within its bound, a publish whose upload
//! fails leaving nothing visible, S3 unreachable at open and lost then back.

#[path = "../../tests/support/s3s.rs"]
mod s3s;

use std::path::Path;
use std::sync::{Arc, Barrier};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use pier_model_store::{
    ArtifactFile, ManifestDraft, ModelStore, StoreConfig, StoreError, StoreLocation,
    VersionSelector,
};
use s3s::S3Server;

const BUCKET: &str = "pier-models";
const PREFIX: &str = "team/models";

fn config(server: &S3Server, cache: &Path, cache_bytes: u64) -> StoreConfig {
    StoreConfig {
        location: StoreLocation::S3 {
            bucket: BUCKET.into(),
            prefix: PREFIX.into(),
        },
        cache_dir: cache.to_path_buf(),
        cache_bytes,
        s3: server.config(),
    }
}

fn open(server: &S3Server, cache: &Path, cache_bytes: u64) -> ModelStore {
    ModelStore::open_with(&config(server, cache, cache_bytes)).expect("the S3 store opens")
}

fn draft() -> ManifestDraft {
    ManifestDraft {
        runtime: "onnx".into(),
        ..ManifestDraft::default()
    }
}

fn publish(store: &ModelStore, name: &str, content: &[u8]) -> u64 {
    store
        .publish(
            name,
            vec![ArtifactFile::from_bytes("model.bin", content.to_vec())],
            draft(),
        )
        .expect("publish")
        .version
}

/// Where s3s-fs keeps an object of the store.
fn object_file(server: &S3Server, key: &str) -> std::path::PathBuf {
    server.root.path().join(BUCKET).join(PREFIX).join(key)
}

#[test]
fn same_layout_round_trip_and_delete() {
    let server = S3Server::start(BUCKET);
    let cache = tempfile::tempdir().unwrap();
    let store = open(&server, cache.path(), 1 << 30);
    assert_eq!(store.url(), format!("s3://{BUCKET}/{PREFIX}"));
    assert!(store.list_names().unwrap().is_empty());
    assert_eq!(publish(&store, "iris", b"version one"), 1);
    assert_eq!(publish(&store, "iris", b"version two"), 2);
    assert_eq!(publish(&store, "other", b"x"), 1);
    // The local store's layout, under the prefix.
    for key in [
        "iris/1/manifest.json",
        "iris/1/model.bin",
        "iris/2/model.bin",
    ] {
        assert!(object_file(&server, key).is_file(), "{key}");
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(object_file(&server, "iris/2/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["version"], 2);
    assert_eq!(manifest["files"][0]["name"], "model.bin");
    assert_eq!(store.list_names().unwrap(), ["iris", "other"]);
    assert_eq!(store.list_versions("iris").unwrap(), [1, 2]);

    // Another process's view: an empty cache, filled by the first open.
    let cache2 = tempfile::tempdir().unwrap();
    let reader = open(&server, cache2.path(), 1 << 30);
    let latest = reader
        .open_version("iris", VersionSelector::Latest)
        .unwrap();
    assert_eq!(latest.manifest().version, 2);
    assert!(latest.dir().starts_with(cache2.path()));
    assert_eq!(
        std::fs::read(latest.primary_path().unwrap()).unwrap(),
        b"version two"
    );
    let one = reader
        .open_version("iris", VersionSelector::Exact(1))
        .unwrap();
    assert_eq!(
        std::fs::read(one.file_path("model.bin").unwrap()).unwrap(),
        b"version one"
    );

    store.delete_version("iris", 1).unwrap();
    assert_eq!(reader.list_versions("iris").unwrap(), [2]);
    assert!(matches!(
        reader.open_version("iris", 1).unwrap_err(),
        StoreError::NotFound {
            version: Some(1),
            ..
        }
    ));
    assert!(matches!(
        store.delete_version("iris", 1).unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(!object_file(&server, "iris/1/model.bin").exists());
    // A deleted number is never given out again.
    assert_eq!(publish(&store, "iris", b"version three"), 3);
    assert!(matches!(
        reader
            .open_version("nope", VersionSelector::Latest)
            .unwrap_err(),
        StoreError::NotFound { version: None, .. }
    ));
}

#[test]
fn a_number_someone_else_claimed_is_skipped() {
    let server = S3Server::start(BUCKET);
    let cache = tempfile::tempdir().unwrap();
    let store = open(&server, cache.path(), 1 << 30);
    assert_eq!(publish(&store, "m", b"one"), 1);
    // Another publisher's claim on 2, as if it were uploading right now (s3s-fs keeps an
    // object as a file).
    let claim = object_file(&server, "m/_claims/2/other-publisher");
    std::fs::create_dir_all(claim.parent().unwrap()).unwrap();
    std::fs::write(&claim, b"{}").unwrap();
    assert_eq!(publish(&store, "m", b"three"), 3);
    assert_eq!(
        store.list_versions("m").unwrap(),
        [1, 3],
        "2 is not visible without a manifest"
    );
    // A version folder with files but no manifest (a publish that died) is invisible too,
    // and its number is not reused.
    std::fs::create_dir_all(object_file(&server, "m/4")).unwrap();
    std::fs::write(object_file(&server, "m/4/model.bin"), b"half").unwrap();
    assert_eq!(store.list_versions("m").unwrap(), [1, 3]);
    assert_eq!(publish(&store, "m", b"five"), 5);
}

#[test]
fn concurrent_publishers_never_share_a_version() {
    const PUBLISHERS: usize = 3;
    const EACH: usize = 6;
    let server = S3Server::start(BUCKET);
    let barrier = Arc::new(Barrier::new(PUBLISHERS));
    let caches: Vec<_> = (0..PUBLISHERS)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let results: Vec<Vec<(u64, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = caches
            .iter()
            .enumerate()
            .map(|(p, cache)| {
                // Each publisher its own store: its own client, runtime and cache, as
                // separate `pier serve` replicas have.
                let store = open(&server, cache.path(), 1 << 30);
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    (0..EACH)
                        .map(|i| {
                            let content = format!("publisher {p} item {i}").repeat(50).into_bytes();
                            (publish(&store, "shared", &content), content)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut versions: Vec<u64> = results.iter().flatten().map(|(v, _)| *v).collect();
    versions.sort_unstable();
    let before = versions.len();
    versions.dedup();
    assert_eq!(
        versions.len(),
        before,
        "a version was given to two publishers: {versions:?}"
    );
    // Numbers that more than one publisher claimed (each then tried the next): the races
    // the election decided.
    let contested = std::fs::read_dir(object_file(&server, "shared/_claims"))
        .unwrap()
        .filter(|d| {
            std::fs::read_dir(d.as_ref().unwrap().path())
                .unwrap()
                .count()
                > 1
        })
        .count();
    eprintln!("{contested} version numbers were claimed by more than one publisher");
    let cache = tempfile::tempdir().unwrap();
    let reader = open(&server, cache.path(), 1 << 30);
    assert_eq!(reader.list_versions("shared").unwrap(), versions);
    // Each version holds exactly what its publisher wrote.
    for (version, content) in results.iter().flatten() {
        let artifact = reader.open_version("shared", *version).unwrap();
        assert_eq!(
            &std::fs::read(artifact.primary_path().unwrap()).unwrap(),
            content
        );
    }
}

#[test]
fn corrupted_object_fails_the_digest_check_naming_it() {
    let server = S3Server::start(BUCKET);
    let cache = tempfile::tempdir().unwrap();
    let store = open(&server, cache.path(), 1 << 30);
    publish(&store, "m", b"the real weights");
    publish(&store, "m", b"short");
    // Same size, other bytes.
    std::fs::write(object_file(&server, "m/1/model.bin"), b"the fake weights").unwrap();
    std::fs::write(object_file(&server, "m/2/model.bin"), b"longer than it was").unwrap();
    let cache2 = tempfile::tempdir().unwrap();
    let reader = open(&server, cache2.path(), 1 << 30);
    let err = reader.open_version("m", 1).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("s3://{BUCKET}/{PREFIX}/m/1/model.bin")) && text.contains("corrupt"),
        "{text}"
    );
    let err = reader.open_version("m", 2).unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
    // Nothing of either entered the cache.
    assert_eq!(reader.cache_usage().unwrap(), (0, vec![]));
    assert!(!cache2.path().join("m/1").exists());

    // A damaged cached copy is downloaded again, not served.
    std::fs::write(object_file(&server, "m/1/model.bin"), b"the real weights").unwrap();
    let first = reader.open_version("m", 1).unwrap();
    let cached = first.primary_path().unwrap();
    drop(first);
    std::fs::write(&cached, b"bit rot in cache").unwrap();
    let again = reader.open_version("m", 1).unwrap();
    assert_eq!(
        std::fs::read(again.primary_path().unwrap()).unwrap(),
        b"the real weights"
    );
}

#[test]
fn cache_evicts_least_recently_used_versions_within_its_bound() {
    let server = S3Server::start(BUCKET);
    let cache = tempfile::tempdir().unwrap();
    let publisher = open(&server, cache.path(), 1 << 30);
    for i in 1..=3u8 {
        publish(&publisher, "m", &[i; 1000]);
    }
    publish(&publisher, "big", &[9; 3000]);
    let small = tempfile::tempdir().unwrap();
    let reader = open(&server, small.path(), 2500);
    let cached = |store: &ModelStore| store.cache_usage().unwrap().1;
    let key = |v: u64| ("m".to_string(), v);
    drop(reader.open_version("m", 1).unwrap());
    drop(reader.open_version("m", 2).unwrap());
    assert_eq!(cached(&reader), [key(1), key(2)]);
    drop(reader.open_version("m", 3).unwrap());
    assert_eq!(
        cached(&reader),
        [key(2), key(3)],
        "v1 was the least recently used"
    );
    assert!(!small.path().join("m/1").exists());
    drop(reader.open_version("m", 2).unwrap());
    drop(reader.open_version("m", 1).unwrap());
    assert_eq!(
        cached(&reader),
        [key(1), key(2)],
        "v3 was the least recently used"
    );
    assert_eq!(reader.cache_usage().unwrap().0, 2000);

    // Versions being loaded are never evicted: with both held, a third does not fit.
    let one = reader.open_version("m", 1).unwrap();
    let two = reader.open_version("m", 2).unwrap();
    let err = reader.open_version("m", 3).unwrap_err();
    assert!(matches!(err, StoreError::CacheFull { .. }), "{err}");
    assert!(err.to_string().contains("--cache-bytes"), "{err}");
    drop(one);
    let three = reader.open_version("m", 3).unwrap();
    assert_eq!(
        std::fs::read(two.primary_path().unwrap()).unwrap(),
        [2; 1000]
    );
    assert_eq!(
        std::fs::read(three.primary_path().unwrap()).unwrap(),
        [3; 1000]
    );
    assert_eq!(cached(&reader), [key(2), key(3)]);
    drop((two, three));
    // A version larger than the whole bound is refused, naming the flag, and evicts nothing.
    let err = reader.open_version("big", 1).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::CacheFull {
                needed: 3000,
                limit: 2500,
                ..
            }
        ),
        "{err}"
    );

    // The index survives a restart: the same versions, the same bytes.
    drop(reader);
    let reopened = open(&server, small.path(), 2500);
    assert_eq!(
        reopened.cache_usage().unwrap(),
        (2000, vec![key(2), key(3)])
    );
}

#[test]
fn unreachable_store_at_open_is_an_error_naming_its_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::local(cache.path());
    config.location = StoreLocation::parse(&format!("s3://{BUCKET}/{PREFIX}")).unwrap();
    config.cache_dir = cache.path().to_path_buf();
    config.s3 = pier_model_store::S3Config::default()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_credentials(s3s::ACCESS_KEY, s3s::SECRET_KEY);
    let err = ModelStore::open_with(&config).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "the model store s3://{BUCKET}/{PREFIX} is unavailable"
        )),
        "{err}"
    );

    // A bucket that does not exist is named the same way.
    let server = S3Server::start(BUCKET);
    config.s3 = server.config();
    config.location = StoreLocation::parse("s3://no-such-bucket/x").unwrap();
    let err = ModelStore::open_with(&config).unwrap_err();
    assert!(err.to_string().contains("s3://no-such-bucket/x"), "{err}");
}

#[test]
fn store_lost_then_back_needs_no_reopen_and_a_failed_publish_leaves_nothing() {
    let mut server = S3Server::start(BUCKET);
    let cache = tempfile::tempdir().unwrap();
    let store = open(&server, cache.path(), 1 << 30);
    publish(&store, "m", b"one");
    let held = store.open_version("m", 1).unwrap();
    server.stop();
    let url = format!("s3://{BUCKET}/{PREFIX}");
    for err in [
        store.open_version("m", 1).unwrap_err(),
        store.list_versions("m").unwrap_err(),
        store
            .publish(
                "m",
                vec![ArtifactFile::from_bytes("model.bin", b"two".to_vec())],
                draft(),
            )
            .unwrap_err(),
    ] {
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains(&url), "{err}");
    }
    // What was opened before is still there to load.
    assert_eq!(std::fs::read(held.primary_path().unwrap()).unwrap(), b"one");
    server.restart();
    assert_eq!(store.list_versions("m").unwrap(), [1]);
    assert_eq!(publish(&store, "m", b"two"), 2);
    assert_eq!(
        std::fs::read(store.open_version("m", 2).unwrap().primary_path().unwrap()).unwrap(),
        b"two"
    );
}

/// An object store whose puts of one file name fail, as a connection lost mid-upload does.
#[derive(Debug)]
struct FailingPuts {
    inner: Arc<dyn ObjectStore>,
    file: &'static str,
}

impl std::fmt::Display for FailingPuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FailingPuts({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FailingPuts {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        if location.filename() == Some(self.file) {
            return Err(object_store::Error::Generic {
                store: "test",
                source: "connection reset while uploading".into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    async fn delete(&self, location: &ObjectPath) -> object_store::Result<()> {
        self.inner.delete(location).await
    }
    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy(&self, from: &ObjectPath, to: &ObjectPath) -> object_store::Result<()> {
        self.inner.copy(from, to).await
    }
    async fn copy_if_not_exists(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
    ) -> object_store::Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

#[test]
fn a_publish_whose_upload_fails_leaves_no_visible_trace() {
    let server = S3Server::start(BUCKET);
    let client = server.config().client(BUCKET).unwrap();
    let failing = Arc::new(FailingPuts {
        inner: client,
        file: "weights.bin",
    });
    let cache = tempfile::tempdir().unwrap();
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let store =
        ModelStore::open_object_store(url.clone(), failing, PREFIX, cache.path(), 1 << 30).unwrap();
    let files = vec![
        ArtifactFile::from_bytes("model.bin", b"first file".to_vec()),
        ArtifactFile::from_bytes("weights.bin", b"second file".to_vec()),
    ];
    let err = store.publish("m", files, draft()).unwrap_err();
    assert!(
        err.is_unavailable() && err.to_string().contains(&url),
        "{err}"
    );
    assert!(store.list_versions("m").unwrap().is_empty());
    assert!(store.list_names().unwrap().is_empty());
    assert!(matches!(
        store
            .open_version("m", VersionSelector::Latest)
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
    // The file uploaded before the failure was removed again; no manifest was written.
    assert!(!object_file(&server, "m/1/model.bin").exists());
    assert!(!object_file(&server, "m/1/manifest.json").exists());
    // Nothing staged is left behind in the cache folder.
    assert_eq!(
        std::fs::read_dir(cache.path().join(".staging"))
            .unwrap()
            .count(),
        0
    );
    // The claimed number is not given out again.
    assert_eq!(publish(&store, "m", b"ok"), 2);
}

/// s3s-fs 0.14.1 honours `If-None-Match: *` (object_store's `PutMode::Create`) one request at
/// a time; it checks and writes in two steps, so concurrent creates may both succeed, which
/// is why version numbers are claimed by the listing election (see `remote`'s docs).
#[test]
fn s3s_fs_honours_create_only_puts_sequentially() {
    let server = S3Server::start(BUCKET);
    let client = server.config().client(BUCKET).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = ObjectPath::from("probe/marker");
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    rt.block_on(async {
        client
            .put_opts(&key, PutPayload::from_static(b"first"), create.clone())
            .await
            .unwrap();
        let err = client
            .put_opts(&key, PutPayload::from_static(b"second"), create)
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::AlreadyExists { .. }),
            "{err}"
        );
        let got = client.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"first");
    });
}

#[test]
fn concurrent_loads_of_one_version_download_it_once() {
    let server = S3Server::start(BUCKET);
    let cache = tempfile::tempdir().unwrap();
    let publisher = open(&server, cache.path(), 1 << 30);
    publish(&publisher, "m", &[7; 100_000]);
    // Room for exactly one copy: two downloads at once would not both fit.
    let small = tempfile::tempdir().unwrap();
    let reader = open(&server, small.path(), 100_000);
    let barrier = Barrier::new(4);
    let dirs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    reader.open_version("m", 1).unwrap().dir().to_path_buf()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(dirs.iter().all(|d| *d == dirs[0]), "{dirs:?}");
    assert_eq!(
        reader.cache_usage().unwrap(),
        (100_000, vec![("m".to_string(), 1)])
    );
    assert_eq!(
        std::fs::read_dir(small.path().join(".staging"))
            .unwrap()
            .count(),
        0
    );
}
