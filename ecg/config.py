"""Settings: configs/thesis.toml holds every default; --config FILE and --set KEY=VALUE override.

A script builds its parser with `parser()`, declares each flag that mirrors a config key once
with `flag(p, "--epochs", "train.epochs", help=...)` (its --help shows the config's default),
adds its other flags, and calls `load(args)`, which applies them. See docs/design.md.

    python -m ecg.config [--workdir DIR] [--config FILE] artifact trained_model   # prints a path
"""
import argparse
import copy
import functools
import os
import tomllib
from pathlib import Path

from .errors import UserError, main_guard

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "thesis.toml"


def _merge(base, over):
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _read_toml(path):
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise UserError(f"{path}: config file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not a valid TOML config ({e})") from e


@functools.lru_cache(maxsize=1)
def _defaults():
    return _read_toml(DEFAULT_CONFIG)


def default(dotted):
    """A key's value in configs/thesis.toml, e.g. default("train.epochs") -> 10."""
    node = _defaults()
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"{dotted}: not a key of {DEFAULT_CONFIG.name}")
        node = node[key]
    return copy.deepcopy(node)


def _parse_value(text):
    """--set values are TOML values; a bare word is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _like(default, value, key):
    """`value` checked against the type of the default it replaces (an int is a valid float)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    kinds = (bool,) if isinstance(default, bool) else (int,) if isinstance(default, int) else (type(default),)
    if default is None or (isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))):
        return value
    raise UserError(f"--set {key}={value!r}: expected a {type(default).__name__}, like the default {default!r}")


class Config:
    def __init__(self, data, workdir):
        self.data = data
        self.workdir = Path(workdir).resolve()

    def __getitem__(self, section):
        return self.data[section]

    def set(self, dotted, value):
        """Override one key, e.g. cfg.set("train.epochs", 3); None leaves the key as it is."""
        if value is None:
            return
        *parents, leaf = dotted.split(".")
        node = self.data
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise UserError(f"--set {dotted}: no section '{key}' in the config")
            node = node[key]
        if leaf not in node:
            raise UserError(f"--set {dotted}: unknown key (see configs/thesis.toml)")
        node[leaf] = _like(node[leaf], value, dotted)

    def path(self, key):
        """A path from [paths], resolved against the working directory."""
        p = Path(self.data["paths"][key]).expanduser()
        return p if p.is_absolute() else self.workdir / p

    def artifact(self, key):
        """A file passed between stages ([artifacts]), in paths.model_dir."""
        names = self.data["artifacts"]
        if key not in names:
            raise KeyError(f"no artifact '{key}' in [artifacts]")
        return self.path("model_dir") / names[key]

    def section(self, name, base="train"):
        """Section `name` on top of section `base`: e.g. fine-tuning settings ([prune]) with the
        keys they do not set (seed, threads, device) taken from [train]."""
        return {**self.data[base], **self.data[name]}

    @property
    def scheme(self):
        name = self.data["preprocess"]["scheme"]
        if name not in self.data["schemes"]:
            raise UserError(f"unknown class scheme '{name}' (known: {', '.join(self.data['schemes'])})")
        return self.data["schemes"][name]


def record(cfg, stage):
    """reports/settings/<stage>.json: every setting this stage ran with (config files, --set and
    flags applied), written when it finishes, so a release states what the run used rather than
    what the config says when the release is made."""
    import json

    from . import files

    folder = cfg.path("reports_dir") / "settings"
    folder.mkdir(parents=True, exist_ok=True)
    files.write_text(folder / f"{stage}.json",
                     json.dumps({"stage": stage, "settings": cfg.data}, indent=1) + "\n")


def default_artifact(key):
    """An artifact's default location relative to --workdir, for help texts."""
    return f"{default('paths.model_dir')}/{default('artifacts.' + key)}"


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="TOML file overriding configs/thesis.toml (repeatable)")
    p.add_argument("--workdir", default=os.environ.get("ECG_WORKDIR", "."),
                   help="folder all outputs go under; relative [paths] are resolved against it "
                        "(default: $ECG_WORKDIR, else the current folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set train.epochs=3")
    p.set_defaults(config_flags={})
    return p


def flag(p, name, key, help, **kw):
    """Declare the flag `name` for the config key `key` (e.g. "train.epochs"), once.

    The argument's type comes from the config default unless given, its --help ends with that
    default, and `load` applies the value given on the command line over every config file and
    --set (a [paths] value given on the command line is relative to the current folder, as a
    shell user expects; in a config file, to --workdir). Extra keyword arguments go to
    add_argument (choices, nargs, metavar, type).
    """
    value = default(key)
    if "type" not in kw and not isinstance(value, (list, bool)):
        kw["type"] = type(value)
    shown = " ".join(map(str, value)) if isinstance(value, list) else value
    action = p.add_argument(name, help=f"{help} (default: {shown if shown != '' else 'none'}; config {key})",
                            default=None, **kw)
    p.get_default("config_flags")[action.dest] = key
    return action


def load(args):
    data = copy.deepcopy(_defaults())
    for extra in args.config:
        _merge(data, _read_toml(extra))
    cfg = Config(data, args.workdir)
    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set {item}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        cfg.set(key.strip(), _parse_value(value.strip()))
    for dest, key in getattr(args, "config_flags", {}).items():
        value = getattr(args, dest)
        if key.startswith("paths.") and value is not None:  # typed in a shell: relative to the current folder
            value = os.path.abspath(os.path.expanduser(value))
        cfg.set(key, value)
    return cfg


def main(argv=None):
    """Print the full path of an artifact or a [paths] entry, or a setting as JSON (for the Makefile)."""
    p = parser("Print the path of a file or folder the pipeline passes between stages, or a setting.")
    p.add_argument("kind", choices=["artifact", "path", "setting"],
                   help="an [artifacts] file, a [paths] entry, or a setting section.key (printed as JSON)")
    p.add_argument("key", help="e.g. float_onnx, trained_model, test_dir, reports_dir; model.rr_features")
    args = p.parse_args(argv)
    cfg = load(args)
    if args.kind == "setting":
        import json

        section, _, key = args.key.partition(".")
        try:
            value = cfg[section][key]
        except (KeyError, TypeError):
            raise UserError(f"no setting '{args.key}'") from None
        return print(json.dumps(value))
    names = cfg["artifacts" if args.kind == "artifact" else "paths"]
    if args.key not in names:
        raise UserError(f"no {args.kind} '{args.key}' (known: {', '.join(names)})")
    print(cfg.artifact(args.key) if args.kind == "artifact" else cfg.path(args.key))


if __name__ == "__main__":
    main_guard(main)()
