#!/usr/bin/python3
"""Independent check of the schema grammars: every random walk through a grammar must end in a
document (or tool call) that Python's `jsonschema` (Debian python3-jsonschema) accepts.

Usage: grammar_validate.py GRAMMAR_WALK_BINARY CASES.json [SEEDS]

The walks come from tests/grammar_walk.cc (random choices among the tokens the matcher allows).
Formats are checked with jsonschema's checker where it has one and, since date-time and time need
optional packages, also with the independent checks below. Exits non-zero on any invalid output,
dead end or parse error, or when too few walks complete.
"""
import datetime
import json
import re
import subprocess
import sys

try:
    import jsonschema
except ImportError:  # ctest treats exit code 77 as "skipped"
    print("SKIP: python3-jsonschema is not installed (apt-get install python3-jsonschema)")
    sys.exit(77)


def check_date(s):
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", s)) and datetime.date.fromisoformat(s) is not None


def check_time(s):
    m = re.fullmatch(r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})", s)
    if not m:
        return False
    hh, mm, ss = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if hh > 23 or mm > 59 or ss > 59:
        return False
    tz = m.group(5)
    if tz != "Z" and (int(tz[1:3]) > 23 or int(tz[4:6]) > 59):
        return False
    return True


def check_date_time(s):
    if "T" not in s:
        return False
    d, t = s.split("T", 1)
    return check_date_safe(d) and check_time(t)


def check_date_safe(s):
    try:
        return check_date(s)
    except ValueError:
        return False


EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                   r"@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def make_checker():
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    checker = jsonschema.FormatChecker(list(checker.checkers))  # a copy we may extend
    checker.checks("date", raises=ValueError)(check_date_safe)
    checker.checks("time")(check_time)
    checker.checks("date-time")(check_date_time)
    checker.checks("email")(lambda s: bool(EMAIL.fullmatch(s)))
    checker.checks("uuid")(lambda s: bool(UUID.fullmatch(s)))
    return checker


def main():
    binary, cases_path = sys.argv[1], sys.argv[2]
    seeds = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    with open(cases_path) as f:
        cases = {c["name"]: c for c in json.load(f)}
    run = subprocess.run([binary, cases_path, str(seeds)], capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stderr)
        return 1
    checker = make_checker()
    failures = []
    stats = {}
    for line in run.stdout.split("\n"):
        if not line:
            continue
        walk = json.loads(line)
        name = walk["name"]
        case = cases[name]
        st = stats.setdefault(name, {"complete": 0, "step_limit": 0})
        if walk["status"] == "refused":
            failures.append(f"{name}: the grammar refused the schema: {walk['text']}")
            continue
        if walk["status"] == "step_limit":
            st["step_limit"] += 1
            continue
        if walk["status"] != "complete":
            failures.append(f"{name} seed {walk['seed']}: {walk['status']} after {walk['text']!r}")
            continue
        st["complete"] += 1
        if case["mode"] == "json":
            try:
                value = json.loads(walk["text"])
            except ValueError as e:
                failures.append(f"{name} seed {walk['seed']}: json.loads: {e}: {walk['text']!r}")
                continue
        else:
            value = walk["value"]
        validator = jsonschema.Draft202012Validator(case["schema"], format_checker=checker)
        errors = list(validator.iter_errors(value))
        if errors:
            failures.append(f"{name} seed {walk['seed']}: {errors[0].message} "
                            f"(at {list(errors[0].absolute_path)}): {walk['text']!r}")
    for name in cases:
        st = stats.get(name, {"complete": 0, "step_limit": 0})
        print(f"{name}: {st['complete']} valid of {seeds} walks ({st['step_limit']} hit the step limit)")
        if st["complete"] < seeds * 0.9:
            failures.append(f"{name}: only {st['complete']} of {seeds} walks completed")
    for f in failures[:40]:
        print("FAIL:", f)
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print(f"all {sum(s['complete'] for s in stats.values())} outputs validate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
