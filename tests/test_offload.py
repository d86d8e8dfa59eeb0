"""Devices, dtypes and sequential onloading (--device, --dtype, --offload), on the CPU.

The offloaded paths must be the in-memory path with the weights waiting elsewhere:
bit-identical masks and weights, one block's weights at a time for ``disk``, and a
streamed, sharded output folder that ``from_pretrained`` loads and that equals
``save_pretrained``'s.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import byte_tokenizer, run_cli, tiny_model
from safetensors.torch import load_file

from calibprune.calibration import CalibrationSet
from calibprune.config import OWLOptions, PruneConfig, RunnerOptions, SparsityTarget
from calibprune.errors import CalibpruneError
from calibprune.jobs.prune import run_prune
from calibprune.jobs.requests import CalibrationRequest
from calibprune.models.checkpoint import Checkpoint
from calibprune.models.layers import find_decoder_blocks
from calibprune.models.loading import meta_model, parse_dtype
from calibprune.models.offload import choose_offload
from calibprune.models.placement import DiskOffload, resident_bytes
from calibprune.pruning.engine import prune_model
from calibprune.pruning.stats import StatisticsCollector
from calibprune.utils.device import resolve_device

GIB = 1024**3
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible: the refusal cannot happen")


def _calibration(n=6, seqlen=16):
    ids = torch.randint(0, 256, (n, seqlen), generator=torch.Generator().manual_seed(1))
    return CalibrationSet(ids, manifest={"source": "tensor"})


def _saved(tmp_path: Path, arch: str) -> Path:
    folder = tmp_path / f"src-{arch}"
    tiny_model(arch).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(file))
    return out


# ----------------------------------------------------------------- device and dtype


def test_device_cpu_and_auto_resolve_without_a_gpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


@no_cuda
@pytest.mark.parametrize("value", ["cuda", "cuda:1"])
def test_device_cuda_without_a_gpu_is_refused_with_the_fix(value):
    with pytest.raises(CalibpruneError, match=rf"^device='{value}': no CUDA GPU .*pass device='cpu' \(or auto\)"):
        resolve_device(value)


@pytest.mark.parametrize("value", ["gpu", "cpu:0", "cuda:x", "auto:1"])
def test_device_unknown_value_names_the_choices(value):
    with pytest.raises(CalibpruneError, match=r"unknown: use one of auto \| cpu \| cuda \| cuda:N"):
        resolve_device(value)


def test_dtype_auto_is_the_checkpoints_and_names_are_checked():
    assert parse_dtype("auto") is None
    assert parse_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(CalibpruneError, match="dtype 'float8' is unknown: use one of auto, float32"):
        parse_dtype("float8")


@no_cuda
def test_cli_device_cuda_is_refused_before_any_work(model_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli("prune", "--model", str(model_dir), "--device", "cuda", "--sparsity", "0.5", "-o", str(out))
    assert result.returncode == 2
    assert "--device cuda: no CUDA GPU is visible" in result.stderr and "pass --device cpu" in result.stderr
    assert not out.exists()


def test_statistics_are_fp32_sums_of_bfloat16_inputs():
    x = torch.randn(2, 5, 8).to(torch.bfloat16)
    collector = StatisticsCollector(frozenset({"sq", "sum"}))
    collector("a", x)
    stats = collector.stats["a"]
    rows = x.float().reshape(-1, 8)
    assert stats.sum_sq.dtype == torch.float32 and stats.sum_sq.device == x.device
    torch.testing.assert_close(stats.sum_sq, (rows * rows).sum(0))
    torch.testing.assert_close(stats.sum_per_sample, rows.sum(0) / 2)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_bfloat16_model_pruned_on_cpu_keeps_its_dtype_and_sparsity(method):
    model = tiny_model("llama").to(torch.bfloat16)
    report = prune_model(
        model, _calibration(), PruneConfig(method=method, target=SparsityTarget.unstructured(0.5)), progress=False
    )
    _, blocks = find_decoder_blocks(model)
    for layer in (blocks[0].self_attn.q_proj, blocks[2].mlp.down_proj):
        assert layer.weight.dtype == torch.bfloat16
    # wanda: exactly half of every row; sparsegpt's block threshold: at least half of each layer
    for record in report["layers"].values():
        assert record["sparsity"] == 0.5 if method == "wanda" else record["sparsity"] >= 0.5
        assert record["zeros"] >= 0.5


# ----------------------------------------------------------------- offload choice


def test_auto_activation_store_rule():
    from calibprune.models.runner import choose_activation_store

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    # a CPU run keeps today's default whatever the sizes; an explicit choice is taken as given
    assert choose_activation_store("auto", 1, cpu, 100 * GIB, 100 * GIB)[0] == "disk"
    assert choose_activation_store("memory", 50 * GIB, cuda, GIB, GIB)[0] == "memory"
    # on a GPU: half the device's free memory, else half the host's, else disk
    assert choose_activation_store("auto", 5 * GIB, cuda, 10 * GIB, 100 * GIB)[0] == "memory"
    value, reason = choose_activation_store("auto", 6 * GIB, cuda, 10 * GIB, 100 * GIB)
    assert value == "cpu" and "6.00 GiB" in reason and "100.0 GiB free on the host" in reason
    assert choose_activation_store("auto", 51 * GIB, cuda, 10 * GIB, 100 * GIB)[0] == "disk"


def test_cpu_activation_store_gives_the_disk_stores_masks_and_the_report_says_which():
    config = PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5))
    masks = {}
    for store in ("disk", "cpu", "auto"):
        model = tiny_model("llama")
        runner = RunnerOptions(activation_store=store)
        report = prune_model(model, _calibration(), replace(config, runner=runner), progress=False)
        masks[store] = [p.detach().eq(0) for p in model.parameters()]
        assert report["activations"]["store"] == ("disk" if store == "auto" else store)
    assert "auto: a CPU run keeps activations on disk" in report["activations"]["reason"]
    assert all(a.equal(b) for a, b in zip(masks["disk"], masks["cpu"], strict=True))
    assert all(a.equal(b) for a, b in zip(masks["disk"], masks["auto"], strict=True))


def test_auto_offload_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert choose_offload("auto", 5 * GIB, cuda, 10 * GIB, 100 * GIB, False).value == "none"
    assert choose_offload("auto", 7 * GIB, cuda, 10 * GIB, 100 * GIB, False).value == "cpu"
    assert choose_offload("auto", 70 * GIB, cuda, 10 * GIB, 100 * GIB, False).value == "disk"
    assert choose_offload("auto", 7 * GIB, cpu, 10 * GIB, 10 * GIB, False).value == "disk"
    chosen = choose_offload("auto", 70 * GIB, cuda, 10 * GIB, 100 * GIB, True)
    assert chosen.value == "none" and "evaluates" in chosen.reason
    assert choose_offload("cpu", 1, cuda, 10 * GIB, 10 * GIB, False).reason.startswith("cpu, as given (")


def test_bad_offload_value_is_refused(model_dir, tmp_path):
    config = PruneConfig(method="magnitude", target=SparsityTarget.unstructured(0.5))
    with pytest.raises(CalibpruneError, match=r"^offload 'ram' is unknown: use one of auto, none, cpu, disk"):
        run_prune(str(model_dir), config, CalibrationRequest(), tmp_path / "o", offload="ram", device="cpu")


@pytest.mark.parametrize("offload", ["cpu", "disk"])
def test_offload_with_in_run_evaluation_is_refused(model_dir, tmp_path, offload):
    config = PruneConfig(method="magnitude", target=SparsityTarget.unstructured(0.5))
    with pytest.raises(
        CalibpruneError,
        match=rf"^offload='{offload}' never holds the whole model, which a run without output needs: prune with "
        rf"output and evaluate the saved folder with `eval\(model='OUTPUT'\)`, or pass offload='none'$",
    ):
        run_prune(str(model_dir), config, CalibrationRequest(), None, offload=offload, device="cpu")


def test_offload_disk_without_safetensors_names_the_fix(model_dir, tmp_path):
    (model_dir / "model.safetensors").rename(model_dir / "pytorch_model.bin")
    config = PruneConfig(method="magnitude", target=SparsityTarget.unstructured(0.5))
    with pytest.raises(
        CalibpruneError,
        match=r"^offload='disk' reads .* has none \(pytorch_model.bin\): re-save .* or pass offload='cpu'$",
    ):
        run_prune(str(model_dir), config, CalibrationRequest(), tmp_path / "o", offload="disk", device="cpu")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------- bit-identical paths

CASES = {
    "wanda": dict(method="wanda", target=SparsityTarget.unstructured(0.5)),
    "sparsegpt-2:4": dict(method="sparsegpt", target=SparsityTarget.nm(2, 4)),
    "sparsegpt": dict(method="sparsegpt", target=SparsityTarget.unstructured(0.6)),
    "wanda-owl-dsnot": dict(
        method="wanda",
        target=SparsityTarget.unstructured(0.5),
        allocation="owl",
        refine="dsnot",
        owl=OWLOptions(lam=0.1),
    ),
    "magnitude": dict(method="magnitude", target=SparsityTarget.unstructured(0.5), targets=("mlp.*",)),
}


@pytest.mark.parametrize(
    "arch,case",
    [("llama", "wanda"), ("llama", "sparsegpt-2:4"), ("gemma3", "sparsegpt"), ("gemma3", "wanda-owl-dsnot")]
    + [("gpt2", "wanda"), ("llama", "magnitude")],
)
def test_offloaded_paths_match_the_in_memory_path_bit_for_bit(tmp_path, arch, case):
    """cpu and disk give the same report layers and the same saved tensors as none;
    the disk run's folder is sharded, streamed, and loads with from_pretrained."""
    from transformers import AutoModelForCausalLM

    source = _saved(tmp_path, arch)
    config = PruneConfig(**CASES[case], runner=RunnerOptions(batch_size=2))
    request = CalibrationRequest(source=_calibration())
    reports, tensors = {}, {}
    for offload in ("none", "cpu", "disk"):
        out = tmp_path / offload
        reports[offload] = run_prune(str(source), config, request, out, offload=offload, device="cpu", progress=False)
        tensors[offload] = _tensors(out)
    assert reports["disk"]["device"]["offload"] == "disk"
    for offload in ("cpu", "disk"):
        assert reports[offload]["layers"] == reports["none"]["layers"]
        assert reports[offload]["allocation"] == reports["none"]["allocation"]
        assert sorted(tensors[offload]) == sorted(tensors["none"])
        for key, value in tensors["none"].items():
            assert torch.equal(tensors[offload][key], value), f"{offload}: {key} differs"
    disk = tmp_path / "disk"
    index = json.loads((disk / "model.safetensors.index.json").read_text())
    _, blocks = find_decoder_blocks(tiny_model(arch))
    assert len(set(index["weight_map"].values())) == len(blocks) + 1  # one shard per block + the rest
    assert not (disk / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(disk)
    in_memory = AutoModelForCausalLM.from_pretrained(tmp_path / "none")
    for (name, a), (_, b) in zip(loaded.state_dict().items(), in_memory.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert json.loads((disk / "prune_report.json").read_text())["summary"] == reports["none"]["summary"]
    for name in ("config.json", "generation_config.json"):
        assert json.loads((disk / name).read_text()) == json.loads((tmp_path / "none" / name).read_text())


def test_disk_offload_holds_one_block_of_weights_at_a_time(tmp_path):
    """Counting the bytes of non-meta parameters at every onload: the capture holds
    only the parts outside the blocks, each block step only that block."""
    source = _saved(tmp_path, "llama")
    from calibprune.models.loading import load_config

    model = meta_model(load_config(str(source)), torch.float32)
    placement = DiskOffload(model, torch.device("cpu"), Checkpoint(source), torch.float32)
    path, blocks = find_decoder_blocks(model)
    block_bytes = sum(p.numel() * 4 for p in blocks[0].parameters())
    rest_bytes = sum(p.numel() * 4 for n, p in model.named_parameters() if not n.startswith(f"{path}."))
    seen = []
    onload, capture = placement.onload, placement.capture

    def counting_onload(index):
        onload(index)
        seen.append(("block", index, resident_bytes(model)))

    def counting_capture():
        manager = capture()

        class Counting:
            def __enter__(self):
                manager.__enter__()
                seen.append(("capture", None, resident_bytes(model)))

            def __exit__(self, *exc):
                return manager.__exit__(*exc)

        return Counting()

    placement.onload, placement.capture = counting_onload, counting_capture
    config = PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5), runner=RunnerOptions(batch_size=3))
    prune_model(model, _calibration(), config, progress=False, placement=placement)
    assert [s[:2] for s in seen] == [("capture", None)] + [("block", i) for i in range(len(blocks))]
    assert seen[0][2] == rest_bytes
    assert all(resident == block_bytes for kind, _, resident in seen[1:])
    assert resident_bytes(model) == 0  # everything released at the end
    assert placement.peak_resident_bytes == max(block_bytes, rest_bytes)


