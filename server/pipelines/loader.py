"""Read `.greenlight.yml` text into a ``PipelineConfig``, or a ``ConfigError`` naming file and line."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from server.pipelines import matrix
from server.pipelines.config import CONFIG_FILE, PipelineConfig


class ConfigError(ValueError):
    """The user's pipeline file is wrong; the message says where and what was expected."""


def load_pipeline(text: str, filename: str = CONFIG_FILE) -> PipelineConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ConfigError(f"{where}: invalid YAML: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{filename}: invalid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{filename}:1: expected a mapping with at least `steps:`, found {type(data).__name__}"
        )
    steps = data.get("steps")
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict) and step.get("image") is None and data.get("image") is None:
            line = _line_of(root, ["steps", data["steps"].index(step)])
            raise ConfigError(
                f"{filename}:{line}: step {step.get('name')!r} has no image; "
                "set `image:` on the step or at the top of the file"
            )
    try:
        pipeline = PipelineConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(error, root, filename))) from None
    problems = _unresolved_images(pipeline, root, filename)
    if problems:
        raise ConfigError("\n".join(problems))
    return pipeline


def _unresolved_images(pipeline: PipelineConfig, root: yaml.Node | None, filename: str) -> list[str]:
    """``${name}`` in an image must be a matrix value of every job."""
    problems = []
    cells = pipeline.matrix_cells()
    for location, image in pipeline.images():
        missing = sorted({name for cell in cells for name in matrix.unknown_references(image, cell)})
        if missing:
            path = ".".join(str(part) for part in location)
            names = ", ".join(f"${{{name}}}" for name in missing)
            problems.append(
                f"{filename}:{_line_of(root, location)}: {path}: {names} is not a matrix value of "
                "every job (only `matrix:` values can be used in images)"
            )
    return problems


def _describe(error: ValidationError, root: yaml.Node | None, filename: str) -> list[str]:
    messages = []
    for problem in error.errors():
        loc = list(problem["loc"])
        # An unknown key is the last part, whatever its name (a user's key may well be "str").
        key = loc.pop() if problem["type"] == "extra_forbidden" else None
        location = [part for part in loc if not _is_pydantic_branch(part) and part != "[key]"]
        if key is not None:
            location.append(key)
        if location[:2] == ["matrix", "axes"]:  # axes sit beside include/exclude in the file
            del location[1]
        path = ".".join(str(part) for part in location) or "(top level)"
        line = _line_of(root, location)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = f"unknown key {location[-1]!r}"
        elif problem["type"] == "missing":
            message = "is required"
        elif problem["type"] in ("model_type", "dict_type"):
            message = "expected a mapping (key: value)"
        elif problem["type"] == "list_type":
            message = "expected a list"
        messages.append(f"{filename}:{line}: {path}: {message}")
    return messages


def _is_pydantic_branch(part: Any) -> bool:
    # Union members show up in locations as e.g. "str" or "list[str]"; users never wrote those.
    return isinstance(part, str) and part in {
        "str",
        "list[str]",
        "int",
        "function-before[_duration_seconds(), int]",
    }


def _line_of(node: yaml.Node | None, location: list[Any]) -> int:
    """The 1-based line of the deepest YAML node that ``location`` reaches."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in location:
        if isinstance(node, yaml.MappingNode):
            match = next((pair for pair in node.value if pair[0].value == part), None)
            if match is None:
                break
            key, node = match
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
