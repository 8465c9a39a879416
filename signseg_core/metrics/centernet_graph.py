"""A TF.js graph model (``model.json`` + weight shards) run by torch, without TensorFlow or Node.

Two parts:

* :func:`decode_weights` reads the binary shards as the TF.js format defines them (tfjs-core
  ``io/io_utils.ts``, ``decodeWeights``): the weights of a manifest group lie back to back, in the
  manifest's order, little-endian, across the group's files concatenated. A weight is stored in
  its ``dtype`` (float32, int32, bool) unless it has a ``quantization``: ``float16`` is IEEE half
  precision (widened exactly to float32); ``uint8``/``uint16`` hold ``q`` with the value
  ``q * scale + min`` (rounded for int32 weights), computed in float64 then stored as float32,
  as JavaScript does.
* :class:`TfjsGraph` walks the graph's nodes (``modelTopology.node``, TensorFlow ``GraphDef`` as
  JSON) from the placeholder to the requested outputs, in NCHW instead of TensorFlow's NHWC, for
  the ops a convolutional network needs: (fused) convolutions and depthwise convolutions with
  bias and ReLU/ReLU6, element-wise Add/Sub/Mul, Relu, Relu6, Sigmoid, Mean, ConcatV2,
  ResizeBilinear, Identity. Anything else raises naming the op. ``SAME`` padding is TensorFlow's
  (the odd pixel at the bottom/right); :func:`resize_bilinear` is TensorFlow's, including the
  legacy mode (``align_corners = half_pixel_centers = False``, source = destination x in/out),
  which ``torch.nn.functional.interpolate`` does not offer.

Float constants become frozen ``nn.Parameter`` s (kernels in torch's OIHW layout), so the module
has a state dict; integer constants (axes, sizes) stay Python values. Numerics: float32
throughout, as TF.js's CPU backend computes.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signseg_core.errors import CheckpointError

_STORED = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1")}
_QUANTIZED = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}
_CONVS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"}
_ACTIVATIONS = {"Relu": F.relu, "Relu6": lambda x: x.clamp(0.0, 6.0), "Sigmoid": torch.sigmoid,
                "Identity": lambda x: x}
_BINARY = {"Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul}


def decode_weights(specs: Sequence[dict], data: bytes) -> dict[str, np.ndarray]:
    """One manifest group's weights from its bytes: ``{name: array}`` (float32, int32 or bool).

    ``specs`` is the group's ``weights`` list (``name``, ``shape``, ``dtype``, optional
    ``quantization``). CheckpointError when the bytes are too few or too many, or a dtype is not
    one TF.js graph weights use.
    """
    out, offset = {}, 0
    for spec in specs:
        shape = tuple(int(d) for d in spec["shape"])
        count = math.prod(shape)
        quant = spec.get("quantization")
        kind = quant["dtype"] if quant else spec["dtype"]
        stored = (_QUANTIZED if quant else _STORED).get(kind)
        if stored is None or spec["dtype"] not in _STORED:
            raise CheckpointError(f"weight {spec['name']!r}: dtype {spec['dtype']!r} stored as "
                                  f"{kind!r} is not supported")
        end = offset + count * stored.itemsize
        if end > len(data):
            raise CheckpointError(f"weight {spec['name']!r} needs bytes {offset}..{end} but the "
                                  f"weights file has {len(data)}")
        raw = np.frombuffer(data, stored, count, offset).reshape(shape)
        offset = end
        if quant is None:
            value = raw.astype(bool if kind == "bool" else stored)
        elif kind == "float16":
            value = raw.astype(np.float32)
        else:
            value = raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
        if quant is not None and spec["dtype"] == "int32":
            value = np.round(value).astype(np.int32)
        out[spec["name"]] = np.array(value, dtype=bool if kind == "bool" and quant is None
                                     else _STORED[spec["dtype"]])  # a copy, shape kept
    if offset != len(data):
        raise CheckpointError(f"the weights file has {len(data)} bytes; the manifest describes "
                              f"{offset}")
    return out


def load_graph_json(json_path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A TF.js graph model's JSON and its decoded weights (shards read beside the JSON)."""
    json_path = Path(json_path)
    model = json.loads(json_path.read_text())
    if model.get("format") != "graph-model":
        raise CheckpointError(f"{json_path} is not a TF.js graph model "
                              f"(format {model.get('format')!r})")
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join((json_path.parent / p).read_bytes() for p in group["paths"])
        weights.update(decode_weights(group["weights"], data))
    return model, weights


