#!/usr/bin/env python3
"""Sorts the inputs a fuzz target failed on (crash-*, leak-*, oom-*, timeout-* from libFuzzer) by
where they fail, for scripts/fuzz.sh.

  scripts/fuzz_triage.py FUZZER TARGET SQUEEZE INPUT...

Each input is run again alone through FUZZER (the libFuzzer executable, with the options fuzz.sh
uses) and its report read: the kind (SEGV, heap-buffer-overflow, stack-overflow, leak, out of
memory, timeout, UBSan's runtime error, ...) and the stack. The input is blamed on the first frame
that is not the sanitizer runtime or the C library (for a stack overflow: the function that
recurses most; for an over-read or overflow: also the code that allocated the memory):

  libhdf5   a frame inside Debian's libhdf5 (hdf5 target only). read_hdf5 parses in a child
            process, so such a crash is contained: the input is then replayed through the
            production path, `SQUEEZE eval zoo:jet_tagger --data CONFIG` with the input as an
            HDF5 data file, which must exit with code 2 and name the file. One that does not is
            reported as NOT CONTAINED.
  squeeze   anything else: a bug to fix (then copy the input to tests/fuzz/regressions/TARGET/).
  gone      the input no longer fails (fixed since it was found).

Prints one line per input and a summary; exits 1 when any input is a squeeze bug or a libhdf5
crash the production path does not contain, else 0.
"""
import collections
import os
import re
import subprocess
import sys
import tempfile

RUNTIME = re.compile(r"^(__asan|__lsan|__ubsan|__sanitizer|__interceptor_|___interceptor_|__libc_|"
                     r"__memcpy|__memmove|__memset|__strlen|__strcmp|__GI_|_int_malloc|"
                     r"__pthread_kill_implementation|raise\b|abort\b|__fortify_fail|__stack_chk_fail|"
                     r"(memcpy|memmove|memset|strlen|strnlen|strcmp|strncmp|memcmp|malloc|calloc|"
                     r"realloc|free|posix_memalign|aligned_alloc|operator new|operator delete)\b)")
FRAME = re.compile(r"^\s+#(\d+) 0x[0-9a-f]+ in (.*?)(?: (/\S+?):\d+(?::\d+)?)?(?: \((\S+?)\+0x[0-9a-f]+\))?(?: \(BuildId: [0-9a-f]+\))?$")
FRAME_NOFUNC = re.compile(r"^\s+#(\d+) 0x[0-9a-f]+  \((\S+?)\+0x[0-9a-f]+\)")


def frames(block):
    out = []
    for line in block:
        m = FRAME.match(line)
        if m:
            out.append((m.group(2).strip(), m.group(4) or m.group(3) or ""))
            continue
        m = FRAME_NOFUNC.match(line)
        if m:
            out.append(("?", m.group(2)))
    return out


def owner(frame):
    func, where = frame
    if "libhdf5" in where:
        return "libhdf5"
    if "libonnx" in where or "libprotobuf" in where:
        return os.path.basename(where).split(".so")[0]
    if "libtorch" in where or "libc10" in where:
        return os.path.basename(where).split(".so")[0]
    return "squeeze"


def is_runtime(frame):
    func, where = frame
    if RUNTIME.match(func):
        return True
    glibc_dirs = ("/sysdeps/", "nptl/", "stdlib/", "debug/", "signal/", "libio/", "string/", "csu/")
    if any(d in where for d in glibc_dirs) or "libc.so" in where or "libstdc++" in where or "libgcc" in where:
        return True
    return func.startswith("fuzzer::") or func in ("main", "_start")


def blame(report):
    """(kind, owner, frame text) of a sanitizer/libFuzzer report."""
    lines = report.splitlines()
    kind = "unknown"
    for line in lines:
        m = re.search(r"ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): ([\w-]+(?: \([^)]*\))?)", line)
        if m:
            kind = m.group(2)
            break
        m = re.search(r"runtime error: (.*)", line)
        if m:
            kind = "ubsan: " + m.group(1)[:60]
            break
        if "ALARM: working on the last Unit" in line:
            kind = "timeout"
            break
    # The first stack of the report, and the allocation stack when there is one.
    blocks, cur = [], []
    for line in lines:
        if re.match(r"^\s+#\d+ ", line):
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    if not blocks:
        return kind, "unknown", "no stack in the report"
    stack = [f for f in frames(blocks[0]) if not is_runtime(f)]
    if kind == "stack-overflow":
        counts = collections.Counter(f for f in frames(blocks[0]))
        top = counts.most_common(1)[0][0]
        return kind, owner(top), top[0]
    if not stack:
        return kind, "unknown", "only runtime frames"
    who = owner(stack[0])
    text = stack[0][0]
    alloc_at = report.find("allocated by thread")
    if who == "libhdf5" and alloc_at >= 0:
        alloc_lines = report[alloc_at:].splitlines()[1:]
        alloc = [f for f in frames(alloc_lines) if not is_runtime(f)]
        if alloc and owner(alloc[0]) != "libhdf5":
            who = owner(alloc[0])
            text += " (into memory allocated by " + alloc[0][0] + ")"
    return kind, who, text


def replay_production(squeeze, data):
    with tempfile.TemporaryDirectory(prefix="squeeze-triage-") as tmp:
        path = os.path.join(tmp, "input.h5")
        with open(path, "wb") as f:
            f.write(data)
        cfg = os.path.join(tmp, "data.yaml")
        with open(cfg, "w") as f:
            f.write("data: {dataset: hdf5, path: %s, features: x, labels: y}\n" % path)
        try:
            p = subprocess.run([squeeze, "eval", "zoo:jet_tagger", "--data", cfg], capture_output=True,
                               text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return False, "no answer in 300 s"
        err = (p.stderr.strip().splitlines() or [""])[-1]
        return p.returncode == 2 and path in p.stderr, "exit %d: %s" % (p.returncode, err[:160])


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    fuzzer, target, squeeze, inputs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    counts = collections.Counter()
    failed = False
    for inp in inputs:
        try:
            p = subprocess.run([fuzzer, "-rss_limit_mb=2048", "-malloc_limit_mb=2048", "-timeout=25", inp],
                               capture_output=True, text=True, errors="replace", timeout=600)
            report, rc = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired:
            report, rc = "", -1
        name = os.path.basename(inp)
        if rc == 0:
            counts["gone"] += 1
            print("  %-52s gone (no longer fails)" % name)
            continue
        kind, who, where = blame(report) if rc != -1 else ("hang", "unknown", "no report in 600 s")
        line = "  %-52s %-8s %-22s %s" % (name, who, kind[:22], where[:90])
        if who == "libhdf5" and target == "hdf5":
            with open(inp, "rb") as f:
                ok, answer = replay_production(squeeze, f.read())
            counts["libhdf5, contained" if ok else "libhdf5, NOT CONTAINED"] += 1
            failed |= not ok
            line += "\n      production: " + ("contained, " if ok else "NOT CONTAINED, ") + answer
        else:
            counts["squeeze" if who == "squeeze" else who] += 1
            failed = True
        print(line)
    print("  triage: " + (", ".join("%s %d" % kv for kv in sorted(counts.items())) or "nothing to sort"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
