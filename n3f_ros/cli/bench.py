"""``n3f bench quality|speed|stereo|latency|all``: the SPEC §5 benchmarks; ``n3f bench dds|node-rx|
latency-load|soak``: the node and its transport from outside (issue 14). See n3f_ros/bench/."""
from __future__ import annotations

import json
import os

from n3f_ros.bench import live_defaults
from n3f_ros.cli.args import image_size, image_sizes, node_param

MODES = ('rgbd', 'rgb', 'rgb_colour')     # n3f_ros.bench.quality.MODES (not imported: keeps --help fast)
TEACHERS = ('dinov2', 'random', 'synthetic')   # n3f_ros.bench.quality.TEACHERS
SCENES = ('synth', 'pybullet')                 # n3f_ros.core.synth.SCENE_SOURCES


def add_parser(sub) -> None:
    p = sub.add_parser('bench', help='quality and speed benchmarks (SPEC §5)')
    bsub = p.add_subparsers(dest='bench', required=True)

    q = bsub.add_parser('quality', help='student field vs single-view and fused teacher, and the product\'s '
                        'answers: 3D segmentation mIoU, 2D retrieval mAP, per object, over training time')
    q.add_argument('--mode', choices=MODES, default='rgbd',
                   help="rgbd; rgb: no depth, keyframe depth by stereo; rgb_colour: no depth, no stereo")
    q.add_argument('--teacher', choices=TEACHERS, default='dinov2',
                   help='dinov2: the installed DINOv2 ViT-S/14; random: random-init ViT-S/16; synthetic: the noisy '
                   'instance oracle (default dinov2)')
    q.add_argument('--scene', choices=SCENES, default='pybullet',
                   help='synth: open3d shapes; pybullet: photo-textured pybullet models (default pybullet)')
    q.add_argument('--seed', type=int, default=0)
    q.add_argument('--quick', action='store_true', help='small run (under 3 minutes on 2 CPU cores)')
    q.add_argument('--steps', type=int, help='training steps (default 1500, quick 400)')
    q.add_argument('--frames', type=int, help='frames in the sequence (half train, half held out)')
    q.add_argument('--clicks', type=int, help='query points per object of the 3D segmentation mIoU (default 5; '
                   '1 = the top centre only)')
    q.add_argument('--json', help='write results to this JSON file')
    q.add_argument('--out', default='bench_results', help='folder for the plots (quality vs time, feature views)')
    q.add_argument('--save-map', help='save the trained map (loadable by the node ~/load)')
    q.set_defaults(func=_quality)

    s = bsub.add_parser('speed', help='per-stage cost per frame at 320x240 and 640x480 (CPU, and GPU if present)')
    s.add_argument('--json', help='write results to this JSON file')
    s.add_argument('--quick', action='store_true', help='fewer repetitions')
    s.add_argument('--device', action='append', help='cpu and/or cuda (default: cpu, plus cuda if available)')
    s.add_argument('--sizes', type=image_sizes, default='320x240,640x480')
    s.add_argument('--out', default='bench_results', help='folder for the plot')
    s.set_defaults(func=_speed)

    t = bsub.add_parser('stereo', help='RGB-only keyframe depth (multi-view stereo) against the true depth')
    t.add_argument('--seed', type=int, default=0)
    t.add_argument('--frames', type=int, help='orbit frames, all keyframes (default 48, quick 16)')
    t.add_argument('--quick', action='store_true', help='fewer frames')
    t.add_argument('--device', default='cpu')
    t.add_argument('--json', help='write results to this JSON file')
    t.add_argument('--out', default='bench_results', help='folder for the picture')
    t.set_defaults(func=_stereo)

    lt = bsub.add_parser('latency', help='time to a right answer: a scene streamed over DDS into n3f_node, '
                                          'every object queried through ~/query')
    lt.add_argument('--mode', choices=('rgbd', 'rgb', 'both'), default='both')
    lt.add_argument('--scene', choices=('pybullet', 'synth'), default='pybullet')
    lt.add_argument('--seed', type=int, default=0)
    lt.add_argument('--frames', type=int, default=live_defaults.FRAMES, help='frames streamed (default %(default)s)')
    lt.add_argument('--fps', type=float, default=live_defaults.FPS, help='stream rate [Hz] (default %(default)s)')
    lt.add_argument('--max-wait', type=float, default=live_defaults.MAX_WAIT,
                    help='[s] of queries after the stream (default %(default)s)')
    lt.add_argument('--param', type=node_param, action='append', default=[], metavar='NAME:=VALUE',
                    help='node parameter override')
    lt.add_argument('--json', help='write results to this JSON file')
    lt.add_argument('--out', default='bench_results', help='folder for the plot and the session logs')
    lt.set_defaults(func=_latency)

    a = bsub.add_parser('all', help='quality (both scene sources, RGB-D and RGB-only), stereo, speed and latency '
                        '(time to a right answer over DDS): JSON, plots, report.md in --out')
    a.add_argument('--quick', action='store_true',
                   help='quick quality runs, fewer stereo frames and fewer speed repetitions')
    a.add_argument('--seed', type=int, default=0)
    a.add_argument('--steps', type=int, help='quality training steps (default 1500, quick 400)')
    a.add_argument('--frames', type=int, help='quality frames (half train, half held out) and stereo frames')
    a.add_argument('--sizes', type=image_sizes, default='320x240,640x480', help='speed benchmark image sizes')
    a.add_argument('--teacher', choices=TEACHERS, default='dinov2', help='teacher of the quality runs')
    a.add_argument('--scenes', default=','.join(SCENES), help='scene sources of the quality runs (comma separated)')
    a.add_argument('--modes', default='rgbd,rgb', help='modes of the quality runs (comma separated)')
    a.add_argument('--latency-modes', default='rgbd,rgb',
                   help="modes of the latency run over DDS (comma separated; '' = no latency run)")
    a.add_argument('--out', default='bench_results', help='folder for JSON, plots and report.md')
    a.set_defaults(func=_all)

    d = bsub.add_parser('dds', help='delivered/sent of rgb8 + 16UC1 depth + camera_info between two processes, '
                                    'per image size and DDS set-up (default Fast DDS vs the shipped profile)')
    d.add_argument('--sizes', type=image_sizes, default='320x240,640x480,1280x720')
    d.add_argument('--rate', type=float, default=30.0, help='Hz')
    d.add_argument('--duration', type=float, default=10.0, help='seconds of publishing per case and size')
    d.add_argument('--cases', default='default,shipped',
                   help='comma-separated names of n3f_ros.bench.dds.CASES, or "all"')
    d.add_argument('--json', help='write results to this JSON file')
    d.add_argument('--out', default='bench_results', help='folder for the plot (dds.png)')
    d.set_defaults(func=_dds)

    r = bsub.add_parser('node-rx', help="what n3f_node itself receives (its received/* diagnostics) of a 30 Hz "
                                        'camera stream, per image size')
    r.add_argument('--sizes', type=image_sizes, default='640x480,1280x720')
    r.add_argument('--rate', type=float, default=30.0, help='Hz')
    r.add_argument('--duration', type=float, default=30.0, help='seconds of feeding per size')
    r.add_argument('--transports', default='shipped', help="comma-separated: shipped, default")
    r.add_argument('--json', help='write results to this JSON file')
    r.set_defaults(func=_node_rx)

    lt = bsub.add_parser('latency-load', help='~/query latency and diagnostics period of n3f_node mapping a '
                                              '30 Hz stream with a feature_cloud subscriber, idle and beside '
                                              'CPU-bound processes')
    lt.add_argument('--size', type=image_size, default='320x240')
    lt.add_argument('--warmup', type=float, default=60.0, help='seconds of mapping before the first phase')
    lt.add_argument('--phase-seconds', type=float, default=120.0, help='seconds of queries per phase')
    lt.add_argument('--hogs', default='0,2', help='CPU-bound processes per phase, comma-separated')
    lt.add_argument('--with-mask', action='store_true', help='queries also render the 2D mask')
    lt.add_argument('--json', help='write results to this JSON file')
    lt.set_defaults(func=_latency_load)

    k = bsub.add_parser('soak', help='n3f_node fed at 30 Hz for a long run: RSS over time, images lost before '
                                     'the callback (not CI: >= 20 min)')
    k.add_argument('--size', type=image_size, default='320x240')
    k.add_argument('--minutes', type=float, default=25.0)
    k.add_argument('--warmup', type=float, default=300.0, help='seconds excluded from the RSS slope')
    k.add_argument('--no-cloud-subscriber', action='store_true', help='no feature_cloud subscriber attached')
    k.add_argument('--node-env', action='append', default=[], metavar='KEY=VALUE',
                   help='extra environment of the node process (e.g. MALLOC_ARENA_MAX=2), repeatable')
    k.add_argument('--json', help='write results to this JSON file (also every minute while running)')
    k.add_argument('--out', default='bench_results', help='folder for the plot (soak_<size>.png)')
    k.set_defaults(func=_soak)


