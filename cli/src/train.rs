//! `pier train`: train a built-in algorithm on local `text/csv` channels, publish the artifact
//! to the store and print its metrics and `pier://NAME/VERSION` reference.
//!
//! Argument parsing and the progress bar live here; the work is
//! `pier_jobs::train::train_and_publish`. Training runs on a blocking thread; the
//! progress bar (indicatif, on stderr, hidden when stderr is not a terminal) is updated from
//! the training callback. The store's publish is process-safe, so this may run while
//! `pier serve` uses the same data folder.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pier_algorithms::builtin::Algorithm;
use pier_jobs::train::{TrainSpec, train_and_publish};

/// Options of `pier train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Data folder holding the store (store/ under it).
    #[arg(long, env = "PIER_DATA_DIR", default_value = "./pier-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    store: crate::store::StoreArgs,
    /// Built-in algorithm, by SageMaker image name: linear-learner, kmeans, pca,
    /// factorization-machines, xgboost.
    #[arg(long)]
    algorithm: String,
    /// The train channel: a text/csv file (no header; label first for supervised algorithms).
    #[arg(long)]
    train: PathBuf,
    /// The validation channel: a text/csv file like --train.
    #[arg(long)]
    validation: Option<PathBuf>,
    /// Hyperparameters as NAME=VALUE, SageMaker's names (e.g. predictor_type=binary_classifier).
    #[arg(long, num_args = 1.., value_name = "NAME=VALUE")]
    hyperparameters: Vec<String>,
    /// Store name to publish the trained model as (its next version).
    #[arg(long)]
    model_name: String,
}

/// Parses `NAME=VALUE` pairs; a repeated name is an error.
fn parse_hyperparameters(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("hyperparameter {pair:?} is not NAME=VALUE"))?;
        let name = name.trim();
        if name.is_empty() {
            bail!("hyperparameter {pair:?} has an empty name");
        }
        if map
            .insert(name.to_owned(), value.trim().to_owned())
            .is_some()
        {
            bail!("hyperparameter {name:?} is given twice");
        }
    }
    Ok(map)
}

pub async fn train(args: TrainArgs) -> anyhow::Result<()> {
    let algorithm: Algorithm = args.algorithm.parse()?;
    let spec = TrainSpec {
        algorithm,
        hyperparameters: parse_hyperparameters(&args.hyperparameters)?,
        train: args.train,
        validation: args.validation,
        model_name: args.model_name,
        training_job: None,
    };
    let store = args.store.open(&args.data_dir)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("training {algorithm}"));
    let progress_bar = bar.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        train_and_publish(&store, &spec, &|p| {
            progress_bar.set_length(p.total as u64);
            progress_bar.set_position(p.done as u64);
            let shown: Vec<String> = p
                .metrics
                .iter()
                .filter(|(k, _)| k.as_str() != "train:progress")
                .map(|(k, v)| format!("{k}={v:.4}"))
                .collect();
            progress_bar.set_message(shown.join(" "));
        })
    })
    .await?;
    bar.finish_and_clear();
    let outcome = outcome.context("training failed")?;
    for (name, value) in &outcome.metrics {
        println!("{name} = {value}");
    }
    println!(
        "pier://{}/{}",
        outcome.manifest.name, outcome.manifest.version
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperparameters_are_name_value_pairs() {
        let map = parse_hyperparameters(&["a=1".into(), "b = x=y".into()]).unwrap();
        assert_eq!(map["a"], "1");
        assert_eq!(map["b"], "x=y");
        assert!(parse_hyperparameters(&["novalue".into()]).is_err());
        assert!(parse_hyperparameters(&["a=1".into(), "a=2".into()]).is_err());
        assert!(parse_hyperparameters(&["=1".into()]).is_err());
    }
}
