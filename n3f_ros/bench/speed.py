"""Speed benchmark (SPEC §5): per-stage cost per frame, query latency, memory over a long stream.

Stages, per image size and device:

* ``teacher``     — forward of the default teacher's architecture (``DinoTeacher`` 'auto' with
                    random weights: DINOv2 ViT-S/14, timm) at the image's full width;
* ``integrate``   — ``Mapper.integrate`` of a new keyframe: teacher + PCA projection + keyframe
                    insertion + fusion into the fused-teacher layer (what the node's worker does per frame);
* ``fuse``        — the fusion of one keyframe (160 px, with depth) into the fused-teacher layer alone
                    (issue 9: at most the teacher's own forward);
* ``measure``     — one held-out measurement of fused vs student vs combined features
                    (``Mapper.measure_sources``, every ``holdout_eval_steps`` training steps);
* ``overhead``    — integrate minus teacher: the cost the engine adds to a bare teacher forward;
* ``glue``        — the node's input path for one frame without DDS: decode Image (rgb8), depth
                    (16UC1) and PoseStamped, pair them (``io.frame_assembler.FrameAssembler``) into a Frame;
                    nan when the ROS message packages are not importable. Node overhead over a bare
                    teacher forward = ``glue`` + ``overhead``;
* ``stereo``      — RGB-only only: multi-view stereo for one new keyframe (``KeyframeStereo``: the
                    new keyframe and up to 2 older ones re-triangulated, then consistency-filtered),
                    in steady state (15 keyframes of a dense orbit, 7.5 degrees apart, already
                    triangulated) at the keyframe width (160 px: the same at both image sizes);
* ``train_step``  — one optimisation step (``rays_per_step`` rays);
* ``cloud``       — extraction of the feature cloud (surface points, field features, PCA, segments);
* ``geometry_200k`` — the geometry queries respect (support plane, normals, pieces;
                    ``core.cloud.geometry.analyse_geometry``), computed once per cloud, for 200k points;
* ``query_200k``  — ``query_by_point`` with that geometry (the node's radius) on a 200k-point cloud:
                    copies of the extracted cloud side by side, i.e. a larger scene at the same density.

Memory: RSS (and CUDA memory) while streaming many frames through a bounded keyframe buffer.
"""
from __future__ import annotations

import resource
import time

import numpy as np
import torch

from n3f_ros.bench.stereo import add_without_depth, triangulate
from n3f_ros.core.cloud import query_by_point
from n3f_ros.core.cloud.geometry import analyse_geometry
from n3f_ros.core.keyframe_depth import KeyframeStereo
from n3f_ros.core.keyframes import KeyframeBuffer, KeyframeConfig
from n3f_ros.core.mapping import Mapper, MapperConfig
from n3f_ros.core.scene_bounds import bounds_from_views
from n3f_ros.core.synth import make_sequence
from n3f_ros.core.teacher import DinoTeacher
from n3f_ros.bench.results_file import write_json  # noqa: F401 (the benchmark's writer)