def _run_name(teacher: str, scene: str, mode: str, seed: int) -> str:
    """File stem of one quality run: ``quality_<teacher>_<scene>_<mode>_seed<N>``."""
    return f'quality_{teacher}_{scene}_{mode}_seed{seed}'


def _quality_settings(mode: str, teacher: str, scene: str, seed: int, quick: bool, out: str, steps=None,
                      frames=None, clicks=None):
    from n3f_ros.bench.quality import QualitySettings
    kw = {k: v for k, v in (('steps', steps), ('frames', frames), ('clicks', clicks)) if v is not None}
    s = (QualitySettings.quick if quick else QualitySettings)(mode=mode, teacher=teacher, scene=scene, seed=seed,
                                                              **kw)
    if s.steps < 1 or s.frames < 4 or s.clicks < 1:
        raise SystemExit('need --steps >= 1, --frames >= 4 and --clicks >= 1')
    s.eval_every = min(s.eval_every, s.steps)
    os.makedirs(out, exist_ok=True)
    s.views_png = os.path.join(out, _run_name(teacher, scene, mode, seed).replace('quality_', 'features_') + '.png')
    return s


def _run_quality(args, mode: str, teacher: str, scene: str, json_path: str | None, map_out: str = ''):
    """One quality run into ``args.out`` (plot ``<run name>.png``); returns the result."""
    from n3f_ros.bench.quality import format_table, run_quality, save_plot, write_json
    s = _quality_settings(mode, teacher, scene, args.seed, args.quick, args.out, args.steps, args.frames,
                          getattr(args, 'clicks', None))
    s.map_out = map_out
    r = run_quality(s)
    png = os.path.join(args.out, _run_name(teacher, scene, mode, args.seed) + '.png')
    _report(r, format_table, save_plot, write_json, png, json_path)
    return r


