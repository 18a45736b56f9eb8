//! Pier's companion job runner: SageMaker training jobs (and, building on them, tuning and
//! batch transform) over channels on local disk or any S3-compatible store.
//!
//! - [`channels`]: reading `InputDataConfig` channels (S3 prefix or manifest, local paths,
//!   gzip, CSV and RecordIO-protobuf) into training data.
//! - [`output`]: `<S3OutputPath>/<job>/output/model.tar.gz`, written so no reader sees it half
//!   written, and CreateModel's `ModelDataUrl` fetched and unpacked with the store's rules.
//! - the runner: a durable queue of jobs in the control-plane database, claimed atomically.

pub mod channels;
pub mod output;
