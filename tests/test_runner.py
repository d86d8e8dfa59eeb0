"""The sequential block runner on seven architectures."""

import os

import pytest
import torch
from conftest import HIDDEN, LAYERS, tiny_model
from torch import nn

from calibprune.config import RunnerOptions
from calibprune.errors import CalibpruneError
from calibprune.models.layers import (
    Conv1D,
    LayerSelection,
    all_block_layers,
    block_layers,
    find_decoder_blocks,
    input_width,
    weight_matrix,
)
from calibprune.models.runner import SequentialRunner

EXPECTED_BLOCKS = {
    "llama": "model.layers",
    "qwen2": "model.layers",
    "mistral": "model.layers",
    "gemma3": "model.layers",
    "gpt2": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
}


def test_finds_blocks_and_linear_layers(any_arch_model):
    arch, model = any_arch_model
    path, blocks = find_decoder_blocks(model)
    assert path == EXPECTED_BLOCKS[arch]
    assert len(blocks) == LAYERS
    layers = all_block_layers(model)
    assert layers and all(name.startswith(path + ".") for name in layers)
    assert not any("lm_head" in n or "embed" in n for n in layers)
    for layer in layers.values():
        assert weight_matrix(layer).shape[1] == input_width(layer)


@pytest.mark.parametrize("store", ["memory", "disk", "cpu"])
@pytest.mark.parametrize("batch_size", [1, 4])  # 4 leaves a remainder batch of 2 out of 6
def test_block_outputs_match_the_models_own_forward(any_arch_model, calib_ids, store, batch_size):
    """Captured kwargs are right iff running blocks one by one reproduces the model's hidden states."""
    arch, model = any_arch_model
    with torch.no_grad():
        reference = model(input_ids=calib_ids, output_hidden_states=True, use_cache=False).hidden_states
    runner = SequentialRunner(model, calib_ids, RunnerOptions(batch_size=batch_size, activation_store=store))
    for step in runner:
        if step.index == LAYERS - 1:
            break  # the model's last hidden state has the final norm applied
        outputs = torch.cat(list(step.outputs()))
        torch.testing.assert_close(outputs, reference[step.index + 1], rtol=1e-4, atol=1e-4)


def test_no_cache_object_is_captured(any_arch_model, calib_ids):
    from transformers.cache_utils import Cache

    _, model = any_arch_model
    runner = SequentialRunner(model, calib_ids, RunnerOptions(batch_size=3))
    runner._capture()
    calls = runner._calls[3]
    assert len(calls) == LAYERS
    for call in calls:
        values = list(call.args) + list(call.kwargs.values())
        assert not any(isinstance(v, Cache) for v in values)
        assert call.kwargs.get("use_cache", False) is False
    runner.close()


def test_observe_groups_shared_inputs_and_sees_every_token(llama, calib_ids):
    runner = SequentialRunner(llama, calib_ids, RunnerOptions(batch_size=4))
    seen: dict[str, int] = {}
    for step in runner:
        layers = block_layers(step.block, step.name)
        seen.clear()

        def on_input(name, x):
            seen[name] = seen.get(name, 0) + x.reshape(-1, x.shape[-1]).shape[0]

        leader_of = step.observe(layers, on_input)
        prefix = step.name
        assert leader_of[f"{prefix}.self_attn.k_proj"] == f"{prefix}.self_attn.q_proj"
        assert leader_of[f"{prefix}.self_attn.v_proj"] == f"{prefix}.self_attn.q_proj"
        assert leader_of[f"{prefix}.mlp.up_proj"] == f"{prefix}.mlp.gate_proj"
        assert leader_of[f"{prefix}.self_attn.o_proj"] == f"{prefix}.self_attn.o_proj"
        assert leader_of[f"{prefix}.mlp.down_proj"] == f"{prefix}.mlp.down_proj"
        # one callback per distinct input and batch, covering all tokens
        assert set(seen) == {
            f"{prefix}.self_attn.q_proj",
            f"{prefix}.self_attn.o_proj",
            f"{prefix}.mlp.gate_proj",
            f"{prefix}.mlp.down_proj",
        }
        assert all(count == calib_ids.numel() for count in seen.values())


