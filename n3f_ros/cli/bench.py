"""``n3f bench quality|speed``: the SPEC §5 benchmarks (see n3f_ros/bench/)."""
from __future__ import annotations

import os


def add_parser(sub) -> None:
    p = sub.add_parser('bench', help='quality and speed benchmarks (SPEC §5)')
    bsub = p.add_subparsers(dest='bench', required=True)

    q = bsub.add_parser('quality', help='student field vs teacher: 3D segmentation mIoU, 2D retrieval mAP')
    q.add_argument('--mode', choices=('rgbd', 'rgb'), default='rgbd')
    q.add_argument('--seed', type=int, default=0)
    q.add_argument('--quick', action='store_true', help='small run (under 3 minutes on 2 CPU cores)')
    q.add_argument('--steps', type=int, help='training steps (default 1500, quick 400)')
    q.add_argument('--frames', type=int, help='frames in the sequence (half train, half held out)')
    q.add_argument('--json', help='write results to this JSON file')
    q.add_argument('--out', default='bench_results', help='folder for the plots (quality vs time, feature views)')
    q.add_argument('--save-map', help='save the trained map (loadable by the node ~/load)')
    q.set_defaults(func=_quality)

    s = bsub.add_parser('speed', help='per-stage cost per frame at 320x240 and 640x480 (CPU, and GPU if present)')
    s.add_argument('--json', help='write results to this JSON file')
    s.add_argument('--quick', action='store_true', help='fewer repetitions')
    s.add_argument('--device', action='append', help='cpu and/or cuda (default: cpu, plus cuda if available)')
    s.add_argument('--sizes', default='320x240,640x480')
    s.add_argument('--out', default='bench_results', help='folder for the plot')
    s.set_defaults(func=_speed)


def _quality(args) -> int:
    from n3f_ros.bench.quality import QualitySettings, format_table, run_quality, save_plot, write_json
    kw = {k: v for k, v in (('steps', args.steps), ('frames', args.frames)) if v is not None}
    s = (QualitySettings.quick if args.quick else QualitySettings)(mode=args.mode, seed=args.seed, **kw)
    if s.steps < 1 or s.frames < 4:
        raise SystemExit('need --steps >= 1 and --frames >= 4')
    s.eval_every = min(s.eval_every, s.steps)
    os.makedirs(args.out, exist_ok=True)
    s.map_out = args.save_map or ''
    s.views_png = os.path.join(args.out, f'features_{args.mode}_seed{args.seed}.png')
    r = run_quality(s)
    png = os.path.join(args.out, f'quality_{args.mode}_seed{args.seed}.png')
    return _report(r, format_table, save_plot, write_json, png, args.json)


def _speed(args) -> int:
    from n3f_ros.bench.speed import format_table, run_speed, save_plot, write_json
    sizes = [tuple(int(v) for v in s.lower().split('x')) for s in args.sizes.split(',')]
    r = run_speed(devices=args.device, sizes=sizes, quick=args.quick)
    os.makedirs(args.out, exist_ok=True)
    return _report(r, format_table, save_plot, write_json, os.path.join(args.out, 'speed.png'), args.json)


def _report(result, format_table, save_plot, write_json, png: str, json_path: str | None) -> int:
    """Print the table, save the plot and (optionally) the JSON of a benchmark result."""
    print(format_table(result))
    save_plot(result, png)
    print(f'plot: {png}')
    if json_path:
        write_json(result, json_path)
        print(f'json: {json_path}')
    return 0
