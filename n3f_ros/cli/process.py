"""``n3f process``: build a feature map from a rosbag2 offline, with the core engine (no ROS/DDS).

::

    n3f process BAG --out DIR [--teacher NAME | --checkpoint FILE | --random-init]
                [--steps-per-frame N] [--final-steps N] [--voxel M] [--segments K] [--device D]
                [--image-topic T] [--camera-info-topic T] [--depth-topic T | --no-depth]
                [--pose-topic T | --odom-topic T --extrinsic x y z qx qy qz qw] [--max-pose-dt S]

Frames are read with :class:`n3f_ros.bag.frames.BagFrameSource` (images raw or compressed, paired
with camera_info, the nearest depth and the pose interpolated at the image stamp), integrated into
a :class:`~n3f_ros.core.mapping.Mapper` one by one (teacher on keyframes) with ``--steps-per-frame``
training steps after each and ``--final-steps`` at the end. Topic defaults: the bag's
``n3f_synth.json`` when present (``n3f synth --bag``), else the RealSense wrapper names.

Writes in ``DIR``:

* ``cloud.ply``   — feature cloud: x y z (float32, metres, world frame), red green blue (PCA of the
  distilled features), label (uint32 segment id);
* ``map.pt``      — the map (``Mapper.save``), loadable by the node's ``~/load`` (``map_path``);
* ``cloud_views.png`` — the PCA-coloured cloud from three viewpoints;
* ``summary.json`` — frames read / used / dropped by reason, rejected messages, keyframes, training
  steps, segments, per-stage timings, teacher, device, topics.

Exit status: 0 done, 1 unusable input (bag, topics, weights, nothing to map), 2 bad options.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

CLOUD_FILE = 'cloud.ply'
MAP_FILE = 'map.pt'
SUMMARY_FILE = 'summary.json'
VIEWS_FILE = 'cloud_views.png'


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``process`` on the ``n3f`` command line."""
    p = subparsers.add_parser(
        'process', help='build a feature map from a rosbag2 offline (core engine, no ROS)',
        description='Run the N3F engine directly on a rosbag2 (mcap/sqlite3): distil the teacher into '
                    'the feature field frame by frame, then write the feature cloud (PLY), the map '
                    '(loadable by the node), a PNG and a JSON summary.')
    p.add_argument('bag', help='rosbag2 folder (with metadata.yaml) or .mcap/.db3 file')
    p.add_argument('--out', required=True, metavar='DIR', help='output folder (created if missing)')

    t = p.add_argument_group('inputs (default: from the bag\'s n3f_synth.json, else RealSense names)')
    t.add_argument('--image-topic', help='sensor_msgs/Image or CompressedImage (default '
                                         '/camera/color/image_raw, or its /compressed sibling)')
    t.add_argument('--camera-info-topic', help='sensor_msgs/CameraInfo (default /camera/color/camera_info)')
    t.add_argument('--depth-topic', help='sensor_msgs/Image 16UC1/32FC1 aligned to colour (default '
                                         '/camera/aligned_depth_to_color/image_raw when recorded)')
    t.add_argument('--no-depth', action='store_true', help='ignore depth: RGB-only mapping')
    t.add_argument('--pose-source', choices=('pose', 'odom'),
                   help='camera poses from PoseStamped (pose) or Odometry + --extrinsic (odom); default: '
                        'whichever the bag has')
    t.add_argument('--pose-topic', help='geometry_msgs/PoseStamped of the camera optical frame (default /camera/pose)')
    t.add_argument('--odom-topic', help='nav_msgs/Odometry (default /odom)')
    t.add_argument('--extrinsic', type=float, nargs=7, metavar=('X', 'Y', 'Z', 'QX', 'QY', 'QZ', 'QW'),
                   help='camera optical frame in the odometry child frame [m, quaternion]; default from '
                        'n3f_synth.json')
    t.add_argument('--max-pose-dt', type=float, default=0.05,
                   help='[s] frames with no pose this close to their stamp are dropped (default 0.05)')
    t.add_argument('--max-depth-dt', type=float, default=None,
                   help='[s] largest image-depth stamp difference (default: --max-pose-dt)')
    t.add_argument('--min-depth', type=float, help='[m] valid depth from (default: the node\'s min_depth)')
    t.add_argument('--max-depth', type=float, help='[m] valid depth up to (default: the node\'s max_depth)')
    t.add_argument('--max-frames', type=int, default=0, help='stop after this many frames read (0 = all)')

    e = p.add_argument_group("teacher and engine (defaults: the node's parameters, config/n3f.yaml)")
    e.add_argument('--teacher', help="'auto' or a timm DINO ViT name (auto = official DINO in the HF cache, else "
                                     'the installed DINOv2 ViT-S/14; see n3f weights list)')
    e.add_argument('--checkpoint', help='local teacher weights file (.pth/.pt/.safetensors)')
    e.add_argument('--random-init', action='store_true',
                   help='randomly initialised teacher weights (tests / throughput only)')
    e.add_argument('--teacher-width', type=int, help='[px] image width fed to the ViT (teacher_input_width)')
    e.add_argument('--feature-dim', type=int, help='distilled feature size (feature_dim)')
    e.add_argument('--device', help="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:N'")
    e.add_argument('--steps-per-frame', type=int, default=10, help='training steps after each frame (default 10)')
    e.add_argument('--final-steps', type=int, default=300, help='training steps after the last frame (default 300)')
    e.add_argument('--rays-per-step', type=int, help='rays per training step (rays_per_step)')
    e.add_argument('--max-keyframes', type=int, help='keyframe buffer size (max_keyframes)')
    e.add_argument('--keyframe-translation', type=float, help='[m] motion making a new keyframe')
    e.add_argument('--keyframe-rotation', type=float, help='[deg] rotation making a new keyframe')
    e.add_argument('--voxel', type=float, help='[m] voxel size of the cloud (voxel_size)')
    e.add_argument('--segments', type=int, help='feature clusters before spatial splitting (num_segments)')
    e.add_argument('--seed', type=int, help='random seed of training and segmentation')
    e.add_argument('--threads', type=int, default=0,
                   help='CPU threads of torch (0 = torch default); 1 is much faster on a busy shared CPU')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=run)
    return p


