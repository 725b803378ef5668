"""Run a tool that dies by SIGKILL half-way through writing a checkpoint.

    python tests/helpers/kill_mid_write.py tools/train.py ARGS...

The n-th ``.pth`` write (env ``KILL_AT_SAVE``, default 1) through MMEngine's
local file backend (what ``save_checkpoint`` uses) writes the first half of
its bytes, then the process kills itself with SIGKILL: the state a
``kill -9`` leaves when it lands mid-write, without racing for the moment.
"""
import os
import runpy
import signal
import sys

from mmengine.fileio import LocalBackend


def main():
    cut_at, saves = int(os.environ.get('KILL_AT_SAVE', '1')), 0
    put = LocalBackend.put

    def put_then_die(self, obj, filepath):
        nonlocal saves
        if str(filepath).endswith(('.pth', '.pth.tmp')):
            saves += 1
            if saves == cut_at:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        return put(self, obj, filepath)

    LocalBackend.put = put_then_die
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')


if __name__ == '__main__':
    main()
