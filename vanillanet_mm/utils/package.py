"""Where this package's configs live: the installed package's ``.mim/configs``
(mmdet's layout, what ``vanillanet_mm::`` reads), else the repository's
``configs/`` (editable install or a checkout)."""
import os.path as osp

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def config_root() -> str:
    installed = osp.join(PACKAGE_DIR, '.mim', 'configs')
    if osp.isdir(installed):
        return installed
    return osp.join(osp.dirname(PACKAGE_DIR), 'configs')


def config_path(name: str) -> str:
    """Absolute path of ``configs/<name>`` (e.g. ``mmdeploy/….py``)."""
    return osp.join(config_root(), name)