def _quality(args) -> int:
    _run_quality(args, args.mode, args.teacher, args.scene, args.json, args.save_map or '')
    return 0


def _all(args) -> int:
    """Quality (RGB-D, RGB-only), stereo and speed into ``--out``, then ``report.md`` from their JSON."""
    import platform

    import torch

    from n3f_ros.bench import speed
    from n3f_ros.bench.report import write_report
    quality_runs = []
    scenes = [x.strip() for x in args.scenes.split(',') if x.strip()]
    modes = [x.strip() for x in args.modes.split(',') if x.strip()]
    bad = [x for x in scenes if x not in SCENES] + [x for x in modes if x not in MODES]
    if bad:
        raise SystemExit(f'unknown scene source or mode: {bad}')
    for scene in scenes:
        for mode in modes:
            name = _run_name(args.teacher, scene, mode, args.seed)
            r = _run_quality(args, mode, args.teacher, scene, os.path.join(args.out, name + '.json'))
            quality_runs.append(dict(r.to_json(), plot=name + '.png',
                                     features=name.replace('quality_', 'features_') + '.png'))
    st = _run_stereo(args, os.path.join(args.out, 'stereo.json'))
    sp = speed.run_speed(sizes=args.sizes, quick=args.quick)
    _report(sp, speed.format_table, speed.save_plot, speed.write_json, os.path.join(args.out, 'speed.png'),
            os.path.join(args.out, 'speed.json'))
    lat = _run_latency_all(args)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    machine = (f'Machine: {platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPUs, '
               f'{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads'
               f"{'; --quick' if args.quick else ''}.")
    path = write_report(os.path.join(args.out, 'report.md'), quality_runs, dict(sp, plot='speed.png'),
                        machine=machine, stereo=dict(st, plot='stereo.png'),
                        latency=dict(lat, plot='latency.png') if lat else None)
    print(f'report: {path}')
    return 0


def _run_stereo(args, json_path: str | None) -> dict:
    """The stereo benchmark into ``args.out`` (picture ``stereo.png``); returns its JSON dict."""
    from n3f_ros.bench.stereo import StereoSettings, format_table, run_stereo, save_plot, to_json, write_json
    kw = {'device': getattr(args, 'device', None) or 'cpu'}          # 'all' has no --device
    if args.frames is not None:
        kw['frames'] = args.frames
    s = (StereoSettings.quick if args.quick else StereoSettings)(seed=args.seed, **kw)
    if s.frames < 3:
        raise SystemExit('stereo needs --frames >= 3')
    os.makedirs(args.out, exist_ok=True)
    r = run_stereo(s, log=lambda *_: None)
    _report(r, format_table, save_plot, write_json, os.path.join(args.out, 'stereo.png'), json_path)
    return to_json(r)


def _stereo(args) -> int:
    _run_stereo(args, args.json)
    return 0


