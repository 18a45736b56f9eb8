//! Running one formed batch (on a compute thread, or on the thread that submitted it when
//! [`super::RunHere`] allows): drop requests whose callers left, combine
//! the rest row-wise (`Tensor::concat_rows`), predict once, split the outputs back exactly
//! (`split_rows`) and answer each caller. Requests that cannot be combined (different
//! trailing shapes) or a model whose outputs are not row-aligned fall back to one predict
//! per request, so batching never changes an answer.
//!
//! Blocking; called on compute threads, or on a tokio worker for a batch whose measured
//! cost is under the inline budget.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use pier_runtimes::{Model, Tensor};

use super::{Entry, Pending};
use crate::error::ServeError;
use crate::metrics::{self, ModelLabels};
use crate::serving::models::PredictCost;

/// Runs `batch` and answers every caller still waiting.
pub fn run_batch(
    model: &dyn Model,
    labels: &ModelLabels,
    cost: &PredictCost,
    batch: Vec<Entry<Pending>>,
) {
    let started = Instant::now();
    let mut live = batch;
    live.retain(|e| !e.item.reply.is_closed());
    for e in &live {
        metrics::record_queue(labels, started.saturating_duration_since(e.enqueued));
    }
    if live.len() <= 1 {
        // A batch of one request runs as it came: nothing to combine or split.
        if let Some(one) = live.pop() {
            metrics::record_batch(labels, one.rows);
            let result = predict(model, one.item.inputs);
            let took = started.elapsed();
            metrics::record_compute(labels, took);
            cost.record(one.rows, took);
            let _ = one.item.reply.send(result);
        }
        return;
    }
    let counts: Vec<usize> = live.iter().map(|e| e.rows).collect();
    let (inputs, replies): (Vec<Vec<Tensor>>, Vec<_>) = live
        .into_iter()
        .map(|e| (e.item.inputs, e.item.reply))
        .unzip();
    let total: usize = counts.iter().sum();
    metrics::record_batch(labels, total);
    let results = match combine(&inputs) {
        Some(combined) => match predict_split(model, combined, &counts, total) {
            Some(per_request) => per_request,
            None => inputs.into_iter().map(|i| predict(model, i)).collect(),
        },
        None => inputs.into_iter().map(|i| predict(model, i)).collect(),
    };
    let took = started.elapsed();
    metrics::record_compute(labels, took);
    cost.record(total, took);
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// `model.predict`, with a panic answered as a model error (the thread lives on).
fn predict(model: &dyn Model, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServeError> {
    catch_unwind(AssertUnwindSafe(|| model.predict(inputs)))
        .unwrap_or_else(|_| {
            Err(pier_runtimes::RuntimeError::Predict(
                "the model panicked while predicting".into(),
            ))
        })
        .map_err(ServeError::from)
}

/// Each input concatenated across requests, or `None` when they do not line up.
fn combine(inputs: &[Vec<Tensor>]) -> Option<Vec<Tensor>> {
    let arity = inputs.first()?.len();
    if inputs.iter().any(|i| i.len() != arity) {
        return None;
    }
    (0..arity)
        .map(|k| {
            let parts: Vec<&Tensor> = inputs.iter().map(|i| &i[k]).collect();
            Tensor::concat_rows(&parts).ok()
        })
        .collect()
}

/// One predict over the combined batch, split per request; `None` when the outputs are
/// not one row per input row (the caller then runs requests one by one). A model error
/// on the combined batch is every request's answer.
fn predict_split(
    model: &dyn Model,
    combined: Vec<Tensor>,
    counts: &[usize],
    total: usize,
) -> Option<Vec<Result<Vec<Tensor>, ServeError>>> {
    let outputs = match predict(model, combined) {
        Ok(o) => o,
        Err(e) => return Some(counts.iter().map(|_| Err(e.clone())).collect()),
    };
    if outputs.iter().any(|o| o.rows() != total) {
        return None;
    }
    let mut per_request: Vec<Vec<Tensor>> = counts.iter().map(|_| Vec::new()).collect();
    for output in &outputs {
        for (slot, part) in per_request.iter_mut().zip(output.split_rows(counts).ok()?) {
            slot.push(part);
        }
    }
    Some(per_request.into_iter().map(Ok).collect())
}
