"""Lets mmengine read ``vanillanet_mm::`` config paths, like ``mmdet::``.

mmengine 0.10 resolves ``_base_ = 'PKG::path'`` only for the packages in its
``MODULE2PACKAGE`` table, and reads ``_base_`` before a config's
``custom_imports`` run. The installed package therefore ships
``vanillanet_mm_scope.pth``, which imports this module at interpreter start:
it adds ``vanillanet_mm`` to that table when ``mmengine.config.utils`` is
first imported (or at once if it already is), and imports nothing else, so
starting Python stays as fast as before. mmengine then finds
``vanillanet_mm::mask_rcnn/vanillanet13_coco.py`` under the installed
package's ``.mim/configs`` (mmdet's layout).
"""
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder

_TARGET = 'mmengine.config.utils'


def register(utils_module) -> None:
    """Add this package to mmengine's table of config scopes."""
    utils_module.MODULE2PACKAGE.setdefault('vanillanet_mm', 'vanillanet_mm')


class _RegisterOnImport(MetaPathFinder):
    """Finds nothing itself; wraps the loader of ``mmengine.config.utils``
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
