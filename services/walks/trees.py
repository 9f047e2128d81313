"""Decision trees: validation and conversion, shared by flows, proposals and
AI-built walks.

A tree is valid when: it has at most 500 nodes with unique ids; the root
exists; every option leads to an existing node and labels are unique within
a node; there are no cycles; every node is reachable from the root; leaves
are resolution or escalation nodes, and those have no options. Violations
name the offending node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowpilot.walks.v1 import walks_pb2 as pb

from services.core.ai import DecisionTree
from services.core.errors import FieldViolation, InvalidArgument

MAX_NODES = 500
KINDS = {
    "question": pb.NODE_KIND_QUESTION,
    "action": pb.NODE_KIND_ACTION,
    "resolution": pb.NODE_KIND_RESOLUTION,
    "escalation": pb.NODE_KIND_ESCALATION,
}
KIND_NAMES: dict[int, str] = {int(v): k for k, v in KINDS.items()}
TERMINAL = {"resolution", "escalation"}


Problem = tuple[str, str]  # (field path, description)


def problems(tree: dict[str, Any]) -> list[Problem]:
    """(field path, description) for each rule the tree breaks; [] when valid."""
    nodes: Sequence[dict[str, Any]] = tree.get("nodes", [])
    if not nodes:
        return [("nodes", "a tree needs at least one node")]
    if len(nodes) > MAX_NODES:
        return [("nodes", f"at most {MAX_NODES} nodes")]
    found: list[Problem] = []
    index = _index(nodes, found)
    root = tree.get("root", "")
    if root not in index:
        found.append(("root", f"root {root!r} is not a node of the tree"))
    for i, node in enumerate(nodes):
        found += _node_problems(f"nodes[{i}]", node, index)
    if found:
        return found
    return _shape_problems(nodes, index, root)


def _index(nodes: Sequence[dict[str, Any]], found: list[Problem]) -> dict[str, int]:
    """Node id → position; a missing or repeated id is a problem."""
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if not node.get("id"):
            found.append((f"nodes[{i}].id", "is required"))
        elif node["id"] in index:
            found.append((f"nodes[{i}].id", f"node {node['id']!r} appears twice"))
        else:
            index[node["id"]] = i
    return index


def _node_problems(where: str, node: dict[str, Any], index: dict[str, int]) -> list[Problem]:
    found: list[Problem] = []
    name, kind, options = node.get("id"), node.get("kind"), node.get("options", [])
    if kind not in KINDS:
        found.append((f"{where}.kind", f"node {name!r} has no valid kind"))
    if not str(node.get("text", "")).strip():
        found.append((f"{where}.text", f"node {name!r} has no text"))
    if kind in TERMINAL and options:
        found.append((f"{where}.options", f"{kind} node {name!r} must not have options"))
    if kind not in TERMINAL and not options:
        found.append((f"{where}.options", f"node {name!r} is a leaf but not a resolution or escalation"))
    labels: set[str] = set()
    for j, option in enumerate(options):
        label, target = option.get("label", ""), option.get("next", "")
        if not label.strip():
            found.append((f"{where}.options[{j}].label", f"node {name!r} has an option without label"))
        elif label in labels:
            found.append((f"{where}.options[{j}].label", f"node {name!r} has option {label!r} twice"))
        labels.add(label)
        if target not in index:
            found.append((f"{where}.options[{j}].next", f"node {name!r} leads to missing node {target!r}"))
    return found


def _shape_problems(nodes: Sequence[dict[str, Any]], index: dict[str, int], root: str) -> list[Problem]:
    """Cycles and nodes the root cannot reach, by depth-first search from the root."""
    found: list[Problem] = []
    state: dict[str, int] = {root: 1}  # 1 = on the current path, 2 = done
    stack = [(root, iter(nodes[index[root]].get("options", [])))]
    while stack:
        current, children = stack[-1]
        child = next(children, None)
        if child is None:
            state[current] = 2
            stack.pop()
            continue
        target = child["next"]
        if state.get(target) == 1:
            found.append(
                (f"nodes[{index[current]}].options", f"node {current!r} closes a cycle through {target!r}")
            )
        elif target not in state:
            state[target] = 1
            stack.append((target, iter(nodes[index[target]].get("options", []))))
    for node_id, i in index.items():
        if node_id not in state:
            found.append((f"nodes[{i}]", f"node {node_id!r} cannot be reached from the root"))
    return found


def validate(tree: dict[str, Any], *, prefix: str) -> dict[str, Any]:
    found = problems(tree)
    if found:
        raise InvalidArgument([FieldViolation(f"{prefix}.{path}", text) for path, text in found[:20]])
    return tree


def from_proto(tree: pb.Tree, *, prefix: str) -> dict[str, Any]:
    """The JSON form of a tree from a request, validated."""
    data = {
        "root": tree.root,
        "nodes": [
            {
                "id": n.id,
                "kind": KIND_NAMES.get(n.kind, ""),
                "text": n.text,
                "options": [{"label": o.label, "next": o.next} for o in n.options],
            }
            for n in tree.nodes
        ],
    }
    return validate(data, prefix=prefix)


def from_ai(tree: DecisionTree) -> dict[str, Any]:
    return {
        "root": tree.root,
        "nodes": [
            {
                "id": n.id,
                "kind": n.kind,
                "text": n.text,
                "options": [{"label": o.label, "next": o.next} for o in n.options],
            }
            for n in tree.nodes
        ],
    }


def to_proto(tree: dict[str, Any] | None) -> pb.Tree | None:
    if not tree:
        return None
    return pb.Tree(
        root=tree["root"],
        nodes=[
            pb.Node(
                id=n["id"],
                kind=KINDS[n["kind"]],
                text=n["text"],
                options=[pb.Option(label=o["label"], next=o["next"]) for o in n.get("options", [])],
            )
            for n in tree["nodes"]
        ],
    )


def node(tree: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in tree["nodes"] if n["id"] == node_id)
