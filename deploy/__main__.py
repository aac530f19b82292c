"""``make deploy [ENV=dev|prod] [ARCH=arm64|x86_64] [REGION=...] [NO_EXECUTE=1]``.

Run by the Makefile after ``make build`` (so the deployed artifacts are exactly `make build`'s,
bytecode included), with the SAM CLI's own virtualenv. In order:

1. the samconfig.toml profile is checked against template.yaml (deploy.profiles);
2. without AWS credentials it stops here, saying so: everything before this point needs none;
3. ``sam deploy --config-env ENV`` with the profile's parameters plus ``Architecture``;
4. on a stack's first deployment with no TokenIssuer in the profile, the issuer becomes the new
   API's URL (the ApiUrl output) in one more update of the same run: the stack cannot hand its
   own URL to its functions (docs/deploy.md), and no token exists yet to be invalidated. Later
   runs pass the stack's ApiUrl from the start, so they never reset it.

Exit status: 0 deployed (or a change set created with NO_EXECUTE=1), 1 sam failed, 2 a profile
problem, 3 no credentials.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from deploy.profiles import REPO_ROOT, Profile, ProfileError, load_samconfig, problems, profile

PROG: Final = "make deploy"
BUILT_TEMPLATE: Final = REPO_ROOT / ".aws-sam" / "build" / "template.yaml"
EXIT_SAM_FAILED: Final = 1
EXIT_PROFILE: Final = 2
EXIT_NO_CREDENTIALS: Final = 3


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def stack_outputs(session: Any, stack_name: str) -> dict[str, str] | None:
    """The stack's outputs, or None when it does not exist yet."""
    from botocore.exceptions import ClientError

    client = session.client("cloudformation")
    try:
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    if not stacks or stacks[0].get("StackStatus") == "REVIEW_IN_PROGRESS":
        return None
    return {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}


def sam_deploy(chosen: Profile, region: str, extra: dict[str, str], *, no_execute: bool) -> int:
    sam = Path(sys.executable).parent / "sam"
    command = [
        str(sam),
        "deploy",
        "--config-env",
        chosen.name,
        "--region",
        region,
        "--parameter-overrides",
        *chosen.overrides(extra),
    ]
    if no_execute:
        command.append("--no-execute-changeset")
    say(" ".join(command[1:]))
    # The command is ours: sam, a profile name, and Key=Value words from samconfig.toml.
    return subprocess.run(command, cwd=REPO_ROOT, check=False).returncode  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG)
    parser.add_argument("--env", default="dev")
    parser.add_argument("--arch", default="arm64", choices=["arm64", "x86_64"])
    parser.add_argument("--region", default="")
    parser.add_argument("--no-execute", action="store_true")
    args = parser.parse_args(argv)

    from devserver.template import load_template

    try:
        chosen = profile(load_samconfig(), args.env)
    except ProfileError as exc:
        say(str(exc))
        return EXIT_PROFILE
    found = problems(load_template(), chosen)
    for problem in found:
        say(problem)
    if found:
        return EXIT_PROFILE
    region = args.region or chosen.region
    if not BUILT_TEMPLATE.is_file():
        say("no .aws-sam/build/template.yaml: run it through the Makefile (it builds first)")
        return EXIT_PROFILE
    shown = (
        BUILT_TEMPLATE.relative_to(REPO_ROOT)
        if BUILT_TEMPLATE.is_relative_to(REPO_ROOT)
        else BUILT_TEMPLATE
    )
    say(
        f"profile {chosen.name} checked; template validated and built for {args.arch} "
        f"({shown}): stack {chosen.stack_name} in {region}"
    )

    import boto3

    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        say(
            "stopping before `sam deploy`: uploading the artifacts and creating the change set "
            "need AWS credentials, and none were found. Set AWS_PROFILE (or AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY), or run `aws configure` or `aws sso login`, then run "
            "make deploy again."
        )
        return EXIT_NO_CREDENTIALS

    extra = {"Architecture": args.arch}
    issuer_given = bool(chosen.parameters.get("TokenIssuer"))
    outputs = stack_outputs(session, chosen.stack_name)
    if not issuer_given and outputs and outputs.get("ApiUrl"):
        extra["TokenIssuer"] = outputs["ApiUrl"]
    status = sam_deploy(chosen, region, extra, no_execute=args.no_execute)
    if status != 0 or issuer_given or "TokenIssuer" in extra or args.no_execute:
        return EXIT_SAM_FAILED if status else 0
    outputs = stack_outputs(session, chosen.stack_name) or {}
    api_url = outputs.get("ApiUrl")
    if not api_url:
        say("the stack has no ApiUrl output; TokenIssuer stays unset (docs/deploy.md)")
        return EXIT_SAM_FAILED
    say(f"first deployment: TokenIssuer becomes the API's URL, {api_url} (one more update)")
    extra["TokenIssuer"] = api_url
    status = sam_deploy(chosen, region, extra, no_execute=False)
    return EXIT_SAM_FAILED if status else 0


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    sys.exit(main())
