#!/usr/bin/env python3
"""The dependency rule of docs/ARCHITECTURE.md, checked on every #include.

A file belongs to the layer of its folder: src/<layer>/... or
include/cllm/<layer>/...; each layer may include only the layers listed for
it below (and itself, and system headers). Exit 1 naming every violation.
Run from anywhere: python3 tools/check_layers.py [repo root]."""
import os
import re
import sys

# layer -> layers it may use (besides itself). One way only: nothing uses cli,
# nothing below train uses train.
ALLOWED = {
    "base": set(),
    "kernels": {"base"},
    "nn": {"base", "kernels"},
    "params": {"base"},
    "models": {"base", "kernels", "nn", "params"},
    "optim": {"base", "kernels", "params"},
    "dist": {"base", "kernels", "params"},
    "data": {"base"},
    "io": {"base"},
    "report": {"base", "kernels", "io"},
    "train": {"base", "kernels", "nn", "params", "models", "optim", "dist", "data", "io", "report"},
    "cli": {"base", "kernels", "nn", "params", "models", "optim", "dist", "data", "io", "report", "train"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"cllm/([a-z_]+)/[^"]+"')
FLAT = re.compile(r'^\s*#\s*include\s+"cllm/([a-z_]+\.h)"')
# MPI is behind the communication seam: only this file includes mpi.h.
MPI_HEADER = re.compile(r'^\s*#\s*include\s+[<"]mpi\.h[>"]')
MPI_ONLY_IN = os.path.join("src", "dist", "comm_mpi.c")


def layer_of(rel):
    parts = rel.split(os.sep)
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    if parts[:2] == ["include", "cllm"] and len(parts) > 3:
        return parts[2]
    return None


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    problems = []
    checked = 0
    for top in ("src", "include"):
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".c", ".h", ".h.in")):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)
                layer = layer_of(rel)
                if layer is None:
                    problems.append(f"{rel}: not inside a layer folder (src/<layer>/ or include/cllm/<layer>/)")
                    continue
                if layer not in ALLOWED:
                    problems.append(f"{rel}: unknown layer '{layer}' (add it to tools/check_layers.py and ARCHITECTURE.md)")
                    continue
                checked += 1
                with open(path, encoding="utf-8") as f:
                    for number, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if m:
                            used = m.group(1)
                            if used != layer and used not in ALLOWED[layer]:
                                problems.append(f"{rel}:{number}: {layer} includes {used} ({line.strip()})")
                        elif MPI_HEADER.match(line) and rel != MPI_ONLY_IN:
                            problems.append(f"{rel}:{number}: includes mpi.h outside {MPI_ONLY_IN}")
                        elif FLAT.match(line):
                            problems.append(f"{rel}:{number}: header outside any layer ({line.strip()})")
    for p in problems:
        print(p)
    print(f"check_layers: {checked} files, {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
