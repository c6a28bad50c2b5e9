"""Settings: one declaration per config flag, defaults shown from the config, the fine-tuning
sections, artifact names, and the one-line errors with ECG_DEBUG=1 showing the cause."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from ecg import config, preprocess
from ecg.errors import UserError, main_guard

SCRIPTS = ["1_preprocessing.py", "2_train_test_valid_split.py", "3_training.py", "4_testing.py",
           "5_magnitude_channel_pruning.py", "6_AIMET_quantization.py", "7_AIMET_onnx.py"]


def parse(argv, build=None):
    p = config.parser("test")
    if build:
        build(p)
    return config.load(p.parse_args(argv))


def epochs_flag(p):
    config.flag(p, "--epochs", "train.epochs", help="training epochs")
    config.flag(p, "--sweep", "prune.sweep", type=float, nargs="+", help="ratios")


def test_flag_shows_the_config_default_and_applies_over_set_and_config_files(tmp_path):
    p = config.parser("test")
    epochs_flag(p)
    assert "(default: 10; config train.epochs)" in " ".join(p.format_help().split())
    extra = tmp_path / "c.toml"
    extra.write_text("[train]\nepochs = 4\n")
    assert parse([], epochs_flag)["train"]["epochs"] == 10
    assert parse(["--config", str(extra)], epochs_flag)["train"]["epochs"] == 4
    assert parse(["--config", str(extra), "--set", "train.epochs=5"], epochs_flag)["train"]["epochs"] == 5
    assert parse(["--set", "train.epochs=5", "--epochs", "7"], epochs_flag)["train"]["epochs"] == 7
    assert parse(["--sweep", "0.3", "0.5"], epochs_flag)["prune"]["sweep"] == [0.3, 0.5]
    with pytest.raises(SystemExit):
        parse(["--epochs", "three"], epochs_flag)  # typed like the default


def test_fine_tuning_sections_keep_the_thesis_values_and_take_the_rest_from_train():
    cfg = parse([])
    for name, epochs, lr in (("prune", 3, 1e-3), ("qat", 20, 1e-4)):
        s = cfg.section(name)
        assert (s["epochs"], s["lr"], s["batch_size"], s["step_size"], s["gamma"]) == (epochs, lr, 64, 0, 1.0)
        assert s["seed"] == cfg["train"]["seed"] and s["device"] == cfg["train"]["device"]
    cfg = parse(["--set", "train.batch_size=8", "--set", "train.epochs=1"])
    assert cfg.section("prune")["batch_size"] == 64 and cfg.section("prune")["epochs"] == 3


def test_artifacts_live_in_the_model_folder(tmp_path):
    cfg = parse(["--workdir", str(tmp_path), "--set", 'paths.model_dir="m"'])
    assert cfg.artifact("float_onnx") == tmp_path / "m" / "ecg_model_float.onnx"
    with pytest.raises(KeyError):
        cfg.artifact("nope")
    out = subprocess.run([sys.executable, "-m", "ecg.config", "--workdir", str(tmp_path), "artifact", "cwt_operator"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == str(tmp_path / "model_save" / "cwt_operator.npz")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_help(script, monkeypatch, capsys):
    """--help of every stage (run in this process: one torch import for all): each option line
    carries a text; flags declared with config.flag show the config's default."""
    from conftest import script_module

    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        script_module(script).main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    lines = text.split("options:")[1].splitlines() + [""]
    for line, after in zip(lines, lines[1:]):
        if line.startswith("  -"):
            same_line = len([w for w in line.split("  ") if w.strip()]) >= 2
            next_line = after.startswith("    ") and not after.lstrip().startswith("-")  # a long option's help
            assert same_line or next_line, f"{script}: no help for {line.strip()}"


def guarded_failure():
    try:
        json.loads("{broken")
    except ValueError:
        raise UserError("settings.json: unreadable") from None


