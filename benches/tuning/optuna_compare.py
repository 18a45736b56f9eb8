"""Optuna's TPE (its default sampler) and random search on the functions of Pier's
`jobs/examples/tuning_bench.rs` (Branin, Hartmann-6, the mixed integer/categorical/log
function), 10 seeds (or --seeds N from --first-seed S), budgets 20 and 50, sequential and 4
in parallel (ask four trials, then tell four), printing the same table of median simple regret.
Not run in CI:

    pip install optuna        # into the venv; not in tests/python/requirements.txt
    .venv/bin/python benches/tuning/optuna_compare.py [--seeds 20] [--first-seed 0] [--per-seed]
"""

import argparse
import math
import statistics
import time

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

BUDGET = 50


def branin(t):
    x1, x2 = t.suggest_float("x1", -5, 10), t.suggest_float("x2", 0, 15)
    b, c = 5.1 / (4 * math.pi ** 2), 5 / math.pi
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
     [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(t):
    x = [t.suggest_float(f"x{i}", 0, 1) for i in range(6)]
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6)))
                for i in range(4))


def mixed(t):
    a = t.suggest_int("a", -10, 10)
    b = t.suggest_int("b", 0, 20)
    act = t.suggest_categorical("act", ["relu", "tanh", "sigmoid", "linear"])
    rate = t.suggest_float("rate", 1e-4, 1, log=True)
    offset = {"relu": 0.0, "tanh": 0.5, "sigmoid": 1.0, "linear": 2.0}[act]
    return (a - 3) ** 2 / 10 + (b - 12) ** 2 / 20 + offset + (math.log10(rate) + 2.5) ** 2


PROBLEMS = [("branin", branin, 0.397887), ("hartmann6", hartmann6, -3.32237), ("mixed", mixed, 0.0)]


def run(f, sampler, batch):
    study = optuna.create_study(direction="minimize", sampler=sampler)
    best, so_far = [], math.inf
    while len(best) < BUDGET:
        trials = [study.ask() for _ in range(min(batch, BUDGET - len(best)))]
        values = [f(t) for t in trials]
        for t, v in zip(trials, values):
            study.tell(t, v)
            so_far = min(so_far, v)
            best.append(so_far)
    return best


def main():
    ap = argparse.ArgumentParser(description="Optuna's samplers on tuning_bench's functions")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--per-seed", action="store_true",
                    help="each seed's regret at 20 and 50 and the quartiles")
    ap.add_argument("function", nargs="?", choices=[p[0] for p in PROBLEMS])
    args = ap.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    started, cpu = time.time(), time.process_time()
    print(f"median simple regret over {args.seeds} seeds ({seeds[0]}..={seeds[-1]}; "
          f"Optuna {optuna.__version__})")
    print(f"{'function':<10} {'mode':<9} {'strategy':<10} {'budget 20':>12} {'budget 50':>12}")
    for name, f, optimum in PROBLEMS:
        if args.function and name != args.function:
            continue
        for mode, batch in (("seq", 1), ("par4", 4)):
            for label, make in (("random", lambda s: optuna.samplers.RandomSampler(seed=s)),
                                ("tpe", lambda s: optuna.samplers.TPESampler(seed=s))):
                t0 = time.time()
                runs = [run(f, make(seed), batch) for seed in seeds]
                at = lambda n: statistics.median(r[n - 1] - optimum for r in runs)
                print(f"{name:<10} {mode:<9} {label:<10} {at(20):>12.5f} {at(50):>12.5f}"
                      f"   ({time.time() - t0:.1f} s)")
                if args.per_seed:
                    for n in (20, 50):
                        r = [run_[n - 1] - optimum for run_ in runs]
                        q = sorted(r)
                        at_q = lambda frac: q[round((len(q) - 1) * frac)]
                        print(f"    @{n}: quartiles {at_q(0.25):.4f} / {statistics.median(r):.4f} / "
                              f"{at_q(0.75):.4f}; per seed {' '.join(f'{v:.4f}' for v in r)}")
    print(f"wall {time.time() - started:.1f} s, cpu {time.process_time() - cpu:.1f} s")


if __name__ == "__main__":
    main()
