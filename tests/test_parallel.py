"""Data-parallel training (`--workers`): N threads on slices of the batch give the gradients, running statistics and
update of one graph on the same global batch (float tolerance), for every network in the zoo, uneven slices, dropout,
Batch Normalization on batch statistics and functions that mix the batch."""

from __future__ import annotations

import sys
import threading
import time

import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import numpy as np
import pytest

from nnc_tools.errors import NncToolsError
from nnc_tools.project.networks import get_network, list_networks
from nnc_tools.training.engine import resolve_workers
from nnc_tools.training.parallel import DataParallel
from nnc_tools.training.slicing import slice_sizes
from nnc_tools.training.train import TrainOptions, train

from .conftest import assert_trained_alike, frozen_tiny_project, params_of, tiny_project


def _one_graph_then_parallel(loss: nn.Variable, batch: int, workers: int, frozen=("/mean", "/var")):
    """Gradients, parameters after the forward (running statistics) and loss: one graph, then ``workers`` threads.
    Parameters whose names end with one of ``frozen`` get no gradient."""
    params = nn.get_parameters(grad_only=False)
    for name, p in params.items():
        p.need_grad = not name.endswith(frozen)
    start = {k: p.d.copy() for k, p in params.items()}
    results = []
    for run in ("one graph", "parallel"):
        for k, p in params.items():
            p.d = start[k]
            p.grad.zero()
        nn.seed(5)  # the same dropout masks, if the parallel run draws them as one graph does
        if run == "one graph":
            loss.forward(clear_no_need_grad=True)
            loss.backward(grad=1.0 / loss.size, clear_buffer=True)
            value = float(loss.d.mean())
        else:
            value = DataParallel([loss], params, workers, batch).forward_backward()
        results.append(({k: p.g.copy() for k, p in params.items() if p.need_grad}, {k: p.d.copy() for k, p in params.items()}, value))
    return results


def _assert_same(one, parallel):
    (g1, d1, l1), (g2, d2, l2) = one, parallel
    assert l2 == pytest.approx(l1, rel=1e-5)
    scale = max(float(np.abs(g).max()) for g in g1.values())
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=0, atol=1e-5 * scale, err_msg=k)
    for k in d1:
        np.testing.assert_allclose(d2[k], d1[k], rtol=1e-5, atol=1e-6, err_msg=k)  # BN running mean/var updated alike


# (32, 2) and (48, 3) cut the batch into a tail of small slices besides one per worker. Their images are small (8 × 8, 4 × 4): at
# batch 32 of 16 × 16 images, resnet20's first gradients move by 1 % when one graph merely sees the batch in another
# order (float32 sums over many values, through 19 batch-statistics BNs), too much to compare anything with.
@pytest.mark.parametrize("batch,workers,side", [(4, 2, 16), (5, 3, 16), (32, 2, 8), (48, 3, 4)])
@pytest.mark.parametrize("name", list_networks())
def test_every_zoo_network_gets_the_one_graph_gradients(name, batch, workers, side):
    nn.clear_parameters()
    nn.seed(1)
    rng = np.random.RandomState(0)
    x, y = nn.Variable((batch, 3, side, side)), nn.Variable((batch, 1))
    loss = F.softmax_cross_entropy(get_network(name).builder(x, 10, False), y)  # training mode: dropout, batch stats
    x.d, y.d = rng.randn(*x.shape), rng.randint(0, 10, y.shape)
    one, parallel = _one_graph_then_parallel(loss, batch, workers)
    _assert_same(one, parallel)
    # the running means (initially 0) moved, so the comparison above covered their update
    for k in (k for k in one[1] if k.endswith("/bn/mean")):
        assert np.abs(one[1][k]).max() > 1e-6, k


def test_functions_that_mix_the_batch_run_on_the_whole_batch():
    nn.clear_parameters()
    batch = 6
    rng = np.random.RandomState(3)
    x, t = nn.Variable((batch, 2, 5, 5)), nn.Variable((batch, 50))
    h = PF.batch_normalization(PF.convolution(x, 2, (3, 3), pad=(1, 1), name="c"), name="bn")
    skip = F.relu(h)
    g = F.reshape(F.tanh(PF.convolution(skip, 2, (3, 3), pad=(1, 1), name="c2")) + skip, (batch, 50))
    mixed = F.softmax(g, axis=0)  # across the batch: cannot run on slices
    loss = F.mean(F.squared_error(mixed, t))  # a scalar loss
    x.d, t.d = rng.randn(*x.shape), rng.rand(*t.shape)
    dp = DataParallel([loss], nn.get_parameters(grad_only=False), 2, batch)
    assert dp.describe_sync_points() == "1 BatchNormalization (batch statistics exchanged), 1 Softmax (whole batch), 1 Mean (whole batch)"
    one, parallel = _one_graph_then_parallel(loss, batch, 2)
    _assert_same(one, parallel)


