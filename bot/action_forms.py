"""The Edit dialog of an approval request: a Slack modal whose inputs follow the action's JSON Schema, and the
way back from what Slack submits to the action's parameters.

Each parameter gets an input block whose block id is its name and whose one element has the action id
``value``: numbers a number input, times a date-and-time picker, choices a select, yes/no a select, text a
text input (several lines for long text), anything nested a text input holding JSON. A value the dialog cannot
hold (text past Slack's 3,000 characters, parameters past the 100 blocks of a view), and a parameter that says
what or whom the action is about (``Action.fixed_fields``), is said in a context line and kept as it is.

Reading a submission takes only what the person changed (each input's value against the value it was drawn
with, as ``view.blocks`` carries it) and puts it over the current parameters: a change someone else saved
while the dialog was open stays, and changing the same parameter they changed is refused under its input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard

from jsonschema.validators import validator_for  # type: ignore[import-untyped]  # no stubs shipped
from pydantic import BaseModel, TypeAdapter, ValidationError
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DateTimePickerElement,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from connectors.actions import Action
from connectors.errors import InvalidActionError
from connectors.mcp_tools import McpToolAction
from connectors.registry import ConnectorRegistry
from runtime.card_values import field_labels
from runtime.mrkdwn import escape, truncate

EDIT_CALLBACK_ID = "aios_edit"
VALUE_ACTION_ID = "value"  # the one element of each parameter's input block
INTRO_BLOCK_ID = "aios_edit_intro"
LEFT_OUT_BLOCK_ID = "aios_edit_left_out"
KEPT_BLOCK_PREFIX = "aios_edit_kept_"
FIXED_BLOCK_PREFIX = "aios_edit_fixed_"

INTRO = (
    "Saving re-checks the request against the policy; your edit counts as your approval only if the policy "
    "lets you approve the edited request."
)

# Slack's limits for a modal and its inputs.
VIEW_BLOCKS_MAX = 100
TITLE_MAX = 24
LABEL_MAX = InputBlock.label_max_length  # 2,000
HINT_MAX = InputBlock.hint_max_length  # 2,000
BLOCK_ID_MAX = InputBlock.block_id_max_length  # 255
TEXT_VALUE_MAX = 3000  # a plain_text_input's initial value, and what it can send
PLACEHOLDER_MAX = PlainTextInputElement.placeholder_max_length  # 150
OPTION_TEXT_MAX = Option.label_max_length  # 75
OPTION_VALUE_MAX = Option.value_max_length  # 150
SELECT_OPTIONS_MAX = 100
PICKER_SECONDS_MAX = 9_999_999_999  # a datetimepicker's initial time, in seconds since 1970
CONTEXT_TEXT_MAX = 3000
ERROR_MAX = 300  # an inline error under an input; Slack shows a line or two

# Text longer than a line: parameters named like these, or allowed past this many characters (but for the
# names of one-line things: a 200-character subject is still one line), or holding a line break.
LONG_TEXT_NAMES = frozenset({"body", "text", "message", "description", "note", "content", "excerpt"})
ONE_LINE_NAMES = frozenset({"title", "subject", "name", "slug"})
SHORT_TEXT_MAX = 150

_ISO_UTC = TypeAdapter(datetime)


class Kind(StrEnum):
    """What input a parameter's schema calls for."""

    INTEGER = "integer"
    NUMBER = "number"
    TEXT = "text"
    DATE_TIME = "date_time"
    CHOICE = "choice"  # an enum (a Literal) or a yes/no
    JSON = "json"  # objects, arrays, and anything the other inputs cannot hold


@dataclass(frozen=True)
class FieldSpec:
    """One parameter as the dialog sees it."""

    name: str
    kind: Kind
    label: str
    hint: str | None
    required: bool
    nullable: bool  # an empty input means null (rather than the field's default)
    schema: Mapping[str, Any]  # the parameter's own schema, a null alternative left out
    choices: tuple[Any, ...] = ()


@dataclass
class Submission:
    """What a submitted dialog asks for: the current parameters with the person's changes (``params``), the
    changes alone, and what could not be read or was changed by someone else meanwhile, by block id."""

    params: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def fixed_fields(action: type[BaseModel]) -> frozenset[str]:
    """The parameters an edit may not change (an MCP tool's schema names none)."""
    return action.fixed_fields() if issubclass(action, Action) else frozenset()


