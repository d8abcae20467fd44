#!/usr/bin/env python3
"""The Dockerfile, read without a Docker engine.

  dockerfile.py stage --dockerfile F --stage NAME --context DIR --workdir DIR
      runs one build stage on this machine. hack/image.sh uses it so that `make image`
      builds the binary with the Dockerfile's own steps (the dependency stub, then the
      sources) instead of a copy of them that could drift. It understands what a build stage
      of this repository uses: ENV, WORKDIR (mapped to --workdir), COPY of context paths,
      RUN (bash, in the workdir). Anything else in the stage is an error, so a new
      instruction cannot be silently skipped. Only target/ is kept between runs (cargo's
      cache, in the role of Docker's layer cache); everything else is removed first, so
      every run starts as Docker's stage does.

  dockerfile.py pinned --dockerfile F
      exits 1, naming it, if a stage starts from an image not pinned by digest
      (`name:tag@sha256:...`); a stage built on an earlier stage is fine.

  dockerfile.py config --dockerfile F --image IMAGE.tar --version V
      compares the final stage's USER, ENTRYPOINT, CMD, LABEL and EXPOSE with the config of an
      image tarball (`make image`'s): the e2e's check that the two cannot drift.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile


def instructions(text):
    """(keyword, argument) pairs, with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, argument = current.partition(" ")
        lines.append((keyword.upper(), argument.strip()))
        current = ""
    return lines


def stages(steps):
    """[(FROM argument, [(keyword, argument)])], one per stage."""
    out = []
    for keyword, argument in steps:
        if keyword == "FROM":
            out.append((argument, []))
        elif out:
            out[-1][1].append((keyword, argument))
    return out


def run_stage(opts):
    with open(opts.dockerfile) as f:
        named = [s for s in stages(instructions(f.read())) if s[0].lower().endswith(" as " + opts.stage)]
    if not named:
        sys.exit(f"dockerfile: no stage named {opts.stage}")
    steps = named[0][1]
    env = dict(os.environ)
    os.makedirs(opts.workdir, exist_ok=True)
    # The stage starts from an empty directory, as in Docker, but for cargo's target/.
    for entry in os.listdir(opts.workdir):
        if entry != "target":
            path = os.path.join(opts.workdir, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    for keyword, argument in steps:
        if keyword == "WORKDIR":
            continue  # the stage's one workdir is --workdir
        if keyword == "ENV":
            key, _, value = argument.partition("=")
            env[key] = shlex.split(value)[0] if value else ""
        elif keyword == "COPY":
            *sources, dest = shlex.split(argument)
            if any(s.startswith("--") for s in sources):
                sys.exit(f"dockerfile: COPY flags are not supported: {argument}")
            for source in sources:
                src = os.path.join(opts.context, source)
                target = os.path.join(opts.workdir, dest, os.path.basename(source)) if dest.endswith("/") else os.path.join(opts.workdir, dest)
                if os.path.isdir(src):
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(src, target)
                else:
                    shutil.copy(src, target)
        elif keyword == "RUN":
            print(f"[dockerfile] RUN {argument[:100]}...", file=sys.stderr)
            subprocess.run(["bash", "-euo", "pipefail", "-c", argument], cwd=opts.workdir, env=env, check=True)
        else:
            sys.exit(f"dockerfile: {keyword} is not supported in a build stage")


def check_config(opts):
    """Exit 1, naming each difference, unless the image's config is the final stage's."""
    with open(opts.dockerfile) as f:
        final = stages(instructions(f.read()))[-1][1]
    args = {"VERSION": opts.version}
    want = {"User": None, "Entrypoint": None, "Cmd": None, "Labels": {}, "ExposedPorts": {}}
    for keyword, argument in final:
        if keyword == "ARG":
            continue
        if keyword == "USER":
            want["User"] = argument
        elif keyword in ("ENTRYPOINT", "CMD"):
            want["Entrypoint" if keyword == "ENTRYPOINT" else "Cmd"] = json.loads(argument)
        elif keyword == "LABEL":
            for pair in shlex.split(argument):
                key, _, value = pair.partition("=")
                want["Labels"][key] = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)
        elif keyword == "EXPOSE":
            for port in argument.split():
                want["ExposedPorts"][port if "/" in port else port + "/tcp"] = {}
    with tarfile.open(opts.image) as image:
        manifest = json.load(image.extractfile("manifest.json"))[0]
        config = json.load(image.extractfile(manifest["Config"]))["config"]
    got = {key: config.get(key) or ({} if key in ("Labels", "ExposedPorts") else None) for key in want}
    differences = [f"{key}: Dockerfile {want[key]!r}, image {got[key]!r}" for key in want if want[key] != got[key]]
    for line in differences:
        print(f"dockerfile: {line}", file=sys.stderr)
    print(f"dockerfile: the image's config {'differs from' if differences else 'is'} the Dockerfile's final stage", file=sys.stderr)
    sys.exit(1 if differences else 0)


def check_pinned(opts):
    with open(opts.dockerfile) as f:
        built = stages(instructions(f.read()))
    names, unpinned = set(), []
    for argument, _ in built:
        words = argument.split()
        image = words[0]
        if image not in names and not re.search(r"@sha256:[0-9a-f]{64}$", image):
            unpinned.append(image)
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])
    for image in unpinned:
        print(f"dockerfile: FROM {image} is not pinned by digest (name:tag@sha256:...)", file=sys.stderr)
    sys.exit(1 if unpinned else 0)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    stage = sub.add_parser("stage")
    stage.add_argument("--dockerfile", required=True)
    stage.add_argument("--stage", required=True)
    stage.add_argument("--context", required=True)
    stage.add_argument("--workdir", required=True)
    config = sub.add_parser("config")
    config.add_argument("--dockerfile", required=True)
    config.add_argument("--image", required=True)
    config.add_argument("--version", required=True)
    pinned = sub.add_parser("pinned")
    pinned.add_argument("--dockerfile", required=True)
    opts = parser.parse_args()
    {"stage": run_stage, "config": check_config, "pinned": check_pinned}[opts.command](opts)


if __name__ == "__main__":
    main()
