#!/usr/bin/env python3
"""Runs a command and reports its peak resident set size, for holding a run against the memory
plan of `gemma4 info --ctx N` (issue 19: a 128K-token prompt runs within its plan).

    bench/peak_rss.py --interval 10 -- gemma4 bench -m e2b-q4_0.gguf -t 16 -p 131072 -n 0 -r 1
    bench/peak_rss.py --plan-bytes 2326794240 -- ...

Two readings: the kernel's high-water mark of the child (VmHWM in /proc/PID/status, polled every
--interval seconds and printed with the current VmRSS, so a long run shows its progress), and
getrusage(RUSAGE_CHILDREN).ru_maxrss once it exits (the same peak, kept by the kernel after the
process is gone). The command's own output passes through. With --plan-bytes the peak is also
printed as a share of the plan. Exits with the command's status.
"""
import argparse
import resource
import subprocess
import sys
import time


def status_kib(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    ap.add_argument("--plan-bytes", type=int, default=0, help="planned resident bytes")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("no command")
    t0 = time.monotonic()
    child = subprocess.Popen(cmd)
    hwm = 0
    while True:
        try:
            child.wait(timeout=args.interval)
            break
        except subprocess.TimeoutExpired:
            pass
        cur = status_kib(child.pid, "VmRSS")
        peak = status_kib(child.pid, "VmHWM")
        if peak is not None:
            hwm = max(hwm, peak)
        print("peak_rss: %7.0f s  VmRSS %s kB  VmHWM %s kB" % (time.monotonic() - t0, cur, peak),
              file=sys.stderr, flush=True)
    wall = time.monotonic() - t0
    maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux
    peak_kib = max(maxrss_kib, hwm)
    print("peak_rss: exit %d after %.1f s; ru_maxrss %d kB (%.1f MiB, %.3f GB); last VmHWM %d kB"
          % (child.returncode, wall, maxrss_kib, maxrss_kib / 1024, maxrss_kib * 1024 / 1e9, hwm),
          file=sys.stderr, flush=True)
    if args.plan_bytes > 0:
        print("peak_rss: plan %d bytes (%.1f MiB): peak is %.1f%% of the plan" % (
            args.plan_bytes, args.plan_bytes / 2**20, 100.0 * peak_kib * 1024 / args.plan_bytes),
            file=sys.stderr, flush=True)
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
