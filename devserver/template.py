"""template.yaml as data: a YAML loader that understands CloudFormation's short tags, and an
evaluator for the intrinsic functions the local stack needs.

``load_template`` reads the SAM template with a SafeLoader that turns every short-form tag into
its long form (``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``,
``!Sub s`` -> ``{"Fn::Sub": "s"}``...), exactly as CloudFormation itself sees the document, and
keeps YAML 1.1 timestamps as strings (``Version: 2012-10-17`` is a string to CloudFormation).
Nothing executes: the loader is ``yaml.SafeLoader`` plus constructors that build plain data.

``Evaluator`` resolves ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If`` and the condition
functions, ``Fn::Join``, ``Fn::Split``, ``Fn::Select``, ``Fn::FindInMap``, ``Fn::Base64`` and
``Fn::ImportValue`` against parameter values, pseudo parameters, two callbacks that name
resources (the local stack creates a resource when something first refers to it) and the
exports of the stacks loaded before (a second template that attaches to the first). Anything
else raises TemplateError naming the function, so an unsupported construct fails loudly at
start.

Tests use the same loader (``from devserver.template import load_template``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
TEMPLATE_PATH: Final = REPO_ROOT / "template.yaml"

# The short forms CloudFormation accepts in YAML (Fn::Transform and friends included so that a
# template using them loads; the evaluator refuses what it cannot do).
SHORT_TAGS: Final = frozenset(
    {
        "Ref",
        "Condition",
        "GetAtt",
        "Sub",
        "If",
        "Equals",
        "Not",
        "And",
        "Or",
        "Join",
        "Split",
        "Select",
        "FindInMap",
        "Base64",
        "GetAZs",
        "ImportValue",
        "Cidr",
        "Transform",
        "Length",
        "ToJsonString",
    }
)

_TIMESTAMP_TAG: Final = "tag:yaml.org,2002:timestamp"


class TemplateError(Exception):
    """The template cannot be read or holds something the local stack cannot evaluate."""


class CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader with CloudFormation's short-form tags and without YAML timestamps."""


CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_short_form(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if suffix not in SHORT_TAGS:
        raise yaml.constructor.ConstructorError(
            None, None, f"unknown tag !{suffix}", node.start_mark
        )
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_short_form)


def load_template(path: Path | str = TEMPLATE_PATH) -> dict[str, Any]:
    """The template at ``path`` in CloudFormation's long form. Raises TemplateError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        document = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources")
    return document


# --- evaluation ----------------------------------------------------------------------------------


class _NoValue:
    """``AWS::NoValue``: the property or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()

_INTRINSICS: Final = frozenset(
    {"Ref", "Condition"} | {f"Fn::{name}" for name in SHORT_TAGS if name not in ("Ref",)}
)
_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")


