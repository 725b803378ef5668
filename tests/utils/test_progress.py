"""The demo's live status lines (vanillanet_mm.utils.progress)."""
import io
import re

from vanillanet_mm.utils.progress import ProgressBoard, train_status

# as MMEngine's LoggerHook writes them (copied from the demo's train.log)
EPOCH_LINE = ('12/04 17:30:22 - mmengine - INFO - Epoch(train)  [1][75/75]  '
              'lr: 1.4895e-03  eta: 0:10:54  time: 0.5463  data_time: 0.0114'
              '  act_learn: 0.3289  grad_norm: 34.2591  loss: 2.2435  '
              'loss_rpn_cls: 0.1421')
ITER_LINE = ('12/04 17:29:55 - mmengine - INFO - Iter(train) [  25/1500]  '
             'lr: 9.8922e-04  eta: 0:09:58  time: 0.3504  data_time: 0.0088'
             '  loss: 1.9041  decode.loss_ce: 1.3190')


class Tty(io.StringIO):

    def isatty(self):
        return True


def test_train_status_reads_both_loops():
    assert train_status(EPOCH_LINE, 18) == \
        'epoch 1/18 iter 75/75  loss 2.2435  ETA 0:10:54'
    assert train_status(ITER_LINE) == 'iter 25/1500  loss 1.9041  ETA 0:09:58'
    assert train_status('Epoch(test) [25/25]  coco/bbox_mAP: 0.7460') is None


def test_board_prints_changes_when_not_a_tty(tmp_path):
    log = tmp_path / 'train.log'
    log.write_text('')
    out = io.StringIO()
    with ProgressBoard(['det', 'seg'], out, poll_s=0.01) as board:
        board.watch('det', 'train', str(log), 18)
        log.write_text(EPOCH_LINE + '\n')
        board.set('det', 'test')  # the last training line is shown first
        board.set('seg', 'test')
        board.set('seg', 'test')  # unchanged: not printed again
    assert out.getvalue().splitlines() == [
        'det  train',
        'det  train  epoch 1/18 iter 75/75  loss 2.2435  ETA 0:10:54',
        'det  test',
        'seg  test',
    ]


def test_board_redraws_in_place_on_a_tty():
    out = Tty()
    with ProgressBoard(['det', 'seg'], out, poll_s=60) as board:
        board.set('seg', 'test')
        board.set('det', 'done')
    frames = out.getvalue().split('\x1b[2F')  # cursor up two lines
    assert len(frames) == 3  # first draw, then one redraw per change
    last = [re.sub(r'\x1b\[2K', '', line) for line in frames[-1].splitlines()]
    assert last == ['det  done', 'seg  test']
