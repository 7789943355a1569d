"""MediaPipe's ``face_landmark.tflite`` → ``facelift_jax.model.face_mesh`` parameters.

The file is read as a flatbuffer with the schema module that ``ai-edge-litert`` ships
(``ai_edge_litert.schema_py_generated``; no TensorFlow, no interpreter): the op graph (op codes,
input/output tensors, padding/stride options) and the constant tensors, fp16 behind DEQUANTIZE ops
(converted to float32 exactly as DEQUANTIZE does). The parameters are found by walking the
dataflow from the input tensor, checking every op against the architecture of
``face_mesh.py`` (kind, padding, stride, shapes, skip connection), so another file gives an
error naming the op instead of silently misplaced weights.

Layouts: CONV_2D weights (O, H, W, I) → HWIO (1×1 convs as (I, O) matrices); DEPTHWISE_CONV_2D
(1, H, W, C) → (H, W, C); PRELU slopes (1, 1, C) → (C,).

``load_pretrained(module, "mediapipe")`` loads the vendored file (``bridges/assets``); any other
string is a path to a .tflite of the same architecture.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
from flax import nnx, traverse_util

LANDMARK_MODEL = pathlib.Path(__file__).parent / "assets" / "face_landmark.tflite"
INSTALL_HINT = "pip install ai-edge-litert  (or the project extra: pip install -e '.[mediapipe]')"
_SAME, _VALID = 0, 1  # tflite Padding enum


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as err:
        raise ImportError(f"bridges.face_mesh reads .tflite files with ai-edge-litert's schema: {INSTALL_HINT}") from err
    return schema


@dataclasses.dataclass
class Op:
    index: int
    kind: str
    inputs: list
    outputs: list
    padding: int | None = None
    stride: int | None = None


@dataclasses.dataclass
class Graph:
    ops: list
    constants: dict  # tensor index → float32 array
    shapes: dict     # tensor index → shape tuple
    inputs: list
    outputs: list
    path: str

    def consumers(self, tensor: int, kind: str | None = None) -> list:
        return [op for op in self.ops if tensor in op.inputs and (kind is None or op.kind == kind)]

    def producer(self, tensor: int) -> Op | None:
        return next((op for op in self.ops if tensor in op.outputs), None)

    def only(self, tensor: int, kind: str, what: str) -> Op:
        ops = self.consumers(tensor, kind)
        if len(ops) != 1:
            raise ValueError(f"{self.path}: expected one {kind} reading tensor {tensor} ({what}), found {len(ops)}")
        return ops[0]

    def const(self, op: Op, position: int, shape: tuple) -> np.ndarray:
        t = op.inputs[position]
        if t not in self.constants:
            raise ValueError(f"{self.path}: op {op.index} ({op.kind}) input {position} is not a constant")
        value = self.constants[t]
        if value.shape != tuple(shape):
            raise ValueError(f"{self.path}: op {op.index} ({op.kind}) weight shape {value.shape}, expected {tuple(shape)}")
        return value

    def reaches(self, tensor: int, target: int) -> bool:
        seen, todo = set(), [tensor]
        while todo:
            t = todo.pop()
            if t == target:
                return True
            if t in seen:
                continue
            seen.add(t)
            todo.extend(o for op in self.consumers(t) for o in op.outputs)
        return False


def read_graph(path: str | os.PathLike = LANDMARK_MODEL) -> Graph:
    """The op graph and dequantized constants of a one-subgraph .tflite file."""
    schema = _schema()
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .tflite file at {path}")
    buf = path.read_bytes()
    if buf[4:8] != b"TFL3":
        raise ValueError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    model = schema.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
              schema.TensorType.INT32: np.int32}
    shapes, raw = {}, {}
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        shapes[t] = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        data = model.Buffers(tensor.Buffer()).DataAsNumpy() if tensor.Buffer() else 0
        if not isinstance(data, int) and data.size and tensor.Type() in dtypes:
            raw[t] = np.frombuffer(data.tobytes(), dtypes[tensor.Type()]).reshape(shapes[t])
    ops, constants = [], {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins, outs = [int(t) for t in op.InputsAsNumpy()], [int(t) for t in op.OutputsAsNumpy()]
        if kind == "DEQUANTIZE":
            constants[outs[0]] = raw[ins[0]].astype(np.float32)
            continue
        padding = stride = None
        options = {"CONV_2D": schema.Conv2DOptions, "DEPTHWISE_CONV_2D": schema.DepthwiseConv2DOptions,
                   "MAX_POOL_2D": schema.Pool2DOptions}.get(kind)
        if options is not None:
            o, table = options(), op.BuiltinOptions()
            o.Init(table.Bytes, table.Pos)
            padding, stride = o.Padding(), o.StrideH()
            if o.StrideW() != stride or o.FusedActivationFunction() != 0:
                raise ValueError(f"{path}: op {i} ({kind}) has unequal strides or a fused activation")
        ops.append(Op(i, kind, ins, outs, padding, stride))
    for t, value in raw.items():
        constants.setdefault(t, value.astype(np.float32) if value.dtype != np.int32 else value)
    return Graph(ops, constants, shapes, [int(t) for t in graph.InputsAsNumpy()],
                 [int(t) for t in graph.OutputsAsNumpy()], str(path))


def _check(graph: Graph, op: Op, padding: int, stride: int):
    if op.padding != padding or op.stride != stride:
        raise ValueError(f"{graph.path}: op {op.index} ({op.kind}) has padding {op.padding}, stride {op.stride}; "
                         f"the face-mesh architecture has {'SAME' if padding == _SAME else 'VALID'}, stride {stride}")


def _prelu(graph: Graph, tensor: int, channels: int, what: str) -> tuple[np.ndarray, int]:
    op = graph.only(tensor, "PRELU", what)
    return graph.const(op, 1, (1, 1, channels)).reshape(channels), op.outputs[0]


def _block(graph: Graph, tensor: int, cin: int, cout: int, stride: int, *, branch_to: int | None = None):
    """Params of the residual block reading ``tensor`` and its output tensor. ``branch_to``: where two
    blocks read the same tensor, take the one whose output reaches that tensor."""
    what = f"block {cin}→{cout}/{stride}"
    dws = graph.consumers(tensor, "DEPTHWISE_CONV_2D")
    if branch_to is not None:
        dws = [op for op in dws if graph.reaches(op.outputs[0], branch_to)]
    if len(dws) != 1:
        raise ValueError(f"{graph.path}: expected one depthwise conv reading tensor {tensor} ({what}), found {len(dws)}")
    dw = dws[0]
    _check(graph, dw, _SAME, stride)
    pw = graph.only(dw.outputs[0], "CONV_2D", what)
    _check(graph, pw, _VALID, 1)
    add = graph.only(pw.outputs[0], "ADD", what)
    skip = next(t for t in add.inputs if t != pw.outputs[0])
    expected = tensor
    if stride == 2:
        source = graph.producer(skip)
        if source is not None and source.kind == "PAD":
            pads = graph.constants[source.inputs[1]].reshape(4, 2)
            if pads.tolist() != [[0, 0], [0, 0], [0, 0], [0, cout - cin]]:
                raise ValueError(f"{graph.path}: op {source.index} pads the skip by {pads.tolist()}, "
                                 f"expected zero channels appended ({cout - cin})")
            source = graph.producer(source.inputs[0])
        if source is None or source.kind != "MAX_POOL_2D" or source.inputs[0] != tensor:
            raise ValueError(f"{graph.path}: the skip of {what} at op {add.index} is not a max pool of its input")
        _check(graph, source, _VALID, 2)
    elif skip != expected:
        raise ValueError(f"{graph.path}: the skip of {what} at op {add.index} is not its input")
    alpha, out = _prelu(graph, add.outputs[0], cout, what)
    params = {"dw_kernel": graph.const(dw, 1, (1, 3, 3, cin))[0], "dw_bias": graph.const(dw, 2, (cin,)),
              "pw_kernel": graph.const(pw, 1, (cout, 1, 1, cin))[:, 0, 0, :].T, "pw_bias": graph.const(pw, 2, (cout,)),
              "alpha": alpha}
    return params, out


def _branch(graph: Graph, tensor: int, blocks, reduced: int, tail, out_size: int, output: int):
    from facelift_jax.model import face_mesh

    params, cin = {"blocks": {}, "tail": {}}, face_mesh.TRUNK[-1][0]
    for i, (cout, stride) in enumerate(blocks):
        params["blocks"][i], tensor = _block(graph, tensor, cin, cout, stride, branch_to=output if i == 0 else None)
        cin = cout
    conv = graph.only(tensor, "CONV_2D", "branch reduction")
    _check(graph, conv, _VALID, 1)
    alpha, tensor = _prelu(graph, conv.outputs[0], reduced, "branch reduction")
    params["reduce"] = {"kernel": graph.const(conv, 1, (reduced, 1, 1, cin))[:, 0, 0, :].T,
                        "bias": graph.const(conv, 2, (reduced,)), "alpha": alpha}
    for i, (cout, stride) in enumerate(tail):
        params["tail"][i], tensor = _block(graph, tensor, reduced, cout, stride)
    head = graph.only(tensor, "CONV_2D", "branch head")
    _check(graph, head, _VALID, 3)
    if head.outputs[0] != output:
        raise ValueError(f"{graph.path}: the branch head writes tensor {head.outputs[0]}, not output {output}")
    params["head"] = {"kernel": graph.const(head, 1, (out_size, 3, 3, reduced)).transpose(1, 2, 3, 0),
                      "bias": graph.const(head, 2, (out_size,))}
    return params


def convert(graph: Graph) -> dict:
    """Nested dict of numpy arrays in the ``FaceMeshNet`` parameter layout (stem_*, trunk, mesh, presence)."""
    from facelift_jax.model import face_mesh

    if len(graph.inputs) != 1 or graph.shapes[graph.inputs[0]][-1] != 3:
        raise ValueError(f"{graph.path}: expected one RGB image input, got inputs {graph.inputs}")
    outputs = {int(np.prod(graph.shapes[t])): t for t in graph.outputs}
    if set(outputs) != {3 * face_mesh.NUM_MESH_POINTS, 1}:
        raise ValueError(f"{graph.path}: outputs of sizes {sorted(outputs)}, expected 1404 (mesh) and 1 (presence)")
    stem = graph.only(graph.inputs[0], "CONV_2D", "stem")
    _check(graph, stem, _SAME, 2)
    w = face_mesh.STEM_WIDTH
    alpha, tensor = _prelu(graph, stem.outputs[0], w, "stem")
    params = {"stem_kernel": graph.const(stem, 1, (w, 3, 3, 3)).transpose(1, 2, 3, 0),
              "stem_bias": graph.const(stem, 2, (w,)), "stem_alpha": alpha, "trunk": {}}
    cin = w
    for i, (cout, stride) in enumerate(face_mesh.TRUNK):
        params["trunk"][i], tensor = _block(graph, tensor, cin, cout, stride)
        cin = cout
    params["mesh"] = _branch(graph, tensor, face_mesh.MESH_BLOCKS, face_mesh.MESH_REDUCED, face_mesh.MESH_TAIL,
                             3 * face_mesh.NUM_MESH_POINTS, outputs[3 * face_mesh.NUM_MESH_POINTS])
    params["presence"] = _branch(graph, tensor, face_mesh.PRESENCE_BLOCKS, face_mesh.MESH_REDUCED,
                                 face_mesh.MESH_TAIL, 1, outputs[1])
    return params


def resolve_path(path: str | os.PathLike) -> pathlib.Path:
    """"mediapipe" → the vendored face_landmark.tflite; anything else must be an existing file."""
    return LANDMARK_MODEL if os.fspath(path) == "mediapipe" else pathlib.Path(path)


def load_into(net: nnx.Module, params: dict) -> list[str]:
    """Set a ``FaceMeshNet``'s parameters from ``convert``'s dict; parts the module lacks (a branch an
    encoder does not build) are skipped and returned by name."""
    state = nnx.state(net, nnx.Param)
    pure = state.to_pure_dict()
    flat = traverse_util.flatten_dict(pure)
    skipped, done = set(), set()
    for path, value in traverse_util.flatten_dict(params).items():
        if path not in flat:
            if path[0] in ("mesh", "presence") and not any(p[0] == path[0] for p in flat):
                skipped.add(path[0])
                continue
            raise ValueError(f"no parameter {'/'.join(map(str, path))} in the face-mesh module")
        if tuple(flat[path].shape) != value.shape:
            raise ValueError(f"{'/'.join(map(str, path))}: .tflite shape {value.shape} does not fit the module's "
                             f"{tuple(flat[path].shape)}")
        node = pure
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = np.asarray(value, np.float32)
        done.add(path)
    missing = [p for p in flat if p not in done]
    if missing:
        raise ValueError(f"the .tflite file leaves parameter {'/'.join(map(str, missing[0]))} unset")
    state.replace_by_pure_dict(pure)
    nnx.update(net, state)
    return sorted(skipped)


def load_pretrained(module: nnx.Module, path: str | os.PathLike = "mediapipe") -> list[str]:
    """Load MediaPipe's face-mesh weights into a ``FaceMeshNet``, a ``FaceMeshEncoder`` or a
    ``FaceLiftRegressor`` whose encoder is one. Returns the branches the module does not hold."""
    from facelift_jax.model.face_mesh import FaceMeshEncoder, FaceMeshNet

    module = getattr(module, "encoder", module)
    net = module.net if isinstance(module, FaceMeshEncoder) else module
    if not isinstance(net, FaceMeshNet):
        raise ValueError(f"MediaPipe face-mesh weights need model.encoder = 'face_mesh', the encoder is "
                         f"{type(module).__name__}")
    return load_into(net, convert(read_graph(resolve_path(path))))