def _rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed(fn, device, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs (after one warm-up)."""
    fn()
    ts = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench_glue(frame, reps: int) -> float:
    """Median seconds of the node's per-frame input path (see module doc), or nan without ROS."""
    try:
        from n3f_ros.io import decode, encode
        from n3f_ros.io.frame_assembler import FrameAssembler
    except ImportError:
        return float('nan')
    img = encode.image_msg(frame.rgb, encode.make_header(0.0, 'camera'), encoding='rgb8')
    dep = encode.depth_msg(frame.depth, img.header, '16UC1')
    pose = encode.pose_stamped_msg(frame.T_world_cam, encode.make_header(0.0, 'map'))
    sync = FrameAssembler()
    sync.set_camera(frame.camera)
    clock = {'t': 100.0}

    def one_frame():
        clock['t'] += 0.1
        for m in (img, dep, pose):                  # new stamps, same payload (as a stream would)
            m.header.stamp = encode.to_time_msg(clock['t'])
        t = decode.header_sec(img)
        sync.add_pose(decode.header_sec(pose), decode.decode_pose(pose))
        sync.add_depth(decode.header_sec(dep), decode.decode_depth(dep), clock['t'])
        sync.add_image(t, decode.decode_image(img), img.header.frame_id, clock['t'])
        frames, errors = sync.poll(clock['t'])
        if len(frames) != 1 or errors:
            raise RuntimeError(f'glue benchmark: expected one assembled frame, got {len(frames)} ({errors})')
    return _timed(one_frame, torch.device('cpu'), reps)


def bench_stereo(device: torch.device, width: int, height: int, reps: int, cfg: MapperConfig) -> float:
    """Median seconds of the RGB-only stereo work for a new keyframe (see module doc)."""
    seq = make_sequence(1, 48, width, height)
    kb = KeyframeBuffer(KeyframeConfig(16, 0.0, 0.0, cfg.keyframe_width), device)
    ks = KeyframeStereo(cfg.stereo_config, cfg.min_depth, cfg.max_depth)
    bounds = bounds_from_views(seq.poses)
    for i in range(15):
        triangulate(kb, ks, add_without_depth(kb, seq[i]), bounds)
    job = ks.plan(kb, add_without_depth(kb, seq[15]), bounds)      # timed, never applied
    return _timed(lambda: ks.run(job), device, reps) if job is not None else float('nan')


def bench_size(device: torch.device, width: int, height: int, reps: int, log=print) -> dict:
    seq = make_sequence(1, 12, width, height)
    frames = [seq[i] for i in range(len(seq))]
    teacher = DinoTeacher(random_init=True, device=str(device), input_width=width)
    out = {'device': str(device), 'size': f'{width}x{height}'}
    out['teacher'] = _timed(lambda: teacher(frames[0]), device, reps)
    cfg = MapperConfig(device=str(device), keyframe_translation=0.0, keyframe_rotation=0.0, max_keyframes=64,
                       bounds_keyframes=3)
    mapper = Mapper(cfg, teacher=teacher)
    for f in frames[:3]:
        mapper.integrate(f)
    it = iter(frames[3:] * 10)
    out['integrate'] = _timed(lambda: mapper.integrate(next(it)), device, reps)
    out['overhead'] = max(out['integrate'] - out['teacher'], 0.0)
    out['glue'] = bench_glue(frames[0], reps)
    out['stereo'] = bench_stereo(device, width, height, reps, cfg)
    state = mapper.map

    def refuse():                        # fuse the newest keyframe again (a fresh keyframe's cost)
        slot = int(np.argmax(state.keyframes.order))
        state.fused_orders.discard(state.keyframes.order[slot])
        state.fuse(slot)
    out['fuse'] = _timed(refuse, device, reps)
    out['train_step'] = _timed(lambda: mapper.train(1), device, reps)
    out['measure'] = _timed(mapper.measure_sources, device, max(1, reps // 2))
    out['rays_per_step'] = cfg.rays_per_step
    out['cloud'] = _timed(lambda: mapper.cloud(force=True), device, max(1, reps // 2))
    cloud = mapper.cloud()
    out['cloud_points'] = len(cloud)
    # a 200k-point cloud of realistic density: copies of the real one laid side by side (a larger
    # scene), not stacked (stacked copies would give every voxel ~17 neighbours per point)
    rep = int(np.ceil(200_000 / max(len(cloud), 1)))
    side = int(np.ceil(np.sqrt(rep)))
    step = cloud.xyz.max(0) - cloud.xyz.min(0) + 0.1                  # metres between copies
    offsets = np.array([[i * step[0], j * step[1], 0.0] for i in range(side) for j in range(side)][:rep],
                       np.float32)
    xyz = (cloud.xyz[None] + offsets[:, None]).reshape(-1, 3)[:200_000]
    feats = np.tile(cloud.features, (rep, 1))[:200_000]
    p = cloud.xyz[np.argmax(cloud.xyz[:, 2])]
    out['query_points'] = len(xyz)
    geo = {}

    def geometry():
        geo['g'] = analyse_geometry(xyz, mapper.query_radius, seed=cfg.seed)
    out['geometry_200k'] = _timed(geometry, torch.device('cpu'), max(1, reps // 3))
    out['query_200k'] = _timed(lambda: query_by_point(xyz, feats, p, radius=mapper.query_radius,
                                                      seed_radius=0.75 * mapper.query_radius, geometry=geo['g'],
                                                      max_share=None),
                               torch.device('cpu'), reps)
    log(f"  {out['device']} {out['size']}: teacher {1e3 * out['teacher']:.0f} ms, integrate "
        f"{1e3 * out['integrate']:.0f} ms, node input glue {1e3 * out['glue']:.1f} ms, "
        f"RGB-only stereo {1e3 * out['stereo']:.0f} ms, fuse {1e3 * out['fuse']:.1f} ms, "
        f"step {1e3 * out['train_step']:.0f} ms, measure {1e3 * out['measure']:.0f} ms, "
        f"cloud {1e3 * out['cloud']:.0f} ms "
        f"({len(cloud)} pts), geometry 200k {1e3 * out['geometry_200k']:.0f} ms, query 200k "
        f"{1e3 * out['query_200k']:.0f} ms")
    return out


def bench_memory(device: torch.device, frames: int, log=print) -> dict:
    """Stream ``frames`` frames (320x240) with 1 training step each through 16 keyframe slots."""
    from tqdm import tqdm
    seq = make_sequence(2, frames, 320, 240)
    teacher = DinoTeacher(random_init=True, device=str(device), input_width=320)
    mapper = Mapper(MapperConfig(device=str(device), max_keyframes=16, keyframe_translation=0.01,
                                 keyframe_rotation=1.0, rays_per_step=256), teacher=teacher)
    rss, cuda = [], []
    for i in tqdm(range(frames), desc=f'memory stream ({device})', disable=None):
        mapper.integrate(seq[i])
        mapper.train(1)
        rss.append(_rss_mb())
        cuda.append(torch.cuda.memory_allocated(device) / 2 ** 20 if device.type == 'cuda' else 0.0)
    log(f'  memory over {frames} frames: RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (max {max(rss):.0f}), '
        f'keyframes {len(mapper.keyframes)}')
    return {'device': str(device), 'frames': frames, 'rss_mb': rss, 'cuda_mb': cuda,
            'keyframes': len(mapper.keyframes)}


def run_speed(devices=None, sizes=((320, 240), (640, 480)), quick: bool = False, log=print) -> dict:
    if not devices:
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    reps = 3 if quick else 7
    res = {'torch_threads': torch.get_num_threads(), 'torch': torch.__version__, 'stages': [], 'memory': []}
    for d in devices:
        dev = torch.device(d)
        for w, h in sizes:
            res['stages'].append(bench_size(dev, w, h, reps, log))
        res['memory'].append(bench_memory(dev, 40 if quick else 200, log))
    return res


STAGES = ('teacher', 'integrate', 'overhead', 'glue', 'stereo', 'fuse', 'train_step', 'measure', 'cloud',
          'geometry_200k', 'query_200k')


def format_table(r: dict) -> str:
    head = ['device', 'size'] + [f'{s} [ms]' for s in STAGES]
    rows = [head] + [[s['device'], s['size']] + [f'{1e3 * s[k]:.1f}' for k in STAGES] for s in r['stages']]
    w = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ['  '.join(c.rjust(w[i]) for i, c in enumerate(row)) for row in rows]
    for m in r['memory']:
        lines.append(f"memory ({m['device']}, {m['frames']} frames, {m['keyframes']} keyframes kept): "
                     f"RSS {m['rss_mb'][0]:.0f} -> {m['rss_mb'][-1]:.0f} MB, max {max(m['rss_mb']):.0f} MB")
    lines.append(f"torch {r['torch']}, {r['torch_threads']} CPU threads")
    return '\n'.join(lines)


def save_plot(r: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{s['device']}\n{s['size']}" for s in r['stages']]
    bottom = np.zeros(len(labels))
    for k in (k for k in STAGES if k != 'integrate'):       # integrate = teacher + overhead: not stacked twice
        v = np.nan_to_num(np.array([1e3 * s[k] for s in r['stages']]))
        ax[0].bar(labels, v, bottom=bottom, label=k)
        bottom += v
    ax[0].set_ylabel('ms per call')
    ax[0].set_title('per-stage cost')
    ax[0].legend()
    for m in r['memory']:
        ax[1].plot(m['rss_mb'], label=f"RSS {m['device']}")
        if m['device'].startswith('cuda'):
            ax[1].plot(m['cuda_mb'], label='CUDA allocated')
    ax[1].set_xlabel('frame')
    ax[1].set_ylabel('MB')
    ax[1].set_title('memory over a stream')
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
