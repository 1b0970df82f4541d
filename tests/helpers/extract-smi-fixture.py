#!/usr/bin/env python3
"""Derives the small GPU test fixtures from the real nvidia-smi captures.

Usage: extract-smi-fixture.py CAPTURE_DIR OUT_DIR

CAPTURE_DIR holds the nvidia_gpu_exporter captures (MIT, see its SOURCE.md and
LICENSE; in this project /work/shared/fixtures/nvidia-smi). For each capture
listed in CAPTURES this writes OUT_DIR/<short>/:

  SOURCE                        provenance: capture file, sha256, line numbers
  help-query-gpu.txt            -> ../help/<driver>/: verbatim `nvidia-smi --help-query-gpu`
  help-query-compute-apps.txt   -> ../help/<driver>/: verbatim `--help-query-compute-apps`
  <state>/banner.txt            verbatim `nvidia-smi` (default table)
  <state>/q.txt                 verbatim head of `nvidia-smi -q` (up to "Attached GPUs")
  <state>/query-gpu.csv         verbatim `--query-gpu=<every field> --format=csv`
  <state>/query-compute-apps.csv verbatim `--query-compute-apps=... --format=csv`
  <state>/nvml.txt              the same values in the fake NVML's format

tests/helpers/fake-nvidia-smi answers our exact queries from the verbatim
files (selecting columns by header name, dropping units and header as asked);
tests/helpers/fake-nvml.c reads nvml.txt. Two synthetic fixtures, marked so
in their SOURCE, are derived from real ones: a GeForce whose power readings are
"[Not Supported]" (as on boards without power management) and a two-GPU host.
Run it again after changing it; the output is committed.
"""
import hashlib
import os
import re
import sys

CAPTURES = {
    "h100": "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt",
    "h100-mig": "linux-x86_64__nvidia-h100-mig__590.48.01.txt",
    "h200-mig": "linux-x86_64__nvidia-h200-mig__590.48.01.txt",
    "l40s": "linux-x86_64__nvidia-l40s__595.80.txt",
    "rtx2080s-610": "linux-x86_64__nvidia-geforce-rtx-2080-super__610.57.04.txt",
    "rtx4080s": "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt",
}
# Which load states to keep per capture (both where the idle one differs in
# an interesting way: no processes, or 100 % utilization while idle).
KEEP = {"h100": ("idle", "load"), "l40s": ("idle", "load")}
STATES = ("idle", "load")
SEP = "#" * 80


def sections(lines):
    """Yields (state, title, command, first_line_no, content_lines)."""
    i = 0
    while i < len(lines):
        if lines[i] == SEP and i + 3 < len(lines) and lines[i + 1].startswith("# ") \
                and lines[i + 2].startswith("# $ "):
            head = lines[i + 1][2:]
            cmd = lines[i + 2][4:]
            j = i + 3
            while j < len(lines) and lines[j] != SEP:
                j += 1  # extra comment lines (library sha256)
            start = j + 1
            k = start
            while k < len(lines) and lines[k] != SEP:
                k += 1
            content = lines[start:k]
            while content and content[-1].strip() == "":
                content.pop()
            state, _, title = head.partition(" :: ")
            yield state, title, cmd, start + 1, content
            i = k
        else:
            i += 1


def csv_rows(content):
    header = [h.strip() for h in content[0].split(", ")]
    names = [re.sub(r" \[.*\]$", "", h) for h in header]
    rows = []
    for line in content[1:]:
        vals = [v.strip() for v in line.split(", ")]
        if len(vals) != len(names):
            raise SystemExit("column count mismatch in %r" % line[:60])
        rows.append(dict(zip(names, vals)))
    return header, rows


def absent(v):
    return v == "" or v == "N/A" or v.startswith("[")


def num(v, unit):
    if absent(v):
        return None
    if unit and v.endswith(" " + unit):
        v = v[: -len(unit) - 1]
    return v