def test_observe_stops_before_the_blocks_last_matmul(llama, calib_ids):
    """Early stop: the observed layer that runs last never computes its output."""
    runner = SequentialRunner(llama, calib_ids, RunnerOptions(batch_size=6))
    calls = []
    for step in runner:
        down = step.block.mlp.down_proj
        handle = down.register_forward_hook(lambda *a: calls.append(1))
        step.observe(block_layers(step.block, step.name), lambda n, x: None)
        assert calls == []
        step.advance()  # advance does run it
        handle.remove()
        if step.index < LAYERS - 1:
            assert calls == [1]
        calls.clear()


def test_conv1d_weight_view_is_out_by_in_and_writes_through():
    model = tiny_model("gpt2")
    attn = model.transformer.h[0].attn.c_attn
    assert isinstance(attn, Conv1D)
    view = weight_matrix(attn)
    assert view.shape == (3 * HIDDEN, HIDDEN)
    assert input_width(attn) == HIDDEN
    view[0, 1] = 123.0
    assert attn.weight[1, 0] == 123.0  # stored transposed


def test_layer_selection_patterns(llama):
    only_mlp = all_block_layers(llama, LayerSelection(targets=("mlp.*",)))
    assert only_mlp and all(".mlp." in n for n in only_mlp)
    no_down = all_block_layers(llama, LayerSelection(ignore=("*down_proj",)))
    assert not any(n.endswith("down_proj") for n in no_down)
    with pytest.raises(CalibpruneError, match="outside the decoder blocks"):
        all_block_layers(llama, LayerSelection(targets=("lm_head",)))
    with pytest.raises(CalibpruneError, match="matches no linear layer"):
        all_block_layers(llama, LayerSelection(targets=("*.nonexistent",)))
    with pytest.raises(CalibpruneError, match="leave no layer"):
        all_block_layers(llama, LayerSelection(ignore=("*",)))


def test_model_without_blocks_is_refused():
    with pytest.raises(CalibpruneError, match="could not find the decoder blocks"):
        find_decoder_blocks(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize("store", ["memory", "disk"])
def test_read_only_observe_feeds_the_next_block_like_advance(llama, calib_ids, store):
    """observe(advance=True) runs each block once; inputs seen and outputs passed on
    must equal observe-then-advance on every block."""

    def run(one_pass: bool):
        runner = SequentialRunner(llama, calib_ids, RunnerOptions(batch_size=4, activation_store=store))
        sums, outputs = [], []
        for step in runner:
            acc: dict[str, torch.Tensor] = {}

            def on_input(name, x, acc=acc):
                acc[name] = acc.get(name, 0) + x.float().pow(2).reshape(-1, x.shape[-1]).sum(0)

            step.observe(block_layers(step.block, step.name), on_input, advance=one_pass)
            if not one_pass:
                step.advance()
            assert step.advanced
            sums.append(acc)
            if step.index < LAYERS - 1:
                outputs.append(torch.cat([runner._inputs.read(b) for b in range(len(runner.batches))]))
        return sums, outputs

    calls = []  # calls of block 0: capture (a pass-through recorder) + observe [+ advance]
    handle = llama.model.layers[0].register_forward_pre_hook(lambda *a: calls.append(1))
    one_sums, one_outputs = run(one_pass=True)
    one_pass_calls = len(calls)
    two_sums, two_outputs = run(one_pass=False)
    handle.remove()
    batches = 2  # 6 samples in batches of 4
    assert (one_pass_calls, len(calls) - one_pass_calls) == (2 * batches, 3 * batches)
    assert len(one_outputs) == LAYERS - 1
    for a, b in zip(one_sums, two_sums, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    for a, b in zip(one_outputs, two_outputs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_stale_activation_stores_of_dead_processes_are_swept(tmp_path, monkeypatch, calib_ids):
    import subprocess
    import sys
    import tempfile

    from calibprune.models import runner as runner_module

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited: its store is debris of a kill -9
    stale = tmp_path / f"calibprune-acts-{dead_pid}-abc"
    live = tmp_path / f"calibprune-acts-{os.getpid()}-def"  # a concurrent run of a live process
    other = tmp_path / "calibprune-acts-unnamed"  # not ours to judge: no pid
    for folder in (stale, live, other):
        (folder / "in-0").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for _ in SequentialRunner(tiny_model("llama"), calib_ids, RunnerOptions(batch_size=2, activation_store="disk")):
        assert any(p.name.startswith(f"calibprune-acts-{os.getpid()}-") and p != live for p in tmp_path.iterdir())
        break
    assert not stale.exists() and live.exists() and other.exists()
    assert runner_module.sweep_stale_stores(tmp_path) == []
