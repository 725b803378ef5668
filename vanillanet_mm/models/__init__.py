from .backbone import VanillaNet
from .blocks import SeriesActivation, Stage
from .checkpoint import load_pretrained, to_backbone_state_dict

__all__ = ['VanillaNet', 'Stage', 'SeriesActivation', 'load_pretrained',
           'to_backbone_state_dict']
