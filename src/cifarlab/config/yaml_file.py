"""Reading a YAML file the project takes settings from, strictly: a key given twice is an error.

PyYAML keeps the last of two equal keys, so a run or a claim pasted twice silently loses its first settings;
here the second is refused with the line it is on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from cifarlab.errors import CifarlabError, one_line

MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *defaults`, whose keys a mapping may override
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it: ten times faster


def read_yaml(path: str | os.PathLike, *, missing: str) -> Any:
    """The document in `path` (None if empty); any reason it cannot be read is a one-line `CifarlabError`
    naming the file, with `missing` said after "not found; " when there is no such file."""
    path = Path(path)
    try:
        text = path.read_bytes()  # PyYAML tells the encoding from the bytes, as from a file
    except FileNotFoundError:
        raise CifarlabError(f"{path}: not found; {missing}") from None
    except IsADirectoryError:
        raise CifarlabError(f"{path}: a folder; expected a YAML file") from None
    except OSError as exc:
        raise CifarlabError(f"{path}: cannot be read ({one_line(exc.strerror or exc)})") from None
    loader = None
    try:
        loader = LOADER(text)  # reads the encoding, so undecodable bytes fail here already
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(loader, node, path)
        return loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        raise CifarlabError(f"{path}: not valid YAML (byte {exc.position}: {one_line(exc.reason)}); expected "
                            "UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise CifarlabError(f"{path}{where}: not valid YAML ({one_line(problem)})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _refuse_duplicate_keys(loader: yaml.constructor.SafeConstructor, root: yaml.Node, path: Path) -> None:
    """Walk the node tree (before anything is built from it) and refuse the second of two equal keys of a
    mapping, by its dotted key and line."""
    seen_nodes: set[int] = set()  # an alias repeats a node, and may even contain itself
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, where = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                    key = loader.construct_object(key_node)  # so `1` and `0x1`, `a` and "a" are one key
                    dotted = f"{where}.{key}" if where else str(key)
                    line = key_node.start_mark.line + 1
                    if key in first_line:
                        first = f"first on line {first_line[key]}" if first_line[key] != line else "both on it"
                        raise CifarlabError(f"{path} line {line}: {dotted} given twice ({first}); YAML would "
                                            "keep only the second")
                    first_line[key] = line
                    stack.append((value_node, dotted))
                else:
                    stack.append((value_node, where))