@pytest.mark.parametrize("frozen", [("/mean", "/var"), ("/mean", "/var", "/beta", "/gamma")])
def test_exchanged_batch_statistics_with_frozen_scale_and_a_second_reader(frozen):
    """BN on batch statistics whose beta and gamma get no gradient (x's gradient still needs their sums), and whose
    input is also read past the BN (its gradient adds both paths)."""
    nn.clear_parameters()
    batch = 7
    rng = np.random.RandomState(4)
    x, t = nn.Variable((batch, 2, 6, 6)), nn.Variable((batch, 1))
    h = PF.convolution(x, 4, (3, 3), pad=(1, 1), name="c")
    h = F.relu(PF.batch_normalization(h, name="bn")) * 0.5 + h  # h read by the BN and by the sum
    h = PF.batch_normalization(PF.convolution(h, 3, (3, 3), name="c2"), name="bn2")
    loss = F.softmax_cross_entropy(PF.affine(h, 3, name="fc"), t)
    x.d, t.d = rng.randn(*x.shape) * 3 + 1, rng.randint(0, 3, t.shape)
    dp = DataParallel([loss], nn.get_parameters(grad_only=False), 3, batch)
    assert dp.describe_sync_points() == "2 BatchNormalization (batch statistics exchanged)"
    one, parallel = _one_graph_then_parallel(loss, batch, 3, frozen)
    _assert_same(one, parallel)
    assert any(k.endswith("/beta") for k in one[0]) == ("/beta" not in frozen)


def test_one_training_step_equals_one_worker(tmp_path):
    from nnc_tools.formats.nnp import load_project, network_text
    from nnc_tools.training.graphs import TrainingGraphs, training_proto
    from nnc_tools.training.solvers import group_solvers, loader_safe
    from nnc_tools.training.train import train_step

    project = load_project(tiny_project(tmp_path, batch=6))
    proto = training_proto(project, TrainOptions())
    rng = np.random.RandomState(0)
    batch = {"x": rng.rand(6, 1, 8, 8).astype(np.float32), "y": rng.randint(0, 3, (6, 1))}
    after = []
    for workers in (1, 2):
        nn.clear_parameters()
        for name, p in project.parameters.items():
            nn.parameter.get_parameter_or_create(name, p.data.shape).d = p.data
        opt = TrainingGraphs(network_text(loader_safe(proto)), 6, "cpu").build(1).optimizers["Optimizer"]
        params = nn.get_parameters(grad_only=False)
        solvers = group_solvers(proto.optimizer[0], params)
        trained = {n for group in solvers for n in group.parameters}
        for name, var in params.items():
            var.need_grad = name in trained
        loss_var = opt.loss_variables[0].variable_instance
        parallel = DataParallel([loss_var], params, workers, 6) if workers > 1 else None
        loss = train_step(opt, solvers, batch, 0, parallel=parallel)
        after.append((loss, {k: v.d.copy() for k, v in params.items()}))
    assert after[1][0] == pytest.approx(after[0][0], rel=1e-6)
    moved = 0
    for k, v in after[0][1].items():
        np.testing.assert_allclose(after[1][1][k], v, rtol=1e-6, atol=1e-7, err_msg=k)
        moved += not np.array_equal(v, project.parameters[k].data)
    assert moved >= 4  # the step did update: conv, BN and affine parameters


def test_train_with_two_workers_matches_one(tmp_path, messages):
    project = tiny_project(tmp_path)
    train(project, tmp_path / "one", TrainOptions(progress=False, workers=1, seed=3))
    train(project, tmp_path / "two", TrainOptions(progress=False, workers=2, seed=3))
    err = messages.text
    assert ("data parallel: 2 workers on 2 slices of each batch (2, 2 images); they meet at 1 BatchNormalization (batch "
            "statistics exchanged)") in err
    one, _ = assert_trained_alike(tmp_path / "one", tmp_path / "two")
    assert not np.array_equal(one["Affine/affine/W"].data, params_of(project)["Affine/affine/W"].data)


