"""Settings: configs/thesis.toml holds every default; --config FILE and --set KEY=VALUE override.

A script builds its parser with `parser()`, adds its own flags, and calls `load(args)`; script
flags that mirror a config key (e.g. --workers) are applied with `Config.set`.
"""
import argparse
import copy
import os
import tomllib
from pathlib import Path

from .errors import UserError

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
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not a valid TOML config ({e})") from None


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

    @property
    def scheme(self):
        name = self.data["preprocess"]["scheme"]
        if name not in self.data["schemes"]:
            raise UserError(f"unknown class scheme '{name}' (known: {', '.join(self.data['schemes'])})")
        return self.data["schemes"][name]


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="TOML file overriding configs/thesis.toml (repeatable)")
    p.add_argument("--workdir", default=os.environ.get("ECG_WORKDIR", "."),
                   help="folder all outputs go under (default: current folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set train.epochs=3")
    return p


def load(args):
    data = _read_toml(DEFAULT_CONFIG)
    for extra in args.config:
        _merge(data, _read_toml(extra))
    cfg = Config(data, args.workdir)
    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set {item}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        cfg.set(key.strip(), _parse_value(value.strip()))
    return cfg