def is_intrinsic(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSICS


def scalar_text(value: object) -> str:
    """A scalar as CloudFormation writes it into a string (environment variables, Sub)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"expected a scalar, got {type(value).__name__}")


def referenced_names(value: object) -> Iterator[str]:
    """Every name a ``Ref`` inside ``value`` points at (parameters, resources, pseudo ones)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                yield item
            else:
                yield from referenced_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from referenced_names(item)


class Evaluator:
    """Evaluates intrinsic functions of one template.

    ``parameters``: the value of every template parameter (defaults already applied);
    ``pseudo``: ``AWS::Region`` and friends; ``ref_resource(logical_id)`` and
    ``get_att(logical_id, attribute)``: what a resource's Ref and attributes are.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, str],
        ref_resource: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
        exports: Mapping[str, str] | None = None,
    ) -> None:
        self._template = template
        self._exports = exports or {}
        self._parameters = parameters
        self._pseudo = pseudo
        self._ref_resource = ref_resource
        self._get_att = get_att
        self._conditions: dict[str, bool] = {}

    # --- conditions ------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definitions = self._template.get("Conditions") or {}
            if name not in definitions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = self._truth(self.evaluate(definitions[name]), name)
        return self._conditions[name]

    @staticmethod
    def _truth(value: object, where: str) -> bool:
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise TemplateError(f"{where} does not evaluate to true or false")

    # --- values ----------------------------------------------------------------------------

    def evaluate(self, value: Any) -> Any:
        """``value`` with every intrinsic function resolved (NO_VALUE removes an item)."""
        if isinstance(value, dict):
            if is_intrinsic(value):
                ((name, argument),) = value.items()
                return self._intrinsic(name, argument)
            result = {}
            for key, item in value.items():
                evaluated = self.evaluate(item)
                if evaluated is not NO_VALUE:
                    result[key] = evaluated
            return result
        if isinstance(value, list):
            items = (self.evaluate(item) for item in value)
            return [item for item in items if item is not NO_VALUE]
        return value

    def _intrinsic(self, name: str, argument: Any) -> Any:
        handler = getattr(self, "_fn_" + name.removeprefix("Fn::").lower(), None)
        if handler is None:
            raise TemplateError(f"{name} is not supported by the local stack")
        return handler(argument)

    def _fn_ref(self, name: object) -> Any:
        if not isinstance(name, str):
            raise TemplateError("Ref needs a name")
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        if name in (self._template.get("Resources") or {}):
            return self._ref_resource(name)
        raise TemplateError(f"Ref to unknown name {name}")

    def _fn_getatt(self, argument: object) -> Any:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError("Fn::GetAtt needs [resource, attribute]")
        resource, attribute = argument[0], self.evaluate(argument[1])
        if not isinstance(resource, str) or not isinstance(attribute, str):
            raise TemplateError("Fn::GetAtt needs [resource, attribute]")
        if resource not in (self._template.get("Resources") or {}):
            raise TemplateError(f"Fn::GetAtt of unknown resource {resource}")
        return self._get_att(resource, attribute)

    def _fn_sub(self, argument: object) -> str:
        variables: Mapping[str, Any] = {}
        text = argument
        if isinstance(argument, list):
            if len(argument) != 2 or not isinstance(argument[1], dict):
                raise TemplateError("Fn::Sub needs a string or [string, {variables}]")
            text, variables = argument[0], argument[1]
        if not isinstance(text, str):
            raise TemplateError("Fn::Sub needs a string")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return scalar_text(self.evaluate(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return scalar_text(self._fn_getatt([resource, attribute]))
            return scalar_text(self._fn_ref(name))

        return _SUB_VARIABLE.sub(replace, text)

    def _fn_if(self, argument: object) -> Any:
        if not isinstance(argument, list) or len(argument) != 3:
            raise TemplateError("Fn::If needs [condition, when true, when false]")
        name, when_true, when_false = argument
        return self.evaluate(when_true if self.condition(name) else when_false)

    def _fn_condition(self, name: object) -> bool:
        if not isinstance(name, str):
            raise TemplateError("Condition needs a name")
        return self.condition(name)

    def _fn_equals(self, argument: object) -> bool:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError("Fn::Equals needs two values")
        left, right = (self.evaluate(item) for item in argument)
        if isinstance(left, list | dict) or isinstance(right, list | dict):
            return bool(left == right)
        return scalar_text(left) == scalar_text(right)

    def _fn_not(self, argument: object) -> bool:
        if not isinstance(argument, list) or len(argument) != 1:
            raise TemplateError("Fn::Not needs one condition")
        return not self._truth(self.evaluate(argument[0]), "Fn::Not")

    def _fn_and(self, argument: object) -> bool:
        if not isinstance(argument, list):
            raise TemplateError("Fn::And needs a list")
        return all(self._truth(self.evaluate(item), "Fn::And") for item in argument)

    def _fn_or(self, argument: object) -> bool:
        if not isinstance(argument, list):
            raise TemplateError("Fn::Or needs a list")
        return any(self._truth(self.evaluate(item), "Fn::Or") for item in argument)

    def _fn_join(self, argument: object) -> str:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError("Fn::Join needs [delimiter, list]")
        delimiter, items = argument[0], self.evaluate(argument[1])
        if not isinstance(delimiter, str) or not isinstance(items, list):
            raise TemplateError("Fn::Join needs [delimiter, list]")
        return delimiter.join(scalar_text(item) for item in items)

    def _fn_split(self, argument: object) -> list[str]:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError("Fn::Split needs [delimiter, string]")
        delimiter, text = argument[0], self.evaluate(argument[1])
        if not isinstance(delimiter, str) or not isinstance(text, str):
            raise TemplateError("Fn::Split needs [delimiter, string]")
        return text.split(delimiter)

    def _fn_select(self, argument: object) -> Any:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError("Fn::Select needs [index, list]")
        index, items = self.evaluate(argument[0]), self.evaluate(argument[1])
        if not isinstance(items, list):
            raise TemplateError("Fn::Select needs a list")
        try:
            return items[int(index)]
        except (ValueError, IndexError) as exc:
            raise TemplateError("Fn::Select index is out of range") from exc

    def _fn_findinmap(self, argument: object) -> Any:
        if not isinstance(argument, list) or len(argument) not in (3, 4):
            raise TemplateError("Fn::FindInMap needs [map, key, key]")
        name, first, second = (scalar_text(self.evaluate(item)) for item in argument[:3])
        try:
            return self._template["Mappings"][name][first][second]
        except (KeyError, TypeError) as exc:
            if len(argument) == 4 and isinstance(argument[3], dict):
                return self.evaluate(argument[3].get("DefaultValue"))
            raise TemplateError(f"Fn::FindInMap: no {name}.{first}.{second}") from exc

    def _fn_importvalue(self, argument: object) -> str:
        name = self.evaluate(argument)
        if not isinstance(name, str) or name not in self._exports:
            raise TemplateError(f"Fn::ImportValue: no stack of the local stack exports {name}")
        return self._exports[name]

    def _fn_base64(self, argument: object) -> str:
        text = scalar_text(self.evaluate(argument))
        return base64.b64encode(text.encode("utf-8")).decode("ascii")


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """Each parameter's Default, as CloudFormation hands it to Ref (a list for list types)."""
    values: dict[str, Any] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if isinstance(spec, dict) and "Default" in spec:
            values[name] = parameter_value(spec, spec["Default"])
    return values


def parameter_value(spec: Mapping[str, Any], value: Any) -> Any:
    """A parameter value as Ref returns it: text, or a list of text for list types."""
    kind = str(spec.get("Type", "String"))
    if kind == "CommaDelimitedList" or kind.startswith("List<"):
        if isinstance(value, list):
            return [scalar_text(item) for item in value]
        text = scalar_text(value)
        return [item.strip() for item in text.split(",")] if text else []
    return scalar_text(value)


def merged_function_properties(
    template: Mapping[str, Any], properties: Mapping[str, Any]
) -> dict[str, Any]:
    """A function's properties with ``Globals.Function`` applied the way SAM applies it:
    the function's own value wins, except that environment variables are merged."""
    global_props = (template.get("Globals") or {}).get("Function") or {}
    merged = dict(global_props)
    merged.update(properties)
    global_vars = ((global_props.get("Environment") or {}).get("Variables")) or {}
    own_vars = ((properties.get("Environment") or {}).get("Variables")) or {}
    if global_vars or own_vars:
        merged["Environment"] = {"Variables": {**global_vars, **own_vars}}
    return merged


def global_environment(template: Mapping[str, Any]) -> dict[str, Any]:
    """``Globals.Function.Environment.Variables`` (unevaluated)."""
    global_props = (template.get("Globals") or {}).get("Function") or {}
    variables = (global_props.get("Environment") or {}).get("Variables") or {}
    return dict(variables)
