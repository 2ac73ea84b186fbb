#!/bin/sh
# Assembles a corpus of real text from files already on this machine, for the
# measurements in docs/PERFORMANCE.md (never committed: write it under /tmp).
#
#   tools/make_corpus.sh OUT_DIR MEGABYTES
#
# Sources, in this order, each walked in byte-wise sorted order:
#   /usr/share/common-licenses   licence texts
#   /usr/share/doc               package documentation (.gz files decompressed)
#   /usr/share/man               manual pages, roff source (decompressed)
#   /usr/share/info              GNU info manuals (decompressed)
#   /usr/lib/python3*            Python sources (*.py) of the system's packages
#   /usr/include                 C and C++ headers
#   /usr/share/perl*, /usr/lib/x86_64-linux-gnu/perl*   Perl modules (*.pm, *.pl)
#   /root/.pyenv, /usr/lib/gcc   more Python sources and GCC's plugin headers
# Files are copied (one file of the corpus per source file, its path kept under
# OUT_DIR/<source>/, a leading dot of a name made "_" since cllm skips hidden
# entries) until MEGABYTES * 10^6 bytes are reached. Skipped: empty
# files, files over 4 MB, files with a NUL byte in their first 8 KiB (binary),
# symbolic links. The same machine gives the same corpus.
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 OUT_DIR MEGABYTES" >&2
    exit 2
fi
out=$1
mb=$2
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "$0: $out exists and is not empty" >&2
    exit 2
fi
mkdir -p "$out"
exec /usr/bin/python3 - "$out" "$mb" <<'PY'
import gzip, os, sys

out, limit = sys.argv[1], int(float(sys.argv[2]) * 1e6)
sources = [
    ("licenses", ["/usr/share/common-licenses"], None),
    ("doc", ["/usr/share/doc"], None),
    ("man", ["/usr/share/man"], None),
    ("info", ["/usr/share/info"], None),
    ("python", sorted(p for p in (os.path.join("/usr/lib", d) for d in os.listdir("/usr/lib"))
                      if os.path.basename(p).startswith("python3")), (".py",)),
    ("include", ["/usr/include"], None),
    ("perl", ["/usr/share/perl", "/usr/share/perl5", "/usr/lib/x86_64-linux-gnu/perl",
              "/usr/lib/x86_64-linux-gnu/perl5"], (".pm", ".pl")),
    ("pyenv", ["/root/.pyenv"], (".py",)),
    ("gcc", ["/usr/lib/gcc"], (".h", ".def")),
]

def walk(root):
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(folder, name)

def text_of(path):
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(4_000_001)
        else:
            if os.path.getsize(path) > 4_000_000:
                return None
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if not data or len(data) > 4_000_000 or b"\0" in data[:8192]:
        return None
    return data

total = files = 0
for name, roots, suffixes in sources:
    for root in roots:
        if not os.path.isdir(root):
            continue
        for path in walk(root):
            if total >= limit:
                break
            if suffixes and not path.endswith(suffixes):
                continue
            data = text_of(path)
            if data is None:
                continue
            rel = os.path.relpath(path, "/")
            if rel.endswith(".gz"):
                rel = rel[:-3]
            # cllm skips hidden entries (.pyenv): keep the names visible
            rel = os.path.join(*("_" + p if p.startswith(".") else p for p in rel.split(os.sep)))
            dest = os.path.join(out, name, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.exists(dest):
                continue
            with open(dest, "wb") as f:
                f.write(data)
            total += len(data)
            files += 1
print(f"{out}: {files} files, {total / 1e6:.1f} MB")
if total < limit:
    print(f"only {total / 1e6:.1f} MB of text found on this machine, short of {limit / 1e6:.0f} MB", file=sys.stderr)
PY
