//! Random search: each range sampled uniformly over its scaled interval (so a Logarithmic
//! range is log-uniform), a point already tried drawn again while new ones remain likely.

use super::{Observation, Point, Space, key, seen};

/// Tries per point before a repeat is accepted (a small discrete space may run out).
const TRIES: usize = 64;

/// `n` random points, not repeating the history where the space allows.
pub fn propose(
    space: &Space,
    history: &[Observation],
    n: usize,
    rng: &mut fastrand::Rng,
) -> Vec<Point> {
    let mut seen = seen(space, history);
    let exhaustible = space.cardinality();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if exhaustible.is_some_and(|c| seen.len() as u64 >= c) {
            break;
        }
        let mut p = sample(space, rng);
        for _ in 0..TRIES {
            if !seen.contains(&key(space, &p)) {
                break;
            }
            p = sample(space, rng);
        }
        seen.insert(key(space, &p));
        out.push(p);
    }
    out
}

/// One uniform point.
pub fn sample(space: &Space, rng: &mut fastrand::Rng) -> Point {
    let u: Vec<f64> = space.ranges.iter().map(|_| rng.f64()).collect();
    space.point_at(&u)
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, Range};
    use super::*;

    #[test]
    fn seeded_log_uniform_and_without_repeats() {
        let space = Space::new(vec![
            Range::continuous("eta", "0.0001", "1", Some("Logarithmic")).unwrap(),
            Range::integer("depth", "1", "3", None).unwrap(),
            Range::categorical("obj", &["a".into(), "b".into()]).unwrap(),
        ])
        .unwrap();
        let a = propose(&space, &[], 400, &mut fastrand::Rng::with_seed(7));
        let b = propose(&space, &[], 400, &mut fastrand::Rng::with_seed(7));
        assert_eq!(a, b, "same seed, same points");
        let c = propose(&space, &[], 400, &mut fastrand::Rng::with_seed(8));
        assert_ne!(a, c);
        // Log-uniform: about a quarter of the points in each decade of 1e-4..1.
        let small = a
            .iter()
            .filter(|p| p["eta"].parse::<f64>().unwrap() < 1e-3)
            .count();
        assert!((60..=140).contains(&small), "{small} of 400 below 1e-3");
        for d in ["1", "2", "3"] {
            let k = a.iter().filter(|p| p["depth"] == d).count();
            assert!((90..=180).contains(&k), "depth {d}: {k}");
        }
        // A discrete space runs out instead of repeating.
        let small = Space::new(vec![Range::integer("d", "1", "3", None).unwrap()]).unwrap();
        let history = vec![Observation {
            point: [("d".to_string(), "2".to_string())].into(),
            outcome: Outcome::Value(1.0),
        }];
        let mut got: Vec<String> = propose(&small, &history, 5, &mut fastrand::Rng::with_seed(1))
            .into_iter()
            .map(|p| p["d"].clone())
            .collect();
        got.sort();
        assert_eq!(got, ["1", "3"]);
    }
}
