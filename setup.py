"""vanillanet_mm: VanillaNet backbones for MMDetection 3 / MMSegmentation 1."""
from setuptools import find_packages, setup

setup(
    name='vanillanet_mm',
    version='0.1.0',
    description='VanillaNet (deep training, series activation, fusion) '
    'as an OpenMMLab backbone',
    long_description=open('README.md').read() if __import__('os').path.exists(
        'README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['vanillanet_mm', 'vanillanet_mm.*']),
    license='MIT',
    python_requires='>=3.9',
    # The verified stack (see README): mmdet 3.3 / mmseg 1.2 assert mmcv<2.2.
    install_requires=[
        'torch>=2.6,<=2.14.1',
        'torchvision>=0.21,<=0.29.1',
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
        'tests': ['pytest', 'onnx', 'onnxruntime', 'ruff'],
        # tools/deploy.py: mmdeploy==1.3.1 itself goes in with --no-deps (its
        # pins would downgrade onnx and protobuf; scripts/setup_env.sh does
        # it); these are the packages it imports that the stack lacks.
        'deploy': ['onnx', 'onnxruntime', 'aenum', 'multiprocess'],
    },
)
