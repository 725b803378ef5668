from .backbone import VanillaNet
from .blocks import Block, SeriesActivation
from .checkpoint import load_pretrained, to_backbone_state_dict

__all__ = ['VanillaNet', 'Block', 'SeriesActivation', 'load_pretrained',
           'to_backbone_state_dict']
