"""Prompt templates: messages written in Jinja2 with typed variables, rendered strictly.

Rendering runs in Jinja2's ``SandboxedEnvironment`` with ``StrictUndefined``: a missing, extra or
mistyped variable, an undefined attribute or an unsafe operation is a 400 naming what is wrong,
never an empty string.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from app.errors import InvalidRequestError

VarType = Literal["string", "integer", "number", "boolean", "list", "object"]
_PY_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float),
                                          "boolean": (bool,), "list": (list,), "object": (dict,)}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_RENDERED_CHARS = 256_000  # per rendered prompt
_MAX_REPEAT = 100_000  # "x" * n and list * n results longer than this are refused


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariableSpec(_Strict):
    type: VarType = "string"
    required: bool = True
    default: Any = None  # used when an optional variable is not given
    description: str = ""


class TemplateMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class SamplingDefaults(_Strict):
    """Applied where the client left the field unset."""

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: list[str] | None = Field(None, max_length=4)


class PromptTemplate(_Strict):
    """What a version holds: the messages, their variables, and optional model/sampling defaults."""

    messages: list[TemplateMessage] = Field(min_length=1)
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    model: str | None = None  # replaces the client's model when the client sent "auto"
    sampling: SamplingDefaults = Field(default_factory=SamplingDefaults)
    _compiled: list[Template] | None = PrivateAttr(None)  # compiled once per version object (~4 ms each)

    def compiled(self) -> list[Template]:
        if self._compiled is None:
            self._compiled = [ENV.from_string(m.content) for m in self.messages]
        return self._compiled

    @field_validator("variables")
    @classmethod
    def _names(cls, v: dict[str, VariableSpec]) -> dict[str, VariableSpec]:
        bad = [n for n in v if not _IDENT.match(n)]
        if bad:
            raise ValueError(f"variable names must be identifiers: {', '.join(sorted(bad))}")
        return v


class _Env(SandboxedEnvironment):
    """The sandbox, plus a cap on ``*`` repetition (a template must not allocate gigabytes)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_REPEAT:
                    raise SecurityError("repetition too large")
        return super().call_binop(context, operator, left, right)


ENV = _Env(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def parse_template(data: Any) -> PromptTemplate:
    """Validate a template definition: its shape, its Jinja2 syntax, and that it uses only declared variables."""
    try:
        template = PromptTemplate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(f"Invalid prompt template at '{where}': {first['msg']}", param="template") from None
    used: set[str] = set()
    for i, message in enumerate(template.messages):
        try:
            used |= meta.find_undeclared_variables(ENV.parse(message.content))
        except TemplateError as exc:
            raise InvalidRequestError(f"Template syntax error in messages[{i}]: {exc}", param="template") from None
    undeclared = sorted(used - set(template.variables))
    if undeclared:
        raise InvalidRequestError(f"The template uses undeclared variables: {', '.join(undeclared)}. Declare them "
                                  "under 'variables'.", param="template")
    return template


def check_variables(template: PromptTemplate, variables: dict[str, Any]) -> dict[str, Any]:
    """The full variable set (defaults filled in); 400 naming missing, extra or mistyped variables."""
    declared = template.variables
    extra = sorted(set(variables) - set(declared))
    if extra:
        raise InvalidRequestError(f"Unknown prompt variables: {', '.join(extra)} (the prompt declares: "
                                  f"{', '.join(sorted(declared)) or 'none'}).", param="prompt_ref.variables")
    missing = sorted(n for n, spec in declared.items() if spec.required and n not in variables)
    if missing:
        raise InvalidRequestError(f"Missing prompt variables: {', '.join(missing)}.", param="prompt_ref.variables")
    wrong = []
    for name, value in variables.items():
        kind = declared[name].type
        ok = isinstance(value, _PY_TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
        if not ok:
            wrong.append(f"{name} (expected {kind}, got {type(value).__name__})")
    if wrong:
        raise InvalidRequestError(f"Prompt variables of the wrong type: {', '.join(wrong)}.",
                                  param="prompt_ref.variables")
    full = {n: spec.default for n, spec in declared.items() if n not in variables}
    full.update(variables)
    return full


def render(template: PromptTemplate, variables: dict[str, Any]) -> list[dict[str, str]]:
    """The template's messages rendered with ``variables`` (checked first); errors are 400s."""
    values = check_variables(template, variables)
    out: list[dict[str, str]] = []
    total = 0
    for i, (message, compiled) in enumerate(zip(template.messages, template.compiled(), strict=True)):
        try:
            text = compiled.render(values)
        except UndefinedError as exc:
            raise InvalidRequestError(f"Prompt rendering failed in messages[{i}]: {exc.message}",
                                      param="prompt_ref.variables") from None
        except SecurityError as exc:
            raise InvalidRequestError(f"Prompt rendering refused in messages[{i}]: {exc}",
                                      param="prompt_ref.variables") from None
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError,
                RecursionError) as exc:  # whatever the template does with the values: the request's fault
            raise InvalidRequestError(f"Prompt rendering failed in messages[{i}]: {type(exc).__name__}: {exc}",
                                      param="prompt_ref.variables") from None
        total += len(text)
        if total > MAX_RENDERED_CHARS:
            raise InvalidRequestError(f"The rendered prompt exceeds {MAX_RENDERED_CHARS} characters.",
                                      param="prompt_ref.variables")
        out.append({"role": message.role, "content": text})
    return out
