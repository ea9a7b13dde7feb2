"""Regenerates tf_gkd/export/runtime_versions.json from TensorFlow Lite's `runtime_version.cc`.

    python scripts/runtime_versions.py path/to/runtime_version.cc \\
        --source="google-ai-edge/LiteRT, tflite/converter/tools/versioning/runtime_version.cc at commit <sha>"

`runtime_version.cc` (in LiteRT, `tflite/converter/tools/versioning/`; formerly TensorFlow's
`tensorflow/lite/tools/versioning/`) holds, in `FindMinimumRuntimeVersionForOp`, the oldest
TFLite runtime that has each version of each builtin operator. This script reads the entries
`{{BuiltinOperator_NAME, version}, "x.y.z"}` of that function and writes them as
{"NAME": {"version": "x.y.z"}}, with `--source` (where the file came from: repository, path,
commit) under the key "_source". `--check` compares instead of writing and exits 1 if the JSON
file differs (for a test or CI).
"""

import argparse
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(REPO, "tf_gkd", "export", "runtime_versions.json")
FUNCTION = "FindMinimumRuntimeVersionForOp"
_ENTRY = re.compile(r'\{\s*\{\s*BuiltinOperator_(\w+)\s*,\s*(\d+)\s*\}\s*,\s*"([0-9.]+)"\s*\}')


def parse(text):
    """{op name: {version: runtime}} from the text of `runtime_version.cc`.

    Comments are removed first; then only the body of `FindMinimumRuntimeVersionForOp` is
    read. Raises ValueError if the function is missing, holds no entry, or gives one
    (op, version) two runtimes.
    """
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    start = text.find(FUNCTION + "(")
    if start < 0:
        raise ValueError(f"No {FUNCTION} in the file: is it runtime_version.cc?")
    # The function's body: from its first brace to the brace that closes it.
    depth = 0
    for end in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            break
    body = text[start : end + 1]
    table = {}
    for name, version, runtime in _ENTRY.findall(body):
        versions = table.setdefault(name, {})
        if versions.get(version, runtime) != runtime:
            raise ValueError(f"{name} version {version} has two runtimes: {versions[version]} and {runtime}.")
        versions[version] = runtime
    if not table:
        raise ValueError(f'{FUNCTION} has no {{{{BuiltinOperator_NAME, version}}, "x.y.z"}} entries.')
    return {name: dict(sorted(table[name].items(), key=lambda kv: int(kv[0]))) for name in sorted(table)}


def render(table, source):
    """The JSON file's text: the source first, then one line per operator, in alphabetical order."""
    lines = [f"  {json.dumps('_source')}: {json.dumps(source)}"]
    lines += [f"  {json.dumps(name)}: {json.dumps(versions)}" for name, versions in table.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cc_file", help="runtime_version.cc")
    parser.add_argument("--source", required=True, help="Where the file came from: repository, path and commit.")
    parser.add_argument("--output", default=OUTPUT, help="The JSON file to write (default: the package's).")
    parser.add_argument("--check", action="store_true", help="Exit 1 if --output differs instead of writing it.")
    args = parser.parse_args(argv)
    with open(args.cc_file) as f:
        text = render(parse(f.read()), args.source)
    if args.check:
        with open(args.output) as f:
            if f.read() != text:
                print(f"{args.output} is not what {args.cc_file} gives: regenerate it.", file=sys.stderr)
                return 1
        return 0
    with open(args.output, "w") as f:
        f.write(text)
    print(f"Wrote {args.output}: {sum(len(v) for v in json.loads(text).values() if isinstance(v, dict))} entries.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
