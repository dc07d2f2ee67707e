"""``n3f synth``: render a synthetic tabletop sequence to a scene folder or a rosbag2.

Examples::

    n3f synth /tmp/scene --seed 3 --frames 60 --size 320x240            # scene folder
    n3f synth /tmp/bag --bag --storage mcap --compressed                   # rosbag2, jpeg colour
    n3f synth /tmp/bag_odom --bag --pose-source odom --pose-offset 0.013   # odometry + extrinsic
    n3f synth /tmp/pb --scene pybullet --size 320x240                      # photo-textured pybullet scene
    n3f synth --scene pybullet --preview docs/pybullet_scene.png           # picture of a few views only
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from n3f_ros.cli.args import image_size

#: scene sources (n3f_ros.core.synth.SCENE_SOURCES; not imported here so --help stays fast,
#: test/core/test_pybullet_scene.py checks they agree)
SCENES = ('synth', 'pybullet')
BAG_DEFAULTS = {'storage': 'mcap', 'compressed': False, 'encoding': 'rgb8', 'pose_source': 'pose',
                'pose_offset': 0.0, 'pose_rate': 3.0, 'extrinsic': None}


def _extrinsic(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.replace(',', ' ').split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'extrinsic must be 7 numbers, got {text!r}') from None
    if len(vals) != 7:
        raise argparse.ArgumentTypeError(f'extrinsic must be 7 numbers (x y z qx qy qz qw), got {len(vals)}')
    return vals


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``synth`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        'synth', help='render a synthetic tabletop sequence (scene folder or rosbag2)',
        description='Render a seeded synthetic tabletop scene along a full camera orbit and write it as '
                    'a scene folder (docs/scene_format.md) or, with --bag, as a rosbag2.')
    p.add_argument('out', nargs='?', default=None,
                   help='output folder (must not exist, or be empty for a scene folder); '
                        'optional with --preview or --check')
    p.add_argument('--scene', choices=SCENES, default=SCENES[0],
                   help="scene source: 'synth' (procedural shapes, open3d ray casting) or 'pybullet' "
                        '(photo-textured pybullet_data models, TinyRenderer); default synth')
    p.add_argument('--preview', default=None, metavar='PNG',
                   help='also write a picture of a few views (colour, depth, instance rows) to PNG')
    p.add_argument('--preview-views', type=int, default=4, help='views in the --preview picture (default 4)')
    p.add_argument('--preview-width', type=int, default=240, help='width of one --preview tile (default 240)')
    p.add_argument('--check', action='store_true',
                   help='print geometric consistency numbers (table-plane depth error, two-view agreement, '
                        'object centres on their own instance) and render time per frame, as JSON')
    p.add_argument('--seed', type=int, default=0, help='scene and camera path seed (default 0)')
    p.add_argument('--frames', type=int, default=60, help='number of images (default 60)')
    p.add_argument('--size', type=image_size, default=(640, 480), metavar='WxH', help='image size (default 640x480)')
    p.add_argument('--fps', type=float, default=10.0, help='image rate in Hz (default 10)')
    p.add_argument('--hfov', type=float, default=60.0, help='horizontal field of view, degrees (default 60)')
    p.add_argument('--objects', type=int, default=None,
                   help='number of objects (default by seed: 5..7 synth, 7..9 pybullet)')
    p.add_argument('--no-shadows', action='store_true', help='render without cast shadows (faster)')
    p.add_argument('--no-depth', action='store_true', help='write no depth images')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    b = p.add_argument_group('rosbag2 output')
    b.add_argument('--bag', action='store_true', help='write a rosbag2 to OUT instead of a scene folder')
    b.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='bag storage (default mcap)')
    b.add_argument('--compressed', action='store_true',
                   help='colour as sensor_msgs/CompressedImage (jpeg) on --compressed-topic')
    b.add_argument('--encoding', choices=('rgb8', 'bgr8'), default='rgb8', help='raw image encoding')
    b.add_argument('--pose-source', choices=('pose', 'odom'), default='pose',
                   help="'pose': PoseStamped of the camera on --pose-topic; 'odom': nav_msgs/Odometry of "
                        '--base-frame on --odom-topic (camera = base @ extrinsic)')
    b.add_argument('--pose-offset', type=float, default=0.0, metavar='DT',
                   help='seconds between the pose sampling grid and the image stamps (default 0)')
    b.add_argument('--pose-rate', type=float, default=3.0,
                   help='pose messages per image (default 3: poses at 3x the image rate)')
    b.add_argument('--extrinsic', type=_extrinsic, default=None, metavar='"x y z qx qy qz qw"',
                   help='camera optical frame in the base frame (odom mode); default: a fixed mount')
    b.add_argument('--start-time', type=float, default=1_700_000_000.0,
                   help='ROS time (s) of the first image (default 1.7e9)')
    b.add_argument('--jpeg-quality', type=int, default=90, help='jpeg quality 1..95 (default 90)')
    b.add_argument('--distro', choices=('humble', 'jazzy', 'kilted'), default='jazzy',
                   help='message definitions written into the bag (default jazzy)')
    t = p.add_argument_group('topics and frames (rosbag2 output)')
    t.add_argument('--image-topic', default='/camera/color/image_raw')
    t.add_argument('--compressed-topic', default='', help='default: IMAGE_TOPIC/compressed')
    t.add_argument('--camera-info-topic', default='/camera/color/camera_info')
    t.add_argument('--depth-topic', default='/camera/aligned_depth_to_color/image_raw')
    t.add_argument('--pose-topic', default='/camera/pose')
    t.add_argument('--odom-topic', default='/odom')
    t.add_argument('--camera-frame', default='camera_color_optical_frame')
    t.add_argument('--world-frame', default='map')
    t.add_argument('--base-frame', default='base_link', help='odometry child frame (odom mode)')
    p.set_defaults(func=run)
    return p


def _progress(args, total: int, desc: str):
    if args.quiet:
        return None
    from tqdm import tqdm
    return lambda it: tqdm(it, total=total, desc=desc, unit='frame', file=sys.stderr)


def run(args) -> int:
    """Entry point of ``n3f synth``; returns the exit code."""
    from n3f_ros.core.synth import make_sequence, write_scene_folder

    if args.out is None and args.preview is None and not args.check:
        print('n3f synth: give an output folder OUT, --preview PNG or --check', file=sys.stderr)
        return 2
    if args.frames < 1:
        print('n3f synth: --frames must be >= 1', file=sys.stderr)
        return 2
    if args.fps <= 0:
        print('n3f synth: --fps must be positive', file=sys.stderr)
        return 2
    w, h = args.size
    try:
        seq = make_sequence(args.seed, args.frames, w, h, fps=args.fps, hfov_deg=args.hfov,
                            n_objects=args.objects, shadows=not args.no_shadows, scene=args.scene)
    except ValueError as exc:                       # bad option values (object count, FOV, ...)
        print(f'n3f synth: {exc}', file=sys.stderr)
        return 2
    except RuntimeError as exc:                     # a scene that cannot be built (PybulletSceneError)
        print(f'n3f synth: {exc}', file=sys.stderr)
        return 1
    if args.preview is not None:
        from n3f_ros.core.synth.preview import save_preview
        try:
            path = save_preview(seq, args.preview, views=args.preview_views, tile_width=args.preview_width)
        except (ValueError, OSError) as exc:
            print(f'n3f synth: {exc}', file=sys.stderr)
            return 1
        print(f'wrote preview to {path}')
    if args.check:
        print(json.dumps(_check(seq)))
    if args.out is None:
        return 0
    t0 = time.perf_counter()
    if not args.bag:
        ignored = [k for k, v in BAG_DEFAULTS.items() if getattr(args, k) != v]
        if ignored:
            print(f'n3f synth: ignoring bag-only options without --bag: {", ".join(ignored)}', file=sys.stderr)
        try:
            out = write_scene_folder(seq, args.out, depth=not args.no_depth,
                                     progress=_progress(args, len(seq), 'synth'))
        except FileExistsError as exc:
            print(f'n3f synth: {exc}', file=sys.stderr)
            return 1
        _report(seq, out, time.perf_counter() - t0)
        return 0
    return _run_bag(args, seq, t0)


def _run_bag(args, seq, t0: float) -> int:
    from n3f_ros.bag.writer import (
        BagOptions,
        BagTopics,
        BagWriteError,
        extrinsic_from_list,
        write_synthetic_bag,
    )

    try:
        topics = BagTopics(image=args.image_topic, compressed=args.compressed_topic,
                           camera_info=args.camera_info_topic, depth=args.depth_topic,
                           pose=args.pose_topic, odom=args.odom_topic)
        kw = {}
        if args.extrinsic is not None:
            kw['extrinsic'] = extrinsic_from_list(args.extrinsic)
        opts = BagOptions(storage=args.storage, compressed=args.compressed, encoding=args.encoding,
                          pose_source=args.pose_source, depth=not args.no_depth, pose_rate=args.pose_rate,
                          pose_offset=args.pose_offset, start_time=args.start_time, topics=topics,
                          camera_frame=args.camera_frame, world_frame=args.world_frame,
                          base_frame=args.base_frame, jpeg_quality=args.jpeg_quality, distro=args.distro, **kw)
        summary = write_synthetic_bag(seq, args.out, opts, progress=_progress(args, len(seq), 'synth bag'))
    except (ValueError, BagWriteError) as exc:
        print(f'n3f synth: {exc}', file=sys.stderr)
        return 1
    _report(seq, summary.path, time.perf_counter() - t0)
    for topic, n in summary.counts.items():
        print(f'  {topic}: {n} messages')
    if 'camera_extrinsic' in summary.metadata:
        ext = ' '.join(f'{v:.6f}' for v in summary.metadata['camera_extrinsic'])
        print(f'camera_extrinsic ({args.base_frame} -> {args.camera_frame}, x y z qx qy qz qw): {ext}')
        rounded = [round(v, 6) for v in summary.metadata['camera_extrinsic']]
        print(f'  node parameter: camera_extrinsic: {json.dumps(rounded)}')
    return 0


def _check(seq) -> dict:
    """``core.synth.geometry_check.check_sequence`` numbers plus render seconds per frame."""
    from n3f_ros.core.synth.geometry_check import check_sequence
    times = []
    for i in range(0, len(seq), max(1, len(seq) // 8)):
        t0 = time.perf_counter()
        seq[i]
        times.append(time.perf_counter() - t0)
    out = {'scene': seq.scene.SOURCE, 'seed': seq.seed, 'size': list(seq.camera.size),
           'render_seconds': {'median': float(sorted(times)[len(times) // 2]), 'min': float(min(times)),
                              'frames': len(times)}}
    out.update(check_sequence(seq))
    return out


def _report(seq, out, seconds: float) -> None:
    names = ', '.join(o.name for o in seq.scene.objects)
    print(f'wrote {len(seq)} frames ({seq.camera.width}x{seq.camera.height}) to {out} in {seconds:.1f} s')
    print(f'scene {seq.scene.SOURCE} seed {seq.seed}: {len(seq.scene.objects)} objects: {names}')
