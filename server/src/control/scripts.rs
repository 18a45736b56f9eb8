//! CreateTrainingJob's checks by kind of image: a built-in ([`pier_jobs::training::check`]),
//! a script job ([`pier_jobs::script::check`], refused while scripts are not allowed: the
//! admin port beyond loopback without `--allow-scripts`), or another image, run in a local
//! container engine that has it, else refused with the reason
//! ([`pier_jobs::script::container::availability`]).

use pier_jobs::channels::{Channel, Location};
use pier_jobs::training::TrainingJob;
use pier_model_store::{ImportPolicy, StoreError};

use crate::error::ApiError;
use crate::state::AppState;

/// The job's channels and, for a script job, its `sagemaker_submit_directory`.
pub(super) async fn check_job(
    app: &AppState,
    job: &TrainingJob,
) -> Result<(Vec<Channel>, Option<String>), ApiError> {
    let invalid = |e: pier_jobs::JobsError| ApiError::validation(e.to_string());
    if pier_jobs::script::script_kind(job).is_some() {
        if !app.config.jobs.script.allowed {
            return Err(ApiError::validation(format!(
                "Script jobs run users' training code as the server's user, so they are off \
                 while the control plane listens beyond loopback ({}); start pier serve with \
                 --allow-scripts (and --credentials) to allow them",
                app.config.admin_addr
            )));
        }
        let script = pier_jobs::script::check(job).map_err(invalid)?;
        return Ok((script.channels, Some(script.submit_directory)));
    }
    if pier_jobs::script::is_container_job(job) {
        let image = job
            .algorithm_specification
            .training_image
            .clone()
            .unwrap_or_default();
        let engines = app.config.jobs.script.container_engines.clone();
        tokio::task::spawn_blocking(move || {
            pier_jobs::script::container::availability(&image, &engines)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::validation)?;
        if !app.config.jobs.script.allowed {
            return Err(ApiError::validation(format!(
                "Container jobs run users' images as the server's user, so they are off while \
                 the control plane listens beyond loopback ({}); start pier serve with \
                 --allow-scripts (and --credentials) to allow them",
                app.config.admin_addr
            )));
        }
        let container = pier_jobs::script::check_container(job).map_err(invalid)?;
        return Ok((container.channels, None));
    }
    let checked = pier_jobs::training::check(job).map_err(invalid)?;
    Ok((checked.channels, None))
}

/// A local `sagemaker_submit_directory` must be under the import roots, as channels are.
pub(super) fn check_submit_directory(
    policy: &ImportPolicy,
    submit_directory: Option<&str>,
) -> Result<(), ApiError> {
    let Some(uri) = submit_directory else {
        return Ok(());
    };
    if let Ok(Location::Local(path)) = Location::parse(uri)
        && let Err(StoreError::ImportRefused { reason, .. }) = policy.check(&path)
    {
        return Err(ApiError::validation(format!(
            "HyperParameters.sagemaker_submit_directory {uri} may not be read: {reason}"
        )));
    }
    Ok(())
}