def field_specs(action: type[BaseModel]) -> list[FieldSpec]:
    """The action's parameters in the schema's order, each with the input it calls for."""
    root = action.model_json_schema()  # an MCP tool's is the tool's own
    properties = root.get("properties")
    if not isinstance(properties, dict):
        return []
    required = set(root.get("required") or ())
    labels = field_labels(action)
    specs: list[FieldSpec] = []
    for name, raw in properties.items():
        schema, nullable = _without_null(_resolve(raw if isinstance(raw, dict) else {}, root), root)
        kind, choices = _kind(schema)
        nullable = nullable or (kind is Kind.CHOICE and None in choices)
        described = raw.get("description") if isinstance(raw, dict) else None
        described = described if isinstance(described, str) else schema.get("description")
        specs.append(
            FieldSpec(
                name=name,
                kind=kind,
                label=labels.get(name) or name,
                hint=described if isinstance(described, str) and described.strip() else None,
                required=name in required,
                nullable=nullable,
                schema=schema,
                choices=tuple(c for c in choices if c is not None),
            )
        )
    return specs


def _resolve(schema: dict[str, Any], root: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    """A local ``$ref`` (#/$defs/X, #/definitions/X) replaced by what it names; anything else as it is."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/") or depth > 10:
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        return schema
    merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return _resolve(merged, root, depth + 1)


def _without_null(schema: dict[str, Any], root: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema with a null alternative taken out (``anyOf: [X, null]``, ``type: [X, "null"]``), and
    whether there was one."""
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            kept = [_resolve(o, root) for o in options if isinstance(o, dict) and o.get("type") != "null"]
            nullable = len(kept) < len(options)
            if len(kept) == 1:
                outer = {k: v for k, v in schema.items() if k != key}
                return {**kept[0], **outer}, nullable
            return schema, nullable
    types = schema.get("type")
    if isinstance(types, list):
        kept_types = [t for t in types if t != "null"]
        nullable = len(kept_types) < len(types)
        if len(kept_types) == 1:
            return {**schema, "type": kept_types[0]}, nullable
        return schema, nullable
    return schema, False


def _kind(schema: Mapping[str, Any]) -> tuple[Kind, tuple[Any, ...]]:
    choices = schema.get("enum")
    if "const" in schema:
        choices = [schema["const"]]
    if isinstance(choices, list):
        if _selectable(choices):
            return Kind.CHOICE, tuple(choices)
        return Kind.JSON, ()
    kind = schema.get("type")
    if kind == "boolean":
        return Kind.CHOICE, (True, False)
    if kind == "integer":
        return Kind.INTEGER, ()
    if kind == "number":
        return Kind.NUMBER, ()
    if kind == "string":
        return (Kind.DATE_TIME if schema.get("format") == "date-time" else Kind.TEXT), ()
    return Kind.JSON, ()


def _selectable(choices: list[Any]) -> bool:
    """Whether a select can offer these values: plain values, few enough, each a short option value."""
    return (
        0 < len(choices) <= SELECT_OPTIONS_MAX
        and all(c is None or isinstance(c, str | int | float | bool) for c in choices)
        and all(len(_option_value(c)) <= OPTION_VALUE_MAX for c in choices)
        and len({_option_value(c) for c in choices}) == len(choices)
    )


def _option_value(choice: Any) -> str:
    return json.dumps(choice, ensure_ascii=False)


def _option_text(choice: Any) -> str:
    if isinstance(choice, bool):
        return "Yes" if choice else "No"
    return truncate(choice if isinstance(choice, str) else json.dumps(choice), OPTION_TEXT_MAX) or '""'


# --- the modal ---------------------------------------------------------------------------------------------


def edit_view(approval_key: str, action: type[BaseModel], params: Mapping[str, Any]) -> dict[str, Any]:
    """The Edit dialog for the approval ``approval_key`` (AP-12) of an action with these parameters."""
    blocks = _layout(action, params)
    if not any(isinstance(block, InputBlock) for block in blocks):
        return notice_view(
            approval_key, "None of this request's parameters can be edited in Slack; approve or reject it."
        )
    view = View(
        type="modal",
        callback_id=EDIT_CALLBACK_ID,
        private_metadata=approval_key,
        title=PlainTextObject(text=truncate(f"Edit {approval_key}", TITLE_MAX)),
        submit=PlainTextObject(text="Save"),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
    )
    return view.to_dict()


def input_block_ids(action: type[BaseModel], params: Mapping[str, Any]) -> list[str]:
    """The parameters the dialog has an input for, in its order (each input's block id is its name)."""
    return [block.block_id or "" for block in _layout(action, params) if isinstance(block, InputBlock)]


def _layout(action: type[BaseModel], params: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = [ContextBlock(block_id=INTRO_BLOCK_ID, elements=[MarkdownTextObject(text=INTRO)])]
    room = VIEW_BLOCKS_MAX - 2  # all but the introduction, and the line saying what was left out
    left_out: list[str] = []
    fixed = fixed_fields(action)
    for position, spec in enumerate(field_specs(action)):
        if len(blocks) - 1 >= room:
            left_out.append(spec.label)
        elif spec.name in fixed:
            blocks.append(_fixed(spec, params.get(spec.name), position))
        else:
            blocks.append(_field_block(spec, params.get(spec.name), position))
    if left_out:
        text = f"{len(left_out)} more parameters than a dialog can show stay as they are: " + escape(
            ", ".join(left_out)
        )
        blocks.append(
            ContextBlock(
                block_id=LEFT_OUT_BLOCK_ID,
                elements=[MarkdownTextObject(text=truncate(text, CONTEXT_TEXT_MAX))],
            )
        )
    return blocks


def notice_view(approval_key: str, text: str) -> dict[str, Any]:
    """A small dialog that only says something (why the request cannot be edited): no submit button."""
    view = View(
        type="modal",
        title=PlainTextObject(text=truncate(f"Edit {approval_key}", TITLE_MAX)),
        close=PlainTextObject(text="Close"),
        blocks=[
            SectionBlock(block_id="aios_edit_notice", text=MarkdownTextObject(text=truncate(text, 3000)))
        ],
    )
    return view.to_dict()


def _field_block(spec: FieldSpec, value: Any, position: int) -> Block:
    """The parameter's input block, or a context line when the dialog cannot hold it."""
    if not spec.name or len(spec.name) > BLOCK_ID_MAX or spec.name.startswith("aios_edit_"):
        return _kept(spec, position, "its name cannot name an input")
    element = _element(spec, value)
    if element is None:
        return _kept(spec, position, f"it is longer than the {TEXT_VALUE_MAX:,} characters a dialog holds")
    return InputBlock(
        block_id=spec.name,
        label=PlainTextObject(text=truncate(spec.label, LABEL_MAX)),
        hint=PlainTextObject(text=truncate(spec.hint, HINT_MAX)) if spec.hint else None,
        element=element,
        optional=not spec.required or None,
    )


def _kept(spec: FieldSpec, position: int, why: str) -> ContextBlock:
    text = f"*{escape(truncate(spec.label, 200))}* cannot be edited here ({why}); it stays as it is."
    return _context(KEPT_BLOCK_PREFIX, spec, position, text)


def _fixed(spec: FieldSpec, value: Any, position: int) -> ContextBlock:
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = (
        f"*{escape(truncate(spec.label, 200))}*: {escape(truncate(shown, 300))} (what the request is about; "
        "it cannot be edited: ask for a new request instead)"
    )
    return _context(FIXED_BLOCK_PREFIX, spec, position, text)


def _context(prefix: str, spec: FieldSpec, position: int, text: str) -> ContextBlock:
    block_id = prefix + spec.name
    if not spec.name or len(block_id) > BLOCK_ID_MAX:
        # Block ids must be unique and at most 255 characters. A line named by its position ends its prefix with
        # "#", not "_": a parameter named "6" and the sixth, nameless one must not both be "aios_edit_kept_6".
        block_id = f"{prefix.removesuffix('_')}#{position}"
    return ContextBlock(block_id=block_id, elements=[MarkdownTextObject(text=text)])


def _element(spec: FieldSpec, value: Any) -> Any:
    """The input for the value: the one its schema calls for when the value fits it, else JSON text; None
    when even that is too long for a dialog."""
    present = value is not None
    if spec.kind in (Kind.INTEGER, Kind.NUMBER) and (not present or _plain_number(value, spec.kind)):
        return _number_input(spec, value)
    if spec.kind is Kind.DATE_TIME and (not present or _moment(value) is not None):
        moment = _moment(value) if present else None
        return DateTimePickerElement(
            action_id=VALUE_ACTION_ID,
            initial_date_time=int(moment.timestamp()) if moment is not None else None,
        )
    if spec.kind is Kind.CHOICE and (not present or _option_value(value) in _options(spec)):
        options = _options(spec)
        return StaticSelectElement(
            action_id=VALUE_ACTION_ID,
            placeholder=PlainTextObject(text="Choose one"),
            options=list(options.values()),
            initial_option=options[_option_value(value)] if present else None,
        )
    if spec.kind in (Kind.TEXT, Kind.DATE_TIME) and (not present or isinstance(value, str)):
        text = value if isinstance(value, str) else ""
        if len(text) > TEXT_VALUE_MAX:
            return None
        max_length = spec.schema.get("maxLength")
        fits = isinstance(max_length, int) and 0 < max_length <= TEXT_VALUE_MAX and len(text) <= max_length
        return PlainTextInputElement(
            action_id=VALUE_ACTION_ID,
            initial_value=text or None,
            multiline=_long_text(spec, text) or None,
            max_length=max_length if fits else None,
        )
    as_json = "" if not present else json.dumps(value, indent=2, ensure_ascii=False)
    if len(as_json) > TEXT_VALUE_MAX:
        return None
    return PlainTextInputElement(
        action_id=VALUE_ACTION_ID,
        initial_value=as_json or None,
        multiline=True,
        placeholder=PlainTextObject(text=_json_placeholder(spec)),
    )


def _number_input(spec: FieldSpec, value: Any) -> NumberInputElement:
    low, high = _bounds(spec)
    present = value is not None
    # A bound the current value already breaks is left out: the dialog must open to let it be corrected.
    if present and low is not None and value < low:
        low = None
    if present and high is not None and value > high:
        high = None
    return NumberInputElement(
        action_id=VALUE_ACTION_ID,
        is_decimal_allowed=spec.kind is Kind.NUMBER,
        initial_value=_number_text(value) if present else None,
        min_value=_number_text(low) if low is not None else None,
        max_value=_number_text(high) if high is not None else None,
    )


def _bounds(spec: FieldSpec) -> tuple[float | None, float | None]:
    """The schema's bounds as the inclusive ones a number input takes: an exclusive bound moves by one for an
    integer, by the ``multipleOf`` step for a number (more than 0 in whole cents: 0.01); without a step it
    stays, and the check after the submit refuses the bound itself."""
    multiple = spec.schema.get("multipleOf")
    step: float = 1 if spec.kind is Kind.INTEGER else 0
    if spec.kind is Kind.NUMBER and _is_number(multiple) and multiple > 0:
        step = multiple

    def bound(inclusive: str, exclusive: str, sign: int) -> float | None:
        given, strict = spec.schema.get(inclusive), spec.schema.get(exclusive)
        values: list[float] = [given] if _is_number(given) else []
        if _is_number(strict):
            values.append(strict + sign * step)
        found = [v for v in values if math.isfinite(v)]
        if not found:
            return None
        return max(found) if sign > 0 else min(found)

    return bound("minimum", "exclusiveMinimum", 1), bound("maximum", "exclusiveMaximum", -1)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain_number(value: Any, kind: Kind) -> bool:
    """A value a number input shows as it is: an int for an integer, a finite number without an exponent."""
    if kind is Kind.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    return _is_number(value) and math.isfinite(value) and "e" not in _number_text(value)


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _moment(value: Any) -> datetime | None:
    """The value as a time (one without a zone is UTC, as the action models read it), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        stamp = moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    # A picker shows times from 1970 on, given as at most 10 digits of seconds; others are edited as text.
    return moment if 0 <= stamp <= PICKER_SECONDS_MAX else None


def _options(spec: FieldSpec) -> dict[str, Option]:
    return {
        _option_value(c): Option(value=_option_value(c), text=PlainTextObject(text=_option_text(c)))
        for c in spec.choices
    }


def _long_text(spec: FieldSpec, text: str) -> bool:
    max_length = spec.schema.get("maxLength")
    name = spec.name.lower()
    return (
        name in LONG_TEXT_NAMES
        or (isinstance(max_length, int) and max_length > SHORT_TEXT_MAX and name not in ONE_LINE_NAMES)
        or "\n" in text
        or len(text) > SHORT_TEXT_MAX
    )


def _json_placeholder(spec: FieldSpec) -> str:
    shape = {"object": "an object", "array": "a list"}.get(str(spec.schema.get("type")), "a value")
    return truncate(f"JSON: {shape}", PLACEHOLDER_MAX)


# --- the way back ------------------------------------------------------------------------------------------


def read_submission(
    action: type[BaseModel],
    values: Mapping[str, Any],
    current: Mapping[str, Any],
    drawn: Sequence[Any] = (),
) -> Submission:
    """What a submitted dialog asks for: each input's value (read as its schema says: "40" → 40.0 for a
    number, JSON text parsed) that differs from the value the input was drawn with (``drawn``: the submitted
    ``view.blocks``), in place of the current parameter. An emptied optional input means null where the schema
    allows null, else the parameter's default. A changed input whose parameter someone else changed since the
    dialog was drawn is an error: the person did not see their change. Without ``drawn`` the dialog is taken
    to have been drawn with the current parameters."""
    params = dict(current)
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    initial = _drawn_elements(drawn)
    fixed = fixed_fields(action)
    for spec in field_specs(action):
        state = values.get(spec.name)
        if spec.name in fixed or not isinstance(state, Mapping) or VALUE_ACTION_ID not in state:
            continue  # no input for it in the dialog: it stays as it is
        try:
            value = _read(spec, state[VALUE_ACTION_ID])
            now = _read_drawn(spec, _element(spec, current.get(spec.name)))
            then = _read_drawn(spec, initial[spec.name]) if spec.name in initial else now
        except _Unreadable as exc:
            errors[spec.name] = str(exc)
            continue
        if value == then:
            continue  # not changed in this dialog: whatever it is now stays
        if now != then:
            errors[spec.name] = CHANGED_MEANWHILE
            continue
        if value is None and not spec.nullable:
            if "default" not in spec.schema:
                params.pop(spec.name, None)
                continue
            value = spec.schema["default"]
        params[spec.name] = changes[spec.name] = value
    return Submission(params, changes, errors)


CHANGED_MEANWHILE = (
    "Someone else changed this after you opened the dialog; close it and click Edit again to see their "
    "change."
)


def _drawn_elements(drawn: Sequence[Any]) -> dict[str, Mapping[str, Any]]:
    """Each input block's element as the dialog drew it, by the block's id."""
    return {
        str(block["block_id"]): block["element"]
        for block in drawn
        if isinstance(block, Mapping)
        and block.get("type") == "input"
        and isinstance(block.get("block_id"), str)
        and isinstance(block.get("element"), Mapping)
    }


def _read_drawn(spec: FieldSpec, element: Any) -> Any:
    """The value an input drawn so holds while nobody touches it."""
    if element is None:
        return None
    drawn = element.to_dict() if hasattr(element, "to_dict") else element
    if not isinstance(drawn, Mapping):
        raise _Unreadable(UNREADABLE)
    kind = drawn.get("type")
    if kind == "static_select":
        state = {"type": kind, "selected_option": drawn.get("initial_option")}
    elif kind == "datetimepicker":
        state = {"type": kind, "selected_date_time": drawn.get("initial_date_time")}
    else:
        state = {"type": kind, "value": drawn.get("initial_value")}
    return _read(spec, state)


class _Unreadable(ValueError):
    """An input's value that cannot become the parameter; the text says why, under the input."""


def _read(spec: FieldSpec, element: Any) -> Any:
    """One element's state (as Slack sends it in ``view.state.values``) as the parameter's value; None when
    empty."""
    if not isinstance(element, Mapping):
        raise _Unreadable(UNREADABLE)
    kind = element.get("type")
    if kind == "static_select":
        return _chosen(spec, element.get("selected_option"))
    if kind == "datetimepicker":
        return _picked(element.get("selected_date_time"))
    if kind not in ("number_input", "plain_text_input"):
        raise _Unreadable(UNREADABLE)
    text = element.get("value")
    if text is not None and not isinstance(text, str):
        raise _Unreadable(UNREADABLE)
    if not text or (not text.strip() and spec.kind is not Kind.TEXT):
        return None
    if kind == "number_input":
        return _number(spec, text)
    if spec.kind in (Kind.TEXT, Kind.DATE_TIME):
        return text
    # A text input holding JSON: nested values, or a value its own input could not show.
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError as exc:
        if spec.kind in (Kind.INTEGER, Kind.NUMBER):
            return _number(spec, text)
        if spec.kind is Kind.CHOICE:
            return text.strip()  # a choice typed without JSON's quotes
        raise _Unreadable(
            f"This is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from None
    # Decoded as it is, even a number its field cannot take (2.5 for a whole number): the model's check says
    # what is wrong with it under the input.
    return decoded


UNREADABLE = "This value could not be read; enter it again."


def _chosen(spec: FieldSpec, option: Any) -> Any:
    if option is None:
        return None
    raw = option.get("value") if isinstance(option, Mapping) else None
    choices = {_option_value(c): c for c in spec.choices}
    if raw not in choices:
        raise _Unreadable("Choose one of the options.")
    return choices[raw]


def _picked(stamp: Any) -> Any:
    if stamp is None:
        return None
    if not _is_number(stamp):
        raise _Unreadable("Pick a date and a time.")
    try:
        moment = datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError):
        raise _Unreadable("Pick a date and a time.") from None
    # As the action models write a time, so an untouched picker gives back the very same text.
    return _ISO_UTC.dump_python(moment, mode="json")


def _number(spec: FieldSpec, text: str) -> int | float:
    try:
        number = float(text.strip())
    except ValueError:
        raise _Unreadable(f"“{truncate(text.strip(), 40)}” is not a number.") from None
    if not math.isfinite(number):
        raise _Unreadable("Enter a finite number.")
    if spec.kind is not Kind.INTEGER:
        return number
    if not number.is_integer():
        raise _Unreadable("Enter a whole number.")
    try:
        return int(text.strip())  # exact, where a float would round a large whole number
    except ValueError:
        return int(number)


# --- errors under the inputs -------------------------------------------------------------------------------


def validation_errors(
    registry: ConnectorRegistry,
    action_name: str,
    params: Mapping[str, Any],
    inputs: Sequence[str] | None = None,
) -> dict[str, str]:
    """What the action's model refuses in these parameters, by the block id of the input to correct: an error
    about a parameter goes under its input, any other (about several at once, or about one the dialog has no
    input for) under the first input. ``inputs``: the dialog's input block ids (those ``view.state.values``
    names); by default those the dialog shows for ``params``. Empty when the parameters are valid."""
    try:
        registry.validate(action_name, params)
    except InvalidActionError as exc:
        action = registry.model_for(action_name)
        cause = exc.__cause__
        problems = (
            _problems(action, params, cause) if isinstance(cause, ValidationError) else [((), str(exc))]
        )
        shown = input_block_ids(action, params) if inputs is None else list(inputs)
        return _by_block(problems, [spec.name for spec in field_specs(action) if spec.name in shown])
    return {}


def _problems(
    action: type[BaseModel], params: Mapping[str, Any], error: ValidationError
) -> list[tuple[tuple[Any, ...], str]]:
    if issubclass(action, McpToolAction):
        # The tool's schema is checked in one model validator, whose error names no parameter: asked again
        # here, the schema's validator says which argument each problem is about.
        validator = validator_for(action.input_schema)(action.input_schema)
        found = [(tuple(e.absolute_path), str(e.message)) for e in validator.iter_errors(dict(params))]
        if found:
            return found
    return [(tuple(e["loc"]), _message(str(e["msg"]))) for e in error.errors()]


def _message(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _by_block(problems: list[tuple[tuple[Any, ...], str]], inputs: list[str]) -> dict[str, str]:
    first = inputs[0] if inputs else INTRO_BLOCK_ID
    errors: dict[str, list[str]] = {}
    for location, message in problems:
        name = str(location[0]) if location else None
        if name in inputs:
            block, where = name, location[1:]  # within the parameter: lines.0.quantity → 0.quantity
        else:
            block, where = first, location
        text = f"{'.'.join(str(part) for part in where)}: {message}" if where else message
        if text not in errors.setdefault(block, []):
            errors[block].append(text)
    return {block: truncate("; ".join(texts), ERROR_MAX) for block, texts in errors.items()}