def _speed(args) -> int:
    from n3f_ros.bench.speed import format_table, run_speed, save_plot, write_json
    r = run_speed(devices=args.device, sizes=args.sizes, quick=args.quick)
    os.makedirs(args.out, exist_ok=True)
    return _report(r, format_table, save_plot, write_json, os.path.join(args.out, 'speed.png'), args.json)


def _dds(args) -> int:
    from n3f_ros.bench.dds import CASES, Settings, format_table, run_dds, save_plot, write_json
    names = list(CASES) if args.cases == 'all' else [c.strip() for c in args.cases.split(',') if c.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; known: {', '.join(CASES)}")
    r = run_dds(Settings(sizes=tuple(args.sizes), rate=args.rate, duration=args.duration,
                         cases=[CASES[n] for n in names]))
    os.makedirs(args.out, exist_ok=True)
    return _report(r, format_table, save_plot, write_json, os.path.join(args.out, 'dds.png'), args.json)


def _node_rx(args) -> int:
    from n3f_ros.bench.node_load import ReceiveSettings, run_receive, write_json
    r = run_receive(ReceiveSettings(sizes=tuple(args.sizes), rate=args.rate, duration=args.duration,
                                    transports=tuple(t.strip() for t in args.transports.split(','))))
    if args.json:
        write_json(r, args.json)
        print(f'json: {args.json}')
    return 0


def _latency_load(args) -> int:
    from n3f_ros.bench.node_load import LatencySettings, run_latency_load, write_json
    hogs = [int(h) for h in args.hogs.split(',')]
    phases = tuple(('idle' if h == 0 else f'{h} cpu hogs', h) for h in hogs)
    w, h = args.size
    r = run_latency_load(LatencySettings(size=(w, h), phases=phases, warmup=args.warmup,
                                         phase_seconds=args.phase_seconds, with_mask=args.with_mask))
    if args.json:
        write_json(r, args.json)
        print(f'json: {args.json}')
    return 0


def _soak(args) -> int:
    from n3f_ros.bench.node_load import SoakSettings, run_soak, save_soak_plot
    w, h = args.size
    node_env = dict(kv.split('=', 1) for kv in args.node_env)
    r = run_soak(SoakSettings(size=(w, h), minutes=args.minutes, warmup=args.warmup,
                              cloud_subscriber=not args.no_cloud_subscriber, node_env=node_env), json_path=args.json)
    print(json.dumps(r['summary'], indent=1))
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, f'soak_{w}x{h}.png' if not node_env else f'soak_{w}x{h}_env.png')
    save_soak_plot(r, png)
    print(f'plot: {png}')
    return 0


def _report(result, format_table, save_plot, write_json, png: str, json_path: str | None) -> int:
    """Print the table, save the plot and (optionally) the JSON of a benchmark result."""
    print(format_table(result))
    save_plot(result, png)
    print(f'plot: {png}')
    if json_path:
        write_json(result, json_path)
        print(f'json: {json_path}')
    return 0


def _run_latency_all(args) -> dict | None:
    """``bench all``'s latency run (the default stream, shipped config) into ``args.out``."""
    from n3f_ros.bench.latency import MODES as LATENCY_MODES
    modes = tuple(x.strip() for x in args.latency_modes.split(',') if x.strip())
    if not modes:
        return None
    if any(m not in LATENCY_MODES for m in modes):
        raise SystemExit(f'unknown latency mode in {modes}')
    return _latency_session(dict(seed=args.seed), modes, args.out, os.path.join(args.out, 'latency.json'))


def _latency(args) -> int:
    modes = ('rgbd', 'rgb') if args.mode == 'both' else (args.mode,)
    _latency_session(dict(scene=args.scene, seed=args.seed, frames=args.frames, fps=args.fps,
                          max_wait=args.max_wait, params=dict(args.param)), modes, args.out, args.json)
    return 0


def _latency_session(settings: dict, modes: tuple, out: str, json_path: str | None) -> dict:
    """The latency benchmark (``LiveSettings(**settings)`` per mode) into ``out``: session logs in
    ``out/latency``, ``latency.png``, the table, and the JSON when ``json_path`` is given."""
    from n3f_ros.bench.latency import format_table, run_latency, save_plot, write_json
    from n3f_ros.bench.live import LiveSettings
    os.makedirs(out, exist_ok=True)
    base = LiveSettings(**settings, out=os.path.join(out, 'latency'), namespace='/n3f_latency')
    r = run_latency(base, modes, log=lambda *a: print(*a, flush=True))
    _report(r, format_table, save_plot, write_json, os.path.join(out, 'latency.png'), json_path)
    return r
