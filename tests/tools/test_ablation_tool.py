"""tools/analysis_tools/deep_training_ablation.py: the committed results
match the configs they claim, the table's statistics, the doc markers."""
import statistics

import pytest

from tool_helpers import ROOT, load_tool

abl = load_tool('analysis_tools/deep_training_ablation.py')


def committed(recipe):
    return abl.load_results(str(ROOT / 'docs/ablation' / recipe))


@pytest.mark.parametrize('recipe', list(abl.RECIPES))
def test_committed_results_match_their_configs(recipe):
    """A result is the merged config it was trained with: editing a recipe's
    config makes its results stale, so the documented table would lie."""
    results = committed(recipe)
    if not results:
        pytest.skip(f'no results committed for --recipe {recipe}')
    for r in results:
        task, row, seed = r['task'], r['row'], r['seed']
        extra = r['options'][len(abl.ROWS[row]):]
        assert set(r['metrics']) == set(abl.TASKS[task]['metrics'])
        assert r['digest'] == abl.digest(recipe, task, row, seed, extra), (
            f'docs/ablation/{recipe}/{abl.run_name(task, row, seed)}.json '
            f'is stale: {abl.RECIPES[recipe][task]} changed since it ran; '
            f're-run the ablation with --recipe {recipe} (or restore the '
            'config)')
    if recipe == 'base':  # every row of both tasks, seeds 0-2
        have = {(r['task'], r['row'], r['seed']) for r in results}
        assert have == {(t, row, s) for t, spec in abl.TASKS.items()
                        for row in spec['rows'] for s in (0, 1, 2)}


def test_table_mean_std_and_stale_results_left_out():
    results = [r for r in committed('base') if r['task'] == 'upernet']
    stale = dict(results[0], seed=7, digest='0' * 16,
                 metrics={'mIoU': 0.0})
    text = abl.table(results + [stale], 'base')
    for row in abl.TASKS['upernet']['rows']:
        values = [r['metrics']['mIoU'] for r in results if r['row'] == row]
        line = next(ln for ln in text.splitlines()
                    if abl.ROW_TITLES[row] in ln)
        assert f'mIoU {statistics.mean(values):.2f} ± ' \
               f'{statistics.stdev(values):.2f}' in line
        assert '| 0,1,2 |' in line  # seed 7's stale result left out


def test_write_into_replaces_only_its_table(tmp_path):
    doc = tmp_path / 'doc.md'
    doc.write_text('intro\n<!-- table base: cmd -->\nold\n'
                   '<!-- end table base -->\n<!-- table demo: cmd -->\n'
                   'keep\n<!-- end table demo -->\n')
    abl.write_into(str(doc), 'new 1\nnew 2', 'base')
    assert doc.read_text() == (
        'intro\n<!-- table base: cmd -->\nnew 1\nnew 2\n'
        '<!-- end table base -->\n<!-- table demo: cmd -->\nkeep\n'
        '<!-- end table demo -->\n')
    with pytest.raises(SystemExit, match='<!-- table other'):
        abl.write_into(str(doc), 'x', 'other')

