"""Lets mmengine read ``vanillanet_mm::`` config paths, like ``mmdet::``.

mmengine 0.10 resolves ``_base_ = 'PKG::path'`` only for the packages in its
``MODULE2PACKAGE`` table, and reads ``_base_`` before a config's
``custom_imports`` run. The installed package therefore ships
``vanillanet_mm_scope.pth``, which imports this module at interpreter start:
when ``mmengine.config`` is first imported (or at once if it already is),
:func:`register` adds ``vanillanet_mm`` to that table, and imports nothing
else, so starting Python stays as fast as before. mmengine then finds
``vanillanet_mm::mask_rcnn/vanillanet13_coco.py`` under the installed
package's ``.mim/configs`` (mmdet's layout).

mmengine also stamps the dicts of a ``PKG::`` base with ``_scope_=PKG``, a
registry scope. Our configs are mmdet or mmseg configs (their
``default_scope``), and no ``vanillanet_mm`` registry scope exists: with that
stamp, a transform built through mmcv's root registry (mmdeploy does) would
not find ``PackDetInputs``. :func:`register` leaves our bases unstamped, as
a relative ``_base_`` is.
"""
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder

SCOPE = 'vanillanet_mm'
_TARGET = 'mmengine.config.config'


def register(config_module) -> None:
    """Teach mmengine's ``Config`` the ``vanillanet_mm::`` prefix."""
    from mmengine.config import utils
    utils.MODULE2PACKAGE.setdefault(SCOPE, SCOPE)
    config = config_module.Config
    get_cfg_path = config._get_cfg_path
    if getattr(get_cfg_path, '_vanillanet_mm', False):
        return

    def _get_cfg_path(cfg_path, filename):
        path, scope = get_cfg_path(cfg_path, filename)
        return path, None if scope == SCOPE else scope

    _get_cfg_path._vanillanet_mm = True
    config._get_cfg_path = staticmethod(_get_cfg_path)


class _RegisterOnImport(MetaPathFinder):
    """Finds nothing itself; wraps the loader of ``mmengine.config.config``
    so that :func:`register` runs right after the module does."""

    def find_spec(self, name, path=None, target=None):
        if name != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_and_register(module):
                exec_module(module)
                register(module)

            spec.loader.exec_module = exec_and_register
        return spec


def install() -> None:
    if _TARGET in sys.modules:
        register(sys.modules[_TARGET])
    elif not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())


install()
