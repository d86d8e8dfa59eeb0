"""A calibration-set folder is recognised by its files and refused whole when damaged:
never read as a text corpus, never a raw parser traceback, always with how to rebuild it."""

import json

import pytest
import torch
from conftest import run_cli
from safetensors.torch import save_file

from calibprune.calibration import CalibrationSet, build_calibration, is_calibration_folder
from calibprune.calibration.folder import SET_FILES, DamagedSet, rebuild_command
from calibprune.cli_options import cli_command, cli_name
from calibprune.corpora import get_corpus
from calibprune.errors import CalibpruneError
from calibprune.options import render


@pytest.fixture
def set_folder(tmp_path, text_corpus, tokenizer):
    """An intact set whose four files all hold something (texts.jsonl included)."""
    calib = build_calibration(str(text_corpus), tokenizer, nsamples=8, seqlen=32, seed=0)
    calib.texts = [{"index": i, "text": t, "keep": True} for i, t in enumerate(calib.windows_text)]
    calib.manifest["model"] = "tiny"
    folder = tmp_path / "set"
    calib.save(folder)
    return folder


def _damage(path, how):
    if how == "delete":
        path.unlink()
    elif how == "truncate":  # cut short, as a full disk or a killed copy leaves it
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 7])
    else:
        path.write_bytes(b"\xff\xfe\x00 this is not what was written \x01\x02")


# what each damage of each file is refused with (besides the folder and the rebuild command)
EXPECTED = {
    ("manifest.json", "delete"): "manifest.json is missing (the folder holds tokens.safetensors, windows.jsonl, texts",
    ("manifest.json", "truncate"): "manifest.json is not valid JSON (",
    ("manifest.json", "garbage"): "manifest.json is not UTF-8 text (byte 0)",
    ("tokens.safetensors", "delete"): "tokens.safetensors is missing",
    ("tokens.safetensors", "truncate"): "tokens.safetensors cannot be read (SafetensorError",
    ("tokens.safetensors", "garbage"): "tokens.safetensors cannot be read (",
    ("windows.jsonl", "delete"): "windows.jsonl is missing",
    ("windows.jsonl", "truncate"): "windows.jsonl line 8 is not valid JSON (",
    ("windows.jsonl", "garbage"): "windows.jsonl line 1 is not UTF-8 text",
    ("texts.jsonl", "delete"): "texts.jsonl is missing",
    ("texts.jsonl", "truncate"): "texts.jsonl line 8 is not valid JSON (",
    ("texts.jsonl", "garbage"): "texts.jsonl line 1 is not UTF-8 text",
}


@pytest.mark.parametrize("name, how", list(EXPECTED))
def test_each_damaged_file_is_refused_with_what_is_wrong_and_how_to_rebuild(set_folder, tokenizer, name, how):
    manifest = json.loads((set_folder / "manifest.json").read_text())
    _damage(set_folder / name, how)
    assert is_calibration_folder(set_folder)  # still a set: never taken for a text corpus
    for read in (
        lambda: CalibrationSet.load(set_folder),
        lambda: build_calibration(str(set_folder), tokenizer),  # prune --calib / a study
        lambda: get_corpus(str(set_folder)).texts(),  # calib --source, eval --ppl, analyze
    ):
        with pytest.raises(DamagedSet) as refused:
            read()
        message = refused.value.render(cli_name, cli_command)  # the CLI's words
        assert message.startswith(f"{set_folder} is a calibration-set folder that cannot be used: ")
        assert EXPECTED[name, how] in message
        if name == "manifest.json":
            assert f"rebuild it with `calibprune calib --output {set_folder} --overwrite` with the options" in message
        else:  # the command comes from the manifest
            assert (
                f"rebuild it with `{render(rebuild_command(manifest, set_folder), cli_name, cli_command)}`" in message
            )
            assert f"calibprune calib --source {manifest['source']} --model tiny --nsamples 8 --seqlen 32" in message
            # Python's: the same command as a call with CalibJob's keywords
            python = f"calib(source={manifest['source']!r}, model='tiny', nsamples=8, seqlen=32, seed=0"
            assert python in str(refused.value) and "--" not in str(refused.value)