def test_cached_prefix_filled_by_workers_matches_one(tmp_path):
    project = frozen_tiny_project(tmp_path)
    train(project, tmp_path / "one", TrainOptions(progress=False, workers=1, cache_frozen="off", seed=2))
    train(project, tmp_path / "two", TrainOptions(progress=False, workers=2, cache_frozen="on", seed=2))
    assert_trained_alike(tmp_path / "one", tmp_path / "two")


def test_workers_are_for_the_cpu(cli, tmp_path):
    assert resolve_workers(None, "cpu") >= 1 and resolve_workers(3, "cpu") == 3
    assert resolve_workers(None, "cudnn") == 1
    with pytest.raises(NncToolsError, match="one process per device"):
        resolve_workers(2, "cudnn")
    with pytest.raises(NncToolsError, match="^workers: expected a whole number from 1"):  # the library names the setting
        resolve_workers(0, "cpu")
    project = tiny_project(tmp_path)
    result = cli("train", project, "-o", tmp_path / "r", "--workers", "0")  # the CLI names the flag
    assert result.code == 2 and "--workers: expected a whole number from 1" in result.err and not (tmp_path / "r").exists()


def test_a_frozen_prefix_gets_no_backward_with_workers(tmp_path):
    """NNabla's loader links its own copies of the parameters into the graph (need_grad as the graph wants it) and sets
    the registered ones back to need_grad=True; the workers must follow the graph, or they backpropagate through the
    frozen prefix (slow, and its gradients fill up)."""
    from nnc_tools.formats.nnp import load_project, network_text
    from nnc_tools.training.graphs import TrainingGraphs, training_proto
    from nnc_tools.training.solvers import group_solvers, loader_safe
    from nnc_tools.training.train import train_step

    project_path = frozen_tiny_project(tmp_path, batch=6)
    project = load_project(project_path)
    proto = training_proto(project, TrainOptions())
    nn.clear_parameters()
    for name, p in project.parameters.items():
        nn.parameter.get_parameter_or_create(name, p.data.shape).d = p.data
    graphs = TrainingGraphs(network_text(loader_safe(proto)), 6, "cpu")
    graphs.build(0)
    params = nn.get_parameters(grad_only=False)
    solvers = group_solvers(proto.optimizer[0], params)
    trained = {n for group in solvers for n in group.parameters}
    for name, var in params.items():
        var.need_grad = name in trained
        var.grad.zero()
    opt = graphs.build(1).optimizers["Optimizer"]  # as train does every epoch
    parallel = DataParallel([opt.loss_variables[0].variable_instance], params, 2, 6)
    rng = np.random.RandomState(0)
    train_step(opt, solvers, {"x": rng.rand(6, 1, 8, 8).astype(np.float32), "y": rng.randint(0, 3, (6, 1))}, 0,
               parallel=parallel)
    assert not np.any(params["Convolution/conv/W"].g) and not np.any(params["BatchNormalization/bn/gamma"].g)
    assert np.any(params["Affine/affine/W"].g)


def test_exchanged_batch_statistics_after_an_affine_layer():
    """BN over (batch, features), as NNC puts it after an Affine: statistics over the batch axis alone."""
    nn.clear_parameters()
    batch = 7
    rng = np.random.RandomState(6)
    x, t = nn.Variable((batch, 5)), nn.Variable((batch, 1))
    h = F.relu(PF.batch_normalization(PF.affine(x, 6, name="fc1"), name="bn"))
    loss = F.softmax_cross_entropy(PF.affine(h, 3, name="fc2"), t)
    x.d, t.d = rng.randn(*x.shape) * 2 - 1, rng.randint(0, 3, t.shape)
    assert DataParallel([loss], nn.get_parameters(grad_only=False), 3, batch).describe_sync_points() == \
        "1 BatchNormalization (batch statistics exchanged)"
    one, parallel = _one_graph_then_parallel(loss, batch, 3)
    _assert_same(one, parallel)


def _two_dropouts(batch: int, flip: bool):
    nn.clear_parameters()
    rng = np.random.RandomState(7)
    x, t = nn.Variable((batch, 2, 4, 4)), nn.Variable((batch, 1))
    h = F.random_flip(x, axes=[3]) if flip else x
    h = F.dropout(F.relu(PF.convolution(h, 3, (3, 3), pad=(1, 1), name="c")), 0.3)
    h = F.dropout(F.relu(PF.affine(h, 8, name="fc1")), 0.5)
    loss = F.softmax_cross_entropy(PF.affine(h, 3, name="fc2"), t)
    x.d, t.d = rng.randn(*x.shape), rng.randint(0, 3, t.shape)
    return loss