#: command-line option (argparse dest) -> engine setting (MapperConfig / node parameter)
ENGINE_OPTIONS = {
    'teacher': 'teacher_model', 'checkpoint': 'teacher_checkpoint', 'teacher_width': 'teacher_input_width',
    'feature_dim': 'feature_dim', 'device': 'device', 'min_depth': 'min_depth', 'max_depth': 'max_depth',
    'rays_per_step': 'rays_per_step', 'max_keyframes': 'max_keyframes',
    'keyframe_translation': 'keyframe_translation', 'keyframe_rotation': 'keyframe_rotation',
    'voxel': 'voxel_size', 'segments': 'num_segments', 'seed': 'seed',
}


def _check_args(args) -> str | None:
    """The reason the options cannot run, or None. Engine settings are checked against their
    documented ranges (core/mapping/config.py), the rest here."""
    from n3f_ros.core.mapping.config import engine_options
    from n3f_ros.core.options import check_value
    info = {o.name: o for o in engine_options()}
    for dest, name in ENGINE_OPTIONS.items():
        value = getattr(args, dest)
        err = check_value(info[name], value) if value is not None else None
        if err:
            return f"--{dest.replace('_', '-')}: {err}"
    checks = [
        (args.steps_per_frame >= 0 and args.final_steps >= 0, '--steps-per-frame and --final-steps must be >= 0'),
        (args.max_pose_dt > 0, '--max-pose-dt must be > 0'),
        (args.max_depth_dt is None or args.max_depth_dt >= 0, '--max-depth-dt must be >= 0'),
        (args.min_depth is None or args.max_depth is None or args.min_depth < args.max_depth,
         'need --min-depth < --max-depth'),
        (args.max_frames >= 0, '--max-frames must be >= 0'),
        (args.threads >= 0, '--threads must be >= 0'),
        (args.extrinsic is None or args.pose_source != 'pose', '--extrinsic only applies to odometry poses'),
        (not (args.random_init and args.checkpoint), '--random-init and --checkpoint exclude each other'),
    ]
    return next((msg for ok, msg in checks if not ok), None)


def _mapper_config(args):
    """The engine settings: the options given on the command line, the engine's defaults
    (``MapperConfig``, the node's parameters) for the rest."""
    from n3f_ros.core.mapping import MapperConfig
    given = {name: getattr(args, dest) for dest, name in ENGINE_OPTIONS.items() if getattr(args, dest) is not None}
    if args.no_depth:
        given['use_depth'] = False
    if args.random_init:
        given['teacher_random_init'] = True
    return MapperConfig.from_dict(given)


def _segments(labels) -> dict:
    import numpy as np
    ids, counts = np.unique(np.asarray(labels), return_counts=True)
    sizes = {int(i): int(c) for i, c in zip(ids, counts) if i != 0}
    return {'count': len(sizes), 'unlabelled_points': int(counts[ids == 0].sum()),
            'points_per_segment': sizes}


