"""The CloudFormation template `deploy/aws/booking-gateway.yaml`, read as data: the one declaration of the table,
the user pool and the app client that both the deployed stack and the local stack are made from.

`DeployTemplate.load()` parses the YAML (with CloudFormation's short tags), and `resolve(...)` evaluates the few
intrinsic functions the template uses (`Ref`, `Fn::If`, `Fn::Equals`, `Fn::Not`, `Fn::Sub`, `Fn::GetAtt`) for one
set of parameter values. The bootstrap turns the resolved resource properties into API calls
(`gateway.devstack.bootstrap`); a property it does not know is an error, so the template cannot gain a setting
that the local stack silently ignores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_NAME = "booking-gateway.yaml"
# In a wheel the template is packaged beside this module; in the repository it lives under deploy/aws/.
_CANDIDATES = (
    Path(__file__).with_name(TEMPLATE_NAME),
    Path(__file__).resolve().parents[3] / "deploy" / "aws" / TEMPLATE_NAME,
)


class TemplateError(ValueError):
    """The template says something this reader (or the bootstrap) does not understand."""


class _NoValue:
    """`Ref AWS::NoValue`: the enclosing list item or property is dropped."""


NO_VALUE = _NoValue()


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (`!Ref X` is `{"Ref": "X"}`, `!If [...]` is `{"Fn::If": [...]}`)."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise TemplateError(f"unexpected node {node!r}")
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _short_form)


def template_path() -> Path:
    """Where the template is: beside this module in a wheel, else under the repository's deploy/aws/."""
    for candidate in _CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {TEMPLATE_NAME} in any of {[str(c) for c in _CANDIDATES]}")


@dataclass(frozen=True)
class Resolved:
    """Values for one evaluation: parameters, pseudo parameters, and resources already created."""

    parameters: Mapping[str, Any]
    conditions: Mapping[str, bool]
    pseudo: Mapping[str, str]
    refs: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployTemplate:
    """The parsed template."""

    body: dict[str, Any]
    path: Path

    @classmethod
    def load(cls, path: Path | None = None) -> DeployTemplate:
        """Parse the template file (the packaged or repository one unless `path` is given)."""
        path = path or template_path()
        body = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        if not isinstance(body, dict) or "Resources" not in body:
            raise TemplateError(f"{path} is not a CloudFormation template")
        return cls(body=body, path=path)

    def resource(self, logical_id: str) -> dict[str, Any]:
        """The raw resource (`Type`, `Properties`, ...)."""
        resources: dict[str, Any] = self.body["Resources"]
        if logical_id not in resources:
            raise TemplateError(f"the template has no resource {logical_id}")
        found: dict[str, Any] = resources[logical_id]
        return found

    def parameter_values(self, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Every parameter's value: its override or its default, typed as declared (Number becomes int)."""
        overrides = dict(overrides or {})
        declared: dict[str, Any] = self.body.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"no such template parameters: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            raw = overrides.get(name, spec.get("Default"))
            if raw is None:
                raise TemplateError(f"template parameter {name} has no default and no value")
            values[name] = int(raw) if spec.get("Type") == "Number" else str(raw)
        return values

    def context(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        region: str,
        account_id: str = "123456789012",
        refs: Mapping[str, str] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Resolved:
        """What `resolve` evaluates against: parameter values, the template's conditions, pseudo parameters."""
        parameters = self.parameter_values(overrides)
        pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
            "AWS::StackName": "booking-gateway",
        }
        partial = Resolved(parameters=parameters, conditions={}, pseudo=pseudo)
        conditions: dict[str, bool] = {}
        for name, expression in self.body.get("Conditions", {}).items():
            partial = Resolved(parameters=parameters, conditions=conditions, pseudo=pseudo)
            conditions[name] = bool(resolve(expression, partial))
        return Resolved(
            parameters=parameters,
            conditions=conditions,
            pseudo=pseudo,
            refs=dict(refs or {}),
            attributes=dict(attributes or {}),
        )

    def properties(self, logical_id: str, context: Resolved) -> dict[str, Any]:
        """A resource's properties with every intrinsic function evaluated."""
        resolved = resolve(self.resource(logical_id).get("Properties", {}), context)
        if not isinstance(resolved, dict):
            raise TemplateError(f"{logical_id}.Properties is not a mapping")
        return resolved


_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def _ref(name: str, context: Resolved) -> Any:
    if name == "AWS::NoValue":
        return NO_VALUE
    if name in context.parameters:
        return context.parameters[name]
    if name in context.pseudo:
        return context.pseudo[name]
    if name in context.refs:
        return context.refs[name]
    raise TemplateError(f"Ref {name}: not a parameter, a pseudo parameter or a resource created so far")


def _get_att(logical_id: str, attribute: str, context: Resolved) -> str:
    key = f"{logical_id}.{attribute}"
    if key not in context.attributes:
        raise TemplateError(f"Fn::GetAtt {key}: not known here")
    return context.attributes[key]


def _sub(text: str, context: Resolved) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if "." in name and name not in context.parameters:
            logical_id, attribute = name.split(".", 1)
            return _get_att(logical_id, attribute, context)
        return str(_ref(name, context))

    return _SUB_VARIABLE.sub(replace, text)


def resolve(value: Any, context: Resolved) -> Any:
    """`value` with the template's intrinsic functions evaluated; `AWS::NoValue` items and keys are dropped."""
    if isinstance(value, list):
        items = [resolve(item, context) for item in value]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, argument),) = value.items()
        if key == "Ref":
            return _ref(argument, context)
        if key == "Condition":
            return context.conditions[argument]
        if key == "Fn::If":
            condition, when_true, when_false = argument
            if condition not in context.conditions:
                raise TemplateError(f"Fn::If names no condition {condition}")
            return resolve(when_true if context.conditions[condition] else when_false, context)
        if key == "Fn::Equals":
            left, right = (resolve(item, context) for item in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            (inner,) = argument
            return not resolve(inner, context)
        if key == "Fn::Sub":
            if not isinstance(argument, str):
                raise TemplateError("only the one-string form of Fn::Sub is supported")
            return _sub(argument, context)
        if key == "Fn::GetAtt":
            logical_id, attribute = argument
            return _get_att(logical_id, attribute, context)
        if key.startswith("Fn::"):
            raise TemplateError(f"{key} is not supported by gateway.devstack.template")
    resolved = {key: resolve(item, context) for key, item in value.items()}
    return {key: item for key, item in resolved.items() if item is not NO_VALUE}
