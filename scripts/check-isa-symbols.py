#!/usr/bin/env python3
"""Checks that no linkable code compiled with one ISA's flags can stand in for another's.

The kernels of each ISA live in a translation unit compiled with that ISA's flags
(-mavx512f ..., -march=armv8.2-a+dotprod). An inline function or template instantiation that
such a unit emits is a weak (COMDAT) definition; if another object of the library emits the
same symbol, the linker keeps ONE copy for every caller, and an AVX-512 copy can then run on an
AVX2 machine (most visible at -O0, where nothing is inlined). So every inline function an ISA
unit compiles must have a name of its own: an ISA namespace (docs/architecture.md) or internal
linkage.

This script runs `nm` on the library archive and fails when a symbol defined in an ISA object
  - is weak or unique (nm types W, V, u) or global (T, D, B, R, ...) and is also defined in
    another ISA object or in a non-ISA object of the library, or
  - is weak or unique and is referenced (U) by a non-ISA object (the linker would resolve that
    reference to the ISA's copy).

Usage: check-isa-symbols.py [--nm NM] LIBRARY.a ISA_SOURCE...
           (ISA_SOURCE: the sources compiled with ISA flags; their objects are the archive
            members named after them. Exit 0: clean; 1: conflicts, one line each.)
       check-isa-symbols.py --self-test [--cxx COMPILER] [--nm NM]
           (the check flags shared weak symbols in synthetic symbol tables, and, given a
            compiler, in real objects built at -O0)
"""
import os
import shutil
import subprocess
import sys
import tempfile

WEAK_TYPES = set("WVu")
# Common data (C) holds no code: with -fno-weak, the empty function objects of <ranges>
# (std::ranges::copy ...) become common symbols that the linker merges.
IGNORED_TYPES = set("C")
# Identical in every object that has exception tables, and holds no code.
IGNORED_PREFIXES = ("DW.ref.",)


def read_archive(nm, library):
    """Returns (defs, refs): member -> {symbol: nm type} for defined and undefined symbols."""
    out = subprocess.run([nm, "-A", "-P", library], check=True, capture_output=True,
                         text=True).stdout
    defs, refs = {}, {}
    for line in out.splitlines():
        # "lib.a[member.o]: symbol TYPE [value [size]]" (GNU nm -A -P on an archive).
        head, _, rest = line.partition(": ")
        if not rest or not head.endswith("]") or "[" not in head:
            continue
        member = head[head.rindex("[") + 1:-1]
        fields = rest.split()
        if len(fields) < 2:
            continue
        name, kind = fields[0], fields[1]
        if kind == "U":
            refs.setdefault(member, {})[name] = kind
        elif kind in IGNORED_TYPES:
            defs.setdefault(member, {})
        elif kind.isupper() or kind == "u":
            defs.setdefault(member, {})[name] = kind
        else:
            defs.setdefault(member, {})  # local symbols only: the member still exists
    return defs, refs


def find_conflicts(defs, refs, isa_members):
    """One message per symbol that an ISA member shares with another member."""
    definers, users = {}, {}
    for member, symbols in defs.items():
        for name, kind in symbols.items():
            if not name.startswith(IGNORED_PREFIXES):
                definers.setdefault(name, []).append((member, kind))
    for member, symbols in refs.items():
        for name in symbols:
            users.setdefault(name, []).append(member)
    problems = []
    for name, where in sorted(definers.items()):
        isa = [m for m, _ in where if m in isa_members]
        if not isa:
            continue
        weak = any(kind in WEAK_TYPES for _, kind in where)
        if len(where) > 1:
            listed = ", ".join(f"{m} ({k})" for m, k in sorted(where))
            problems.append(f"{name}: defined in {listed}")
        elif weak:
            outside = sorted(m for m in users.get(name, []) if m not in isa_members)
            if outside:
                problems.append(f"{name}: weak in {isa[0]} and used by {', '.join(outside)}")
    return problems


def demangle(lines):
    filt = shutil.which("c++filt")
    if not filt or not lines:
        return lines
    out = []
    for line in lines:
        name, sep, rest = line.partition(": ")
        pretty = subprocess.run([filt, name], capture_output=True, text=True).stdout.strip()
        out.append(f"{pretty or name}{sep}{rest}")
    return out


def check(nm, library, isa_sources):
    defs, refs = read_archive(nm, library)
    isa_members = {os.path.basename(s) + ".o" for s in isa_sources}
    missing = sorted(m for m in isa_members if m not in defs)
    if missing:
        return [f"{library}: no member {m} (an ISA object was renamed: update the list)"
                for m in missing]
    return demangle(find_conflicts(defs, refs, isa_members))


