from .synthetic import CLASSES, SEG_CLASSES, generate

__all__ = ['CLASSES', 'SEG_CLASSES', 'generate']
