"""Reading an ONNX graph file for checks: one checker and one op counter for every route.

The onnx converter (its own rules: opset, no `If`, dwkit's names), the TensorRT build
(parser opsets, supported ops, profile coverage) and the trt runtime's engine cache all start
from `inspect_graph`, so what "the ops of a graph" means cannot differ between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dwkit.errors import ConversionError

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class GraphFacts:
    """A graph file that passed onnx.checker, described for checks and for the manifest."""

    file: str
    opset: int
    op_types: dict[str, int]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def inspect_graph(path: Path) -> GraphFacts:
    """onnx.checker (a refusal becomes one ConversionError line naming the file), then the
    default-domain opset, the op counts and the inputs/outputs; weights are not loaded."""
    import onnx

    path = Path(path)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{path.name}: onnx.checker rejects it ({first})") from exc
    model = onnx.load(str(path), load_external_data=False)
    return GraphFacts(
        file=path.name,
        opset=next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0),
        op_types=dict(sorted(op_types(model).items())),
        inputs=[describe_io(v) for v in model.graph.input],
        outputs=[describe_io(v) for v in model.graph.output],
    )


def op_types(model: Any) -> dict[str, int]:
    """Op counts over the graph, subgraphs and local functions; ops outside the default domain
    are named `domain::Op`. A call to a local function counts the function's body instead."""
    import onnx

    functions = {(f.domain, f.name): f for f in model.functions}
    counts: dict[str, int] = {}

    def visit(nodes: Any, seen: tuple[tuple[str, str], ...]) -> None:
        for node in nodes:
            key = (node.domain, node.op_type)
            if key in functions:
                if key not in seen:
                    visit(functions[key].node, (*seen, key))
                continue
            op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"
            counts[op] = counts.get(op, 0) + 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g.node, seen)
                for sub in attr.graphs:
                    visit(sub.node, seen)

    visit(model.graph.node, ())
    return counts


def describe_io(value: Any) -> dict[str, Any]:
    """A graph input or output as the manifest records it: name, numpy dtype, shape (ints for
    fixed axes, dimension names for dynamic ones)."""
    import onnx

    tensor = value.type.tensor_type
    shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tensor.shape.dim]
    return {
        "name": value.name,
        "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
        "shape": shape,
    }
