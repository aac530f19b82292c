"""samconfig.toml's deploy profiles, checked against template.yaml without AWS.

``make deploy`` refuses a profile with a problem before it builds anything, and the tests run
the same check on every profile: each override names a template parameter and satisfies its
constraints, the stack name is one CloudFormation accepts, and the names the stack derives
from it fit the resources they name.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
SAMCONFIG_PATH: Final = REPO_ROOT / "samconfig.toml"
PROFILES: Final = ("dev", "prod")
# What CloudFormation accepts as a stack name.
STACK_NAME_PATTERN: Final = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
# The parameters that name a resource: empty derives the name from the stack (template.yaml).
STACK_NAMED: Final = {
    "SessionsTableName": "{stack}-sessions",
    "SigningKeysSecretId": "{stack}/signing-keys",
    "RefreshKeysSecretId": "{stack}/refresh-keys",
    "PublicJwksParameter": "/{stack}/public-jwks",
}
# The capability the template needs: SAM creates an IAM role per function (no custom names).
REQUIRED_CAPABILITIES: Final = frozenset({"CAPABILITY_IAM"})


class ProfileError(Exception):
    """A profile that cannot deploy; the message names the profile and what to change."""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    stack_name: str
    region: str
    capabilities: tuple[str, ...]
    confirm_changeset: bool
    parameters: Mapping[str, str]

    def overrides(self, extra: Mapping[str, str] | None = None) -> list[str]:
        """``Key=Value`` words for ``sam deploy --parameter-overrides``, extras winning."""
        merged = {**self.parameters, **(extra or {})}
        return [f"{key}={value}" for key, value in merged.items()]


def load_samconfig(path: Path = SAMCONFIG_PATH) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def parse_overrides(text: str) -> dict[str, str]:
    """samconfig's ``parameter_overrides``: ``Key=Value`` words, shell-quoted."""
    parsed: dict[str, str] = {}
    for word in shlex.split(text):
        key, separator, value = word.partition("=")
        if not separator or not key:
            raise ProfileError(f"parameter override {word!r} is not Key=Value")
        parsed[key] = value
    return parsed


def profile(config: Mapping[str, Any], name: str) -> Profile:
    section = ((config.get(name) or {}).get("deploy") or {}).get("parameters")
    if not isinstance(section, dict):
        raise ProfileError(f"samconfig.toml has no [{name}.deploy.parameters]")
    overrides = section.get("parameter_overrides", "")
    if isinstance(overrides, list):
        overrides = " ".join(shlex.quote(str(item)) for item in overrides)
    capabilities = section.get("capabilities", "")
    if isinstance(capabilities, str):
        capabilities = capabilities.split()
    return Profile(
        name=name,
        stack_name=str(section.get("stack_name", "")),
        region=str(section.get("region", "")),
        capabilities=tuple(str(item) for item in capabilities),
        confirm_changeset=bool(section.get("confirm_changeset", False)),
        parameters=parse_overrides(str(overrides)),
    )


def problems(template: Mapping[str, Any], chosen: Profile) -> list[str]:
    """Everything wrong with one profile for this template (empty when it can deploy)."""
    found: list[str] = []
    where = f"samconfig.toml [{chosen.name}]"
    if not STACK_NAME_PATTERN.match(chosen.stack_name):
        found.append(f"{where}: stack_name {chosen.stack_name!r} is not a CloudFormation name")
    if not re.match(r"^[a-z]{2}(-[a-z]+)+-[0-9]$", chosen.region):
        found.append(f"{where}: region {chosen.region!r} is not an AWS region name")
    missing = REQUIRED_CAPABILITIES - set(chosen.capabilities)
    if missing:
        found.append(f"{where}: capabilities lack {', '.join(sorted(missing))}")
    specs: Mapping[str, Any] = template.get("Parameters") or {}
    for key, value in chosen.parameters.items():
        spec = specs.get(key)
        if spec is None:
            found.append(f"{where}: {key} is not a parameter of template.yaml")
            continue
        problem = violation(spec, value)
        if problem:
            found.append(f"{where}: {key}={value!r} {problem}")
    for key, pattern in STACK_NAMED.items():
        value = chosen.parameters.get(key) or pattern.format(stack=chosen.stack_name)
        problem = violation(specs[key], value)
        if problem:
            found.append(f"{where}: the derived {key} {value!r} {problem}")
    return found


def violation(spec: Mapping[str, Any], value: str) -> str | None:
    """How a value breaks a parameter's constraints, as CloudFormation would check them."""
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(item) for item in allowed]:
        return f"is not one of {', '.join(str(item) for item in allowed)}"
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        return f"does not match {pattern}"
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return "is not a number"
        if "MinValue" in spec and number < float(spec["MinValue"]):
            return f"is below {spec['MinValue']}"
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            return f"is above {spec['MaxValue']}"
    elif "MinLength" in spec and len(value) < int(spec["MinLength"]):
        return f"is shorter than {spec['MinLength']}"
    return None