def nvml_lines(gpus, procs, driver, cuda):
    """gpus: list of dicts of query-gpu values; procs: compute-apps rows."""
    out = ["driver %s" % driver]
    if cuda:
        major, minor = cuda.split(".")[:2]
        out.append("cuda %d" % (int(major) * 1000 + int(minor) * 10))
    for g in gpus:
        out.append("gpu %s" % g["index"])
        out.append("name %s" % g["name"])
        out.append("uuid %s" % g["uuid"])
        out.append("pci %s" % g["pci.bus_id"])

        def put(key, v, conv):
            out.append("%s %s" % (key, "NS" if v is None else conv(v)))

        put("memory_total_mib", num(g["memory.total"], "MiB"), int)
        put("memory_used_mib", num(g["memory.used"], "MiB"), int)
        put("utilization", num(g["utilization.gpu"], "%"), int)
        put("temperature", num(g["temperature.gpu"], None), int)
        put("power_mw", num(g["power.draw"], "W"), lambda v: int(round(float(v) * 1000)))
        put("power_limit_mw", num(g["power.limit"], "W"), lambda v: int(round(float(v) * 1000)))
        for p in procs:
            if p["gpu_uuid"] == g["uuid"] and p["gpu_bus_id"] == g["pci.bus_id"]:
                mem = num(p["used_gpu_memory"], "MiB")
                out.append("proc %s %s %s" % (p["pid"], "NS" if mem is None else int(mem),
                                              p["process_name"]))
    return out


def banner_cuda(banner):
    m = re.search(r"CUDA (?:UMD )?Version:\s*([0-9.]+)", "\n".join(banner))
    return m.group(1) if m else None


def write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    cap_dir, out_dir = sys.argv[1], sys.argv[2]
    derived = {}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(cap_dir, "LICENSE")) as f, open(os.path.join(out_dir, "LICENSE"), "w") as g:
        g.write(f.read())
    for short, fname in CAPTURES.items():
        path = os.path.join(cap_dir, fname)
        raw = open(path, "rb").read()
        lines = raw.decode("utf-8").split("\n")
        src = ["Derived by tests/helpers/extract-smi-fixture.py from the real capture",
               "  %s" % fname,
               "  sha256 %s" % hashlib.sha256(raw).hexdigest(),
               "of github.com/utkuozdemir/nvidia_gpu_exporter (internal/captures, MIT).",
               "Verbatim sections (state, command, first line in the capture):"]
        per_state = {}
        for state, title, cmd, lineno, content in sections(lines):
            name = None
            if state == "capabilities" and title == "help-query-gpu":
                name = "help-query-gpu.txt"
            elif state == "capabilities" and title == "help-query-compute-apps":
                name = "help-query-compute-apps.txt"
            elif state in STATES and state not in KEEP.get(short, ("load",)):
                continue
            elif state in STATES and title.startswith("nvidia-smi (default table)"):
                name = state + "/banner.txt"
            elif state in STATES and title.startswith("query (-q)"):
                end = next(i for i, l in enumerate(content) if l.startswith("Attached GPUs"))
                content = content[: end + 1]
                name = state + "/q.txt"
            elif state in STATES and title.startswith("query-gpu"):
                name = state + "/query-gpu.csv"
            elif state in STATES and title.startswith("query-compute-apps"):
                name = state + "/query-compute-apps.csv"
            if not name:
                continue
            if name.startswith("help-"):
                driver = fname.rsplit("__", 1)[1][:-4]
                target = os.path.join(out_dir, "help", driver, name)
                if not os.path.exists(target):
                    write(target, content)
                link(os.path.join("..", "help", driver, name), os.path.join(out_dir, short, name))
                src.append("  %-32s line %5d  $ %s (in help/%s/)" % (name, lineno, cmd, driver))
                continue
            write(os.path.join(out_dir, short, name), content)
            if state in STATES:
                per_state.setdefault(state, {})[name.split("/")[-1]] = content
            src.append("  %-32s line %5d  $ %s" % (name, lineno, cmd[:60] + ("…" if len(cmd) > 60 else "")))
        for state, files in per_state.items():
            _, gpus = csv_rows(files["query-gpu.csv"])
            _, procs = csv_rows(files["query-compute-apps.csv"])
            cuda = banner_cuda(files["banner.txt"])
            nv = nvml_lines(gpus, procs, gpus[0]["driver_version"], cuda)
            write(os.path.join(out_dir, short, state, "nvml.txt"),
                  ["# fake NVML fixture, derived from %s (%s); see ../SOURCE" % (fname, state)] + nv)
            derived[(short, state)] = (files, gpus, procs, cuda)
        src.append("<state>/nvml.txt: the values of query-gpu.csv (units converted: MiB, mW),")
        src.append("query-compute-apps.csv and the banner's CUDA version, for the fake NVML.")
        write(os.path.join(out_dir, short, "SOURCE"), src)

    # Synthetic 1: a GeForce without power readings (power.draw/power.limit
    # "[Not Supported]"), from the RTX 4080 SUPER load capture.
    files, gpus, procs, cuda = derived[("rtx4080s", "load")]
    synth_csv(out_dir, "geforce-nopower", "rtx4080s", files,
              {"power.draw": "[Not Supported]", "power.limit": "[Not Supported]"},
              "power.draw and power.limit replaced by \"[Not Supported]\" (NVML: NOT_SUPPORTED)")

    # Synthetic 2: two GPUs, from the H100 load (GPU 0) and idle (GPU 1)
    # captures; GPU 1 gets bus 84 and a distinct (still masked) UUID.
    load = derived[("h100", "load")]
    idle = derived[("h100", "idle")]
    d = os.path.join(out_dir, "multi", "load")
    header = load[0]["query-gpu.csv"][0]
    row0 = load[0]["query-gpu.csv"][1]
    row1 = idle[0]["query-gpu.csv"][1]
    names = [re.sub(r" \[.*\]$", "", h.strip()) for h in header.split(", ")]
    vals = row1.split(", ")
    vals[names.index("index")] = "1"
    vals[names.index("pci.bus_id")] = "00000000:84:00.0"
    vals[names.index("uuid")] = "GPU-00000000-0000-0000-0000-000000000001"
    row1 = ", ".join(vals)
    write(os.path.join(d, "query-gpu.csv"), [header, row0, row1])
    write(os.path.join(d, "query-compute-apps.csv"), load[0]["query-compute-apps.csv"])
    write(os.path.join(d, "banner.txt"), load[0]["banner.txt"])
    write(os.path.join(d, "q.txt"), load[0]["q.txt"])
    _, g = csv_rows([header, row0, row1])
    _, p = csv_rows(load[0]["query-compute-apps.csv"])
    write(os.path.join(d, "nvml.txt"),
          ["# fake NVML fixture, SYNTHETIC two-GPU host; see ../SOURCE"] +
          nvml_lines(g, p, g[0]["driver_version"], load[3]))
    for f in ("help-query-gpu.txt", "help-query-compute-apps.txt"):
        link(os.readlink(os.path.join(out_dir, "h100", f)), os.path.join(out_dir, "multi", f))
    write(os.path.join(out_dir, "multi", "SOURCE"), [
        "SYNTHETIC, derived by tests/helpers/extract-smi-fixture.py from the real h100",
        "fixture (%s): GPU 0 is the load row, GPU 1 the idle row with" % CAPTURES["h100"],
        "index 1, pci.bus_id 00000000:84:00.0, uuid GPU-…-000000000001. The banner and",
        "compute apps are the load ones (all processes on GPU 0)."])


