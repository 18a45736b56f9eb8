//! Grid search: every combination of the integer and categorical ranges, in SageMaker's
//! order (ranges as the space orders them, the last one varying fastest), each tried once.
//! Continuous ranges are refused, and so is a grid larger than [`MAX_GRID`].

use super::{Domain, Observation, Point, Space, StrategyError, key, seen};

/// Most points a grid may have (SageMaker's cap on a tuning job's training jobs).
pub const MAX_GRID: u64 = 500;

/// Checks that `space` is a grid Pier runs; returns its size.
pub fn check(space: &Space) -> Result<u64, StrategyError> {
    if let Some(r) = space
        .ranges
        .iter()
        .find(|r| matches!(r.domain, Domain::Continuous { .. }))
    {
        return Err(StrategyError::new(format!(
            "The Grid strategy takes only categorical and integer ranges; ContinuousParameterRanges \
             names {:?}",
            r.name
        )));
    }
    match space.cardinality() {
        Some(n) if n <= MAX_GRID => Ok(n),
        Some(n) => Err(StrategyError::new(format!(
            "The grid of ParameterRanges has {n} combinations; the Grid strategy allows at most \
             {MAX_GRID}"
        ))),
        None => Err(StrategyError::new(format!(
            "The grid of ParameterRanges has more than {} combinations; the Grid strategy allows \
             at most {MAX_GRID}",
            u64::MAX
        ))),
    }
}

/// The `i`-th point of the grid.
pub fn point(space: &Space, mut i: u64) -> Point {
    let mut values = vec![String::new(); space.ranges.len()];
    for (slot, r) in values.iter_mut().zip(&space.ranges).rev() {
        let n = r.cardinality().unwrap_or(1);
        let j = i % n;
        i /= n;
        *slot = match &r.domain {
            Domain::Integer { min, .. } => (min + j as i64).to_string(),
            Domain::Categorical(v) => v[j as usize].clone(),
            Domain::Continuous { min, .. } => super::space::format_float(*min),
        };
    }
    space
        .ranges
        .iter()
        .zip(values)
        .map(|(r, v)| (r.name.clone(), v))
        .collect()
}

/// The next `n` points of the grid not in the history.
pub fn propose(space: &Space, history: &[Observation], n: usize) -> Vec<Point> {
    let Ok(size) = check(space) else {
        return Vec::new();
    };
    let seen = seen(space, history);
    (0..size)
        .map(|i| point(space, i))
        .filter(|p| !seen.contains(&key(space, p)))
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, Range};
    use super::*;

    #[test]
    fn every_combination_once_in_order_and_too_large_is_named() {
        let space = Space::new(vec![
            Range::integer("depth", "2", "4", None).unwrap(),
            Range::categorical("booster", &["gbtree".into(), "dart".into()]).unwrap(),
        ])
        .unwrap();
        assert_eq!(check(&space).unwrap(), 6);
        let first = propose(&space, &[], 4);
        let pairs: Vec<(String, String)> = first
            .iter()
            .map(|p| (p["depth"].clone(), p["booster"].clone()))
            .collect();
        let want = [
            ("2", "gbtree"),
            ("2", "dart"),
            ("3", "gbtree"),
            ("3", "dart"),
        ];
        assert_eq!(pairs, want.map(|(a, b)| (a.to_string(), b.to_string())));
        let history: Vec<Observation> = first
            .into_iter()
            .map(|point| Observation {
                point,
                outcome: Outcome::Pending,
            })
            .collect();
        let rest = propose(&space, &history, 10);
        assert_eq!(rest.len(), 2, "{rest:?}");
        assert_eq!(rest[1]["depth"], "4");
        assert!(propose(&space, &[history, vec![]].concat(), 0).is_empty());

        let big = Space::new(vec![
            Range::integer("a", "1", "100", None).unwrap(),
            Range::integer("b", "1", "10", None).unwrap(),
        ])
        .unwrap();
        let e = check(&big).unwrap_err().to_string();
        assert!(e.contains("1000 combinations"), "{e}");
        let cont = Space::new(vec![Range::continuous("eta", "0", "1", None).unwrap()]).unwrap();
        assert!(check(&cont).unwrap_err().to_string().contains("\"eta\""));
    }
}
