"""The latency benchmark's report (table, plot) from a session result (the live session itself runs in
test/e2e/test_demo.py)."""
from n3f_ros.bench.latency import format_table, save_plot


def _mode(times, rounds, stream):
    return {'times': times, 'rounds': rounds, 'stream_seconds': stream,
            'at_stream_end': next((r['mean'] for r in rounds if not r['streaming']), None)}


def test_table_and_plot(tmp_path):
    rounds = [{'t': 5.0, 'streaming': True, 'mean': 0.3}, {'t': 10.0, 'streaming': True, 'mean': 0.55},
              {'t': 20.0, 'streaming': False, 'mean': 0.8}]
    r = {'modes': {'rgbd': _mode({'first_cloud': 4.0, 'iou_0.5': 10.0, 'iou_0.75': 20.0}, rounds, 18.0),
                   'rgb': _mode({'first_cloud': 6.0}, rounds[:1], 18.0)}}
    table = format_table(r).splitlines()
    assert table[1].split()[:6] == ['rgbd', '18.0', '4.0', '0.80', '10.0', '20.0']
    assert 'not reached' in table[2] and table[2].split()[3] == 'n/a'
    save_plot(r, str(tmp_path / 'latency.png'))
    assert (tmp_path / 'latency.png').stat().st_size > 1000


def test_report_section(tmp_path):
    from n3f_ros.bench.report import markdown_report
    rounds = [{'t': 3.0, 'streaming': True, 'mean': 0.6}, {'t': 19.0, 'streaming': False, 'mean': 0.9}]
    r = {'modes': {'rgbd': _mode({'first_cloud': 2.0, 'iou_0.5': 3.0, 'iou_0.75': 3.0}, rounds, 18.0)},
         'plot': 'latency.png'}
    md = markdown_report([], None, latency=r)
    assert 'Time to a right answer' in md and '](latency.png)' in md
    assert format_table(r).splitlines()[1] in md
