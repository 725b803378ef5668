from .synthetic import CLASSES, SEG_CLASSES, cfg_options, generate

__all__ = ['CLASSES', 'SEG_CLASSES', 'cfg_options', 'generate']
