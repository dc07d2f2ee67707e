"""Markdown report of benchmark results (SPEC §5: "results in a report").

Pure formatting over the JSON dicts the benchmarks write (``quality.write_json``,
``speed.write_json``, ``stereo.write_json``), so a report can be rebuilt from saved results
without re-running anything.
"""
from __future__ import annotations

import os

from n3f_ros.bench.quality import SWEEP_THRESHOLDS
from n3f_ros.bench.speed import STAGES


def _f(v) -> str:
    return f'{v:.3f}' if isinstance(v, (int, float)) and v == v else '-'


def _quality_section(runs: list[dict]) -> list[str]:
    out = ['## Quality: student vs single-view teacher vs fused teacher, and the product\'s answers', '',
           '3D mIoU with features only (`feat`) and with the product\'s geometry-aware query (`geo`); answers = '
           'the Mapper\'s own queries on its own cloud (see `n3f_ros/bench/quality.py`).', '',
           f'Threshold-free (features only): `sweep` = IoU averaged over the cosine thresholds '
           f'{SWEEP_THRESHOLDS[0]:.2f} … {SWEEP_THRESHOLDS[-1]:.2f}, '
           '`best thr.` = each object at its own best threshold (`quality.threshold_sweep`).', '',
           '| teacher | scene | mode | steps | single-view mIoU feat / geo | fused mIoU feat / geo '
           '| student mIoU feat / geo | student - fused (feat) | fused / student sweep | fused / student best thr. '
           '| mAP single / fused / student | answers mIoU / small / table | source | train [s] |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in runs:
        s = r['settings']
        out.append(f"| {s.get('teacher', 'synthetic')} | {s.get('scene', 'synth')} | {s['mode']} | {s['steps']} "
                   f"| {_f(r['teacher_miou'])} / {_f(r.get('teacher_geo_miou'))} "
                   f"| {_f(r.get('fused_teacher_miou'))} / {_f(r.get('fused_teacher_geo_miou'))} "
                   f"| {_f(r['student_miou'])} / {_f(r.get('student_geo_miou'))} "
                   f"| {r['student_miou'] - r.get('fused_teacher_miou', 0.0):+.3f} "
                   f"| {_f(r.get('fused_teacher_sweep_miou'))} / {_f(r.get('student_sweep_miou'))} "
                   f"| {_f(r.get('fused_teacher_oracle_miou'))} / {_f(r.get('student_oracle_miou'))} "
                   f"| {_f(r['teacher_map'])} / {_f(r.get('fused_teacher_map'))} / {_f(r['student_map'])} "
                   f"| {_f(r.get('answer_miou'))} / {_f(r.get('answer_small_miou'))} / {_f(r.get('answer_table_iou'))} "
                   f"| {r.get('answer_source', '')} | {r['train_seconds']:.1f} |")
    for r in runs:
        s = r['settings']
        title = (f"{s.get('teacher', 'synthetic')} teacher, {s.get('scene', 'synth')} scene, {s['mode']} "
                 f"(seed {s['seed']})")
        out += ['', f'### {title}', '', '| steps | train [s] | student mIoU feat | sweep / best thr. | geo | mAP '
                '| answers mIoU | small | table | source | held-out 1-cos fused / student (live field) / combined '
                '| student of step |',
                '|---|---|---|---|---|---|---|---|---|---|---|---|']
        for c in r['curve']:
            out.append(f"| {c['steps']} | {c['train_seconds']:.1f} | {_f(c['student_miou'])} "
                       f"| {_f(c.get('student_sweep_miou'))} / {_f(c.get('student_oracle_miou'))} "
                       f"| {_f(c.get('student_geo_miou'))} | {_f(c['student_map'])} | {_f(c.get('answer_miou'))} "
                       f"| {_f(c.get('answer_small_miou'))} | {_f(c.get('answer_table_iou'))} "
                       f"| {c.get('answer_source', '')} | {_f(c.get('heldout_error_fused'))} / "
                       f"{_f(c.get('heldout_error_student'))} ({_f(c.get('heldout_error_student_live'))}) / "
                       f"{_f(c.get('heldout_error_combined'))} | {c.get('student_steps', c['steps'])} |")
        po, objs = r.get('per_object', {}), r.get('objects', {})
        if objs:
            cols = [k for k in ('teacher', 'fused_teacher', 'student', 'teacher_geo', 'fused_teacher_geo',
                                'student_geo', 'answer') if k in po]
            out += ['', 'Per object (IoU at the end):', '', '| object | size [cm] | ' + ' | '.join(cols) + ' |',
                    '|---|---|' + '---|' * len(cols)]
            for k, o in sorted(objs.items(), key=lambda kv: int(kv[0])):
                size = f"{100 * max(o['extent']):.1f}{' (small)' if o['small'] else ''}"
                vals = [_f(po[c].get(str(k), po[c].get(int(k)) if isinstance(po[c], dict) else None)) for c in cols]
                out.append(f"| {o['name']} | {size} | " + ' | '.join(vals) + ' |')
        mono = r.get('monotone') or {}
        if mono:
            out += ['', 'Curve rule final >= best - 0.03: ' + ', '.join(
                f"{k} {'ok' if v['ok'] else 'FALLS'} (best {v['best']:.3f}, final {v['final']:.3f})"
                for k, v in mono.items()) + '.']
        if r.get('plot'):
            out += ['', f"![quality {title}]({r['plot']})"]
        if r.get('features'):
            out += ['', f"![features {title}]({r['features']})"]
    return out


def _speed_section(speed: dict) -> list[str]:
    out = ['## Speed (per call, median)', '',
           '| device | size | ' + ' | '.join(f'{k} [ms]' for k in STAGES) + ' |',
           '|---|---|' + '---|' * len(STAGES)]
    for s in speed['stages']:
        out.append(f"| {s['device']} | {s['size']} | " + ' | '.join(f'{1e3 * s[k]:.1f}' for k in STAGES) + ' |')
    for m in speed['memory']:
        out.append('')
        out.append(f"Memory ({m['device']}, {m['frames']} frames, {m['keyframes']} keyframes kept): RSS "
                   f"{m['rss_mb'][0]:.0f} -> {m['rss_mb'][-1]:.0f} MB (max {max(m['rss_mb']):.0f} MB).")
    out += ['', f"torch {speed['torch']}, {speed['torch_threads']} CPU threads."]
    if speed.get('plot'):
        out += ['', f"![speed]({speed['plot']})"]
    return out


def _stereo_section(st: dict) -> list[str]:
    out = ['## RGB-only keyframe depth (multi-view stereo) vs ray-cast depth', '',
           f"{st['keyframes']} keyframes at {st['size'][0]}x{st['size'][1]}, seed {st['settings']['seed']}, "
           f"{1e3 * st['seconds_per_keyframe']:.0f} ms per keyframe ({st['settings']['device']}).", '',
           '| depth | coverage | median error [cm] | within 1 cm | within 2 cm | over 5 cm |',
           '|---|---|---|---|---|---|']
    for k in ('raw', 'filtered'):
        m = st[k]
        out.append(f"| {k} | {m['coverage']:.2f} | {100 * m['median_m']:.2f} | {m['within_1cm']:.2f} "
                   f"| {m['within_2cm']:.2f} | {m['over_5cm']:.2f} |")
    if st.get('plot'):
        out += ['', f"![stereo]({st['plot']})"]
    return out


def _latency_section(lat: dict) -> list[str]:
    from n3f_ros.bench.latency import format_table
    out = ['## Time to a right answer (a scene streamed over DDS into n3f_node, shipped config)', '',
           '```', format_table(lat), '```']
    if lat.get('plot'):
        out += ['', f"![latency]({lat['plot']})"]
    return out


def markdown_report(quality: list[dict], speed: dict | None, title: str = 'n3f_ros benchmark report',
                    machine: str = '', stereo: dict | None = None, latency: dict | None = None) -> str:
    """The report as markdown. ``quality``: QualityResult JSON dicts; ``speed``: run_speed's dict
    (or None). An optional ``plot`` key in either (a path relative to the report) adds a picture."""
    lines = [f'# {title}', '']
    if machine:
        lines += [machine, '']
    if quality:
        lines += _quality_section(quality) + ['']
    if speed:
        lines += _speed_section(speed) + ['']
    if stereo:
        lines += _stereo_section(stereo) + ['']
    if latency:
        lines += _latency_section(latency) + ['']
    return '\n'.join(lines)


def write_report(path: str, quality: list[dict], speed: dict | None, **kw) -> str:
    """Write :func:`markdown_report` to ``path`` (folders created). Returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(markdown_report(quality, speed, **kw))
    return path