def test_interrupted_disk_run_leaves_no_finished_looking_folder(tmp_path, monkeypatch):
    import calibprune.pruning.engine as engine

    source = _saved(tmp_path, "llama")
    calls = {"n": 0}
    real = engine._prune_group

    def failing(work, *args):
        calls["n"] += 1
        if work.index == 1:
            raise KeyboardInterrupt
        return real(work, *args)

    monkeypatch.setattr(engine, "_prune_group", failing)
    config = PruneConfig(method="wanda", target=SparsityTarget.unstructured(0.5))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_prune(
            str(source), config, CalibrationRequest(source=_calibration()), out, offload="disk", device="cpu",
            progress=False,
        )  # fmt: skip
    assert calls["n"] >= 2
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_bfloat16_disk_run_matches_the_in_memory_bfloat16_run(tmp_path):
    source = _saved(tmp_path, "llama")
    config = PruneConfig(method="sparsegpt", target=SparsityTarget.unstructured(0.5))
    request = CalibrationRequest(source=_calibration())
    saved = {}
    for offload in ("none", "disk"):
        report = run_prune(
            str(source), config, request, tmp_path / offload, offload=offload, device="cpu", dtype="bfloat16",
            progress=False,
        )  # fmt: skip
        assert report["device"]["dtype"] == "bfloat16" and report["model"]["dtype"] == "bfloat16"
        saved[offload] = _tensors(tmp_path / offload)
    assert {t.dtype for t in saved["disk"].values()} == {torch.bfloat16}
    for key, value in saved["none"].items():
        assert torch.equal(saved["disk"][key], value), key
    config_json = json.loads((tmp_path / "disk" / "config.json").read_text())
    assert config_json["dtype"] == "bfloat16"


