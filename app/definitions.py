"""Loading marketer-owned YAML definitions with errors that name the file,
the line, the key and what is wrong.

Definitions are validated with pydantic models; a pydantic error location
("fields", 2, "type") is turned into a key path ("fields[2].type") and looked
up in a map of key paths to line numbers built from the YAML node tree.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


@dataclass
class DefinitionError(Exception):
    path: str
    key: str
    problem: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"


def key_path(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_map(node, prefix=(), lines=None) -> dict[str, int]:
    lines = {} if lines is None else lines
    lines[key_path(prefix)] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            lines[key_path(prefix + (key_node.value,))] = key_node.start_mark.line + 1
            _line_map(value_node, prefix + (key_node.value,), lines)
            lines[key_path(prefix + (key_node.value,))] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, prefix + (index,), lines)
    return lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a marketer who
    wrote `topic:` twice should hear about it."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{key}' is written twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> tuple[object, dict[str, int]]:
    """Parse a YAML file; return its data and a key-path → line map."""
    name = display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(name, "", f"cannot read file: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(name, "", f"invalid YAML: {problem}",
                              mark.line + 1 if mark else None) from exc
    return data, (_line_map(node) if node is not None else {})


def display_path(path) -> str:
    """forms/contact.yaml rather than an absolute machine path."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def validate(model: type[M], data, path: Path, lines: dict[str, int]) -> M:
    """Validate data against a pydantic model; raise the first problem as a
    DefinitionError with its line, and keep the others in the message."""
    name = display_path(path)
    if not isinstance(data, dict):
        raise DefinitionError(name, "", "the file must hold a mapping of keys to values", 1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            key = key_path(loc)
            line = _nearest_line(lines, loc)
            message = err["msg"].removeprefix("Value error, ")
            problems.append(DefinitionError(name, key, message, line))
        first = problems[0]
        if len(problems) > 1:
            first.problem += "; also: " + "; ".join(
                f"{p.key or '(top)'}{f' (line {p.line})' if p.line else ''}: {p.problem}" for p in problems[1:4])
        raise first from exc


def _nearest_line(lines: dict[str, int], loc) -> int | None:
    for end in range(len(loc), -1, -1):
        line = lines.get(key_path(loc[:end]))
        if line:
            return line
    return None


def load(model: type[M], path: Path) -> M:
    data, lines = read_yaml(path)
    return validate(model, data, path, lines)


class ReloadingFile:
    """A definition file read again when it changes on disk. A broken edit
    keeps the last good version in force and exposes the error."""

    def __init__(self, path, loader, default):
        self.path, self.loader = Path(path), loader
        self.value, self.error, self._mtime = default, None, None

    def get(self):
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return self.value
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.value, self.error = self.loader(self.path), None
            except DefinitionError as exc:
                self.error = exc
        return self.value


def load_each(paths, loader) -> tuple[dict, list[DefinitionError]]:
    """Load every file by its slug (the file name); one broken file never
    stops the others."""
    loaded, errors = {}, []
    for path in paths:
        try:
            loaded[Path(path).stem] = loader(path)
        except DefinitionError as exc:
            errors.append(exc)
    return loaded, errors


class DefinitionFolder:
    """The definitions of a folder (forms/, campaigns/), read again when a
    file changes, so a marketer's edit shows without a restart. A file that
    stops being valid keeps its last good version and its error is shown."""

    def __init__(self, list_files, loader, check_every: float = 1.0):
        self.list_files, self.loader, self.check_every = list_files, loader, check_every
        self._stamp, self._checked_at = None, 0.0
        self._items: dict = {}
        self._errors: list[DefinitionError] = []

    def _refresh(self) -> None:
        import time
        now = time.monotonic()
        if self._stamp is not None and now - self._checked_at < self.check_every:
            return
        self._checked_at = now
        paths = self.list_files()
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in paths)
        if stamp == self._stamp:
            return
        items, errors = load_each(paths, self.loader)
        for error in errors:
            slug = Path(error.path).stem
            if slug in self._items:
                items.setdefault(slug, self._items[slug])
        self._items, self._errors, self._stamp = items, errors, stamp

    @property
    def items(self) -> dict:
        self._refresh()
        return self._items

    @property
    def errors(self) -> list[DefinitionError]:
        self._refresh()
        return self._errors

    def get(self, slug: str):
        return self.items.get(slug)

    def all(self) -> list:
        items = self.items
        return [items[slug] for slug in sorted(items)]
