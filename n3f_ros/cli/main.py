"""``n3f`` command-line tool: one entry point, one module per subcommand.

Each subcommand module exposes ``add_parser(subparsers)`` (registers its argparse parser and sets
``func``) so ``n3f --help`` lists them all.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under n3f_ros.cli (imported lazily so `n3f synth` does not import torch etc.)
SUBCOMMANDS = {
    'synth': 'n3f_ros.cli.synth',
    'bench': 'n3f_ros.cli.bench',
    'play': 'n3f_ros.cli.play',
    'process': 'n3f_ros.cli.process',
    'weights': 'n3f_ros.cli.weights',
    'demo': 'n3f_ros.cli.demo',
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='n3f', description='n3f_ros tools')
    sub = parser.add_subparsers(dest='command', required=True)
    for name, module in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:   # subcommand not built yet
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