def self_test_tables():
    defs = {
        "isa_a.cc.o": {"_Z6Sharedi": "W", "_ZN3isa1a6KernelEv": "W", "_Z5Tablev": "T",
                       "DW.ref.__gxx_personality_v0": "V", "_Z9UsedBelowv": "W"},
        "isa_b.cc.o": {"_Z6Sharedi": "W", "_ZN3isa1b6KernelEv": "W", "_Z5Tablev": "T",
                       "DW.ref.__gxx_personality_v0": "V"},
        "plain.cc.o": {"_Z10PlainOnlyv": "W", "_Z5Otherv": "T"},
        "plain2.cc.o": {"_Z10PlainOnlyv": "W"},
    }
    refs = {"plain.cc.o": {"_Z9UsedBelowv": "U", "_ZN3isa1a6KernelEv": "U"},
            "isa_b.cc.o": {"_Z9UsedBelowv": "U"}}
    # _ZN3isa1a6KernelEv is weak in isa_a and used by plain: flagged too.
    expected = ["_Z5Tablev", "_Z6Sharedi", "_Z9UsedBelowv", "_ZN3isa1a6KernelEv"]
    found = sorted(p.split(":")[0] for p in find_conflicts(defs, refs,
                                                           {"isa_a.cc.o", "isa_b.cc.o"}))
    if found != expected:
        return f"synthetic tables: expected {expected}, got {found}"
    return None


SHARED = """inline int Shared(int x) { return x * 3 + 1; }
int %(fn)s(int x) { return Shared(x); }
"""
SCOPED = """namespace %(ns)s {
inline int Shared(int x) { return x * 3 + 1; }
}
int %(fn)s(int x) { return %(ns)s::Shared(x); }
"""


def self_test_objects(cxx, nm):
    with tempfile.TemporaryDirectory() as tmp:
        def build(lib, sources):
            objects = []
            for name, text in sources.items():
                src = os.path.join(tmp, name)
                with open(src, "w", encoding="utf-8") as f:
                    f.write(text)
                subprocess.run([cxx, "-O0", "-c", src, "-o", src + ".o"], check=True)
                objects.append(src + ".o")
            path = os.path.join(tmp, lib)
            subprocess.run(["ar", "rc", path] + objects, check=True)
            return path

        shared = build("shared.a", {"isa_x.cc": SHARED % {"fn": "X"},
                                    "isa_y.cc": SHARED % {"fn": "Y"},
                                    "plain.cc": SHARED % {"fn": "P"}})
        problems = check(nm, shared, ["isa_x.cc", "isa_y.cc"])
        if len(problems) != 1 or "Shared" not in problems[0] or "plain.cc.o" not in problems[0]:
            return f"-O0 objects sharing an inline function: expected one conflict, got {problems}"
        scoped = build("scoped.a", {"isa_x2.cc": SCOPED % {"fn": "X", "ns": "x"},
                                    "isa_y2.cc": SCOPED % {"fn": "Y", "ns": "y"},
                                    "plain2.cc": SHARED % {"fn": "P"}})
        problems = check(nm, scoped, ["isa_x2.cc", "isa_y2.cc"])
        if problems:
            return f"-O0 objects with namespaced inline functions: expected none, got {problems}"
        problems = check(nm, scoped, ["isa_x2.cc", "renamed.cc"])
        if len(problems) != 1 or "renamed.cc.o" not in problems[0]:
            return f"a missing ISA object: expected it named, got {problems}"
    return None


def main(argv):
    nm = "nm"
    cxx = None
    args = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--nm", "--cxx") and i + 1 < len(argv):
            if argv[i] == "--nm":
                nm = argv[i + 1]
            else:
                cxx = argv[i + 1]
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if args == ["--self-test"]:
        error = self_test_tables() or (self_test_objects(cxx, nm) if cxx else None)
        if error:
            print(f"self-test: {error}")
            return 1
        print("self-test: shared weak and global symbols of ISA objects are flagged"
              + (", in real -O0 objects too" if cxx else ""))
        return 0
    if len(args) < 2:
        print(__doc__)
        return 2
    problems = check(nm, args[0], args[1:])
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} symbol(s) of ISA objects are shared; keep each ISA's inline code "
              "in its own namespace (docs/architecture.md)")
        return 1
    print(f"isa symbols: {len(args) - 1} ISA object(s), nothing shared")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