def link(target, path):
    """The help texts are kept once per driver version; fixtures link to them."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.remove(path)
    os.symlink(target, path)


def synth_csv(out_dir, short, base, files, replace, what):
    d = os.path.join(out_dir, short, "load")
    header, rows = files["query-gpu.csv"][0], files["query-gpu.csv"][1:]
    names = [re.sub(r" \[.*\]$", "", h.strip()) for h in header.split(", ")]
    new_rows = []
    for r in rows:
        vals = r.split(", ")
        for k, v in replace.items():
            vals[names.index(k)] = v
        new_rows.append(", ".join(vals))
    write(os.path.join(d, "query-gpu.csv"), [header] + new_rows)
    for f in ("query-compute-apps.csv", "banner.txt", "q.txt"):
        write(os.path.join(d, f), files[f])
    _, g = csv_rows([header] + new_rows)
    _, p = csv_rows(files["query-compute-apps.csv"])
    write(os.path.join(d, "nvml.txt"),
          ["# fake NVML fixture, SYNTHETIC (%s); see ../SOURCE" % what] +
          nvml_lines(g, p, g[0]["driver_version"], banner_cuda(files["banner.txt"])))
    for f in ("help-query-gpu.txt", "help-query-compute-apps.txt"):
        link(os.readlink(os.path.join(out_dir, base, f)), os.path.join(out_dir, short, f))
    write(os.path.join(out_dir, short, "SOURCE"), [
        "SYNTHETIC, derived by tests/helpers/extract-smi-fixture.py from the real",
        "%s fixture (%s, load):" % (base, CAPTURES[base]), what + "."])


if __name__ == "__main__":
    main()
