#!/usr/bin/env python3
"""Checks that docs/getting-started.md quotes templates/linux-vmm exactly:
every block marked `<!-- template: FILE -->` must equal that file, and
every file of the template must be quoted."""
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(TOP, "docs", "getting-started.md")
TEMPLATE = os.path.join(TOP, "templates", "linux-vmm")


def main():
    text = open(GUIDE).read()
    quoted = {m.group(1): m.group(2) for m in
              re.finditer(r"<!-- template: (\S+) -->\n```[a-z]*\n(.*?)```\n", text, re.S)}
    files = sorted(os.path.relpath(os.path.join(d, f), TEMPLATE)
                   for d, _, fs in os.walk(TEMPLATE) for f in fs)
    errors = [f"{f}: not quoted in the guide" for f in files if f not in quoted]
    for name, body in quoted.items():
        path = os.path.join(TEMPLATE, name)
        if not os.path.isfile(path):
            errors.append(f"{name}: quoted in the guide, but not in the template")
        elif open(path).read() != body:
            errors.append(f"{name}: the guide's copy differs from the template's")
    for e in errors:
        print(f"docs/getting-started.md: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"ok: the guide quotes the template's {len(files)} files exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