def test_dropout_masks_drawn_ahead_are_the_draws_of_one_graph_step_after_step():
    """Each Dropout's mask for the global batch is drawn before the step, in forward order; two steps in a row (the
    second one's masks come from where the first left the random generator) and the next draw match one graph's."""
    batch = 5
    loss = _two_dropouts(batch, flip=False)
    params = nn.get_parameters(grad_only=False)
    dp = DataParallel([loss], params, 2, batch)
    assert dp.describe_sync_points() == "nothing; 2 Dropout masks drawn for the whole batch before each step"
    assert dp.stage_count == 1  # the workers meet nowhere
    start = {k: p.d.copy() for k, p in params.items()}
    runs = []
    for run in (None, dp):
        for k, p in params.items():
            p.d = start[k]
        nn.seed(11)
        grads = []
        for _ in range(2):
            for p in params.values():
                p.grad.zero()
            if run is None:
                loss.forward(clear_no_need_grad=True)
                loss.backward(grad=1.0 / loss.size, clear_buffer=True)
            else:
                run.forward_backward()
            grads.append({k: p.g.copy() for k, p in params.items()})
        after = F.rand(shape=(4,))
        after.forward()
        runs.append((grads, after.d.copy()))
    (one, next_one), (parallel, next_parallel) = runs
    for step in range(2):
        assert not all(np.array_equal(one[0][k], one[1][k]) for k in one[0])  # other masks the second time
        for k in one[step]:
            np.testing.assert_allclose(parallel[step][k], one[step][k], rtol=1e-5, atol=1e-6, err_msg=f"step {step} {k}")
    np.testing.assert_array_equal(next_parallel, next_one)


def test_dropout_runs_on_the_whole_batch_beside_another_random_function():
    """With a random function that is not a Dropout (RandomFlip), drawing masks ahead would reorder the draws: every
    random function is then a sync point run on the whole batch, in its place."""
    batch = 6
    loss = _two_dropouts(batch, flip=True)
    assert DataParallel([loss], nn.get_parameters(grad_only=False), 2, batch).describe_sync_points() == \
        "1 RandomFlip (whole batch), 2 Dropout (whole batch)"
    one, parallel = _one_graph_then_parallel(loss, batch, 2)
    _assert_same(one, parallel)


def test_slices_one_large_per_worker_then_a_tail_of_small_ones():
    assert slice_sizes(64, 2) == [20, 20, 8, 8, 4, 4]
    assert slice_sizes(64, 4) == [12, 12, 12, 12, 4, 4, 4, 4]
    assert slice_sizes(5, 3) == [2, 2, 1]  # too small for a tail
    assert slice_sizes(64, 1) == [64]
    for batch in range(1, 200):
        for workers in (1, 2, 3, 4, 8):
            sizes = slice_sizes(batch, workers)
            assert sum(sizes) == batch and min(sizes) >= 1 and sizes == sorted(sizes, reverse=True)


def test_a_free_worker_takes_the_next_slice():
    nn.clear_parameters()
    x = nn.Variable((64, 1, 4, 4))
    parallel = DataParallel([F.mean(PF.convolution(x, 2, (3, 3)))], nn.get_parameters(grad_only=False), 2, 64)
    assert [r.size for r in parallel.replicas] == [20, 20, 8, 8, 4, 4]
    ran = {}

    def work(item):
        if item == 1:
            time.sleep(0.5)  # a slow worker
        ran[item] = threading.get_ident()

    parallel.pool.each(work, list(range(6)))
    parallel.close()
    assert sorted(ran) == list(range(6))
    assert all(ran[i] != ran[1] for i in (2, 3, 4, 5))  # the other worker took the rest


