"""vanillanet_mm: VanillaNet backbones for MMDetection 3 / MMSegmentation 1.

A built package (``pip install .``, a wheel) carries, as mmdet's does, the
repository's ``configs/``, ``tools/`` and ``model-index.yml`` under
``vanillanet_mm/.mim/`` (:func:`add_mim_extension`), so
``_base_ = 'vanillanet_mm::mask_rcnn/vanillanet13_coco.py'`` and the tools
work without the repository, plus ``vanillanet_mm_scope.pth``, which teaches
mmengine the ``vanillanet_mm::`` scope (see ``vanillanet_mm_scope.py``).
An editable install (``pip install -e .``) reads them from the repository.
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')
SCOPE_PTH = 'vanillanet_mm_scope.pth'


def add_mim_extension(build_lib: str) -> None:
    """Copy ``MIM_FILES`` (folders whole, with their subfolders, e.g.
    ``tools/deployment/``) into ``<build_lib>/vanillanet_mm/.mim`` and the
    scope ``.pth`` into ``<build_lib>`` (installed beside the package)."""
    mim = osp.join(build_lib, 'vanillanet_mm', '.mim')
    shutil.rmtree(mim, ignore_errors=True)
    os.makedirs(mim)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in MIM_FILES:
        src = osp.join(ROOT, name)
        if osp.isdir(src):
            shutil.copytree(src, osp.join(mim, name), ignore=ignore)
        else:
            shutil.copyfile(src, osp.join(mim, name))
    shutil.copyfile(osp.join(ROOT, SCOPE_PTH), osp.join(build_lib, SCOPE_PTH))


class BuildPyWithMim(build_py):

    def run(self):
        super().run()
        if not getattr(self, 'editable_mode', False):
            add_mim_extension(self.build_lib)


setup(
    name='vanillanet_mm',
    version='0.1.0',
    description='VanillaNet (deep training, series activation, fusion) '
    'as an OpenMMLab backbone',
    long_description=open(osp.join(ROOT, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['vanillanet_mm', 'vanillanet_mm.*']),
    py_modules=['vanillanet_mm_scope'],
    cmdclass={'build_py': BuildPyWithMim},
    license='MIT',
    python_requires='>=3.9',
    # The supported range (README "Install"), tested at both ends: torch 2.1
    # (mmcv 2.1.0's prebuilt wheels) and the newest release, 2.15. No upper
    # bound on torch/torchvision (mmdet and mmseg have none): installing into
    # a newer stack keeps it. mmdet 3.3 / mmseg 1.2 assert mmcv<2.2. None of
    # these forces an upgrade or a downgrade of an installed torch or mmcv.
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'mmengine>=0.10.7,<0.11',
        'mmcv>=2.1.0,<2.2.0',
        'mmdet>=3.3.0,<3.4',
        'mmsegmentation>=1.2.2,<1.3',
        'timm>=1.0,<2',
        # mmcv's build and mmengine's `mmdet::` base lookup need pkg_resources
        'setuptools<81',
        'ftfy',
        'regex',
        'pycocotools',
        'matplotlib',
    ],
    extras_require={
        # psutil: mmdet's own tools/analysis_tools/benchmark.py;
        # pytest-xdist: make test runs the default tests on every core
        'tests': ['pytest', 'pytest-xdist', 'onnx', 'onnxruntime', 'ruff',
                  'psutil'],
        # tools/deployment/deploy.py: mmdeploy==1.3.1 itself goes in with
        # --no-deps (its pins would downgrade onnx and protobuf;
        # scripts/setup_env.sh does it); these are the packages it imports
        # that the stack lacks.
        'deploy': ['onnx', 'onnxruntime', 'aenum', 'multiprocess'],
    },
)
