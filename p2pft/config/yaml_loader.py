"""Reading a job file: YAML with two fixes over PyYAML's defaults, errors as one line with the line number.

1. PyYAML follows YAML 1.1, where `5e-5` (no dot) is a STRING; LLaMA-Factory converts it to a float, so users
   write it. We resolve YAML 1.2 floats so `learning_rate: 5e-5` is a number; `'5e-5'` (quoted) stays a string.
2. A key given twice is an error instead of "the last one wins silently".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class YamlError(ValueError):
    """One line: where in the file and what is wrong."""


_YAML12_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class _JobLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise YamlError(f"line {line}: {key} is given twice (first at line {seen[key]}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# Replace the implicit float resolver by the YAML 1.2 one (the class copies the table on first add).
_JobLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_JobLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))


def parse_yaml_text(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_JobLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(f"{where}: invalid YAML ({problem})") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML ({' '.join(str(exc).split())})") from None


def read_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError("no such file") from None
    except IsADirectoryError:
        raise YamlError("is a directory, not a job file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(f"cannot read ({' '.join(str(exc).split())})") from None
    return parse_yaml_text(text)
