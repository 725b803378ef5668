"""Custom kernels. Import-light: Triton is loaded on first use only."""
from .series_act import (
                         ENV_VAR,
                         IMPLS,
                         check_impl,
                         resolve_impl,
                         series_act,
                         series_act_reference,
)

__all__ = ['ENV_VAR', 'IMPLS', 'check_impl', 'resolve_impl', 'series_act',
           'series_act_reference']
