"""Markdown report of benchmark results (SPEC §5: "results in a report").

Pure formatting over the JSON dicts the benchmarks write (``quality.write_json``,
``speed.write_json``, ``stereo.write_json``), so a report can be rebuilt from saved results
without re-running anything.
"""
from __future__ import annotations

import os

from n3f_ros.bench.speed import STAGES


def _quality_section(runs: list[dict]) -> list[str]:
    out = ['## Quality: 3D student vs 2D teacher', '',
           '| mode | seed | frames | steps x rays | teacher mIoU | student mIoU | Δ mIoU | teacher mAP | student mAP '
           '| train [s] |',
           '|---|---|---|---|---|---|---|---|---|---|']
    for r in runs:
        s = r['settings']
        out.append(f"| {s['mode']} | {s['seed']} | {s['frames']} | {s['steps']} x {s['rays_per_step']} "
                   f"| {r['teacher_miou']:.3f} | {r['student_miou']:.3f} "
                   f"| {100 * (r['student_miou'] - r['teacher_miou']):+.1f} pts | {r['teacher_map']:.3f} "
                   f"| {r['student_map']:.3f} | {r['train_seconds']:.1f} |")
    for r in runs:
        s = r['settings']
        out += ['', f"Quality vs training time, {s['mode']} (seed {s['seed']}):", '',
                '| steps | train [s] | student mIoU | student mAP |', '|---|---|---|---|']
        out += [f"| {c['steps']} | {c['train_seconds']:.1f} | {c['student_miou']:.3f} | {c['student_map']:.3f} |"
                for c in r['curve']]
        if r.get('plot'):
            out += ['', f"![quality {s['mode']}]({r['plot']})"]
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


def markdown_report(quality: list[dict], speed: dict | None, title: str = 'n3f_ros benchmark report',
                    machine: str = '', stereo: dict | None = None) -> str:
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
    return '\n'.join(lines)


def write_report(path: str, quality: list[dict], speed: dict | None, **kw) -> str:
    """Write :func:`markdown_report` to ``path`` (folders created). Returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(markdown_report(quality, speed, **kw))
    return path
