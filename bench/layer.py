"""The layer's size, zipped, and what it ships that the Lambda Python runtime already has
(boto3 and its dependencies). No budget: a figure for the decision in the README.

Measured from this environment's installed copies of the layer's pinned requirements (the same
versions ``sam build`` installs; this machine's wheels, so native parts are this architecture's)
plus the tokencore package, deflated as a layer zip would be, without bytecode.
"""

from __future__ import annotations

import io
import re
import zipfile
from importlib import metadata
from pathlib import Path

from bench.common import REPO_ROOT, Budget, table

REQUIREMENTS = REPO_ROOT / "layers" / "tokencore" / "requirements.txt"
# What the python3.12 runtime itself provides (its own boto3, at the version AWS chose).
IN_THE_RUNTIME = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
}


def _closure() -> set[str]:
    wanted = [
        re.split(r"[=<>\[ ]", line.strip())[0].lower()
        for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    seen: set[str] = set()
    while wanted:
        name = wanted.pop().replace("_", "-")
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for requirement in dist.requires or []:
            if "extra ==" in requirement:
                continue
            wanted.append(re.split(r"[=<>!~;\[ (]", requirement.strip())[0].lower())
    return seen


def _zipped(files: list[Path]) -> tuple[int, int]:
    buffer = io.BytesIO()
    raw = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            if path.suffix == ".pyc" or "__pycache__" in path.parts or not path.is_file():
                continue
            raw += path.stat().st_size
            archive.write(path, str(path).lstrip("/"))
    return raw, len(buffer.getvalue())


def _files(name: str) -> list[Path]:
    dist = metadata.distribution(name)
    return [Path(str(dist.locate_file(entry))) for entry in dist.files or []]


def run(quick: bool = False) -> tuple[list[str], list[Budget]]:
    sizes: dict[str, tuple[int, int]] = {}
    for name in sorted(_closure()):
        sizes[name] = _zipped(_files(name))
    ours = REPO_ROOT / "layers" / "tokencore" / "tokencore"
    sizes["tokencore"] = _zipped(sorted(ours.rglob("*")))
    total = sum(z for _, z in sizes.values())
    runtime_has = sum(z for name, (_, z) in sizes.items() if name in IN_THE_RUNTIME)
    rows = [
        [
            name,
            f"{raw / 2**20:.1f}",
            f"{zipped / 2**20:.1f}",
            "yes" if name in IN_THE_RUNTIME else "",
        ]
        for name, (raw, zipped) in sorted(sizes.items(), key=lambda item: -item[1][1])
    ]
    rows.append(["**total**", "", f"**{total / 2**20:.1f}**", f"{runtime_has / 2**20:.1f} MiB"])
    lines = [
        "### The layer",
        "",
        f"Zipped: {total / 2**20:.1f} MiB, of which {runtime_has / 2**20:.1f} MiB "
        f"({100 * runtime_has / total:.0f}%) is boto3 and its dependencies, which the Lambda "
        "runtime also ships (README: why the layer keeps its own).",
        "",
        table(["distribution", "MiB", "MiB zipped", "in the Lambda runtime"], rows),
    ]
    return lines, []