@no_cuda
def test_the_issue_command_lines_parse_and_refuse_cuda_without_a_gpu(tmp_path):
    """The four command lines of issue 11 (flags as written): each reaches the device
    check, which refuses --device cuda here with the fix, and writes nothing."""
    commands = [
        "prune --model meta-llama/Llama-2-7b-hf --device cuda --dtype bfloat16 --method wanda --sparsity 0.6 "
        "--output OUT/l2-7b-w60",
        "prune --model ./big-model --device cuda --offload disk --method sparsegpt --pattern 2:4 --output OUT/big-24",
        "calib --synthetic --model ./big-model --device cuda --output OUT/syn-big",
        "eval --model OUT/l2-7b-w60 --device cuda --tasks boolq,piqa --output OUT/l2.json",
    ]
    for command in commands:
        result = run_cli(*command.replace("OUT", str(tmp_path / "out")).split())
        assert result.returncode == 2, command
        assert "--device cuda: no CUDA GPU is visible" in result.stderr, (command, result.stderr)
    assert not (tmp_path / "out").exists()


def test_calib_device_without_a_model_run_is_refused(tmp_path):
    result = run_cli("calib", "--device", "cpu", "--output", str(tmp_path / "c"))
    assert result.returncode == 2
    assert "--device has no effect with --strategy sample: it runs no model" in result.stderr
