//! `pier jobs list` and `pier jobs describe` for hyperparameter tuning jobs: the list of
//! searches (ListHyperParameterTuningJobs), and a search's description with its leaderboard
//! (ListTrainingJobsForHyperParameterTuningJob by objective, best first) and the best job's
//! hyperparameters.

use serde_json::{Value, json};

use crate::{AdminArgs, api};

/// Prints the tuning jobs (all pages), newest first; nothing when there are none.
pub async fn list(
    admin: &AdminArgs,
    status: Option<&str>,
    name_contains: Option<&str>,
) -> anyhow::Result<()> {
    let mut token: Option<String> = None;
    let mut header = false;
    loop {
        let mut body = json!({ "MaxResults": 100 });
        if let Some(s) = status {
            body["StatusEquals"] = json!(s);
        }
        if let Some(n) = name_contains {
            body["NameContains"] = json!(n);
        }
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = api::call(
            &admin.admin_url,
            admin.token.as_deref(),
            "ListHyperParameterTuningJobs",
            body,
        )
        .await?;
        for job in page["HyperParameterTuningJobSummaries"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if !header {
                println!(
                    "\n{:<32} {:<11} {:<10} {:>5} {:>6} {:>6} CREATED",
                    "TUNING JOB", "STATUS", "STRATEGY", "DONE", "FAILED", "TOTAL"
                );
                header = true;
            }
            let c = &job["TrainingJobStatusCounters"];
            let n = |k: &str| c[k].as_i64().unwrap_or(0);
            println!(
                "{:<32} {:<11} {:<10} {:>5} {:>6} {:>6} {:.0}",
                job["HyperParameterTuningJobName"].as_str().unwrap_or(""),
                job["HyperParameterTuningJobStatus"].as_str().unwrap_or(""),
                job["Strategy"].as_str().unwrap_or(""),
                n("Completed"),
                n("NonRetryableError"),
                job["ResourceLimits"]["MaxNumberOfTrainingJobs"]
                    .as_i64()
                    .map_or("-".to_owned(), |v| v.to_string()),
                job["CreationTime"].as_f64().unwrap_or(0.0)
            );
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(()),
        }
    }
}

/// Describes a tuning job: its status and counters, the leaderboard, the best job's
/// hyperparameters. `Ok(None)` when no tuning job has that name.
pub async fn describe(admin: &AdminArgs, name: &str) -> anyhow::Result<Option<String>> {
    let job = match api::call(
        &admin.admin_url,
        admin.token.as_deref(),
        "DescribeHyperParameterTuningJob",
        json!({ "HyperParameterTuningJobName": name }),
    )
    .await
    {
        Ok(job) => job,
        Err(e) if e.to_string().contains("Requested resource not found.") => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut children = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "HyperParameterTuningJobName": name, "MaxResults": 100,
                               "SortBy": "FinalObjectiveMetricValue" });
        body["SortOrder"] = json!(
            if job["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["Type"]
                == "Minimize"
            {
                "Ascending"
            } else {
                "Descending"
            }
        );
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = api::call(
            &admin.admin_url,
            admin.token.as_deref(),
            "ListTrainingJobsForHyperParameterTuningJob",
            body,
        )
        .await?;
        children.extend(
            page["TrainingJobSummaries"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    Ok(Some(render(&job, &children)))
}

/// The description as printed: a header, the leaderboard (in the order given: best first),
/// the best job's hyperparameters.
pub fn render(job: &Value, children: &[Value]) -> String {
    let mut out = String::new();
    let config = &job["HyperParameterTuningJobConfig"];
    let objective = &config["HyperParameterTuningJobObjective"];
    out.push_str(&format!(
        "{}: {} ({} search, {} {})\n",
        job["HyperParameterTuningJobName"].as_str().unwrap_or(""),
        job["HyperParameterTuningJobStatus"].as_str().unwrap_or(""),
        config["Strategy"].as_str().unwrap_or(""),
        objective["Type"].as_str().unwrap_or(""),
        objective["MetricName"].as_str().unwrap_or("")
    ));
    if let Some(reason) = job["FailureReason"].as_str() {
        out.push_str(&format!("FailureReason: {reason}\n"));
    }
    let c = &job["TrainingJobStatusCounters"];
    out.push_str(&format!(
        "training jobs: {} completed, {} in progress, {} failed, {} stopped\n",
        c["Completed"], c["InProgress"], c["NonRetryableError"], c["Stopped"]
    ));
    out.push_str(&format!(
        "\n{:>4} {:<45} {:<11} {:>12}  HYPERPARAMETERS\n",
        "RANK", "TRAINING JOB", "STATUS", "OBJECTIVE"
    ));
    for (i, child) in children.iter().enumerate() {
        let value = child["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            .as_f64()
            .map_or("-".to_owned(), |v| format!("{v:.6}"));
        let hp: Vec<String> = child["TunedHyperParameters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        out.push_str(&format!(
            "{:>4} {:<45} {:<11} {:>12}  {}\n",
            i + 1,
            child["TrainingJobName"].as_str().unwrap_or(""),
            child["TrainingJobStatus"].as_str().unwrap_or(""),
            value,
            hp.join(" ")
        ));
    }
    let best = &job["BestTrainingJob"];
    if let Some(name) = best["TrainingJobName"].as_str() {
        out.push_str(&format!(
            "\nbest: {name} ({} = {})\n",
            best["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"]
                .as_str()
                .unwrap_or(""),
            best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        ));
        for (k, v) in best["TunedHyperParameters"]
            .as_object()
            .into_iter()
            .flatten()
        {
            out.push_str(&format!("  {k} = {}\n", v.as_str().unwrap_or("")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaderboard_is_printed_best_first_with_the_best_hyperparameters() {
        let job = json!({
            "HyperParameterTuningJobName": "t", "HyperParameterTuningJobStatus": "Completed",
            "HyperParameterTuningJobConfig": {"Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"}},
            "TrainingJobStatusCounters": {"Completed": 2, "InProgress": 0, "NonRetryableError": 0, "Stopped": 0},
            "BestTrainingJob": {"TrainingJobName": "t-002-aa",
                "TunedHyperParameters": {"eta": "0.1", "max_depth": "3"},
                "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "validation:auc", "Value": 0.97}}
        });
        let children = [
            json!({"TrainingJobName": "t-002-aa", "TrainingJobStatus": "Completed",
                   "TunedHyperParameters": {"eta": "0.1"},
                   "FinalHyperParameterTuningJobObjectiveMetric": {"Value": 0.97}}),
            json!({"TrainingJobName": "t-001-bb", "TrainingJobStatus": "Failed",
                   "TunedHyperParameters": {"eta": "0.4"}}),
        ];
        let text = render(&job, &children);
        let first = text.find("t-002-aa").unwrap();
        assert!(first < text.find("t-001-bb").unwrap(), "{text}");
        assert!(
            text.contains("0.970000") && text.contains("   1 t-002-aa"),
            "{text}"
        );
        assert!(
            text.contains("best: t-002-aa (validation:auc = 0.97)"),
            "{text}"
        );
        assert!(text.contains("  max_depth = 3"), "{text}");
    }
}
