"""Parsing YAML and JSON within bounds: a file the user or a damaged disk hands the tool can
make it neither run for minutes nor overflow the stack.

A YAML alias bomb (`a: &a [x, x]`, `b: &b [*a, *a]`, ... ten levels) is a few hundred bytes
that stand for billions of values: anything that walks the document (the recipe's digest,
its checks) would run for ever. Deep nesting (`[[[[...]]]]`) makes every recursive reader,
PyYAML's composer and the json module included, fail with `RecursionError`. Both are
refused here, as the parse error of their format, so each caller's existing message for a
file that is not YAML or not JSON covers them. `header_problem` checks the shape of a
parsed `augment.json` the same way: valid JSON of the wrong shape is a damaged header.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100  # nesting levels; a recipe or a record needs fewer than ten
MAX_NODES = 1_000_000  # values a YAML document stands for, aliases expanded


def loads_json(text: str | bytes) -> Any:
    """json.loads, with nesting too deep for the stack a json.JSONDecodeError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to be read", "", 0) from None


def load_yaml(text: str) -> Any:
    """yaml.safe_load within MAX_DEPTH levels and MAX_NODES values (aliases expanded);
    yaml.YAMLError otherwise, as for a document that is not YAML."""
    import yaml  # only the commands that read YAML pay for it

    depth = 0
    # The parser is a state machine, not recursive: the depth is known before composing.
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise yaml.YAMLError(
                f"its aliases stand for more than {MAX_NODES:,} values "
                "(an alias bomb, or an alias inside itself)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(root: Any) -> int:
    """How many values the node graph stands for once every alias is expanded, in time
    linear in the graph (each node is sized once); a recursive alias is infinite."""
    import yaml

    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node, yaml)
        if not children_done:
            if key in open_nodes:
                return MAX_NODES + 1  # a recursive alias: a value that contains itself
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(key)
        if any(id(child) not in sizes for child in children):
            return MAX_NODES + 1  # a child still open: a cycle through it
        sizes[key] = min(MAX_NODES + 1, 1 + sum(sizes[id(child)] for child in children))
    return sizes[id(root)]


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def header_problem(header: Any) -> str | None:
    """What is wrong with the shape of a parsed `augment.json` (the keys every reader takes
    as they are), or None: a header of the wrong shape is refused once, here, rather than
    failing wherever a reader happens to touch it."""
    if not isinstance(header, dict):
        return "not a JSON object"
    for key in ("recipe", "options", "source"):
        if not isinstance(header.get(key), dict):
            return f"{key!r} is not an object"
    counts = header.get("counts")
    if not isinstance(counts, dict) or not all(
        isinstance(per_class, dict)
        and all(isinstance(n, int) and not isinstance(n, bool) for n in per_class.values())
        for per_class in counts.values()
    ):
        return "'counts' is not a table of numbers by split and class"
    for key, fields in (("holdout", ("path", "split")), ("rejected", ("path", "reason"))):
        entries = header.get(key)
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and all(isinstance(e.get(f), str) for f in fields) for e in entries
        ):
            return f"{key!r} is not a list of entries with {' and '.join(fields)}"
    return None
