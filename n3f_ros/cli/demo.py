"""``n3f demo [OUT]``: the main job on the embedded default, with pictures (see n3f_ros/bench/demo.py).

Streams a photo-textured pybullet tabletop over DDS into ``n3f_node`` (shipped config, real
DINOv2 teacher), queries every object through ``~/query``, saves the map through ``~/save_map``
and writes cloud.ply, map.pt, pictures and summary.json into OUT (default ``demo_out``). Exit
status 0 on success, 1 with the reason (and the node's log tail) when anything fails.
"""
from __future__ import annotations

import sys

from n3f_ros.bench import live_defaults
from n3f_ros.cli.args import image_size, node_param


def add_parser(subparsers) -> None:
    p = subparsers.add_parser('demo', help='stream a scene into the node, query every object, save pictures',
                              description=__doc__.split('\n\n')[0])
    p.add_argument('out', nargs='?', default='demo_out', help='output folder (default demo_out)')
    p.add_argument('--scene', choices=('pybullet', 'synth'), default='pybullet')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--frames', type=int, default=live_defaults.FRAMES, help='frames streamed (default %(default)s)')
    p.add_argument('--fps', type=float, default=live_defaults.FPS, help='stream rate [Hz] (default %(default)s)')
    p.add_argument('--size', type=image_size, default='%dx%d' % live_defaults.SIZE,
                   help='image size WxH (default %(default)s)')
    p.add_argument('--rgb-only', action='store_true', help='no depth topic (keyframe depth by stereo)')
    p.add_argument('--max-wait', type=float, default=live_defaults.MAX_WAIT,
                   help='[s] keep querying this long after the stream for a right answer (default %(default)s)')
    p.add_argument('--param', type=node_param, action='append', default=[], metavar='NAME:=VALUE',
                   help='node parameter override (repeatable), e.g. --param keyframe_width:=96')
    p.add_argument('--allow-random-teacher', action='store_true', help=r'accept random teacher weights (tests)')
    p.set_defaults(func=run)


def run(args) -> int:
    from n3f_ros.bench.demo import run_demo
    from n3f_ros.bench.live import LiveError, LiveSettings
    w, h = args.size
    s = LiveSettings(scene=args.scene, seed=args.seed, frames=args.frames, width=w, height=h, fps=args.fps,
                     depth=not args.rgb_only, params=dict(args.param), max_wait=args.max_wait, out=args.out,
                     namespace='/n3f_demo')
    try:
        run_demo(s, log=lambda *a: print(*a, flush=True), allow_random=args.allow_random_teacher)
    except LiveError as e:
        print(f'n3f demo failed: {e}', file=sys.stderr)
        return 1
    return 0
