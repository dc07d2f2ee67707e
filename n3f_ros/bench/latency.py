"""Time to a right answer (SPEC §5, issue 9): ``n3f bench latency``.

One live session per mode (``bench/live.py``: the scene streamed over DDS into ``n3f_node`` with the
shipped config and the real teacher, every object queried through ``~/query`` from the first cloud
on, every ``query_period`` seconds, until the mean IoU reaches 0.75 or ``max_wait`` s after the
stream). Reports, per mode, the seconds from the first frame to mean IoU >= 0.5 and >= 0.75, the
IoU at the end of the stream, the curve (plot: IoU against time since the first frame) and the
per-object IoU of the last round.
"""
from __future__ import annotations

import os
from dataclasses import replace

from n3f_ros.bench.live import IOU_LEVELS, LiveSettings, run_live
from n3f_ros.bench.results_file import write_json  # noqa: F401 (the benchmark's writer)

#: modes: name -> depth topic streamed
MODES = {'rgbd': True, 'rgb': False}


def run_latency(base: LiveSettings, modes=tuple(MODES), log=print) -> dict:
    """{'modes': {mode: LiveResult JSON + 'at_stream_end'}, 'settings': ...}."""
    out = {'settings': dict(base.__dict__), 'modes': {}}
    for mode in modes:
        s = replace(base, depth=MODES[mode], out=os.path.join(base.out, mode), masks=False, save_map=False)
        res, _ = run_live(s, log)
        r = res.to_json()
        end = res.times.get('stream_end', 0.0)
        after = [x for x in res.rounds if not x['streaming']]
        r['at_stream_end'] = after[0]['mean'] if after else None
        r['at_stream_end_t'] = after[0]['t'] if after else None
        r['stream_seconds'] = end
        out['modes'][mode] = r
    return out


def format_table(r: dict) -> str:
    rows = [('mode', 'stream s', 'first cloud s', 'IoU at stream end', *(f'IoU>={v} after s' for v in IOU_LEVELS),
             'last mean IoU')]
    for mode, m in r['modes'].items():
        t = m['times']
        last = m['rounds'][-1]['mean'] if m['rounds'] else float('nan')
        rows.append((mode, f"{m['stream_seconds']:.1f}", f"{t.get('first_cloud', float('nan')):.1f}",
                     'n/a' if m['at_stream_end'] is None else f"{m['at_stream_end']:.2f}",
                     *(f"{t[f'iou_{v}']:.1f}" if f'iou_{v}' in t else 'not reached' for v in IOU_LEVELS),
                     f'{last:.2f}'))
    w = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(c.ljust(w[i]) for i, c in enumerate(row)) for row in rows)


def save_plot(r: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, m in r['modes'].items():
        ts = [x['t'] for x in m['rounds']]
        line, = ax.plot(ts, [x['mean'] for x in m['rounds']], 'o-', label=f'{mode}: mean IoU')
        if m.get('stream_seconds'):
            ax.axvline(m['stream_seconds'], color=line.get_color(), ls=':', lw=1)
    for v in IOU_LEVELS:
        ax.axhline(v, color='grey', ls='--', lw=0.8)
    ax.set_xlabel('seconds since the first frame (dotted: end of the stream)')
    ax.set_ylabel('mean query IoU over the objects')
    ax.set_ylim(0, 1)
    ax.set_title('time to a right answer (live over DDS)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