def test_tokens_that_disagree_with_the_manifest_are_refused(set_folder):
    manifest_path = set_folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    ids = CalibrationSet.load(set_folder).input_ids
    save_file({"input_ids": ids[:6].contiguous()}, str(set_folder / "tokens.safetensors"))
    with pytest.raises(DamagedSet, match="tokens.safetensors holds 6 x 32 tokens, manifest.json says 8 x 32"):
        CalibrationSet.load(set_folder)
    save_file({"input_ids": (ids + 1).contiguous()}, str(set_folder / "tokens.safetensors"))
    with pytest.raises(DamagedSet, match="does not match the fingerprint in manifest.json"):
        CalibrationSet.load(set_folder)
    save_file({"other": ids.contiguous()}, str(set_folder / "tokens.safetensors"))
    with pytest.raises(DamagedSet, match="holds no 'input_ids' tensor \\(tensors: other\\)"):
        CalibrationSet.load(set_folder)
    save_file({"input_ids": ids.contiguous()}, str(set_folder / "tokens.safetensors"))
    manifest_path.write_text(json.dumps({**manifest, "format": "other/2"}))
    with pytest.raises(DamagedSet, match="has format 'other/2', expected 'calibprune.calibration/1'"):
        CalibrationSet.load(set_folder)


def test_an_intact_set_is_not_a_corpus_and_loads_whole(set_folder):
    with pytest.raises(CalibpruneError, match="is a calibration-set folder, not a text corpus: pass it to"):
        get_corpus(str(set_folder))
    loaded = CalibrationSet.load(set_folder)
    assert loaded.nsamples == 8 and len(loaded.windows_text) == 8 and len(loaded.texts) == 8
    assert set(SET_FILES) == {p.name for p in set_folder.iterdir()}


def test_rebuild_command_from_a_recorded_command_line_or_the_parameters(tmp_path):
    folder = tmp_path / "moved"
    recorded = {"argv": ["/x/bin/calibprune", "calib", "--source", "my docs.txt", "-o", "old", "--seed", "3"]}
    assert render(rebuild_command(recorded, folder), cli_name, cli_command) == (
        f"calibprune calib --source 'my docs.txt' --seed 3 --output {folder} --overwrite"
    )
    synthetic = {
        "source": "wiki-en", "strategy": "synthetic", "model": "m", "nsamples": 4, "seqlen": 64, "seed": 1,
        "windows": "random", "source_reading": {"encoding": "latin-1", "text_field": "body"},
        "parameters": {"prefix_tokens": 2, "temperature": 0.8, "filter_top": 0.1, "num_texts": 9,
                       "num_texts_rule": "rounds"},
    }  # fmt: skip
    assert render(rebuild_command(synthetic, folder), cli_name, cli_command) == (
        "calibprune calib --source wiki-en --model m --nsamples 4 --seqlen 64 --seed 1 --windows random "
        "--encoding latin-1 --text-field body --synthetic --prefix-tokens 2 --temperature 0.8 --filter-top 0.1 "
        f"--output {folder} --overwrite"
    )
    assert render(rebuild_command(synthetic, folder)) == (  # Python: CalibJob's keywords
        "calib(source='wiki-en', model='m', nsamples=4, seqlen=64, seed=1, windows='random', encoding='latin-1', "
        "text_field='body', strategy='synthetic', generation.prefix_tokens=2, generation.temperature=0.8, "
        f"generation.filter_top=0.1, output={str(folder)!r}, overwrite=True)"
    )


def test_prune_refuses_a_set_folder_without_manifest_in_one_line_before_loading(tmp_path, model_dir, set_folder):
    (set_folder / "manifest.json").unlink()
    done = run_cli(
        "prune", "--model", str(model_dir), "--sparsity", "0.5", "--calib", str(set_folder),
        "--output", str(tmp_path / "out"),
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "manifest.json is missing" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_damaged_tokens_in_analyze_are_one_line_errors(tmp_path, set_folder):
    (set_folder / "tokens.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    done = run_cli("analyze", "similarity", "--sets", str(set_folder), "--output", str(tmp_path / "sim"))
    assert done.returncode == 2 and "tokens.safetensors cannot be read" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_set_folder_without_a_manifest_check_is_the_same_everywhere(tmp_path):
    empty = tmp_path / "plain"
    empty.mkdir()
    (empty / "notes.txt").write_text("just text")
    assert not is_calibration_folder(empty) and get_corpus(str(empty)).texts() == ["just text"]
    assert not is_calibration_folder(tmp_path / "absent") and not is_calibration_folder(torch.zeros(1))
