"""A network's Repeat blocks expanded as NNabla's loader expands them (``graph_def.ProtoNetwork.expand_loop_control``,
then its ``IdentityRemover``), for code that reads a network without running it and must name what the loaded graph
holds: a variable inside a block is ``name_RepeatStart[i]`` (or ``{RepeatStart}`` replaced by ``[i]``), a parameter
``Convolution_6[0]/conv/W``; RepeatStart and RepeatEnd become identities and vanish, their consumers reading what fed
them."""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional

from .schema import nnabla_pb2

RECURRENT = {"RecurrentInput", "RecurrentOutput", "Delay"}


def _indices(times: Dict[str, int], ids) -> List[tuple]:
    return list(itertools.product(*(range(times[r]) for r in ids)))


def _suffix(ids, index) -> str:
    return "".join(f"_{r}[{i}]" for r, i in zip(ids, index))


def expand_repeats(network: nnabla_pb2.Network) -> Optional[nnabla_pb2.Network]:
    """The network with its Repeat blocks expanded, functions in an order where each follows what it reads; the network
    itself when it has none; None for recurrent networks (RecurrentInput/Output, Delay), which this does not expand."""
    if not network.repeat_info:
        return network
    if any(f.type in RECURRENT for f in network.function):
        return None
    times = {r.id: r.times for r in network.repeat_info}
    out = nnabla_pb2.Network(name=network.name, batch_size=network.batch_size)
    names = set()
    for v in network.variable:
        for index in _indices(times, v.repeat_id):
            name = v.name
            for r, i in zip(v.repeat_id, index):
                name = name.replace("{" + r + "}", f"[{i}]") if "{" + r + "}" in name else name + f"_{r}[{i}]"
            new = out.variable.add()
            new.CopyFrom(v)
            new.name = name
            del new.repeat_id[:]
            names.add(name)
    functions, renamed = [], {}
    for f in network.function:
        for index in _indices(times, f.repeat_id):
            whole, low = _suffix(f.repeat_id, index), _suffix(f.repeat_id[:-1], index[:-1])
            if f.type == "RepeatStart":
                rid = f.repeat_param.repeat_id
                source = (f.input[0] if f.input[0] in names else f.input[0] + low) if index[-1] == 0 else \
                    f.input[1] + low + f"_{rid}[{index[-1] - 1}]"
                renamed[f.output[0] + whole if f.output[0] + whole in names else f.output[0]] = source
                continue
            if f.type == "RepeatEnd":
                rid = f.repeat_param.repeat_id
                renamed[f.output[0] + whole if f.output[0] + whole in names else f.output[0]] = \
                    f.input[0] + whole + f"_{rid}[{times[rid] - 1}]"
                continue
            new = nnabla_pb2.Function()
            new.CopyFrom(f)
            new.name = f.name + whole
            del new.repeat_id[:]
            inputs = []
            for name in f.input:
                for r, i in zip(f.repeat_id, index):
                    name = name.replace("{" + r + "}", f"[{i}]")
                inputs.append(name if name in names else name + whole if name + whole in names else name + low)
            new.input[:] = inputs
            new.output[:] = [o + whole if o + whole in names else o for o in f.output]
            functions.append(new)

    def resolve(name: str) -> str:
        while name in renamed:
            name = renamed[name]
        return name

    for f in functions:
        f.input[:] = [resolve(n) for n in f.input]
    kept = [v for v in out.variable if v.name not in renamed]
    del out.variable[:]
    out.variable.extend(kept)
    out.function.extend(_in_order(functions))
    return out


def _in_order(functions: List[nnabla_pb2.Function]) -> List[nnabla_pb2.Function]:
    """A topological order that keeps the given order wherever it can (NNabla emits a block's functions one layer at a
    time over all repetitions, so a repetition's layer can come before the previous repetition's last)."""
    import heapq

    made = {o: k for k, f in enumerate(functions) for o in f.output}
    needs = [{made[n] for n in f.input if n in made and made[n] != k} for k, f in enumerate(functions)]
    users: Dict[int, List[int]] = {}
    for k, wanted in enumerate(needs):
        for w in wanted:
            users.setdefault(w, []).append(k)
    ready = [k for k, wanted in enumerate(needs) if not wanted]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(functions[k])
        for u in users.get(k, []):
            needs[u].discard(k)
            if not needs[u]:
                heapq.heappush(ready, u)
    return order if len(order) == len(functions) else functions  # a cycle: leave it as given
