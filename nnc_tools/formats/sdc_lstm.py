"""NNC's LSTM layer: not NNabla's LSTM function but a recurrent block NNC's converter expands it into, as it expands a
Unit calling a network: the input split into steps (RecurrentInput), the previous step's cell and output (Delays ``C``
and ``H``, their first values from the data ``c``/``h`` or a generator), four Affine layers over ``[H, x]`` (``Affine``,
``IGate``, ``FGate``, ``OGate``, each ``Size`` wide) and the gates, then RecurrentOutput. Facts read from the
converter's output for LSTM layers (names ``<LSTM>/IGate/affine/W``, the functions' inputs and order); the LSTM
layer's ``Affine.W.LRateMultiplier``, ``H.Initial.Generator``… reach the inner layers as a Unit's properties do."""

from __future__ import annotations

from dataclasses import replace
from typing import List, Tuple

from .sdcproj import Layer, Link

LSTM, CELL = "LSTM", "LSTM (NNC's cell)"  # the layer type; the network it calls (a name no project's network has)
DEFAULTS = {"Size": "100", "Axis": "0"}

_AFFINE = {"OutShape": "Size", "ParameterScope": "*Name", "W.Initializer": "NormalAffineGlorot",
           "W.InitializerMultiplier": "1.0", "W.LRateMultiplier": "1.0", "b.Initializer": "Constant",
           "b.InitializerMultiplier": "0.0", "b.LRateMultiplier": "1.0"}
_LAYERS = [("Input", "Input", {"Size": "1"}), ("RecurrentInput", "RecurrentInput", {"Axis": "Axis"}),
           ("Delay", "C", {"Size": "Size", "Initial.Dataset": "c", "Initial.Generator": "Constant",
                           "Initial.GeneratorMultiplier": "0.0"}),
           ("Delay", "H", {"Size": "Size", "Initial.Dataset": "h", "Initial.Generator": "Constant",
                           "Initial.GeneratorMultiplier": "0.0"}),
           ("Concatenate", "Concatenate", {"Axis": "Axis"}),  # (the step's axis: NNC's cell concatenates there)
           ("Affine", "Affine", _AFFINE), ("Affine", "IGate", _AFFINE), ("Affine", "FGate", _AFFINE),
           ("Affine", "OGate", _AFFINE), ("Tanh", "Tanh", {}), ("Sigmoid", "Sigmoid", {}),
           ("Sigmoid", "Sigmoid_2", {}), ("Sigmoid", "Sigmoid_4", {}), ("Mul2", "Mul2", {}), ("Mul2", "Mul2_2", {}),
           ("Add2", "Add2", {"InPlace": "*AutoInPlace"}), ("Tanh", "Tanh_2", {}), ("Mul2", "Mul2_3", {}),
           ("RecurrentOutput", "RecurrentOutput", {"Axis": "Axis"})]
# (source, destination) by name, in the converter's order: [H, x] concatenated; c' = i*tanh(a) + f*c; h' = o*tanh(c')
_LINKS = [("Input", "RecurrentInput"), ("H", "Concatenate"), ("RecurrentInput", "Concatenate"),
          ("Concatenate", "Affine"), ("Concatenate", "IGate"), ("Concatenate", "FGate"), ("Concatenate", "OGate"),
          ("Affine", "Tanh"), ("IGate", "Sigmoid"), ("FGate", "Sigmoid_2"), ("OGate", "Sigmoid_4"),
          ("Sigmoid", "Mul2"), ("Tanh", "Mul2"), ("Sigmoid_2", "Mul2_2"), ("C", "Mul2_2"), ("Mul2", "Add2"),
          ("Mul2_2", "Add2"), ("Add2", "Tanh_2"), ("Sigmoid_4", "Mul2_3"), ("Tanh_2", "Mul2_3"),
          ("Mul2_3", "RecurrentOutput"), ("Add2", "C"), ("Mul2_3", "H")]


def cell() -> Tuple[List[Layer], List[Link]]:
    """The network an LSTM layer calls: its layers and links."""
    layers = [Layer(CELL, "", str(i), kind, name, name, dict(props)) for i, (kind, name, props) in enumerate(_LAYERS)]
    ids = {layer.name: layer.id for layer in layers}
    return layers, [Link(ids[a], 0, ids[b], 0) for a, b in _LINKS]


def as_call(layer: Layer) -> Layer:
    """The LSTM layer as the Unit calling its cell: the catalogue's Size and Axis where the project omits them, named
    by its ParameterScope where it has one (the converter names the cell's functions ``Enc/IGate``, not ``LSTM/…``)."""
    scope = layer.properties.get("ParameterScope", "*Name")
    return replace(layer, name=layer.name if scope in ("", "*Name") else scope,
                   properties={**DEFAULTS, **layer.properties, "Network": CELL})
