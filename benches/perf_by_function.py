#!/usr/bin/env python3
"""The server's CPU time a request, by function, from `auth_overhead.sh`'s PERF recordings.

usage: benches/perf_by_function.py DIR MODE [MODE ...]

DIR holds perf.MODE.ROUND (`perf record -e cpu-clock` of the server over a measured run) and
requests.MODE.ROUND (the requests answered in that run). For each mode, the sampled CPU time
of each function (cpu-clock periods are nanoseconds) is divided by the requests and averaged
over the rounds. Printed: each mode's total, split into the server's own code, the kernel and
the C library, against the first mode; then the functions whose share moved most.
"""

import collections
import glob
import os
import subprocess
import sys

TOP = 25


def per_request(recording, requests):
    """Microseconds a request by (object, symbol), from one recording."""
    report = subprocess.run(
        ["perf", "report", "-i", recording, "--no-children", "-F", "period,dso,sym",
         "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout
    us = collections.Counter()
    for line in report.splitlines():
        fields = line.split(None, 2)
        if line.startswith("#") or len(fields) < 3 or not fields[0].isdigit():
            continue
        period_ns, dso, symbol = int(fields[0]), fields[1], fields[2].strip()
        us[(dso, symbol)] += period_ns / 1000 / requests
    return us


def mode_mean(directory, mode):
    rounds = sorted(glob.glob(os.path.join(directory, f"perf.{mode}.*")))
    total = collections.Counter()
    for recording in rounds:
        suffix = recording.rsplit(".", 1)[1]
        with open(os.path.join(directory, f"requests.{mode}.{suffix}")) as f:
            requests = int(f.read().strip() or 0)
        if requests == 0:
            continue
        for key, value in per_request(recording, requests).items():
            total[key] += value / len(rounds)
    return total, len(rounds)


def kind(dso):
    if dso.startswith("[kernel"):
        return "kernel"
    if dso.startswith("libc") or dso.startswith("libm") or dso == "[vdso]":
        return "libc"
    return "server"


def by_kind(us):
    """The microseconds of `us` summed by kind of object: server, kernel, libc."""
    parts = collections.Counter()
    for (dso, _), value in us.items():
        parts[kind(dso)] += value
    return parts


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    directory, modes = sys.argv[1], sys.argv[2:]
    means = {mode: mode_mean(directory, mode) for mode in modes}
    base_mode = modes[0]
    base, _ = means[base_mode]
    print(f"\nserver CPU-us a request by perf (cpu-clock), mean over rounds; against {base_mode}")
    base_parts = by_kind(base)
    for mode in modes:
        us, rounds = means[mode]
        parts = by_kind(us)
        print(f"{mode:<9} {rounds} rounds: {sum(us.values()):6.1f} "
              f"({sum(us.values()) - sum(base.values()):+.1f}); "
              + ", ".join(f"{k} {parts[k]:.1f} ({parts[k] - base_parts[k]:+.1f})"
                          for k in ("server", "kernel", "libc")))
    for mode in modes[1:]:
        us, _ = means[mode]
        moved = sorted(((us[k] - base[k], k) for k in set(us) | set(base)),
                       key=lambda d: -abs(d[0]))
        print(f"\n{mode} against {base_mode}, the {TOP} functions that moved most (us a request):")
        for delta, (dso, symbol) in moved[:TOP]:
            print(f"  {delta:+7.3f}  {base[(dso, symbol)]:7.3f} -> {us[(dso, symbol)]:7.3f}  "
                  f"{dso} {symbol[:110]}")


if __name__ == "__main__":
    main()