def attr_value(node: dict, key: str, default=None):
    """A node attribute as Python: ints, floats, bools, strings (base64-decoded) or lists."""
    attr = node.get("attr", {}).get(key)
    if attr is None:
        return default
    if "list" in attr:
        items = attr["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        return [base64.b64decode(s).decode() for s in items.get("s", [])]
    if "s" in attr:
        return base64.b64decode(attr["s"]).decode()
    if "i" in attr:
        return int(attr["i"])
    if "f" in attr:
        return float(attr["f"])
    return attr.get("b", default)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding of one axis: (before, after); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _source_index(n_in: int, n_out: int, align_corners: bool, half_pixel: bool, device):
    scale = (n_in - 1) / (n_out - 1) if align_corners and n_out > 1 else n_in / n_out
    dst = torch.arange(n_out, dtype=torch.float64, device=device)
    src = ((dst + 0.5) * scale - 0.5 if half_pixel else dst * scale).clamp(min=0.0)
    low = src.floor()
    frac = (src - low).float()
    low = low.long().clamp(max=n_in - 1)
    return low, (low + 1).clamp(max=n_in - 1), frac


def resize_bilinear(x: Tensor, size: Sequence[int], *, align_corners: bool = False,
                    half_pixel_centers: bool = False) -> Tensor:
    """TensorFlow's ``ResizeBilinear`` (and TF.js's ``resizeBilinear``) of ``x`` (N, C, H, W) to
    ``size`` (H', W'): no antialiasing; columns interpolated first, then rows, each as
    ``a + (b - a) * frac``, as TF.js's CPU kernel does."""
    h_lo, h_hi, h_frac = _source_index(x.shape[2], int(size[0]), align_corners,
                                       half_pixel_centers, x.device)
    w_lo, w_hi, w_frac = _source_index(x.shape[3], int(size[1]), align_corners,
                                       half_pixel_centers, x.device)
    left, right = x[..., w_lo], x[..., w_hi]
    cols = left + (right - left) * w_frac.to(x.dtype)
    top, bottom = cols[..., h_lo, :], cols[..., h_hi, :]
    return top + (bottom - top) * h_frac.to(x.dtype)[:, None]


def _input_name(ref: str) -> str:
    if ref.startswith("^"):
        raise CheckpointError(f"control dependency {ref!r} is not supported")
    name, _, index = ref.partition(":")
    if index not in ("", "0"):
        raise CheckpointError(f"output {ref!r} of a multi-output op is not supported")
    return name


class TfjsGraph(nn.Module):
    """The part of a TF.js graph from its one placeholder to ``outputs``, as a torch module.

    ``forward(x)`` takes the placeholder's value in NCHW (TensorFlow's NHWC transposed) and
    returns the outputs in ``outputs``' order, 4-D ones in NCHW. Read-only after construction.
    """

    def __init__(self, nodes: Sequence[dict], weights: dict[str, np.ndarray],
                 outputs: Sequence[str]):
        super().__init__()
        self.nodes = {n["name"]: n for n in nodes}
        missing = [o for o in outputs if o not in self.nodes]
        if missing:
            raise CheckpointError(f"graph has no node {missing[0]!r}")
        self.outputs = list(outputs)
        self.plan = self._order(self.outputs)
        self.ints: dict[str, list[int]] = {}
        self.keys: dict[str, str] = {}
        kernels = {_input_name(self.nodes[n]["input"][1]): self.nodes[n]["op"]
                   for n in self.plan if self.nodes[n]["op"] in _CONVS}
        for name in self.plan:
            if self.nodes[name]["op"] == "Const":
                self._add_const(name, weights, kernel_of=kernels.get(name))
        self.requires_grad_(False)

    def _order(self, outputs: Sequence[str]) -> list[str]:
        """The nodes ``outputs`` need, each after its inputs (iterative depth-first search)."""
        order, seen, stack = [], set(), [(o, False) for o in reversed(outputs)]
        while stack:
            name, ready = stack.pop()
            if ready:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            if name not in self.nodes:
                raise CheckpointError(f"graph refers to a missing node {name!r}")
            stack.append((name, True))
            stack += [(_input_name(i), False) for i in reversed(self.nodes[name].get("input", []))]
        return order

    def _add_const(self, name: str, weights: dict[str, np.ndarray], kernel_of: str | None):
        if name not in weights:
            raise CheckpointError(f"constant {name!r} has no weights in the manifest")
        value = weights[name]
        if value.dtype != np.float32:
            self.ints[name] = value.reshape(-1).astype(int).tolist()
            return
        tensor = torch.from_numpy(value.copy())
        if kernel_of in ("Conv2D", "_FusedConv2D"):  # (kh, kw, in, out) -> (out, in, kh, kw)
            tensor = tensor.permute(3, 2, 0, 1)
        elif kernel_of is not None:  # depthwise (kh, kw, in, mult) -> (in * mult, 1, kh, kw)
            kh, kw, cin, mult = tensor.shape
            tensor = tensor.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
        key = name.replace(".", "_")
        self.keys[name] = key
        self.register_parameter(key, nn.Parameter(tensor.contiguous(), requires_grad=False))

    def const(self, name: str) -> Tensor:
        return self._parameters[self.keys[name]]

    def forward(self, x: Tensor) -> list[Tensor]:
        values: dict[str, Tensor] = {}
        for name in self.plan:
            node = self.nodes[name]
            op = node["op"]
            if op == "Const":
                if name in self.keys:
                    values[name] = self.const(name)
                continue
            args = [values.get(_input_name(i)) for i in node.get("input", [])]
            values[name] = x if op == "Placeholder" else self._run(node, op, args)
        return [values[o] for o in self.outputs]

    def _run(self, node: dict, op: str, args: list) -> Tensor:
        if op in _CONVS:
            return self._conv(node, op, args)
        if op in _ACTIVATIONS:
            return _ACTIVATIONS[op](args[0])
        if op in _BINARY:
            a, b = (_channels_first(t) for t in args)
            return _BINARY[op](a, b)
        ints = [self.ints.get(_input_name(i)) for i in node.get("input", [])]
        if op == "Mean":
            axes = [_NHWC_TO_NCHW[a % 4] for a in ints[1]]
            return args[0].mean(dim=axes, keepdim=bool(attr_value(node, "keep_dims", False)))
        if op == "ConcatV2":
            return torch.cat(args[:-1], dim=_NHWC_TO_NCHW[ints[-1][0] % 4])
        if op == "ResizeBilinear":
            return resize_bilinear(args[0], ints[1],
                                   align_corners=bool(attr_value(node, "align_corners", False)),
                                   half_pixel_centers=bool(attr_value(node, "half_pixel_centers",
                                                                      False)))
        raise CheckpointError(f"op {op!r} (node {node['name']!r}) is not supported")

    def _conv(self, node: dict, op: str, args: list) -> Tensor:
        if attr_value(node, "data_format", "NHWC") != "NHWC":
            raise CheckpointError(f"node {node['name']!r}: only NHWC graphs are supported")
        x, weight = args[0], args[1]
        stride = attr_value(node, "strides", [1, 1, 1, 1])[1:3]
        dilation = attr_value(node, "dilations", [1, 1, 1, 1])[1:3]
        groups = x.shape[1] if "Depthwise" in op else 1
        pad = (0, 0, 0, 0)
        if attr_value(node, "padding") == "SAME":
            (top, bottom), (left, right) = (
                same_padding(x.shape[2 + i], weight.shape[2 + i], stride[i], dilation[i])
                for i in range(2))
            pad = (left, right, top, bottom)
        elif attr_value(node, "padding") != "VALID":
            raise CheckpointError(f"node {node['name']!r}: padding "
                                  f"{attr_value(node, 'padding')!r} is not supported")
        symmetric = pad[0] == pad[1] and pad[2] == pad[3]
        if not symmetric:
            x = F.pad(x, pad)
        y = F.conv2d(x, weight, None, stride, (pad[2], pad[0]) if symmetric else 0, dilation,
                     groups)
        for fused in attr_value(node, "fused_ops", []) if op.startswith(("_Fused", "Fused")) \
                else []:
            if fused == "BiasAdd":
                y = y + args[2].view(-1, 1, 1)
            elif fused in ("Relu", "Relu6"):
                y = _ACTIVATIONS[fused](y)
            else:
                raise CheckpointError(f"node {node['name']!r}: fused op {fused!r} is not "
                                      "supported")
        return y


def _channels_first(t: Tensor) -> Tensor:
    """A per-channel constant (C,) of an NHWC graph, broadcast against NCHW: (C, 1, 1)."""
    return t.view(-1, 1, 1) if t.dim() == 1 else t
