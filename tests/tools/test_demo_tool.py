"""tools/demo.py (make demo) end to end, on a short schedule: both tasks
trained side by side, tested plain and fused, targets judged, summary and
PNGs written, all under --data-root / --work-dir."""
import json
import re

import pytest

from tool_helpers import ROOT, load_tool


def short(demo, tmp_path, task, schedule):
    """A config inheriting the demo config of ``task``, on ``schedule``."""
    cfg = tmp_path / f'{task}_short.py'
    base = ROOT / demo.TASKS[task]['config']
    cfg.write_text(f"_base_ = '{base}'\n{schedule}")
    return str(cfg)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, monkeypatch, capsys):
    demo = load_tool('demo.py')
    schedules = dict(
        det='train_cfg = dict(max_epochs=1, val_interval=1)\n'
        "custom_hooks = [dict(type='DeepTrainingHook', decay_iters=40)]\n"
        'default_hooks = dict(checkpoint=dict(interval=1))\n',
        seg='train_cfg = dict(max_iters=30, val_interval=30)\n'
        "custom_hooks = [dict(type='DeepTrainingHook', decay_iters=20)]\n"
        'default_hooks = dict(checkpoint=dict(interval=30))\n')
    for task, schedule in schedules.items():
        monkeypatch.setitem(demo.TASKS[task], 'config',
                            short(demo, tmp_path, task, schedule))
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    work, data = tmp_path / 'work', tmp_path / 'data'
    monkeypatch.setattr('sys.argv', [
        'demo.py', '--work-dir', str(work), '--data-root', str(data),
        '--seed', '3', '--latency-iters', '2'])
    demo.main()
    out, err = capsys.readouterr()

    summary = json.loads((work / 'summary.json').read_text())
    assert summary['seed'] == 3 and summary['act_learn_final'] == 1.0
    rows = []
    for task, spec in demo.TASKS.items():
        for log in ('train', 'test', 'test_fused'):
            assert (work / task / f'{log}.log').stat().st_size > 0
        for png in summary[f'{task}_predictions']:
            assert png.startswith(str(work)) and png.endswith('.png')
        assert len(summary[f'{task}_predictions']) == 4
        for name, (_, target) in spec['metrics'].items():
            a, b = summary[name], summary[f'{name}_fused']
            assert abs(a - b) <= 0.01 * (100 if name == 'mIoU' else 1)
            ok = min(a, b) >= target
            rows.append(ok)
            # the printed verdict is the numbers' verdict
            assert re.search(rf'^{name} .*  {"met" if ok else "MISSED"}$',
                             out, re.M), out
    assert summary['targets_met'] == (
        all(rows) and summary['total_minutes'] <= demo.MINUTES_TARGET)
    assert summary['backbone_ms_fused'] > 0
    assert summary['backbone_fusion_rel_err'] < 1e-4
    # the terminal: one status line per task as it changes (not a tty here),
    # up to the figures of the last line train.log has, then the results;
    # no library warnings or INFO lines
    for task, form in (('det', r'Epoch\(train\)\s*\[1\]\[\s*(\d+)/75\]'),
                       ('seg', r'Iter\(train\)\s*\[\s*(\d+)/30\]')):
        log = (work / task / 'train.log').read_text()
        *_, (it, loss) = re.findall(form + r'.*?\sloss: (\S+)', log)
        shown = 'epoch 1/1 iter ' + it + '/75' if task == 'det' else \
            f'iter {it}/30'
        assert re.search(rf'^{task}  train  {shown}  loss {loss}  ETA ',
                         out, re.M), out
        assert re.search(rf'^{task}  done  ', out, re.M), out
    assert not re.search(r'INFO|Warning|warn\(', out + err), out + err
    assert 'Loads checkpoint' in (work / 'demo.log').read_text()
    assert (data / 'manifest.json').exists()
    assert not (tmp_path / 'data' / 'demo').exists()
