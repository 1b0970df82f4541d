#!/usr/bin/python3
"""Checks a Prometheus text exposition (format 0.0.4) read from a file or stdin.

1. Parses it with the official Prometheus Python client's parser
   (prometheus_client.parser, Debian package python3-prometheus-client).
2. Checks what that parser lets through but Prometheus' own (Go) parser or
   its scrape loop rejects, plus the conventions of this project: every
   line is a HELP, a TYPE or a sample; metric and label names are valid;
   each family has one HELP and one TYPE before its samples, which are
   contiguous; no series appears twice; values are floats; counters end in
   _total; label values are valid UTF-8 with only \\\\, \\" and \\n escapes.
3. Runs `promtool check metrics` too when promtool is on PATH (or in
   $PROMTOOL): Prometheus' own parser and linter.

Usage: prom-check.py [--json] [FILE]
  --json  print {"name{labels}": value, ...} (labels sorted) on success
Exit: 0 valid, 1 invalid (reasons on stderr), 77 prometheus_client missing.
"""
import json
import os
import re
import shutil
import subprocess
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover
    sys.stderr.write("prom-check: python3-prometheus-client is not installed\n")
    sys.exit(77)

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
LVALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(
    r"^(?P<name>" + NAME + r")"
    r"(?:\{(?P<labels>(?:" + LABEL + r"=" + LVALUE + r")(?:," + LABEL + r"=" + LVALUE + r")*,?)?\})?"
    r" (?P<value>\S+)(?: (?P<ts>-?[0-9]+))?$")
LABEL_PAIR = re.compile(r"(" + LABEL + r")=(" + LVALUE + r")")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def unescape(v):
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c == "\\":
            n = v[i + 1]
            out.append({"\\": "\\", '"': '"', "n": "\n"}[n])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def strict(text):
    errors = []
    helps, types, seen_series, done_families = {}, {}, set(), set()
    current = None
    if text and not text.endswith("\n"):
        errors.append("the exposition does not end with a line feed")
    for n, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        where = "line %d: %r" % (n, line[:120])
        if line == "":
            continue
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (" + NAME + r") ?(.*)$", line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    errors.append(where + ": malformed HELP/TYPE")
                continue
            kind, name, rest = m.groups()
            if name in done_families:
                errors.append(where + ": family %s reopened after other families" % name)
            table = helps if kind == "HELP" else types
            if name in table:
                errors.append(where + ": second %s for %s" % (kind, name))
            table[name] = rest
            if kind == "TYPE" and rest not in TYPES:
                errors.append(where + ": unknown type %r" % rest)
            if kind == "HELP" and re.search(r"\\[^\\n]", rest):
                errors.append(where + ": bad escape in HELP")
            if current and current != name:
                done_families.add(current)
            current = name
            continue
        m = SAMPLE.match(line)
        if not m:
            errors.append(where + ": not a valid sample line")
            continue
        name = m.group("name")
        family = name
        if name not in types and name not in helps:
            for suf in ("_sum", "_count", "_bucket"):
                if name.endswith(suf) and name[: -len(suf)] in types:
                    family = name[: -len(suf)]
        if family not in types or family not in helps:
            errors.append(where + ": sample before its HELP and TYPE")
        if family in done_families:
            errors.append(where + ": samples of %s are not contiguous" % family)
        if current and current != family:
            done_families.add(current)
        current = family
        if types.get(family) == "counter" and not name.endswith("_total"):
            errors.append(where + ": counter without _total")
        labels = {}
        for k, v in LABEL_PAIR.findall(m.group("labels") or ""):
            if k in labels:
                errors.append(where + ": label %s twice" % k)
            labels[k] = unescape(v[1:-1])
        try:
            float(m.group("value"))
        except ValueError:
            errors.append(where + ": value %r is not a float" % m.group("value"))
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            errors.append(where + ": duplicate series")
        seen_series.add(key)
    return errors


def main():
    args = [a for a in sys.argv[1:] if a != "--json"]
    want_json = "--json" in sys.argv[1:]
    raw = open(args[0], "rb").read() if args else sys.stdin.buffer.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        sys.stderr.write("prom-check: not UTF-8: %s\n" % e)
        return 1
    errors = strict(text)
    samples = {}
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                key = s.name + "{" + ",".join('%s="%s"' % (k, escape(v)) for k, v in sorted(s.labels.items())) + "}"
                samples[key] = s.value
    except Exception as e:  # the official parser refused it
        errors.append("prometheus_client parser: %s" % e)
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=raw, capture_output=True)
        if p.returncode != 0:
            errors.append("promtool check metrics (exit %d): %s" % (
                p.returncode, (p.stdout + p.stderr).decode(errors="replace").strip()))
    if errors:
        for e in errors:
            sys.stderr.write("prom-check: %s\n" % e)
        return 1
    if want_json:
        json.dump(samples, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
