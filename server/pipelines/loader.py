"""Read `.greenlight.yml` text into a ``PipelineConfig``, or a ``ConfigError`` naming file and line."""

from __future__ import annotations

from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from server.pipelines import matrix
from server.pipelines.branch_globs import expansions
from server.pipelines.config import CONFIG_FILE, PipelineConfig

# What one push may make the server parse, build and keep of its pipeline file. An alias
# (`*name`) repeats its anchor's whole value: a few KiB of aliases to aliases would otherwise
# expand to gigabytes before any schema check, and then into every planned job.
MAX_FILE_BYTES = 256 * 1024
MAX_EXPANDED_VALUES = 200_000  # above what 256 KiB can hold without aliases
MAX_EXPANDED_CHARACTERS = 2 * 1024 * 1024
# Each pattern a glob expands to is compiled (once per process): the distinct globs of one file
# may expand to this many patterns at most, so that no push makes the server compile without end.
MAX_GLOB_PATTERNS = 1000


class ConfigError(ValueError):
    """The user's pipeline file is wrong; the message says where and what was expected."""


def check_file_size(size: int, filename: str = CONFIG_FILE) -> None:
    """``read_pipeline_file`` asks before reading the file; ``load_pipeline`` asks again of the text."""
    if size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{filename}: the file is {size:,} bytes; "
            f"at most {MAX_FILE_BYTES:,} ({MAX_FILE_BYTES // 1024} KiB)"
        )


class CommitFiles(Protocol):
    """What reads files of a commit (the server's git mirror)."""

    def file_size(self, sha: str, path: str) -> int: ...

    def read_file(self, sha: str, path: str) -> str: ...


def read_pipeline_file(files: CommitFiles, sha: str) -> str:
    """The text of `.greenlight.yml` at ``sha``, for planning, the deploy check and promote alike:
    a file over the limit is refused by its size, without being read into memory."""
    check_file_size(files.file_size(sha, CONFIG_FILE))
    return files.read_file(sha, CONFIG_FILE)


def load_pipeline(text: str, filename: str = CONFIG_FILE) -> PipelineConfig:
    check_file_size(len(text.encode()), filename)
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        if root is not None:
            _check_expansion(root, filename)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ConfigError(f"{where}: invalid YAML: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{filename}: invalid YAML: {error}") from None
    except RecursionError:
        raise ConfigError(f"{filename}: invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
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
    patterns = expansions(pipeline.globs())
    if patterns > MAX_GLOB_PATTERNS:
        raise ConfigError(
            f"{filename}: the file's globs expand to {patterns:,} patterns (braces); "
            f"at most {MAX_GLOB_PATTERNS:,}"
        )
    problems = _unresolved_images(pipeline, root, filename)
    if problems:
        raise ConfigError("\n".join(problems))
    return pipeline


def _check_expansion(root: yaml.Node, filename: str) -> None:
    """Refuse a document whose aliases expand beyond the limits, counting on the composed nodes
    (where an alias is its anchor's node again) before any Python value is built."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, characters) once expanded
    open_nodes: set[int] = set()

    def expanded(node: yaml.Node) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in open_nodes:
            raise ConfigError(
                f"{filename}:{node.start_mark.line + 1}: an alias refers to a value that contains it"
            )
        if isinstance(node, yaml.ScalarNode):
            size = (1, len(node.value))
        else:
            open_nodes.add(id(node))
            children = (
                [item for pair in node.value for item in pair]
                if isinstance(node, yaml.MappingNode)
                else node.value
            )
            values, characters = 1, 0
            for child in children:
                child_values, child_characters = expanded(child)
                values, characters = values + child_values, characters + child_characters
            open_nodes.discard(id(node))
            size = (values, characters)
        sizes[id(node)] = size
        return size

    values, characters = expanded(root)
    if values > MAX_EXPANDED_VALUES:
        raise ConfigError(
            f"{filename}: anchors and aliases (`*name`) expand the file to {values:,} values; "
            f"at most {MAX_EXPANDED_VALUES:,}"
        )
    if characters > MAX_EXPANDED_CHARACTERS:
        raise ConfigError(
            f"{filename}: anchors and aliases (`*name`) expand the file to {characters:,} characters; "
            f"at most {MAX_EXPANDED_CHARACTERS:,}"
        )


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


# A pushed file never schedules builds (docs/configuration.md, "Scheduled builds"): whoever may
# push to one branch could otherwise make the server build any branch, on its own, with its secrets.
_SCHEDULE_KEYS = [["cron"], ["schedule"], ["schedules"]]
SCHEDULES_ON_THE_SERVER = (
    "schedules are kept on the server (`greenlight schedule add`), not in the pipeline file; "
    "select steps for them with `when: {event: cron, schedule: NAME}`"
)


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
            if location == ["notify"]:
                # Decided on the server alone: a pushed commit may not add recipients or URLs,
                # nor turn off the alerts about itself.
                message += ": notifications are set on the server (greenlight notify add)"
            if location in _SCHEDULE_KEYS:
                message += f": {SCHEDULES_ON_THE_SERVER}"
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
