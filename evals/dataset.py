"""The dataset: eval cases as data files (YAML), validated by pydantic, with a published JSON Schema.

A case names the user's starting tasks (each with a symbolic `ref`), the turns of a conversation (what the user says,
which tool calls are expected with argument matchers, reply checks, the task list after the turn) and the expected
task list at the end. User text may say `{ref}` for "the id of the seeded task `ref`" and `{missing}` for an id no
task has; the runner substitutes the real ids.

`load_dataset(path)` reads a file or a folder; a malformed file raises `DatasetError` naming the file, the case id
and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backend.models import DESCRIPTION_MAX, TASK_FIELDS, TITLE_MAX, TaskCreate
from backend.tools import read_only_tools, tool_names

# A tool's name is one of the backend's tools (`backend.tools.TOOLS`), read when a case is validated: a tool added
# there is one a case can expect, with no edit here.
ToolName = str

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = PROJECT_ROOT / "datasets"
SCHEMA_FILE = DEFAULT_DATASET / "schema.json"

# Conversations kept out of tuning: loaded only when asked for (`--tags holdout`, or their folder as --dataset), so
# what the project measures them on is what it never tuned on.
HOLDOUT_TAG = "holdout"
REF_PATTERN = r"^[a-z][a-z0-9_]*$"
MISSING_REF = "missing"  # `{missing}`: an id that belongs to no task
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- argument matchers

MATCHER_KINDS = (
    "equals", "exact", "normalized", "one_of", "regex", "contains", "any", "absent", "task", "task_titled",
    "optional",
)  # fmt: skip


class Matcher(_Strict):
    """Exactly one of these keys. A bare scalar in a case means `equals` (and `null` means `absent`)."""

    equals: str | int | float | bool | None = Field(
        default=None,
        description="Strings compare normalised (case, spaces, quotes, end punctuation); numbers "
        "compare by value, a numeric string included.",
    )
    exact: Any = Field(default=None, description="Strict, typed equality (no normalisation).")
    normalized: str | None = Field(default=None, description="Normalised string equality.")
    one_of: list[MatcherSpec] | None = Field(default=None, description="Any of these alternatives.", min_length=1)
    regex: str | None = Field(default=None, description="A case-insensitive regular expression search.")
    contains: str | None = Field(default=None, description="A normalised substring.")
    any: bool | None = Field(default=None, description="`true`: present, with any non-blank value.")
    absent: bool | None = Field(
        default=None, description="`true`: absent, null or blank (the tools read these as 'leave unchanged')."
    )
    task: str | None = Field(default=None, description="The id of the seeded task with this ref (or `missing`).")
    task_titled: str | None = Field(
        default=None,
        description="The id of the user's task, in the list before this turn, whose title contains "
        "this text (normalised): for tasks created earlier in the conversation.",
    )
    optional: MatcherSpec = Field(default=None, description="Absent is fine; when present it must match this.")
    # Not a matcher kind: a value the matcher accepts, for `eval check` where none can be derived from the matcher
    # (a regex too intricate to write an instance of, `any`). It scores nothing, so it is not in the fingerprint.
    example: str | int | float | bool | None = Field(
        default=None,
        exclude=True,
        description="A value this matcher accepts, used by `todo-agent eval check` to replay the case without a "
        "model when no value follows from the matcher itself (a regex, `any`); it must match.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Matcher:
        chosen = [k for k in MATCHER_KINDS if k in self.model_fields_set]
        if len(chosen) != 1:
            raise ValueError(f"a matcher takes exactly one of {', '.join(MATCHER_KINDS)}; got {chosen or 'none'}")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from exc
        if self.any is False or self.absent is False:
            raise ValueError("`any` and `absent` only take `true`")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in MATCHER_KINDS if k in self.model_fields_set)


MatcherSpec = str | int | float | bool | None | Matcher
Matcher.model_rebuild()


def matcher_refs(spec: MatcherSpec) -> Iterator[str]:
    """Every seeded-task ref a matcher mentions (for validation)."""
    if isinstance(spec, Matcher):
        if spec.task is not None:
            yield spec.task
        for inner in spec.one_of or []:
            yield from matcher_refs(inner)
        if "optional" in spec.model_fields_set:
            yield from matcher_refs(spec.optional)


# ---------------------------------------------------------------- expectations


def _known_tool(name: str) -> str:
    if name not in tool_names():
        raise ValueError(f"{name!r} is not a tool; the tools are {', '.join(tool_names())}")
    return name


class ExpectedCall(_Strict):
    tool: ToolName = Field(description="One of the backend's tools (`backend.tools.TOOLS`).")
    args: dict[str, MatcherSpec] = Field(
        default_factory=dict, description="Argument matchers; arguments not named here are not checked."
    )
    extra_args: Literal["allow", "forbid"] = Field(
        default="allow", description="`forbid`: any argument not named in `args` (and not blank) fails."
    )
    optional: bool = Field(
        default=False,
        description="The call may be left out (e.g. a lookup the context makes unnecessary); when made it must match.",
    )

    _tool = field_validator("tool")(_known_tool)


class ReplyCheck(_Strict):
    """Checks on the reply text, compared case-insensitively with whitespace collapsed."""

    contains_all: list[str] = Field(default_factory=list)
    contains_any: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    regex: str | None = Field(default=None, description="A case-insensitive regular expression search.")
    example: str | None = Field(
        default=None,
        exclude=True,
        description="A reply these checks accept, used by `todo-agent eval check` instead of one made of the "
        "required phrases (which may read as a claim the turn does not make); it must pass the checks.",
    )

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


class ExpectedTask(_Strict):
    """A task that must be in the list. With `ref`, it must be that seeded task (same id) and every field not
    given here must be unchanged; without, it is a new task (`completed` defaults to false)."""

    ref: str | None = None
    title: MatcherSpec = None
    description: MatcherSpec = Field(default=None, description="Not checked on new tasks unless given.")
    completed: bool | None = None

    @model_validator(mode="after")
    def _needs_identity(self) -> ExpectedTask:
        if self.ref is None and "title" not in self.model_fields_set:
            raise ValueError("a task without `ref` needs a `title` matcher")
        return self


assert set(ExpectedTask.model_fields) - {"ref"} == set(TASK_FIELDS), "a task field needs a matcher here"
TaskListExpectation = list[ExpectedTask] | Literal["unchanged"]


class Turn(_Strict):
    user: str = Field(min_length=1, description="What the user says; `{ref}` is replaced by the seeded task's id.")
    calls: list[ExpectedCall] = Field(default_factory=list, description="The expected tool calls of this turn.")
    no_tool_calls: bool = Field(default=False, description="`true`: no tool call at all (not even a lookup).")
    order: Literal["strict", "any"] = Field(default="strict", description="Whether `calls` must come in order.")
    allow_extra: list[ToolName] = Field(
        default_factory=lambda: sorted(read_only_tools()),
        description="Read-only tools that may be called in addition to `calls` (default: an exploratory list_tasks).",
    )
    reply: ReplyCheck | None = None
    tasks_after: TaskListExpectation | None = Field(
        default=None, description="The user's task list after this turn (not checked when absent)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Turn:
        if self.no_tool_calls and self.calls:
            raise ValueError("`no_tool_calls: true` and `calls` contradict each other")
        for name in self.allow_extra:
            _known_tool(name)
        writes = sorted(set(self.allow_extra) - read_only_tools())
        if writes:
            raise ValueError(f"allow_extra may only name read-only tools, not {writes}: a write is never free")
        return self


class SeedTask(_Strict):
    """A starting task, created through the tasks API (which validates it with the backend's `TaskCreate`)."""

    ref: str = Field(pattern=REF_PATTERN)
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    completed: bool = False

    def creation(self) -> dict[str, Any]:
        """The body that creates it: the fields `TaskCreate` takes (`completed` is set after, with a PATCH)."""
        return self.model_dump(include=set(TaskCreate.model_fields))


class Case(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    tags: list[str] = Field(min_length=1)
    description: str = ""
    tasks: list[SeedTask] = Field(default_factory=list, description="The user's tasks before the first turn.")
    other_user_tasks: list[SeedTask] = Field(
        default_factory=list,
        description="Another user's tasks (their ids may appear in the user's text); they "
        "must be untouched at the end.",
    )
    turns: list[Turn] = Field(min_length=1)
    final_tasks: TaskListExpectation = Field(
        default="unchanged", description="The user's task list at the end; `unchanged` (the default) is strict."
    )

    @model_validator(mode="after")
    def _refs_resolve(self) -> Case:
        own = [t.ref for t in self.tasks]
        other = [t.ref for t in self.other_user_tasks]
        seen: set[str] = set()
        for ref in own + other:
            if ref in seen or ref == MISSING_REF:
                raise ValueError(f"task ref {ref!r} is duplicated or reserved")
            seen.add(ref)
        known = seen | {MISSING_REF}
        for index, turn in enumerate(self.turns):
            for name in _PLACEHOLDER.findall(turn.user):
                if name not in known:
                    raise ValueError(f"turns[{index}].user mentions {{{name}}}, which no seeded task defines")
            for call in turn.calls:
                for spec in call.args.values():
                    for ref in matcher_refs(spec):
                        if ref not in known:
                            raise ValueError(f"turns[{index}]: matcher names unknown task ref {ref!r}")
            for expected in turn.tasks_after if isinstance(turn.tasks_after, list) else []:
                if expected.ref is not None and expected.ref not in own:
                    raise ValueError(f"turns[{index}].tasks_after names {expected.ref!r}, not one of the user's tasks")
        for expected in self.final_tasks if isinstance(self.final_tasks, list) else []:
            if expected.ref is not None and expected.ref not in own:
                raise ValueError(f"final_tasks names {expected.ref!r}, which is not one of the user's seeded tasks")
        return self

    def fingerprint(self) -> str:
        """Changes when the case's definition changes (compare flags cases edited since the baseline)."""
        raw = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


class DatasetFile(_Strict):
    """One dataset file: `cases:` (a file may also name its JSON Schema for editors)."""

    version: Literal[1] = 1
    cases: list[Case] = Field(min_length=1)


# ---------------------------------------------------------------- loading


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file, the case and the field."""


@dataclass(frozen=True)
class Dataset:
    cases: tuple[Case, ...]
    files: tuple[Path, ...] = ()
    sources: dict[str, Path] = field(default_factory=dict)  # case id -> file

    def __len__(self) -> int:
        return len(self.cases)

    def select(self, *, tags: Sequence[str] = (), ids: Sequence[str] = ()) -> Dataset:
        """Cases having any of `tags` and (when given) one of `ids`; an unknown id is an error."""
        unknown = sorted(set(ids) - {c.id for c in self.cases})
        if unknown:
            raise DatasetError(f"no case with id {', '.join(unknown)}")
        picked = tuple(c for c in self.cases if (not tags or set(tags) & set(c.tags)) and (not ids or c.id in ids))
        return Dataset(picked, self.files, {c.id: self.sources[c.id] for c in picked if c.id in self.sources})

    @property
    def tags(self) -> list[str]:
        return sorted({tag for case in self.cases for tag in case.tags})

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for case in self.cases:
            digest.update(case.id.encode() + b"\0" + case.fingerprint().encode())
        return digest.hexdigest()[:12]


def _field_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(path: Path, raw: Any, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        # Union members and validator names show up in loc; they say nothing to a case author.
        loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        where = "file"
        if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int):
            index = loc[1]
            case_id = None
            if isinstance(raw, dict) and isinstance(raw.get("cases"), list) and index < len(raw["cases"]):
                item = raw["cases"][index]
                case_id = item.get("id") if isinstance(item, dict) else None
            where = f"case {case_id!r}" if case_id else f"case #{index + 1} (no id)"
            loc = loc[2:]
        field_name = _field_path(loc) or "(case)"
        lines.append(f"{path}: {where}: {field_name}: {error['msg']}")
    return "\n".join(dict.fromkeys(lines))


def load_file(path: Path) -> DatasetFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc}") from exc
    return load_text(text, path)


def load_text(text: str, source: Path) -> DatasetFile:
    """A dataset file's YAML, validated as `load_file` does; `source` names it in the errors (an edited case that
    is not yet a file)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DatasetError(f"{source}: not valid YAML: {exc}") from exc
    try:
        return DatasetFile.model_validate(raw)
    except ValidationError as exc:
        raise DatasetError(_describe(source, raw, exc)) from exc


def dataset_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"})
        if not files:
            raise DatasetError(f"{path}: no .yaml files")
        return files
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    return [path]


def wants_holdout(path: Path | str, tags: Sequence[str] = ()) -> bool:
    """Whether a run asks for the holdout: by one of its tags, or by naming its folder or file."""
    return any(tag.startswith(HOLDOUT_TAG) for tag in tags) or HOLDOUT_TAG in Path(path).parts


def load_dataset(path: Path | str = DEFAULT_DATASET, *, holdout: bool | None = None) -> Dataset:
    """Every case under `path`; the holdout's only when `holdout` (default: when `path` names the holdout)."""
    include_holdout = wants_holdout(path) if holdout is None else holdout
    cases: list[Case] = []
    sources: dict[str, Path] = {}
    files = dataset_files(Path(path))
    for file in files:
        for case in load_file(file).cases:
            if HOLDOUT_TAG in case.tags and not include_holdout:
                continue
            if case.id in sources:
                raise DatasetError(f"{file}: case {case.id!r}: id: duplicate (also in {sources[case.id]})")
            sources[case.id] = file
            cases.append(case)
    return Dataset(tuple(cases), tuple(files), sources)


# ---------------------------------------------------------------- the published schema


def json_schema() -> dict[str, Any]:
    """The published schema; tool names are enumerated from the backend's tools, as validation reads them."""
    schema = DatasetFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "todo-agent eval dataset"
    definitions = schema["$defs"]
    definitions["ExpectedCall"]["properties"]["tool"]["enum"] = list(tool_names())
    definitions["Turn"]["properties"]["allow_extra"]["items"]["enum"] = sorted(read_only_tools())
    definitions["Turn"]["properties"]["allow_extra"]["default"] = sorted(read_only_tools())
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def render_user_text(text: str, ids: dict[str, int]) -> str:
    """`{ref}` -> the real id; other braces are left alone."""
    return _PLACEHOLDER.sub(lambda m: str(ids[m.group(1)]) if m.group(1) in ids else m.group(0), text)