def test_no_tail_of_small_slices_where_affine_weights_outweigh_the_convolutions():
    """mini_vggnet_mark2 after its frozen prefix (what the reference transfer run trains on cached features): three
    convolutions on 8 × 8 maps, then 3.2 M Affine weights, which cost per slice: the convolutions get a tail of small
    slices, the Affine layers after the last BN two slices; so does the whole network."""
    nn.clear_parameters()
    x, t = nn.Variable((64, 128, 8, 8)), nn.Variable((64, 1))
    h = x
    for k in range(3):
        h = F.relu(PF.batch_normalization(PF.convolution(h, 128, (3, 3), pad=(1, 1), name=f"c{k}"), name=f"bn{k}"))
    h = F.max_pooling(h, (2, 2))
    for k in range(2):
        h = F.dropout(F.relu(PF.affine(h, 1024, name=f"a{k}")), 0.5)
    loss = F.mean(F.softmax_cross_entropy(PF.affine(h, 10, name="out"), t))
    parallel = DataParallel([loss], nn.get_parameters(grad_only=False), 2, 64)
    assert parallel.describe_slices() == ("2 workers on 6 slices of each batch (20, 20, 8, 8, 4, 4 images), each worker "
                                          "taking the next when done, then after the 3rd BatchNormalization on 2 slices "
                                          "(32, 32 images)")
    assert [len(r.params) for r in parallel.replicas] == [6] * 8  # each slice: the weights of its stages (W, b)
    nn.clear_parameters()
    whole = F.mean(F.softmax_cross_entropy(get_network("mini_vggnet_mark2").builder(nn.Variable((64, 3, 32, 32)), 10, False), t))
    parallel = DataParallel([whole], nn.get_parameters(grad_only=False), 2, 64)
    assert [r.size for r in parallel.replicas] == [20, 20, 8, 8, 4, 4, 32, 32]


def _conv_bn_then_affine(batch: int, skip: bool):
    """A convolution, its BN, then a large Affine layer (what makes a tail of slices too costly), reading the
    convolution's output besides the BN's when ``skip``."""
    nn.clear_parameters()
    rng = np.random.RandomState(8)
    x, t = nn.Variable((batch, 16, 4, 4)), nn.Variable((batch, 1))
    c = PF.convolution(x, 32, (3, 3), pad=(1, 1), name="c")
    h = F.relu(PF.batch_normalization(c, name="bn"))
    h = F.concatenate(h, c, axis=1) if skip else h
    loss = F.softmax_cross_entropy(PF.affine(F.dropout(F.relu(PF.affine(h, 256, name="fc1")), 0.5), 3, name="fc2"), t)
    x.d, t.d = rng.randn(*x.shape), rng.randint(0, 3, t.shape)
    return loss


@pytest.mark.parametrize("workers", [2, 3])
def test_the_batch_cut_anew_after_a_bn_gives_the_one_graph_gradients(workers):
    loss = _conv_bn_then_affine(48, skip=False)
    dp = DataParallel([loss], nn.get_parameters(grad_only=False), workers, 48)
    assert len(dp.layouts) == 2 and len(dp.layouts[0]) > workers and len(dp.layouts[1]) == workers
    one, parallel = _one_graph_then_parallel(loss, 48, workers)
    _assert_same(one, parallel)


def test_the_batch_is_not_cut_anew_where_later_layers_read_what_came_before_the_bn():
    loss = _conv_bn_then_affine(48, skip=True)  # the Affine layer reads the convolution's output too
    dp = DataParallel([loss], nn.get_parameters(grad_only=False), 2, 48)
    assert dp.describe_slices() == "2 workers on 2 slices of each batch (24, 24 images)"
    one, parallel = _one_graph_then_parallel(loss, 48, 2)
    _assert_same(one, parallel)


def test_a_step_searches_for_no_module():
    """NNabla's array getters import ``nnabla_ext.cpu`` on every ``.d``/``.g``, looking on disk for a module
    ``nnabla.nnabla_ext`` first (60 µs an access instead of 20); a data-parallel step does hundreds of them."""
    nn.clear_parameters()
    x = nn.Variable((16, 2, 4, 4))
    x.d = np.random.RandomState(0).randn(*x.shape)
    loss = F.mean(F.relu(PF.batch_normalization(PF.convolution(x, 3, (3, 3), pad=(1, 1)))))
    parallel = DataParallel([loss], nn.get_parameters(grad_only=False), 2, 16)
    parallel.forward_backward()
    searched = []

    class Recorder:
        def find_spec(self, name, path=None, target=None):
            searched.append(name)
            return None

    recorder = Recorder()
    sys.meta_path.insert(0, recorder)
    try:
        parallel.forward_backward()
    finally:
        sys.meta_path.remove(recorder)
        parallel.close()
    assert searched == []