def run_guarded(monkeypatch, capsys, debug):
    if debug:
        monkeypatch.setenv("ECG_DEBUG", "1")
    else:
        monkeypatch.delenv("ECG_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main_guard(guarded_failure)()
    return exit_info.value.code, capsys.readouterr().err


def test_user_error_is_one_line_by_default(monkeypatch, capsys):
    code, err = run_guarded(monkeypatch, capsys, debug=False)
    assert code == 2 and err == "error: settings.json: unreadable\n"


def test_ecg_debug_shows_the_traceback_and_the_hidden_cause(monkeypatch, capsys):
    code, err = run_guarded(monkeypatch, capsys, debug=True)
    assert code == 2 and err.rstrip().endswith("error: settings.json: unreadable")
    assert "Traceback" in err and "JSONDecodeError" in err and "guarded_failure" in err


def test_user_error_keeps_its_cause():
    with pytest.raises(UserError) as info:
        guarded_failure()
    assert isinstance(info.value.cause, ValueError)


def test_made_with_prefers_the_scalogram_folders_stamp(tmp_path):
    cfg = parse(["--workdir", str(tmp_path)])
    plain = preprocess.made_with(cfg)  # no stamp: the config's settings
    assert plain["cwt_context"] == "beat" and plain["scheme"] == "thesis"
    assert plain["invalid_symbols"] == cfg.scheme["invalid_symbols"]
    other = parse(["--workdir", str(tmp_path), "--set", "preprocess.scheme=aami",
                   "--set", "preprocess.cwt_context=record"])
    stamp = tmp_path / "data" / "scalogram" / preprocess.PARTS / "settings.json"
    stamp.parent.mkdir(parents=True)
    stamp.write_text(json.dumps(preprocess.settings_of(other)))
    made = preprocess.made_with(cfg)  # the config says thesis/beat, the folder was made otherwise
    assert made["scheme"] == "aami" and made["cwt_context"] == "record"
    assert made["invalid_symbols"] == other.scheme["invalid_symbols"] != cfg.scheme["invalid_symbols"]
    stamp.write_text("{not json")
    with pytest.raises(UserError, match="settings.json: unreadable"):
        preprocess.made_with(cfg)


def test_load_without_flags_accepts_a_bare_namespace():
    cfg = config.load(argparse.Namespace(config=[], workdir=".", set=["train.epochs=2"]))
    assert cfg["train"]["epochs"] == 2


@pytest.mark.parametrize("debug", [False, True])
def test_device_scripts_report_errors_the_same_way(monkeypatch, capsys, debug):
    from jetson import common

    def fails():
        try:
            {}["engine"]
        except KeyError:
            raise common.DeviceError("e.engine: no engine") from None

    monkeypatch.setenv("ECG_DEBUG", "1" if debug else "0")
    with pytest.raises(SystemExit) as exit_info:
        common.main_guard(fails)()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.endswith("error: e.engine: no engine\n")
    assert ("KeyError" in err and "Traceback" in err) == debug


def out_flag(p):
    config.flag(p, "--out", "paths.scalogram_dir", help="output folder")


def test_path_flags_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse(["--workdir", "/elsewhere", "--out", "s"], out_flag).path("scalogram_dir") == tmp_path / "s"
    assert parse(["--workdir", "/elsewhere"], out_flag).path("scalogram_dir") == Path("/elsewhere/data/scalogram")


def test_release_states_the_settings_a_stage_recorded_not_the_config_of_the_day(tmp_path):
    """A run made with --set qat.epochs=3 releases as qat.epochs 3 even when the release itself is
    called without that override; a stage that recorded nothing falls back to the release's config
    and says so."""
    from ecg import release

    p = config.parser("t")
    run = config.load(p.parse_args(["--workdir", str(tmp_path), "--set", "qat.epochs=3", "--set", "train.epochs=7"]))
    config.record(run, "qat")
    later = config.load(p.parse_args(["--workdir", str(tmp_path)]))
    settings, source = release.used_settings(later, later.path("reports_dir"))
    assert settings["qat"]["epochs"] == 3 and source["qat"] == "reports/settings/qat.json"
    assert settings["train"]["epochs"] == config.default("train.epochs")   # stage 3 recorded nothing
    assert "recorded none" in source["train"]
    config.record(run, "train")
    settings, source = release.used_settings(later, later.path("reports_dir"))
    assert settings["train"]["epochs"] == 7 and settings["model"] == run["model"]
    (later.path("reports_dir") / "settings" / "prune.json").write_text("{broken")
    with pytest.raises(UserError, match="prune.json: not a readable settings record"):
        release.used_settings(later, later.path("reports_dir"))


def test_the_devices_class_maps_are_the_configs():
    """jetson/scoring.py carries the class maps the device scores with (it reads no TOML on a
    Nano): they must be configs/thesis.toml's schemes, symbol for symbol."""
    from ecg import config
    from jetson import scoring

    cfg = config.load(config.parser("").parse_args([]))
    for scheme, table in (("aami", scoring.AAMI), ("thesis", scoring.THESIS)):
        want = {sym: c["name"] for c in cfg["schemes"][scheme]["classes"] for sym in c["symbols"]}
        scored = {sym: c for sym, c in table.items() if c != "Q"}   # Q: paced/unclassifiable, scored as Q
        assert scored == want, scheme
        assert set(table) - set(scored) <= set(cfg["schemes"][scheme]["invalid_symbols"]), scheme