def _fail(msg: str, code: int = 1) -> int:
    print(f'n3f process: {msg}', file=sys.stderr)
    return code


def run(args) -> int:
    """Entry point of ``n3f process``; returns the exit code."""
    err = _check_args(args)
    if err:
        return _fail(err, 2)
    import torch
    from tqdm import tqdm

    from n3f_ros.bag.frames import BagFrameSource, read_synth_metadata, resolve_inputs
    from n3f_ros.bag.reader import BagError, BagReader
    from n3f_ros.core.cloud import save_cloud_views_png, write_ply
    from n3f_ros.core.mapping import FrameRejected, Mapper
    from n3f_ros.core.teacher import TeacherError

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    out = Path(args.out).expanduser()
    extrinsic = None
    if args.extrinsic is not None:
        from n3f_ros.io.decode import MessageError, decode_extrinsic
        try:
            extrinsic = decode_extrinsic(args.extrinsic)
        except MessageError as exc:
            return _fail(f'--extrinsic: {exc.text}', 2)
    try:
        metadata = read_synth_metadata(args.bag)
        reader = BagReader(args.bag).open()
    except BagError as exc:
        return _fail(str(exc))
    try:
        try:
            inputs = resolve_inputs(reader, image=args.image_topic, camera_info=args.camera_info_topic,
                                    depth=args.depth_topic, use_depth=not args.no_depth, pose=args.pose_topic,
                                    odom=args.odom_topic, pose_source=args.pose_source, extrinsic=extrinsic,
                                    metadata=metadata)
            cfg = _mapper_config(args)
            source = BagFrameSource(reader, inputs, max_pose_dt=args.max_pose_dt, max_depth_dt=args.max_depth_dt,
                                    min_depth=cfg.min_depth, max_depth=cfg.max_depth)
        except (BagError, ValueError) as exc:
            return _fail(str(exc))
        try:
            t0 = time.perf_counter()
            mapper = Mapper(cfg)
            t_model = time.perf_counter() - t0
        except (TeacherError, ValueError) as exc:
            hint = ' [n3f process: --checkpoint FILE, or --random-init for tests]' if 'weights' in str(exc) else ''
            return _fail(f'cannot build the engine: {exc}{hint}')
        teacher = mapper.teacher
        total = source.image_count if not args.max_frames else min(args.max_frames, source.image_count)
        if not args.quiet:
            print(f'n3f process: {reader.path}: {total} images on {inputs.image}, poses from {inputs.pose} '
                  f'({inputs.pose_source}), depth {inputs.depth or "off"}; teacher {teacher.name} on '
                  f'{mapper.device}', file=sys.stderr)
        timing = {'model_load_s': t_model, 'read_decode_s': 0.0, 'integrate_s': 0.0, 'train_s': 0.0,
                  'final_train_s': 0.0, 'cloud_s': 0.0, 'write_s': 0.0}
        steps_online = 0
        engine_rejected = collections.Counter()      # frames the engine found implausible, by reason
        bar = tqdm(total=total, unit='frame', desc='process', file=sys.stderr, disable=args.quiet)
        frames = iter(source)
        try:
            while not args.max_frames or source.stats.frames_read < args.max_frames:
                t0 = time.perf_counter()
                frame = next(frames, None)
                timing['read_decode_s'] += time.perf_counter() - t0
                bar.n = source.stats.frames_read
                if frame is None:
                    break
                t0 = time.perf_counter()
                try:
                    mapper.integrate(frame)
                except FrameRejected as exc:
                    engine_rejected[exc.reason] += 1
                timing['integrate_s'] += time.perf_counter() - t0
                loss = float('nan')
                if args.steps_per_frame and mapper.trainer is not None:
                    t0 = time.perf_counter()
                    loss = mapper.train(args.steps_per_frame)
                    timing['train_s'] += time.perf_counter() - t0
                    steps_online += args.steps_per_frame
                bar.set_postfix(kf=len(mapper.keyframes), loss=f'{loss:.3f}', refresh=False)
                bar.update(0)
        except (BagError, OSError) as exc:
            return _fail(f'reading {reader.path} failed: {exc}')
        finally:
            bar.close()
    finally:
        reader.close()

    stats = source.stats
    summary = {
        'bag': str(reader.path), 'inputs': inputs.as_dict(), 'frames': stats.as_dict(),
        'teacher': {'name': teacher.name, 'random_init': cfg.teacher_random_init,
                    'checkpoint': cfg.teacher_checkpoint or None, 'input_width': cfg.teacher_input_width,
                    'calls': mapper.stats().get('teacher_calls', 0),
                    'provenance': getattr(teacher, 'provenance', None)},
        'device': str(mapper.device), 'torch_threads': torch.get_num_threads(),
        'keyframes': len(mapper.keyframes), 'frames_rejected_by_engine': dict(engine_rejected),
        'settings': {**{k: getattr(args, k) for k in ('steps_per_frame', 'final_steps', 'max_pose_dt')},
                     **{k: getattr(cfg, k) for k in ('voxel_size', 'num_segments', 'feature_dim', 'rays_per_step',
                                                     'seed')}},
    }
    out.mkdir(parents=True, exist_ok=True)
    if mapper.trainer is None:
        summary['error'] = (f'nothing to map: {len(mapper.keyframes)} keyframe(s) from {stats.frames_used} '
                            f'usable frame(s); the field needs {mapper.config.bounds_keyframes} keyframes '
                            '(does the camera move? are poses and camera_info recorded?)')
        _write_summary(out, summary, timing, t_start, stats.frames_used, mapper.stats())
        return _fail(summary['error'] + f'; frames: {json.dumps(stats.as_dict())}')
    if args.final_steps:
        t0 = time.perf_counter()
        with tqdm(total=args.final_steps, unit='step', desc='final training', file=sys.stderr,
                  disable=args.quiet) as bar:
            done = 0
            while done < args.final_steps:
                n = min(25, args.final_steps - done)
                loss = mapper.train(n)
                done += n
                bar.set_postfix(loss=f'{loss:.3f}', refresh=False)
                bar.update(n)
        timing['final_train_s'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cloud = mapper.cloud(force=True)
    timing['cloud_s'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = cloud.labels
    write_ply(out / CLOUD_FILE, cloud.xyz, cloud.pca_rgb, labels)
    mapper.save(str(out / MAP_FILE))
    segs = _segments(labels)
    save_cloud_views_png(out / VIEWS_FILE, cloud.xyz, cloud.pca_rgb,
                         title=f'{Path(str(reader.path)).name}: {len(cloud)} points, {segs["count"]} segments '
                               '(PCA of distilled features)')
    timing['write_s'] = time.perf_counter() - t0
    summary.update({
        'training_steps': {'total': mapper.train_steps, 'online': steps_online, 'final': args.final_steps},
        'final_loss': {k: float(v) for k, v in mapper.trainer.last.items()},
        'cloud': {'points': len(cloud), 'voxel_size': cfg.voxel_size, 'feature_dim': cloud.dim},
        'segments': segs,
        'files': {'cloud': CLOUD_FILE, 'map': MAP_FILE, 'views': VIEWS_FILE, 'summary': SUMMARY_FILE},
    })
    _write_summary(out, summary, timing, t_start, stats.frames_used, mapper.stats())
    if not args.quiet:
        print(f'n3f process: {stats.frames_used}/{stats.frames_read} frames used '
              f'({stats.frames_dropped} dropped{": " + json.dumps(dict(stats.dropped)) if stats.dropped else ""}), '
              f'{len(mapper.keyframes)} keyframes, {mapper.train_steps} steps, {len(cloud)} points, '
              f'{segs["count"]} segments in {time.perf_counter() - t_start:.1f} s -> {out}', file=sys.stderr)
    return 0


def _write_summary(out: Path, summary: dict, timing: dict, t_start: float, frames_used: int, engine: dict) -> None:
    """Write summary.json; ``engine``: ``Mapper.stats()`` (teacher calls and seconds)."""
    timing['total_s'] = time.perf_counter() - t_start
    per_frame = {}
    if frames_used:
        per_frame = {'read_decode_ms': 1e3 * timing['read_decode_s'] / frames_used,
                     'integrate_ms': 1e3 * timing['integrate_s'] / frames_used}
    calls, teacher_s = engine.get('teacher_calls', 0), engine.get('teacher_total_s', 0.0)
    if calls:
        per_frame['teacher_ms_per_keyframe'] = 1e3 * teacher_s / calls
    steps = summary.get('training_steps', {})
    n_steps = steps.get('online', 0) + steps.get('final', 0)
    if n_steps:
        per_frame['train_ms_per_step'] = 1e3 * (timing['train_s'] + timing['final_train_s']) / n_steps
    timing['teacher_s'] = teacher_s
    summary['timings'] = {**{k: round(v, 4) for k, v in timing.items()},
                          'means': {k: round(v, 3) for k, v in per_frame.items()}}
    tmp = out / (SUMMARY_FILE + '.tmp')
    tmp.write_text(json.dumps(summary, indent=2) + '\n')
    tmp.replace(out / SUMMARY_FILE)
