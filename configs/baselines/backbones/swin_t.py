# Swin-T (mmdet's, as in its Mask R-CNN Swin-T configs): the backbone
# `tools/analysis_tools/model_fps.py` times in place of VanillaNet, with
# the channels of its four outputs (/4 ... /32) for the neck or heads.
backbone = dict(type='mmdet.SwinTransformer', embed_dims=96,
                depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                out_indices=(0, 1, 2, 3))
out_channels = [96, 192, 384, 768]
