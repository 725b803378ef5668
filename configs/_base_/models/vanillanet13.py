# VanillaNet-13 as the official detection recipe builds it (huawei-noah/
# VanillaNet object_detection/configs/vanillanet/*.py): act_num 4, SyncBN
# eps 1e-6, ImageNet weights from the `model_ema` entry of the official
# act_num-4 checkpoint. Variables only (no model/optim keys), so every COCO
# and ADE config can take what it needs next to mmdet's / mmseg's own bases.
custom_imports = dict(imports=['vanillanet_mm'], allow_failed_imports=False)

# --- the one path to set ----------------------------------------------------
# The official ImageNet checkpoint (or `tools/model_converters/
# convert_checkpoint.py from-official` output); None trains from scratch.
pretrained = 'checkpoints/vanillanet_13_act_num_4_kd_pretrain.pth'
# --- λ (deep training) -------------------------------------------------------
# The λ rule (VanillaNet's docstring): official weights are λ = 1, so
# fine-tuning keeps λ = 1 (the hook only pins and logs it), as the official
# detection code, which has no λ. From scratch (pretrained=None) or from a
# λ < 1 checkpoint, set act_learn_start to that λ: the hook anneals it to 1.
act_learn_start = 1.0 if pretrained else 0.0

vanillanet13 = dict(
    type='VanillaNet', arch='vanillanet_13', act_num=4,
    out_indices=(0, 1, 8, 10),  # 512@/4, 1024@/8, 2048@/16, 4096@/32
    norm_cfg=dict(type='SyncBN', eps=1e-6, requires_grad=True),
    init_cfg=dict(type='Pretrained', checkpoint=pretrained, entry='model_ema')
    if pretrained else None)

# AdamW with the official layer-wise lr decay: stem -> group 0, stage s ->
# s // 2 + 1, neck and heads -> 7; lr scale 0.6 ** (7 - group); no weight
# decay on biases and 1-D parameters. lr is the official Mask R-CNN one.
vanillanet13_optim_wrapper = dict(
    type='OptimWrapper',
    constructor='VanillaNetLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=6, decay_rate=0.6, decay_type='layer_wise'),
    optimizer=dict(type='AdamW', lr=1.3e-4, betas=(0.9, 0.999),
                   weight_decay=0.05))
